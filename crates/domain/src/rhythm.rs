//! Heart rhythm findings: one vocabulary for the ECG analysis that finds them, the store
//! that keeps them and the care-plan rules that watch for them.

use serde::{Deserialize, Serialize};

/// A kind of rhythm (or technical) event found in an ECG.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RhythmKind {
    Bradycardia,
    Tachycardia,
    /// No beat for at least the pause threshold while the signal was good.
    Pause,
    /// Suspected atrial fibrillation (irregularly irregular RR intervals).
    AtrialFibrillation,
    /// Technical: flat line, electrode off or heavy noise; no rhythm call was made.
    PoorSignal,
    /// Ventricular tachycardia, flutter or fibrillation: a fast rhythm of wide
    /// ventricular waves (one call; the detector does not tell them apart).
    VentricularTachyarrhythmia,
}

impl RhythmKind {
    pub const ALL: [RhythmKind; 6] = [
        RhythmKind::Bradycardia,
        RhythmKind::Tachycardia,
        RhythmKind::Pause,
        RhythmKind::AtrialFibrillation,
        RhythmKind::PoorSignal,
        RhythmKind::VentricularTachyarrhythmia,
    ];

    /// The stable name used in storage, the API and care plans.
    pub fn as_str(self) -> &'static str {
        match self {
            RhythmKind::Bradycardia => "bradycardia",
            RhythmKind::Tachycardia => "tachycardia",
            RhythmKind::Pause => "pause",
            RhythmKind::AtrialFibrillation => "atrial_fibrillation",
            RhythmKind::PoorSignal => "poor_signal",
            RhythmKind::VentricularTachyarrhythmia => "ventricular_tachyarrhythmia",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in RhythmKind::ALL {
            assert_eq!(RhythmKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::String(kind.as_str().into()))
            );
        }
        assert_eq!(RhythmKind::parse("afib"), None);
    }
}
