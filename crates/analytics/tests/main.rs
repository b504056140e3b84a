//! The integration tests of wardline-analytics, as one test binary: each file beside this
//! one is a module, so a fresh build compiles and links them once.

mod cgm_reference;
mod common;
mod forecast_accuracy;
mod news2_examples;
mod robustness;
