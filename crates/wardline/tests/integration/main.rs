//! Integration tests: the real `wardline` binary on ephemeral ports with TLS, a fresh data
//! folder each, driven by real clients (rumqttc for MQTT 3.1.1 and 5, reqwest for HTTP).
//! One test binary, so the suite links once.

mod access;
mod alarms;
mod analytics;
mod audit;
mod cluster;
mod connections;
mod demo;
mod device_certificates;
mod durability;
mod encryption;
mod evaluation;
mod fhir;
mod gateway;
mod ingest;
mod nightscout;
mod observability;
mod operator;
mod postgres;
mod sharing;
mod support;
mod templates;
mod tls;
mod validate;
mod visits;
