use serde::Serialize;

/// The one error type of the crate.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
pub enum AnalyticsError {
    /// A line of an imported file could not be read.
    #[error("line {line}, field `{field}`: {reason}")]
    Parse {
        /// 1-based line number in the input text.
        line: usize,
        /// Column (or header) concerned.
        field: String,
        /// What was wrong, in words a user can act on.
        reason: String,
    },
    /// A measured value is outside what a living patient or a working device can produce.
    #[error("{parameter} = {value} is outside the accepted range {min}..={max}")]
    OutOfRange {
        /// Which measurement.
        parameter: &'static str,
        /// The offending value.
        value: f64,
        /// Lowest accepted value.
        min: f64,
        /// Highest accepted value.
        max: f64,
    },
    /// A computation needs data that the input does not contain.
    #[error("not enough data: {0}")]
    InsufficientData(&'static str),
    /// A streamed reading is not later than the one before it.
    #[error("reading at {timestamp} is not after the previous reading at {previous}")]
    OutOfOrder {
        /// Timestamp of the rejected reading.
        timestamp: i64,
        /// Timestamp of the latest accepted reading.
        previous: i64,
    },
    /// A caller-supplied setting is unusable (e.g. a zero sensor interval).
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
}
