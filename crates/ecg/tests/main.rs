//! The integration tests of wardline-ecg, as one test binary: each file beside this
//! one is a module, so a fresh build compiles and links them once.

mod common;
mod mitdb;
mod quality;
mod streaming;
mod ventricular;
mod wfdb_data;
