//! The integration tests of wardline-waveform, as one test binary: each file beside this
//! one is a module, so a fresh build compiles and links them once.

mod fixtures;
mod mitdb_ratio;
mod roundtrip;
mod support;
