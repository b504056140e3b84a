//! The integration tests of wardline-alerting, as one test binary: each file beside this
//! one is a module, so a fresh build compiles and links them once.

mod cgm_alarm_burden;
mod common;
mod lifecycle;
mod rules;
mod storm;
