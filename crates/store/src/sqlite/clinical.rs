//! [`ClinicalStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use wardline_domain::{Observation, PatientId, Signal};

use super::events::{log_event, save_checkpoint};
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::clinical::{AnalysisResults, ClinicalStore};
use crate::error::StoreError;
use crate::model::*;

fn store_derived(
    connection: &Connection,
    observations: &[NewDerivedObservation],
) -> Result<Vec<Observation>, StoreError> {
    let mut insert = connection.prepare_cached(
        "INSERT INTO observation (patient_key, device_key, seq, code, value, effective_ms, received_ms, derived)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1) ON CONFLICT (device_key, derived, seq) DO NOTHING",
    )?;
    let mut stored = Vec::with_capacity(observations.len());
    for observation in observations {
        let patient_key = key_of(
            connection,
            "patient",
            &observation.patient_id.to_string(),
            "patient",
        )?;
        let device_key = key_of(
            connection,
            "device",
            observation.device_id.as_str(),
            "device",
        )?;
        let inserted = insert.execute(params![
            patient_key,
            device_key,
            observation.seq,
            observation.code.loinc(),
            observation.value,
            to_ms(observation.effective),
            to_ms(observation.received),
        ])?;
        if inserted > 0 {
            stored.push(super::rows::observation(
                observation.patient_id,
                observation.device_id.clone(),
                observation.seq,
                observation.code.loinc(),
                observation.value,
                None,
                None,
                to_ms(observation.effective),
                to_ms(observation.received),
                true,
            )?);
        }
    }
    Ok(stored)
}

fn store_rhythm_events(
    connection: &Connection,
    events: &[RhythmEventRecord],
    recorded_ms: i64,
) -> Result<(), StoreError> {
    let mut upsert = connection.prepare_cached(
        "INSERT INTO rhythm_event (patient_key, device_key, signal, kind, onset_ms, end_ms, detail, recorded_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (device_key, signal, kind, onset_ms) DO UPDATE SET
             end_ms = max(end_ms, excluded.end_ms),
             detail = coalesce(excluded.detail, detail),
             recorded_ms = excluded.recorded_ms
         RETURNING key",
    )?;
    for event in events {
        if event.end < event.onset {
            return Err(StoreError::Invalid(format!(
                "a {} event ends before its onset",
                event.kind.as_str()
            )));
        }
        let patient_key = key_of(
            connection,
            "patient",
            &event.patient_id.to_string(),
            "patient",
        )?;
        let device_key = key_of(connection, "device", event.device_id.as_str(), "device")?;
        let detail = event.detail.as_ref().map(to_json).transpose()?;
        let key: i64 = upsert.query_row(
            params![
                patient_key,
                device_key,
                event.signal.as_str(),
                event.kind.as_str(),
                to_ms(event.onset),
                to_ms(event.end),
                detail,
                recorded_ms,
            ],
            |row| row.get(0),
        )?;
        log_event(connection, "rhythm", key)?;
    }
    Ok(())
}

fn store_news2(
    connection: &Connection,
    score: &News2Record,
    computed_ms: i64,
) -> Result<(), StoreError> {
    let patient_key = key_of(
        connection,
        "patient",
        &score.patient_id.to_string(),
        "patient",
    )?;
    let key: i64 = connection
        .prepare_cached(
            "INSERT INTO news2_score (patient_key, time_ms, complete, total, risk, any_parameter_3, missing, sub_scores, inputs, computed_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (patient_key, time_ms) DO UPDATE SET
                 complete = excluded.complete, total = excluded.total, risk = excluded.risk,
                 any_parameter_3 = excluded.any_parameter_3, missing = excluded.missing,
                 sub_scores = excluded.sub_scores, inputs = excluded.inputs,
                 computed_ms = excluded.computed_ms
             RETURNING key",
        )?
        .query_row(
            params![
                patient_key,
                to_ms(score.time),
                score.complete,
                score.total,
                score.risk,
                score.any_parameter_3,
                to_json(&score.missing)?,
                to_json(&score.sub_scores)?,
                to_json(&score.inputs)?,
                computed_ms,
            ],
            |row| row.get(0),
        )?;
    log_event(connection, "news2", key)
}

#[async_trait]
impl ClinicalStore for SqliteStore {
    async fn count_observations(&self) -> Result<u64, StoreError> {
        self.read(|connection| {
            Ok(connection.query_row("SELECT count(*) FROM observation", [], |row| row.get(0))?)
        })
        .await
    }

    async fn observation_summary(
        &self,
        query: ObservationSummaryQuery,
    ) -> Result<Vec<ObservationBucket>, StoreError> {
        self.read(move |connection| {
            let start_ms = to_ms(query.from);
            let bucket_ms = query.bucket.num_milliseconds().max(1000);
            let mut statement = connection.prepare_cached(
                "SELECT (o.effective_ms - ?3) / ?5 AS bucket, count(*), min(o.value),
                        max(o.value), avg(o.value)
                 FROM observation o
                 WHERE o.patient_key = (SELECT key FROM patient WHERE id = ?1) AND o.code = ?2
                   AND o.effective_ms >= ?3 AND o.effective_ms < ?4
                 GROUP BY bucket ORDER BY bucket",
            )?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    query.code.loinc(),
                    start_ms,
                    to_ms(query.to),
                    bucket_ms
                ],
                |row| {
                    let index: i64 = row.get(0)?;
                    let count: i64 = row.get(1)?;
                    Ok((index, count, row.get(2)?, row.get(3)?, row.get(4)?))
                },
            )?;
            let mut buckets = Vec::new();
            for row in rows {
                let (index, count, min, max, mean): (i64, i64, f64, f64, f64) = row?;
                buckets.push(ObservationBucket {
                    start: from_ms(start_ms + index * bucket_ms)?,
                    count: u64::try_from(count).unwrap_or(0),
                    min,
                    max,
                    mean,
                });
            }
            Ok(buckets)
        })
        .await
    }

    async fn observations(&self, query: ObservationQuery) -> Result<ObservationPage, StoreError> {
        self.read(move |connection| {
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
            let limit = query.limit.clamp(1, 10_000);
            let (past_cursor, order) = if newest_first {
                (
                    "(o.effective_ms < ?5 OR (o.effective_ms = ?5 AND o.key < ?6))",
                    "o.effective_ms DESC, o.key DESC",
                )
            } else {
                (
                    "(o.effective_ms > ?5 OR (o.effective_ms = ?5 AND o.key > ?6))",
                    "o.effective_ms, o.key",
                )
            };
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {OBSERVATION_COLUMNS} FROM {OBSERVATION_FROM}
                 WHERE o.patient_key = (SELECT key FROM patient WHERE id = ?1) AND o.code = ?2
                   AND o.effective_ms >= ?3 AND o.effective_ms < ?4
                   AND {past_cursor}
                 ORDER BY {order} LIMIT ?7"
            ))?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    query.code.loinc(),
                    to_ms(query.from),
                    to_ms(query.to),
                    after_ms,
                    after_key,
                    i64::from(limit) + 1
                ],
                |row| Ok(observation_from_row(row)),
            )?;
            let mut observations = Vec::new();
            let mut next = None;
            for row in rows {
                let (observation, key) = row??;
                if observations.len() == limit as usize {
                    break;
                }
                next = Some(PageCursor {
                    effective_ms: to_ms(observation.effective),
                    key,
                });
                observations.push(observation);
            }
            let more = if newest_first {
                "SELECT EXISTS (SELECT 1 FROM observation o
                 WHERE o.patient_key = (SELECT key FROM patient WHERE id = ?1) AND o.code = ?2
                   AND o.effective_ms >= ?4
                   AND (o.effective_ms < ?3 OR (o.effective_ms = ?3 AND o.key < ?5)))"
            } else {
                "SELECT EXISTS (SELECT 1 FROM observation o
                 WHERE o.patient_key = (SELECT key FROM patient WHERE id = ?1) AND o.code = ?2
                   AND o.effective_ms < ?4
                   AND (o.effective_ms > ?3 OR (o.effective_ms = ?3 AND o.key > ?5)))"
            };
            let bound = if newest_first { query.from } else { query.to };
            let has_more = observations.len() == limit as usize
                && connection.prepare_cached(more)?.query_row(
                    params![
                        query.patient_id.to_string(),
                        query.code.loinc(),
                        next.map_or(0, |cursor| cursor.effective_ms),
                        to_ms(bound),
                        next.map_or(0, |cursor| cursor.key)
                    ],
                    |row| row.get::<_, bool>(0),
                )?;
            Ok(ObservationPage {
                observations,
                next: if has_more { next } else { None },
            })
        })
        .await
    }

    async fn latest_observations(
        &self,
        patient: PatientId,
    ) -> Result<Vec<Observation>, StoreError> {
        self.read(move |connection| {
            let patient_key: Option<i64> = connection
                .prepare_cached("SELECT key FROM patient WHERE id = ?1")?
                .query_row([patient.to_string()], |row| row.get(0))
                .optional()?;
            let Some(patient_key) = patient_key else {
                return Ok(Vec::new());
            };
            // One index probe per known code beats a GROUP BY over all of a patient's rows.
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {OBSERVATION_COLUMNS} FROM {OBSERVATION_FROM}
                 WHERE o.patient_key = ?1 AND o.code = ?2 ORDER BY o.effective_ms DESC, o.key DESC LIMIT 1"
            ))?;
            let mut latest = Vec::new();
            for spec in wardline_domain::codes::CATALOGUE {
                let found = statement
                    .query_row(params![patient_key, spec.loinc], |row| Ok(observation_from_row(row)))
                    .optional()?;
                if let Some(row) = found {
                    latest.push(row?.0);
                }
            }
            Ok(latest)
        })
        .await
    }

    async fn observation_by_seq(
        &self,
        device: &wardline_domain::DeviceId,
        derived: bool,
        seq: i64,
    ) -> Result<Option<Observation>, StoreError> {
        let device = device.to_string();
        self.read(move |connection| {
            let found = connection
                .prepare_cached(&format!(
                    "SELECT {OBSERVATION_COLUMNS} FROM {OBSERVATION_FROM}
                     WHERE o.device_key = (SELECT key FROM device WHERE id = ?1)
                       AND o.derived = ?2 AND o.seq = ?3"
                ))?
                .query_row(params![device, i64::from(derived), seq], |row| {
                    Ok(observation_from_row(row))
                })
                .optional()?;
            found
                .map(|row| row.map(|(observation, _)| observation))
                .transpose()
        })
        .await
    }

    async fn waveforms(&self, query: WaveformQuery) -> Result<Vec<StoredWaveform>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {WAVEFORM_COLUMNS}
                 FROM waveform_chunk w JOIN device d ON d.key = w.device_key
                 WHERE w.patient_key = (SELECT key FROM patient WHERE id = ?1)
                   AND (?2 IS NULL OR w.signal = ?2)
                   AND w.start_ms < ?4 AND w.end_ms > ?3
                 ORDER BY w.start_ms, w.key LIMIT ?5"
            ))?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    query.signal.map(Signal::as_str),
                    to_ms(query.from),
                    to_ms(query.to),
                    query.limit.clamp(1, 1000)
                ],
                |row| Ok(waveform_from_row(row)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn waveform_by_seq(
        &self,
        device: &wardline_domain::DeviceId,
        seq: i64,
    ) -> Result<Option<(PatientId, StoredWaveform)>, StoreError> {
        let device = device.to_string();
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {WAVEFORM_COLUMNS}, p.id
                     FROM waveform_chunk w JOIN device d ON d.key = w.device_key
                     JOIN patient p ON p.key = w.patient_key
                     WHERE d.id = ?1 AND w.seq = ?2"
                ))?
                .query_row(params![device, seq], |row| {
                    let patient: String = row.get(9)?;
                    Ok(waveform_from_row(row)
                        .and_then(|chunk| Ok((parse_uuid(&patient, "patient")?, chunk))))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn latest_observations_between(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Observation>, StoreError> {
        self.read(move |connection| {
            let Some(patient_key) = patient_key_of(connection, patient)? else {
                return Ok(Vec::new());
            };
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {OBSERVATION_COLUMNS} FROM {OBSERVATION_FROM}
                 WHERE o.patient_key = ?1 AND o.code = ?2 AND o.effective_ms >= ?3 AND o.effective_ms <= ?4
                 ORDER BY o.effective_ms DESC, o.key DESC LIMIT 1"
            ))?;
            let mut latest = Vec::new();
            for spec in wardline_domain::codes::CATALOGUE {
                let found = statement
                    .query_row(
                        params![patient_key, spec.loinc, to_ms(from), to_ms(until)],
                        |row| Ok(observation_from_row(row)),
                    )
                    .optional()?;
                if let Some(row) = found {
                    latest.push(row?.0);
                }
            }
            Ok(latest)
        })
        .await
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
        self.write(move |connection| {
            let recorded_ms = to_ms(results.recorded);
            let stored = store_derived(connection, &results.derived)?;
            store_rhythm_events(connection, &results.rhythm_events, recorded_ms)?;
            for score in &results.news2 {
                store_news2(connection, score, recorded_ms)?;
            }
            if let Some((consumer, cursor)) = &results.checkpoint {
                save_checkpoint(connection, consumer, cursor, recorded_ms)?;
            }
            Ok(stored)
        })
        .await
    }

    async fn rhythm_events(
        &self,
        query: RhythmEventQuery,
    ) -> Result<Vec<RhythmEventRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {RHYTHM_COLUMNS} FROM {RHYTHM_FROM}
                 WHERE e.patient_key = (SELECT key FROM patient WHERE id = ?1)
                   AND e.onset_ms < ?3 AND e.end_ms >= ?2
                 ORDER BY e.onset_ms, e.key LIMIT ?4"
            ))?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    to_ms(query.from),
                    to_ms(query.to),
                    query.limit.clamp(1, 10_000)
                ],
                |row| Ok(rhythm_from_row(row, 0)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn news2_scores(&self, query: News2Query) -> Result<Vec<News2Record>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {NEWS2_COLUMNS} FROM {NEWS2_FROM}
                 WHERE n.patient_key = (SELECT key FROM patient WHERE id = ?1)
                   AND n.time_ms >= ?2 AND n.time_ms < ?3
                 ORDER BY n.time_ms {} LIMIT ?4",
                if query.newest_first { "DESC" } else { "ASC" }
            ))?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    to_ms(query.from),
                    to_ms(query.to),
                    query.limit.clamp(1, 10_000)
                ],
                |row| Ok(news2_from_row(row, 0)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn latest_news2(&self, patient: PatientId) -> Result<Option<News2Record>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {NEWS2_COLUMNS} FROM {NEWS2_FROM}
                     WHERE n.patient_key = (SELECT key FROM patient WHERE id = ?1)
                     ORDER BY n.time_ms DESC LIMIT 1"
                ))?
                .query_row([patient.to_string()], |row| Ok(news2_from_row(row, 0)))
                .optional()?
                .transpose()
        })
        .await
    }
}

/// A waveform chunk's columns, in the order [`waveform_from_row`] reads them.
const WAVEFORM_COLUMNS: &str = "d.id, w.seq, w.signal, w.sampling_rate_hz, w.start_ms, w.end_ms, w.sample_count, w.encoded, w.received_ms";

fn waveform_from_row(row: &rusqlite::Row<'_>) -> Result<StoredWaveform, StoreError> {
    let device: String = row.get(0)?;
    let signal: String = row.get(2)?;
    Ok(StoredWaveform {
        device_id: parse_device_id(&device)?,
        seq: row.get(1)?,
        signal: Signal::parse(&signal)
            .ok_or_else(|| StoreError::Corrupt(format!("signal {signal:?}")))?,
        sampling_rate_hz: row.get(3)?,
        start: from_ms(row.get(4)?)?,
        end: from_ms(row.get(5)?)?,
        sample_count: row.get(6)?,
        encoded: row.get(7)?,
        received: from_ms(row.get(8)?)?,
    })
}
