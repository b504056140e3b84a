//! Wardline's clinical analytics.
//!
//! Everything here is pure: parsers take text, metrics and scores take values,
//! and the streaming [`forecast::Forecaster`] is a plain state machine. Nothing
//! reads files, clocks or the network, so the same code runs in the ingest
//! path, in reports and in tests.
//!
//! * [`cgm`]: continuous glucose monitoring, the 2019 International Consensus
//!   metrics, hypo/hyperglycaemia episodes, the ambulatory glucose profile and
//!   CSV importers.
//! * [`news2`]: the Royal College of Physicians' National Early Warning Score 2.
//! * [`forecast`]: 30-minute glucose forecasts (persistence, Nightscout AR2 and
//!   Wardline's adaptive regression) and their evaluation.

mod error;

pub mod cgm;
pub mod forecast;
pub mod news2;

pub use error::AnalyticsError;
