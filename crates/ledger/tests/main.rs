//! The tests of wardline-ledger, as one test binary: each file beside this one is a
//! module, so a fresh build compiles and links them once.

#![allow(clippy::unwrap_used)]

mod common;
mod dates;
mod device;
mod management;
mod practitioner;
mod rules;
mod shortfall;
