//! The `wardline` program: configuration, TLS identity, the server, administration and
//! the load benchmark. The binary's `main` only parses arguments and calls in here.

pub mod admin;
pub mod bench;
pub mod bench_alarms;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod server;
pub mod tls;
pub mod validate;
