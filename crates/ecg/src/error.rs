use thiserror::Error;

/// Every failure the ECG crate reports. Parsers never panic on malformed input;
/// they return one of these instead.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EcgError {
    /// A `.hea` header line could not be understood.
    #[error("header line {line}: {reason}")]
    Header { line: usize, reason: String },
    /// The requested signal (lead) is not in the header.
    #[error("signal {0:?} not found in header")]
    SignalNotFound(String),
    /// A WFDB storage format this crate does not decode (see
    /// [`crate::wfdb::READABLE_FORMATS`]).
    #[error("unsupported WFDB storage format {0}")]
    UnsupportedFormat(u16),
    /// The signal file ends in the middle of a sample group.
    #[error("signal data truncated: {0} trailing byte(s)")]
    TruncatedSignal(usize),
    /// An annotation file is malformed at the given byte offset.
    #[error("annotation file malformed at byte {offset}: {reason}")]
    Annotation { offset: usize, reason: &'static str },
    /// A configuration value is out of the supported range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A CSV excerpt could not be parsed.
    #[error("CSV line {line}: {reason}")]
    Csv { line: usize, reason: String },
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, EcgError>;
