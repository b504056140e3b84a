//! The integration tests of wardline-store, as one test binary: each file beside this
//! one is a module, so a fresh build compiles and links them once.

mod encryption;
mod migrations;
mod postgres_conformance;
mod sqlite_conformance;
