//! [`ClinicalStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::clinical::ClinicalStore;
use crate::error::StoreError;
use crate::events::EventCursor;
use crate::model::{
    NewDerivedObservation, News2Query, News2Record, ObservationBucket, ObservationPage,
    ObservationQuery, ObservationSummaryQuery, RhythmEventQuery, RhythmEventRecord, StoredWaveform,
    WaveformQuery,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::{Observation, PatientId};

#[async_trait]
impl ClinicalStore for PostgresStore {
    async fn count_observations(&self) -> Result<u64, StoreError> {
        Err(StoreError::Unported("ClinicalStore::count_observations"))
    }

    async fn observations(&self, query: ObservationQuery) -> Result<ObservationPage, StoreError> {
        Err(StoreError::Unported("ClinicalStore::observations"))
    }

    async fn observation_summary(
        &self,
        query: ObservationSummaryQuery,
    ) -> Result<Vec<ObservationBucket>, StoreError> {
        Err(StoreError::Unported("ClinicalStore::observation_summary"))
    }

    async fn latest_observations(
        &self,
        patient: PatientId,
    ) -> Result<Vec<Observation>, StoreError> {
        Err(StoreError::Unported("ClinicalStore::latest_observations"))
    }

    async fn latest_observations_between(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Observation>, StoreError> {
        Err(StoreError::Unported(
            "ClinicalStore::latest_observations_between",
        ))
    }

    async fn waveforms(&self, query: WaveformQuery) -> Result<Vec<StoredWaveform>, StoreError> {
        Err(StoreError::Unported("ClinicalStore::waveforms"))
    }

    async fn record_analysis(
        &self,
        results: AnalysisResults,
    ) -> Result<Vec<Observation>, StoreError> {
        Err(StoreError::Unported("ClinicalStore::record_analysis"))
    }

    async fn rhythm_events(
        &self,
        query: RhythmEventQuery,
    ) -> Result<Vec<RhythmEventRecord>, StoreError> {
        Err(StoreError::Unported("ClinicalStore::rhythm_events"))
    }

    async fn news2_scores(&self, query: News2Query) -> Result<Vec<News2Record>, StoreError> {
        Err(StoreError::Unported("ClinicalStore::news2_scores"))
    }

    async fn latest_news2(&self, patient: PatientId) -> Result<Option<News2Record>, StoreError> {
        Err(StoreError::Unported("ClinicalStore::latest_news2"))
    }
}
