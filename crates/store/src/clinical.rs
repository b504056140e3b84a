//! Health data: observations, waveforms, and what Wardline derives from them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::{Observation, PatientId};

use crate::error::StoreError;
use crate::events::EventCursor;
use crate::model::{
    NewDerivedObservation, News2Query, News2Record, ObservationBucket, ObservationPage,
    ObservationQuery, ObservationSummaryQuery, RhythmEventQuery, RhythmEventRecord, StoredWaveform,
    WaveformQuery,
};

/// What one pass of the analysis found, stored in one commit together with how far the
/// analysis has read the event log: after a crash it resumes there, so every committed
/// reading is analysed and nothing is derived twice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnalysisResults {
    /// Stored unless a derived observation with the same device and `seq` exists.
    pub derived: Vec<NewDerivedObservation>,
    /// Stored, extending any stored with the same device, signal, kind and onset.
    pub rhythm_events: Vec<RhythmEventRecord>,
    /// Stored, replacing any stored for the same patient and time.
    pub news2: Vec<News2Record>,
    /// The reader's position after the events these results come from.
    pub checkpoint: Option<(String, EventCursor)>,
    /// When the results were computed.
    pub recorded: DateTime<Utc>,
}

/// Methods that read patient data do not check access: the service layer's access check
/// does that, in one place, before it calls them.
#[async_trait]
pub trait ClinicalStore: Send + Sync {
    /// How many observations are stored in all; for operations, not for patient views.
    async fn count_observations(&self) -> Result<u64, StoreError>;
    async fn observations(&self, query: ObservationQuery) -> Result<ObservationPage, StoreError>;
    /// Count, minimum, maximum and mean per time bucket, oldest first.
    async fn observation_summary(
        &self,
        query: ObservationSummaryQuery,
    ) -> Result<Vec<ObservationBucket>, StoreError>;
    /// The newest observation of each code for a patient.
    async fn latest_observations(&self, patient: PatientId)
    -> Result<Vec<Observation>, StoreError>;
    /// The newest observation of each code with `from <= effective <= until` (device
    /// readings and derived observations alike).
    async fn latest_observations_between(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Observation>, StoreError>;
    async fn waveforms(&self, query: WaveformQuery) -> Result<Vec<StoredWaveform>, StoreError>;
    /// One waveform chunk by what identifies it, its device and sequence number, with the
    /// patient it was stored for.
    async fn waveform_by_seq(
        &self,
        device: &wardline_domain::DeviceId,
        seq: i64,
    ) -> Result<Option<(PatientId, StoredWaveform)>, StoreError>;
    /// One reading by what identifies it: its device, whether it is derived (a derived
    /// reading has sequence numbers of its own), and its sequence number.
    async fn observation_by_seq(
        &self,
        device: &wardline_domain::DeviceId,
        derived: bool,
        seq: i64,
    ) -> Result<Option<Observation>, StoreError>;

    /// Stores the analysis' results and its checkpoint in one commit; returns the derived
    /// observations newly stored (those derived before are left out).
    async fn record_analysis(
        &self,
        results: AnalysisResults,
    ) -> Result<Vec<Observation>, StoreError>;
    /// Events overlapping `[from, to)`, oldest onset first.
    async fn rhythm_events(
        &self,
        query: RhythmEventQuery,
    ) -> Result<Vec<RhythmEventRecord>, StoreError>;
    /// NEWS2 results with `from <= time < to`, oldest first.
    async fn news2_scores(&self, query: News2Query) -> Result<Vec<News2Record>, StoreError>;
    async fn latest_news2(&self, patient: PatientId) -> Result<Option<News2Record>, StoreError>;
}
