//! [`ClinicalStore`] on PostgreSQL: analysis results commit with their checkpoint.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use wardline_domain::{
    DeviceId, Observation, ObservationCode, PatientId, RhythmKind, Signal, codes::CATALOGUE,
};

use super::events::{log_event, save_checkpoint};
use super::rows::{from_json, from_ms, key_of, parse_device_id, to_json, to_ms};
use super::{PostgresStore, lock_events};
use crate::clinical::{AnalysisResults, ClinicalStore};
use crate::error::StoreError;
use crate::model::{
    NewDerivedObservation, News2Query, News2Record, ObservationBucket, ObservationPage,
    ObservationQuery, ObservationSummaryQuery, PageCursor, RhythmEventQuery, RhythmEventRecord,
    StoredWaveform, WaveformQuery,
};

const OBSERVATION_COLUMNS: &str = "p.id, d.id, o.seq, o.code, o.value, o.original_value, \
     o.original_unit, o.effective_ms, o.received_ms, o.key, o.derived";
const OBSERVATION_FROM: &str =
    "observation o JOIN patient p ON p.key = o.patient_key JOIN device d ON d.key = o.device_key";

/// An observation from its columns, whatever query produced them.
#[allow(clippy::too_many_arguments)]
pub(super) fn observation(
    patient_id: PatientId,
    device_id: DeviceId,
    seq: i64,
    loinc: &str,
    value: f64,
    original_value: Option<f64>,
    original_unit: Option<String>,
    effective_ms: i64,
    received_ms: i64,
    derived: bool,
) -> Result<Observation, StoreError> {
    let code = ObservationCode::from_loinc(loinc)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown stored code {loinc}")))?;
    let spec = code.spec();
    Ok(Observation {
        patient_id,
        device_id,
        seq,
        code,
        loinc: spec.loinc,
        value,
        unit: spec.canonical_unit,
        original_value,
        original_unit,
        effective: from_ms(effective_ms)?,
        received: from_ms(received_ms)?,
        derived,
    })
}

/// An observation and its key, from [`OBSERVATION_COLUMNS`].
fn observation_from_row(row: &Row) -> Result<(Observation, i64), StoreError> {
    Ok((
        observation(
            PatientId(row.try_get(0)?),
            parse_device_id(row.try_get(1)?)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
            row.try_get(6)?,
            row.try_get(7)?,
            row.try_get(8)?,
            row.try_get(10)?,
        )?,
        row.try_get(9)?,
    ))
}

pub(super) const NEWS2_COLUMNS: &str = "p.id, n.time_ms, n.complete, n.total, n.risk, \
     n.any_parameter_3, n.missing, n.sub_scores, n.inputs, n.computed_ms";
pub(super) const NEWS2_FROM: &str = "news2_score n JOIN patient p ON p.key = n.patient_key";

/// A NEWS2 result from [`NEWS2_COLUMNS`] starting at column `offset`.
pub(super) fn news2_from_row(row: &Row, offset: usize) -> Result<News2Record, StoreError> {
    let total: i32 = row.try_get(offset + 3)?;
    Ok(News2Record {
        patient_id: PatientId(row.try_get(offset)?),
        time: from_ms(row.try_get(offset + 1)?)?,
        complete: row.try_get(offset + 2)?,
        total: u8::try_from(total)
            .map_err(|_| StoreError::Corrupt(format!("NEWS2 total {total}")))?,
        risk: row.try_get(offset + 4)?,
        any_parameter_3: row.try_get(offset + 5)?,
        missing: from_json(row.try_get(offset + 6)?, "NEWS2 missing parameters")?,
        sub_scores: from_json(row.try_get(offset + 7)?, "NEWS2 sub-scores")?,
        inputs: from_json(row.try_get(offset + 8)?, "NEWS2 inputs")?,
        computed: Some(from_ms(row.try_get(offset + 9)?)?),
    })
}

pub(super) const RHYTHM_COLUMNS: &str =
    "p.id, d.id, e.signal, e.kind, e.onset_ms, e.end_ms, e.detail";
pub(super) const RHYTHM_FROM: &str =
    "rhythm_event e JOIN patient p ON p.key = e.patient_key JOIN device d ON d.key = e.device_key";

/// A rhythm event from [`RHYTHM_COLUMNS`] starting at column `offset`.
pub(super) fn rhythm_from_row(row: &Row, offset: usize) -> Result<RhythmEventRecord, StoreError> {
    let signal: &str = row.try_get(offset + 2)?;
    let kind: &str = row.try_get(offset + 3)?;
    let detail: Option<&str> = row.try_get(offset + 6)?;
    Ok(RhythmEventRecord {
        patient_id: PatientId(row.try_get(offset)?),
        device_id: parse_device_id(row.try_get(offset + 1)?)?,
        signal: Signal::parse(signal)
            .ok_or_else(|| StoreError::Corrupt(format!("signal {signal:?}")))?,
        kind: RhythmKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("rhythm event kind {kind:?}")))?,
        onset: from_ms(row.try_get(offset + 4)?)?,
        end: from_ms(row.try_get(offset + 5)?)?,
        detail: detail
            .map(|text| from_json(text, "rhythm event detail"))
            .transpose()?,
    })
}

async fn patient_key_of(
    client: &impl GenericClient,
    patient: PatientId,
) -> Result<i64, StoreError> {
    key_of(client, "patient", &patient.0, &format!("patient {patient}")).await
}

async fn device_key_of(client: &impl GenericClient, device: &DeviceId) -> Result<i64, StoreError> {
    key_of(
        client,
        "device",
        &device.as_str(),
        &format!("device {}", device.as_str()),
    )
    .await
}

async fn store_derived(
    client: &impl GenericClient,
    observations: &[NewDerivedObservation],
) -> Result<Vec<Observation>, StoreError> {
    if observations.is_empty() {
        return Ok(Vec::new());
    }
    let insert = client
        .prepare_cached(
            "INSERT INTO observation (patient_key, device_key, seq, code, value, effective_ms,
                 received_ms, derived)
             VALUES ($1, $2, $3, $4, $5, $6, $7, true)
             ON CONFLICT (device_key, derived, seq) DO NOTHING",
        )
        .await?;
    let mut stored = Vec::with_capacity(observations.len());
    for derived in observations {
        let patient_key = patient_key_of(client, derived.patient_id).await?;
        let device_key = device_key_of(client, &derived.device_id).await?;
        let inserted = client
            .execute(
                &insert,
                &[
                    &patient_key,
                    &device_key,
                    &derived.seq,
                    &derived.code.loinc(),
                    &derived.value,
                    &to_ms(derived.effective),
                    &to_ms(derived.received),
                ],
            )
            .await?;
        if inserted > 0 {
            stored.push(observation(
                derived.patient_id,
                derived.device_id.clone(),
                derived.seq,
                derived.code.loinc(),
                derived.value,
                None,
                None,
                to_ms(derived.effective),
                to_ms(derived.received),
                true,
            )?);
        }
    }
    Ok(stored)
}

async fn store_rhythm_events(
    client: &impl GenericClient,
    events: &[RhythmEventRecord],
    recorded_ms: i64,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    // The conflict is resolved by PostgreSQL under the row's lock, so two workers storing
    // the same event keep the later end either way.
    let upsert = client
        .prepare_cached(
            "INSERT INTO rhythm_event (patient_key, device_key, signal, kind, onset_ms, end_ms,
                 detail, recorded_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (device_key, signal, kind, onset_ms) DO UPDATE SET
                 end_ms = greatest(rhythm_event.end_ms, excluded.end_ms),
                 detail = coalesce(excluded.detail, rhythm_event.detail),
                 recorded_ms = excluded.recorded_ms
             RETURNING key",
        )
        .await?;
    for event in events {
        if event.end < event.onset {
            return Err(StoreError::Invalid(format!(
                "a {} event ends before its onset",
                event.kind.as_str()
            )));
        }
        let patient_key = patient_key_of(client, event.patient_id).await?;
        let device_key = device_key_of(client, &event.device_id).await?;
        let detail = event.detail.as_ref().map(to_json).transpose()?;
        let key: i64 = client
            .query_one(
                &upsert,
                &[
                    &patient_key,
                    &device_key,
                    &event.signal.as_str(),
                    &event.kind.as_str(),
                    &to_ms(event.onset),
                    &to_ms(event.end),
                    &detail,
                    &recorded_ms,
                ],
            )
            .await?
            .try_get(0)?;
        log_event(client, "rhythm", key).await?;
    }
    Ok(())
}

async fn store_news2(
    client: &impl GenericClient,
    scores: &[News2Record],
    computed_ms: i64,
) -> Result<(), StoreError> {
    if scores.is_empty() {
        return Ok(());
    }
    let upsert = client
        .prepare_cached(
            "INSERT INTO news2_score (patient_key, time_ms, complete, total, risk,
                 any_parameter_3, missing, sub_scores, inputs, computed_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (patient_key, time_ms) DO UPDATE SET
                 complete = excluded.complete, total = excluded.total, risk = excluded.risk,
                 any_parameter_3 = excluded.any_parameter_3, missing = excluded.missing,
                 sub_scores = excluded.sub_scores, inputs = excluded.inputs,
                 computed_ms = excluded.computed_ms
             RETURNING key",
        )
        .await?;
    for score in scores {
        let patient_key = patient_key_of(client, score.patient_id).await?;
        let key: i64 = client
            .query_one(
                &upsert,
                &[
                    &patient_key,
                    &to_ms(score.time),
                    &score.complete,
                    &i32::from(score.total),
                    &score.risk,
                    &score.any_parameter_3,
                    &to_json(&score.missing)?,
                    &to_json(&score.sub_scores)?,
                    &to_json(&score.inputs)?,
                    &computed_ms,
                ],
            )
            .await?
            .try_get(0)?;
        log_event(client, "news2", key).await?;
    }
    Ok(())
}

impl PostgresStore {
    /// The newest observation of each catalogued code with `from <= effective <= until`,
    /// in the catalogue's order: one index probe per code, in one round trip.
    async fn latest_per_code(
        &self,
        patient: PatientId,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<Observation>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {OBSERVATION_COLUMNS}
                 FROM unnest($2::text[]) WITH ORDINALITY AS c (code, position)
                 CROSS JOIN LATERAL (
                     SELECT * FROM observation
                     WHERE patient_key = (SELECT key FROM patient WHERE id = $1)
                       AND code = c.code AND effective_ms >= $3 AND effective_ms <= $4
                     ORDER BY effective_ms DESC, key DESC LIMIT 1
                 ) o
                 JOIN patient p ON p.key = o.patient_key JOIN device d ON d.key = o.device_key
                 ORDER BY c.position"
            ))
            .await?;
        let codes: Vec<&str> = CATALOGUE.iter().map(|spec| spec.loinc).collect();
        client
            .query(&statement, &[&patient.0, &codes, &from_ms, &until_ms])
            .await?
            .iter()
            .map(|row| Ok(observation_from_row(row)?.0))
            .collect()
    }
}

#[async_trait]
impl ClinicalStore for PostgresStore {
    async fn count_observations(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let count: i64 = client
            .query_one("SELECT count(*) FROM observation", &[])
            .await?
            .try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn observations(&self, query: ObservationQuery) -> Result<ObservationPage, StoreError> {
        let newest_first = query.newest_first;
        // The page continues past the cursor in the page's order: later readings when
        // oldest first, earlier ones when newest first.
        let (after_ms, after_key) = query.after.map_or(
            if newest_first {
                (i64::MAX, i64::MAX)
            } else {
                (i64::MIN, i64::MIN)
            },
            |cursor| (cursor.effective_ms, cursor.key),
        );
        let limit = query.limit.clamp(1, 10_000) as usize;
        let (past_cursor, order) = if newest_first {
            (
                "(o.effective_ms < $5 OR (o.effective_ms = $5 AND o.key < $6))",
                "o.effective_ms DESC, o.key DESC",
            )
        } else {
            (
                "(o.effective_ms > $5 OR (o.effective_ms = $5 AND o.key > $6))",
                "o.effective_ms, o.key",
            )
        };
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {OBSERVATION_COLUMNS} FROM {OBSERVATION_FROM}
                 WHERE o.patient_key = (SELECT key FROM patient WHERE id = $1) AND o.code = $2
                   AND o.effective_ms >= $3 AND o.effective_ms < $4
                   AND {past_cursor}
                 ORDER BY {order} LIMIT $7"
            ))
            .await?;
        // One row more than the page: whether it exists says whether another page does.
        let rows = client
            .query(
                &statement,
                &[
                    &query.patient_id.0,
                    &query.code.loinc(),
                    &to_ms(query.from),
                    &to_ms(query.to),
                    &after_ms,
                    &after_key,
                    &(limit as i64 + 1),
                ],
            )
            .await?;
        let mut observations = Vec::with_capacity(limit.min(rows.len()));
        let mut next = None;
        for row in rows.iter().take(limit) {
            let (observation, key) = observation_from_row(row)?;
            next = Some(PageCursor {
                effective_ms: to_ms(observation.effective),
                key,
            });
            observations.push(observation);
        }
        Ok(ObservationPage {
            observations,
            next: if rows.len() > limit { next } else { None },
        })
    }

    async fn observation_summary(
        &self,
        query: ObservationSummaryQuery,
    ) -> Result<Vec<ObservationBucket>, StoreError> {
        let start_ms = to_ms(query.from);
        let bucket_ms = query.bucket.num_milliseconds().max(1000);
        let client = self.client().await?;
        // Integer division of milliseconds since the window's start, as on SQLite, so both
        // backends draw the same buckets.
        let statement = client
            .prepare_cached(
                "SELECT (o.effective_ms - $3) / $5 AS bucket, count(*), min(o.value),
                        max(o.value), avg(o.value)
                 FROM observation o
                 WHERE o.patient_key = (SELECT key FROM patient WHERE id = $1) AND o.code = $2
                   AND o.effective_ms >= $3 AND o.effective_ms < $4
                 GROUP BY bucket ORDER BY bucket",
            )
            .await?;
        let rows = client
            .query(
                &statement,
                &[
                    &query.patient_id.0,
                    &query.code.loinc(),
                    &start_ms,
                    &to_ms(query.to),
                    &bucket_ms,
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let index: i64 = row.try_get(0)?;
                let count: i64 = row.try_get(1)?;
                Ok(ObservationBucket {
                    start: from_ms(start_ms + index * bucket_ms)?,
                    count: u64::try_from(count).unwrap_or(0),
                    min: row.try_get(2)?,
                    max: row.try_get(3)?,
                    mean: row.try_get(4)?,
                })
            })
            .collect()
    }

    async fn latest_observations(
        &self,
        patient: PatientId,
    ) -> Result<Vec<Observation>, StoreError> {
        self.latest_per_code(patient, i64::MIN, i64::MAX).await
    }

    async fn latest_observations_between(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Observation>, StoreError> {
        self.latest_per_code(patient, to_ms(from), to_ms(until))
            .await
    }

    async fn observation_by_seq(
        &self,
        device: &wardline_domain::DeviceId,
        derived: bool,
        seq: i64,
    ) -> Result<Option<Observation>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {OBSERVATION_COLUMNS} FROM {OBSERVATION_FROM}
                 WHERE o.device_key = (SELECT key FROM device WHERE id = $1)
                   AND o.derived = $2 AND o.seq = $3"
            ))
            .await?;
        client
            .query_opt(&statement, &[&device.as_str(), &derived, &seq])
            .await?
            .map(|row| Ok(observation_from_row(&row)?.0))
            .transpose()
    }

    async fn waveforms(&self, query: WaveformQuery) -> Result<Vec<StoredWaveform>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {WAVEFORM_COLUMNS}
                 FROM waveform_chunk w JOIN device d ON d.key = w.device_key
                 WHERE w.patient_key = (SELECT key FROM patient WHERE id = $1)
                   AND ($2::text IS NULL OR w.signal = $2)
                   AND w.start_ms < $4 AND w.end_ms > $3
                 ORDER BY w.start_ms, w.key LIMIT $5"
            ))
            .await?;
        let rows = client
            .query(
                &statement,
                &[
                    &query.patient_id.0,
                    &query.signal.map(Signal::as_str),
                    &to_ms(query.from),
                    &to_ms(query.to),
                    &i64::from(query.limit.clamp(1, 1000)),
                ],
            )
            .await?;
        rows.iter().map(waveform_from_row).collect()
    }

    async fn waveform_by_seq(
        &self,
        device: &wardline_domain::DeviceId,
        seq: i64,
    ) -> Result<Option<(PatientId, StoredWaveform)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {WAVEFORM_COLUMNS}, p.id
                 FROM waveform_chunk w JOIN device d ON d.key = w.device_key
                 JOIN patient p ON p.key = w.patient_key
                 WHERE d.id = $1 AND w.seq = $2"
            ))
            .await?;
        client
            .query_opt(&statement, &[&device.as_str(), &seq])
            .await?
            .map(|row| Ok((PatientId(row.try_get(9)?), waveform_from_row(&row)?)))
            .transpose()
    }

    async fn record_analysis(
        &self,
        results: AnalysisResults,
    ) -> Result<Vec<Observation>, StoreError> {
        if results.derived.is_empty()
            && results.rhythm_events.is_empty()
            && results.news2.is_empty()
            && results.checkpoint.is_none()
        {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // The fence is checked before the event lock is taken, so that ingest's commits
        // do not wait for the check.
        self.fence.check(&transaction).await?;
        // Before any key is drawn: the log's readers read "after key k", and the
        // checkpoint must commit in the same order as the results it covers.
        lock_events(&transaction).await?;
        let recorded_ms = to_ms(results.recorded);
        let stored = store_derived(&transaction, &results.derived).await?;
        store_rhythm_events(&transaction, &results.rhythm_events, recorded_ms).await?;
        store_news2(&transaction, &results.news2, recorded_ms).await?;
        if let Some((consumer, cursor)) = &results.checkpoint {
            save_checkpoint(&transaction, consumer, cursor, recorded_ms).await?;
        }
        transaction.commit().await?;
        self.announce_commit();
        Ok(stored)
    }

    async fn rhythm_events(
        &self,
        query: RhythmEventQuery,
    ) -> Result<Vec<RhythmEventRecord>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {RHYTHM_COLUMNS} FROM {RHYTHM_FROM}
                 WHERE e.patient_key = (SELECT key FROM patient WHERE id = $1)
                   AND e.onset_ms < $3 AND e.end_ms >= $2
                 ORDER BY e.onset_ms, e.key LIMIT $4"
            ))
            .await?;
        client
            .query(
                &statement,
                &[
                    &query.patient_id.0,
                    &to_ms(query.from),
                    &to_ms(query.to),
                    &i64::from(query.limit.clamp(1, 10_000)),
                ],
            )
            .await?
            .iter()
            .map(|row| rhythm_from_row(row, 0))
            .collect()
    }

    async fn news2_scores(&self, query: News2Query) -> Result<Vec<News2Record>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {NEWS2_COLUMNS} FROM {NEWS2_FROM}
                 WHERE n.patient_key = (SELECT key FROM patient WHERE id = $1)
                   AND n.time_ms >= $2 AND n.time_ms < $3
                 ORDER BY n.time_ms {} LIMIT $4",
                if query.newest_first { "DESC" } else { "ASC" }
            ))
            .await?;
        client
            .query(
                &statement,
                &[
                    &query.patient_id.0,
                    &to_ms(query.from),
                    &to_ms(query.to),
                    &i64::from(query.limit.clamp(1, 10_000)),
                ],
            )
            .await?
            .iter()
            .map(|row| news2_from_row(row, 0))
            .collect()
    }

    async fn latest_news2(&self, patient: PatientId) -> Result<Option<News2Record>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {NEWS2_COLUMNS} FROM {NEWS2_FROM}
                 WHERE n.patient_key = (SELECT key FROM patient WHERE id = $1)
                 ORDER BY n.time_ms DESC LIMIT 1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&patient.0])
            .await?
            .map(|row| news2_from_row(&row, 0))
            .transpose()
    }
}

/// A waveform chunk's columns, in the order [`waveform_from_row`] reads them.
const WAVEFORM_COLUMNS: &str = "d.id, w.seq, w.signal, w.sampling_rate_hz, w.start_ms, w.end_ms, \
     w.sample_count, w.encoded, w.received_ms";

fn waveform_from_row(row: &Row) -> Result<StoredWaveform, StoreError> {
    let signal: &str = row.try_get(2)?;
    let sample_count: i64 = row.try_get(6)?;
    Ok(StoredWaveform {
        device_id: parse_device_id(row.try_get(0)?)?,
        seq: row.try_get(1)?,
        signal: Signal::parse(signal)
            .ok_or_else(|| StoreError::Corrupt(format!("signal {signal:?}")))?,
        sampling_rate_hz: row.try_get(3)?,
        start: from_ms(row.try_get(4)?)?,
        end: from_ms(row.try_get(5)?)?,
        sample_count: u32::try_from(sample_count)
            .map_err(|_| StoreError::Corrupt(format!("waveform sample count {sample_count}")))?,
        encoded: row.try_get(7)?,
        received: from_ms(row.try_get(8)?)?,
    })
}
