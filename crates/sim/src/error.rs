/// Everything that can go wrong when building a simulated ward. Running one never
/// fails: `advance_to` only computes.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An MIT-BIH / WFDB record handed in by the caller could not be read.
    #[error("ECG record {record}: {source}")]
    Record {
        record: String,
        #[source]
        source: wardline_ecg::EcgError,
    },
    /// A record or configuration value that cannot drive a simulation.
    #[error("invalid simulation setting: {0}")]
    Invalid(String),
}
