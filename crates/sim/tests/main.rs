//! The integration tests of wardline-sim, as one test binary: each file beside this
//! one is a module, so a fresh build compiles and links them once.

mod mitdb_replay;
mod scenarios;
mod support;
mod synthetic_ecg;
mod ward;
