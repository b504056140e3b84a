//! The `wardline` program's parts: configuration, TLS identity, the server's wiring, the
//! demo ward, administration and the home gateway's command. The binary's `main` only
//! parses arguments and calls in here; benchmarks and validators live in
//! `wardline-devtools`.

pub mod admin;
pub mod audit;
pub mod config;
pub mod database_key;
pub mod demo;
pub mod gateway;
pub mod http_limits;
pub mod keys;
pub mod metrics_catalog;
pub mod proxy_protocol;
pub mod server;
pub mod tls;
