//! Wardline's measuring and checking tools: the load benchmarks (`wardline bench`) and
//! the clinical validators over the shared real data (`wardline validate`). They start
//! the server as its own process and drive it as real clients do; none of this is in the
//! server's library.

pub mod bench;
mod bench_alarms;
mod bench_drain;
mod bench_export;
mod bench_http;
mod ecg_data;
mod setup;
pub mod validate;
mod validate_ecg;
