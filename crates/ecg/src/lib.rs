//! ECG analysis for Wardline: WFDB record reading, streaming QRS detection,
//! heart rate / rhythm events (including AF suspicion), signal quality, and
//! validation against reference annotations. The crate performs no I/O.

pub mod af;
pub mod detector;
pub mod error;
pub mod morphology;
pub mod quality;
pub mod rhythm;
pub mod validate;
pub mod ventricular;
pub mod wfdb;

pub use detector::{Beat, DetectorConfig, QrsDetector, detect_all};
pub use error::{EcgError, Result};
pub use quality::{QualityConfig, QualityMonitor, QualitySegment, SignalQuality};
pub use rhythm::{
    RhythmConfig, RhythmEvent, RhythmKind, analyze_rhythm, analyze_rhythm_with_morphology,
    analyze_rhythm_with_signal,
};

/// Everything the crate derives from one lead of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub beats: Vec<Beat>,
    pub quality: Vec<QualitySegment>,
    pub events: Vec<RhythmEvent>,
}

/// Runs detection, quality and rhythm analysis over a whole lead with default
/// settings. `units_per_mv` is the ADC gain (200 for MIT-BIH).
pub fn analyze(samples: &[i32], sampling_rate: f64, units_per_mv: f64) -> Result<Analysis> {
    let beats = detect_all(samples, &DetectorConfig::new(sampling_rate))?;
    let quality =
        quality::assess_quality(samples, &QualityConfig::new(sampling_rate, units_per_mv))?;
    let poor = quality::poor_intervals(&quality);
    let positions: Vec<u64> = beats.iter().map(|b| b.sample).collect();
    let dominant = morphology::dominant_morphology(samples, &positions, sampling_rate);
    let events = analyze_rhythm_with_signal(
        samples,
        &positions,
        &dominant,
        &poor,
        &RhythmConfig::new(sampling_rate),
    )?;
    Ok(Analysis {
        beats,
        quality,
        events,
    })
}
