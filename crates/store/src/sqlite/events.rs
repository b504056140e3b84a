//! [`EventLog`] on SQLite: committed rows read back in commit order.
//!
//! Observations and waveform chunks are read from their own tables by key: one writer
//! connection commits in order and rows are never deleted, so a key is never handed out
//! below one already visible, and "after key k" misses nothing. NEWS2 results, rhythm
//! events and device reports, which are updated in place or are few, are listed in
//! `event_log` by the transaction that stores them. A cursor is the last key read of each
//! of the three.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use wardline_domain::{DeviceId, PatientId, Signal};

use super::rows::*;
use super::{SqliteStore, from_ms};
use crate::error::StoreError;
use crate::events::*;
use crate::model::{DeviceReport, StoredWaveform};

/// Lists a NEWS2 result, rhythm event or device report for the readers of the log.
pub(super) fn log_event(connection: &Connection, kind: &str, key: i64) -> Result<(), StoreError> {
    connection
        .prepare_cached("INSERT INTO event_log (kind, ref_key) VALUES (?1, ?2)")?
        .execute(params![kind, key])?;
    Ok(())
}

pub(super) fn save_checkpoint(
    connection: &Connection,
    consumer: &str,
    cursor: &EventCursor,
    saved_ms: i64,
) -> Result<(), StoreError> {
    Position::parse(cursor)?;
    connection
        .prepare_cached(
            "INSERT INTO consumer_checkpoint (consumer, cursor, saved_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (consumer) DO UPDATE SET cursor = excluded.cursor, saved_ms = excluded.saved_ms",
        )?
        .execute(params![consumer, cursor.0, saved_ms])?;
    Ok(())
}

/// The last key read of each source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    observation: i64,
    waveform: i64,
    logged: i64,
}

const CURSOR_PREFIX: &str = "sqlite1";

impl Position {
    fn cursor(self) -> EventCursor {
        EventCursor(format!(
            "{CURSOR_PREFIX}:{}:{}:{}",
            self.observation, self.waveform, self.logged
        ))
    }

    fn parse(cursor: &EventCursor) -> Result<Self, StoreError> {
        let invalid = || StoreError::Invalid(format!("event cursor {:?}", cursor.0));
        let mut parts = cursor.0.split(':');
        if parts.next() != Some(CURSOR_PREFIX) {
            return Err(invalid());
        }
        let mut next = || -> Result<i64, StoreError> {
            parts
                .next()
                .and_then(|part| part.parse().ok())
                .filter(|key: &i64| *key >= 0)
                .ok_or_else(invalid)
        };
        let position = Self {
            observation: next()?,
            waveform: next()?,
            logged: next()?,
        };
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(position)
    }
}

/// Public identifiers by internal key. A patient's or device's key never changes its
/// meaning, so once read it is kept, and reading the log needs no joins.
#[derive(Debug, Default)]
pub(super) struct IdCache {
    patients: Mutex<HashMap<i64, PatientId>>,
    devices: Mutex<HashMap<i64, DeviceId>>,
}

impl IdCache {
    fn patient(&self, connection: &Connection, key: i64) -> Result<PatientId, StoreError> {
        if let Some(id) = self
            .patients
            .lock()
            .ok()
            .and_then(|map| map.get(&key).copied())
        {
            return Ok(id);
        }
        let text: String = connection
            .prepare_cached("SELECT id FROM patient WHERE key = ?1")?
            .query_row([key], |row| row.get(0))?;
        let id: PatientId = parse_uuid(&text, "patient")?;
        if let Ok(mut map) = self.patients.lock() {
            map.insert(key, id);
        }
        Ok(id)
    }

    fn device(&self, connection: &Connection, key: i64) -> Result<DeviceId, StoreError> {
        if let Some(id) = self
            .devices
            .lock()
            .ok()
            .and_then(|map| map.get(&key).cloned())
        {
            return Ok(id);
        }
        let text: String = connection
            .prepare_cached("SELECT id FROM device WHERE key = ?1")?
            .query_row([key], |row| row.get(0))?;
        let id = parse_device_id(&text)?;
        if let Ok(mut map) = self.devices.lock() {
            map.insert(key, id.clone());
        }
        Ok(id)
    }
}

/// One read of the log: the connection, the filter, and what was found and passed
/// over. Whether the filter admits a patient is decided once per patient key in a read,
/// so rows of patients outside it are passed over without being decoded.
struct LogRead<'a> {
    connection: &'a Connection,
    ids: &'a IdCache,
    filter: &'a EventFilter,
    /// The patient's id if admitted, `None` if passed over.
    decided: HashMap<i64, Option<PatientId>>,
    events: Vec<CommittedEvent>,
    passed_over: PassedOver,
}

impl<'a> LogRead<'a> {
    fn new(connection: &'a Connection, ids: &'a IdCache, filter: &'a EventFilter) -> Self {
        Self {
            connection,
            ids,
            filter,
            decided: HashMap::new(),
            events: Vec::new(),
            passed_over: PassedOver::default(),
        }
    }

    fn admit(&mut self, key: i64) -> Result<Option<PatientId>, StoreError> {
        if let Some(decision) = self.decided.get(&key) {
            return Ok(*decision);
        }
        let id = self.ids.patient(self.connection, key)?;
        let decision = self.filter.admits(&id).then_some(id);
        self.decided.insert(key, decision);
        Ok(decision)
    }

    fn device(&self, key: i64) -> Result<DeviceId, StoreError> {
        self.ids.device(self.connection, key)
    }

    fn observations(&mut self, after: i64, through: i64, limit: u32) -> Result<i64, StoreError> {
        let connection = self.connection;
        let mut statement = connection.prepare_cached(
            "SELECT key, patient_key, device_key, seq, code, value, original_value, original_unit,
                    effective_ms, received_ms, derived
             FROM observation WHERE key > ?1 AND key <= ?3 ORDER BY key LIMIT ?2",
        )?;
        let mut rows = statement.query(params![after, limit, through])?;
        let mut last = after;
        while let Some(row) = rows.next()? {
            last = row.get(0)?;
            let Some(patient) = self.admit(row.get(1)?)? else {
                self.passed_over.observations += 1;
                continue;
            };
            let observation = observation(
                patient,
                self.device(row.get(2)?)?,
                row.get(3)?,
                row.get_ref(4)?
                    .as_str()
                    .map_err(|_| StoreError::Corrupt("an observation's code is not text".into()))?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
                row.get(8)?,
                row.get(9)?,
                row.get(10)?,
            )?;
            self.events.push(CommittedEvent::Observation(observation));
        }
        Ok(last)
    }

    fn waveforms(&mut self, after: i64, through: i64, limit: u32) -> Result<i64, StoreError> {
        let connection = self.connection;
        let mut statement = connection.prepare_cached(
            "SELECT key, patient_key, device_key, seq, signal, sampling_rate_hz, start_ms, end_ms,
                    sample_count, received_ms, CASE WHEN ?3 THEN encoded ELSE x'' END
             FROM waveform_chunk WHERE key > ?1 AND key <= ?4 ORDER BY key LIMIT ?2",
        )?;
        let mut rows =
            statement.query(params![after, limit, self.filter.waveform_samples, through])?;
        let mut last = after;
        while let Some(row) = rows.next()? {
            last = row.get(0)?;
            let Some(patient_id) = self.admit(row.get(1)?)? else {
                self.passed_over.other += 1;
                continue;
            };
            let signal: String = row.get(4)?;
            let device_id = self.device(row.get(2)?)?;
            self.events
                .push(CommittedEvent::Waveform(CommittedWaveform {
                    patient_id,
                    received: from_ms(row.get(9)?)?,
                    chunk: StoredWaveform {
                        device_id,
                        seq: row.get(3)?,
                        signal: Signal::parse(&signal)
                            .ok_or_else(|| StoreError::Corrupt(format!("signal {signal:?}")))?,
                        sampling_rate_hz: row.get(5)?,
                        start: from_ms(row.get(6)?)?,
                        end: from_ms(row.get(7)?)?,
                        sample_count: row.get(8)?,
                        encoded: row.get(10)?,
                        received: from_ms(row.get(9)?)?,
                    },
                }));
        }
        Ok(last)
    }

    fn logged(&mut self, after: i64, through: i64, limit: u32) -> Result<i64, StoreError> {
        let connection = self.connection;
        // The patient of each listed row comes with the listing, so rows outside the scope
        // are passed over without reading (and parsing) them.
        let mut statement = connection.prepare_cached(
            "SELECT l.seq, l.kind, l.ref_key,
                    CASE l.kind
                        WHEN 'news2' THEN (SELECT patient_key FROM news2_score WHERE key = l.ref_key)
                        WHEN 'rhythm' THEN (SELECT patient_key FROM rhythm_event WHERE key = l.ref_key)
                        ELSE (SELECT patient_key FROM device_report WHERE key = l.ref_key)
                    END
             FROM event_log l WHERE l.seq > ?1 AND l.seq <= ?3 ORDER BY l.seq LIMIT ?2",
        )?;
        let listed = statement
            .query_map(params![after, limit, through], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut last = after;
        for (seq, kind, key, patient) in listed {
            last = seq;
            let wanted = match kind.as_str() {
                "news2" => self.filter.news2,
                "rhythm" => self.filter.rhythm_events,
                "device_report" => self.filter.device_reports,
                _ => false,
            };
            // A listed row that is gone is not an event any more.
            let Some(patient) = patient.filter(|_| wanted) else {
                continue;
            };
            if self.admit(patient)?.is_none() {
                self.passed_over.other += 1;
                continue;
            }
            let event = match kind.as_str() {
            "news2" => connection
                .prepare_cached(&format!("SELECT {NEWS2_COLUMNS} FROM {NEWS2_FROM} WHERE n.key = ?1"))?
                .query_row([key], |row| Ok(news2_from_row(row, 0)))
                .optional()?
                .transpose()?
                .map(CommittedEvent::News2),
            "rhythm" => connection
                .prepare_cached(&format!("SELECT {RHYTHM_COLUMNS} FROM {RHYTHM_FROM} WHERE e.key = ?1"))?
                .query_row([key], |row| Ok(rhythm_from_row(row, 0)))
                .optional()?
                .transpose()?
                .map(CommittedEvent::Rhythm),
            _ => connection
                .prepare_cached(
                    "SELECT device_key, patient_key, at_ms, battery_percent, fault FROM device_report WHERE key = ?1",
                )?
                .query_row([key], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Option<f64>>(3)?,
                        row.get::<_, Option<String>>(4)?,
                    ))
                })
                .optional()?
                .map(|(device, patient, at, battery_percent, fault)| {
                    Ok::<_, StoreError>(CommittedEvent::DeviceReport(DeviceReport {
                        device_id: self.device(device)?,
                        patient_id: self.ids.patient(connection, patient)?,
                        at: from_ms(at)?,
                        battery_percent,
                        fault,
                    }))
                })
                .transpose()?,
        };
            self.events.extend(event);
        }
        Ok(last)
    }
}

fn tail(connection: &Connection) -> Result<Position, StoreError> {
    Ok(connection.query_row(
        "SELECT (SELECT coalesce(max(key), 0) FROM observation),
                (SELECT coalesce(max(key), 0) FROM waveform_chunk),
                (SELECT coalesce(max(seq), 0) FROM event_log)",
        [],
        |row| {
            Ok(Position {
                observation: row.get(0)?,
                waveform: row.get(1)?,
                logged: row.get(2)?,
            })
        },
    )?)
}

impl SqliteStore {
    async fn read_log(
        &self,
        mut position: Position,
        through: Option<Position>,
        filter: EventFilter,
        limit: u32,
    ) -> Result<EventBatch, StoreError> {
        let limit = limit.clamp(1, 10_000);
        let ids = std::sync::Arc::clone(&self.ids);
        let bound = through.unwrap_or(Position {
            observation: i64::MAX,
            waveform: i64::MAX,
            logged: i64::MAX,
        });
        self.read(move |connection| {
            let mut read = LogRead::new(connection, &ids, &filter);
            if filter.observations {
                position.observation =
                    read.observations(position.observation, bound.observation, limit)?;
            }
            if filter.waveforms {
                position.waveform = read.waveforms(position.waveform, bound.waveform, limit)?;
            }
            if filter.news2 || filter.rhythm_events || filter.device_reports {
                position.logged = read.logged(position.logged, bound.logged, limit)?;
            }
            Ok(EventBatch {
                events: read.events,
                passed_over: read.passed_over,
                next: position.cursor(),
            })
        })
        .await
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn event_tail(&self) -> Result<EventCursor, StoreError> {
        self.read(|connection| Ok(tail(connection)?.cursor())).await
    }

    async fn events_after(
        &self,
        cursor: &EventCursor,
        filter: EventFilter,
        limit: u32,
    ) -> Result<EventBatch, StoreError> {
        self.read_log(Position::parse(cursor)?, None, filter, limit)
            .await
    }

    async fn events_between(
        &self,
        after: &EventCursor,
        through: &EventCursor,
        filter: EventFilter,
        limit: u32,
    ) -> Result<EventBatch, StoreError> {
        let through = Position::parse(through)?;
        self.read_log(Position::parse(after)?, Some(through), filter, limit)
            .await
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<EventCursor>, StoreError> {
        let consumer = consumer.to_owned();
        self.read(move |connection| {
            Ok(connection
                .prepare_cached("SELECT cursor FROM consumer_checkpoint WHERE consumer = ?1")?
                .query_row([consumer], |row| row.get::<_, String>(0))
                .optional()?
                .map(EventCursor))
        })
        .await
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.writer.commits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let position = Position {
            observation: 12,
            waveform: 0,
            logged: 7,
        };
        assert_eq!(Position::parse(&position.cursor()).ok(), Some(position));
        for bad in [
            "",
            "sqlite1:1:2",
            "sqlite1:1:2:3:4",
            "nats:1:2:3",
            "sqlite1:-1:0:0",
            "sqlite1:a:0:0",
        ] {
            assert!(Position::parse(&EventCursor(bad.into())).is_err(), "{bad}");
        }
    }
}
