//! [`EventLog`] on PostgreSQL: committed rows read back in the order their keys were drawn.
//!
//! As on SQLite, observations and waveform chunks are read from their own tables by key,
//! and NEWS2 results, rhythm events and device reports, which are updated in place or are
//! few, are listed in `event_log` by the transaction that stores them. Every transaction
//! that adds such rows holds the event lock from before it draws their keys until it
//! commits, so keys become visible in the order they were drawn and "after key k" misses
//! nothing. A cursor is the last key read of each of the three.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use uuid::Uuid;
use wardline_domain::{PatientId, Signal};

use super::PostgresStore;
use super::clinical::{
    NEWS2_COLUMNS, NEWS2_FROM, RHYTHM_COLUMNS, RHYTHM_FROM, news2_from_row, observation,
    rhythm_from_row,
};
use super::rows::{from_ms, parse_device_id};
use crate::error::StoreError;
use crate::events::{
    CommittedEvent, CommittedWaveform, EventBatch, EventCursor, EventFilter, EventLog, PassedOver,
};
use crate::model::{DeviceReport, StoredWaveform};

/// Lists a NEWS2 result, rhythm event or device report for the readers of the log. The
/// caller's transaction holds the event lock.
pub(super) async fn log_event(
    client: &impl GenericClient,
    kind: &str,
    key: i64,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("INSERT INTO event_log (kind, ref_key) VALUES ($1, $2)")
        .await?;
    client.execute(&statement, &[&kind, &key]).await?;
    Ok(())
}

/// Stores a reader's position; `Invalid` for a cursor this backend did not make.
pub(super) async fn save_checkpoint(
    client: &impl GenericClient,
    consumer: &str,
    cursor: &EventCursor,
    saved_ms: i64,
) -> Result<(), StoreError> {
    Position::parse(cursor)?;
    let statement = client
        .prepare_cached(
            "INSERT INTO consumer_checkpoint (consumer, cursor, saved_ms) VALUES ($1, $2, $3)
             ON CONFLICT (consumer) DO UPDATE
                 SET cursor = excluded.cursor, saved_ms = excluded.saved_ms",
        )
        .await?;
    client
        .execute(&statement, &[&consumer, &cursor.0, &saved_ms])
        .await?;
    Ok(())
}

/// The last key read of each source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    observation: i64,
    waveform: i64,
    logged: i64,
}

const CURSOR_PREFIX: &str = "postgres1";

impl Position {
    const END: Self = Self {
        observation: i64::MAX,
        waveform: i64::MAX,
        logged: i64::MAX,
    };

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

/// One read of the log: the filter, and what was found and passed over. Rows carry their
/// patient's id, so rows of patients outside the filter are passed over undecoded.
struct LogRead<'a> {
    client: &'a deadpool_postgres::Object,
    filter: &'a EventFilter,
    events: Vec<CommittedEvent>,
    passed_over: PassedOver,
}

impl<'a> LogRead<'a> {
    fn new(client: &'a deadpool_postgres::Object, filter: &'a EventFilter) -> Self {
        Self {
            client,
            filter,
            events: Vec::new(),
            passed_over: PassedOver::default(),
        }
    }

    fn admits(&self, patient: Uuid) -> Option<PatientId> {
        let patient = PatientId(patient);
        self.filter.admits(&patient).then_some(patient)
    }

    async fn observations(
        &mut self,
        after: i64,
        through: i64,
        limit: i64,
    ) -> Result<i64, StoreError> {
        let statement = self
            .client
            .prepare_cached(
                "SELECT o.key, p.id, d.id, o.seq, o.code, o.value, o.original_value,
                        o.original_unit, o.effective_ms, o.received_ms, o.derived
                 FROM observation o
                     JOIN patient p ON p.key = o.patient_key
                     JOIN device d ON d.key = o.device_key
                 WHERE o.key > $1 AND o.key <= $2 ORDER BY o.key LIMIT $3",
            )
            .await?;
        let rows = self
            .client
            .query(&statement, &[&after, &through, &limit])
            .await?;
        let mut last = after;
        for row in &rows {
            last = row.try_get(0)?;
            let Some(patient) = self.admits(row.try_get(1)?) else {
                self.passed_over.observations += 1;
                continue;
            };
            let observation = observation(
                patient,
                parse_device_id(row.try_get(2)?)?,
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
                row.try_get(6)?,
                row.try_get(7)?,
                row.try_get(8)?,
                row.try_get(9)?,
                row.try_get(10)?,
            )?;
            self.events.push(CommittedEvent::Observation(observation));
        }
        Ok(last)
    }

    async fn waveforms(&mut self, after: i64, through: i64, limit: i64) -> Result<i64, StoreError> {
        let statement = self
            .client
            .prepare_cached(
                "SELECT w.key, p.id, d.id, w.seq, w.signal, w.sampling_rate_hz, w.start_ms,
                        w.end_ms, w.sample_count, w.received_ms,
                        CASE WHEN $4::boolean THEN w.encoded ELSE ''::bytea END
                 FROM waveform_chunk w
                     JOIN patient p ON p.key = w.patient_key
                     JOIN device d ON d.key = w.device_key
                 WHERE w.key > $1 AND w.key <= $2 ORDER BY w.key LIMIT $3",
            )
            .await?;
        let rows = self
            .client
            .query(
                &statement,
                &[&after, &through, &limit, &self.filter.waveform_samples],
            )
            .await?;
        let mut last = after;
        for row in &rows {
            last = row.try_get(0)?;
            let Some(patient_id) = self.admits(row.try_get(1)?) else {
                self.passed_over.other += 1;
                continue;
            };
            let signal: &str = row.try_get(4)?;
            let sample_count: i64 = row.try_get(8)?;
            self.events
                .push(CommittedEvent::Waveform(CommittedWaveform {
                    patient_id,
                    received: from_ms(row.try_get(9)?)?,
                    chunk: StoredWaveform {
                        device_id: parse_device_id(row.try_get(2)?)?,
                        seq: row.try_get(3)?,
                        signal: Signal::parse(signal)
                            .ok_or_else(|| StoreError::Corrupt(format!("signal {signal:?}")))?,
                        sampling_rate_hz: row.try_get(5)?,
                        start: from_ms(row.try_get(6)?)?,
                        end: from_ms(row.try_get(7)?)?,
                        sample_count: u32::try_from(sample_count).map_err(|_| {
                            StoreError::Corrupt(format!("waveform sample count {sample_count}"))
                        })?,
                        encoded: row.try_get(10)?,
                        received: from_ms(row.try_get(9)?)?,
                    },
                }));
        }
        Ok(last)
    }

    async fn logged(&mut self, after: i64, through: i64, limit: i64) -> Result<i64, StoreError> {
        // The patient of each listed row comes with the listing, so rows outside the scope
        // are passed over without reading them.
        let statement = self
            .client
            .prepare_cached(
                "SELECT l.seq, l.kind, l.ref_key,
                        CASE l.kind
                            WHEN 'news2' THEN (SELECT p.id FROM news2_score n
                                JOIN patient p ON p.key = n.patient_key WHERE n.key = l.ref_key)
                            WHEN 'rhythm' THEN (SELECT p.id FROM rhythm_event e
                                JOIN patient p ON p.key = e.patient_key WHERE e.key = l.ref_key)
                            ELSE (SELECT p.id FROM device_report r
                                JOIN patient p ON p.key = r.patient_key WHERE r.key = l.ref_key)
                        END
                 FROM event_log l WHERE l.seq > $1 AND l.seq <= $2 ORDER BY l.seq LIMIT $3",
            )
            .await?;
        let rows = self
            .client
            .query(&statement, &[&after, &through, &limit])
            .await?;
        let mut last = after;
        let mut listed = Vec::with_capacity(rows.len());
        let mut news2 = Vec::new();
        let mut rhythm = Vec::new();
        let mut reports = Vec::new();
        for row in &rows {
            last = row.try_get(0)?;
            let kind: &str = row.try_get(1)?;
            let key: i64 = row.try_get(2)?;
            let patient: Option<Uuid> = row.try_get(3)?;
            let (wanted, keys) = match kind {
                "news2" => (self.filter.news2, &mut news2),
                "rhythm" => (self.filter.rhythm_events, &mut rhythm),
                "device_report" => (self.filter.device_reports, &mut reports),
                _ => continue,
            };
            // A listed row that is gone is not an event any more.
            let Some(patient) = patient.filter(|_| wanted) else {
                continue;
            };
            if self.admits(patient).is_none() {
                self.passed_over.other += 1;
                continue;
            }
            keys.push(key);
            listed.push((kind, key));
        }
        // Each kind's rows in one query; a row listed twice (a rhythm event that grew)
        // appears twice, as it is now.
        let news2 = self
            .listed(
                &news2,
                &format!("SELECT n.key, {NEWS2_COLUMNS} FROM {NEWS2_FROM} WHERE n.key = ANY($1)"),
                |row| Ok(CommittedEvent::News2(news2_from_row(row, 1)?)),
            )
            .await?;
        let rhythm = self
            .listed(
                &rhythm,
                &format!("SELECT e.key, {RHYTHM_COLUMNS} FROM {RHYTHM_FROM} WHERE e.key = ANY($1)"),
                |row| Ok(CommittedEvent::Rhythm(rhythm_from_row(row, 1)?)),
            )
            .await?;
        let reports = self
            .listed(
                &reports,
                "SELECT r.key, d.id, p.id, r.at_ms, r.battery_percent, r.fault
                 FROM device_report r
                     JOIN device d ON d.key = r.device_key
                     JOIN patient p ON p.key = r.patient_key
                 WHERE r.key = ANY($1)",
                |row| {
                    Ok(CommittedEvent::DeviceReport(DeviceReport {
                        device_id: parse_device_id(row.try_get(1)?)?,
                        patient_id: PatientId(row.try_get(2)?),
                        at: from_ms(row.try_get(3)?)?,
                        battery_percent: row.try_get(4)?,
                        fault: row.try_get(5)?,
                    }))
                },
            )
            .await?;
        for (kind, key) in listed {
            let found = match kind {
                "news2" => news2.get(&key),
                "rhythm" => rhythm.get(&key),
                _ => reports.get(&key),
            };
            self.events.extend(found.cloned());
        }
        Ok(last)
    }

    /// The listed rows of one kind by key, as events; `sql` selects the key first and
    /// `event` reads the rest of a row.
    async fn listed(
        &self,
        keys: &[i64],
        sql: &str,
        event: impl Fn(&tokio_postgres::Row) -> Result<CommittedEvent, StoreError>,
    ) -> Result<HashMap<i64, CommittedEvent>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let statement = self.client.prepare_cached(sql).await?;
        self.client
            .query(&statement, &[&keys])
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, event(row)?)))
            .collect()
    }
}

impl PostgresStore {
    async fn read_log(
        &self,
        mut position: Position,
        through: Position,
        filter: EventFilter,
        limit: u32,
    ) -> Result<EventBatch, StoreError> {
        let limit = i64::from(limit.clamp(1, 10_000));
        let client = self.client().await?;
        // Each source has its own position, so the three reads need no common snapshot.
        let mut read = LogRead::new(&client, &filter);
        if filter.observations {
            position.observation = read
                .observations(position.observation, through.observation, limit)
                .await?;
        }
        if filter.waveforms {
            position.waveform = read
                .waveforms(position.waveform, through.waveform, limit)
                .await?;
        }
        if filter.news2 || filter.rhythm_events || filter.device_reports {
            position.logged = read.logged(position.logged, through.logged, limit).await?;
        }
        Ok(EventBatch {
            events: read.events,
            passed_over: read.passed_over,
            next: position.cursor(),
        })
    }
}

#[async_trait]
impl EventLog for PostgresStore {
    async fn event_tail(&self) -> Result<EventCursor, StoreError> {
        let client = self.client().await?;
        // The highest key visible is past everything committed: a transaction still open
        // holds the event lock and draws keys above every committed one.
        let row = client
            .query_one(
                "SELECT (SELECT coalesce(max(key), 0) FROM observation),
                        (SELECT coalesce(max(key), 0) FROM waveform_chunk),
                        (SELECT coalesce(max(seq), 0) FROM event_log)",
                &[],
            )
            .await?;
        Ok(Position {
            observation: row.try_get(0)?,
            waveform: row.try_get(1)?,
            logged: row.try_get(2)?,
        }
        .cursor())
    }

    async fn events_after(
        &self,
        cursor: &EventCursor,
        filter: EventFilter,
        limit: u32,
    ) -> Result<EventBatch, StoreError> {
        self.read_log(Position::parse(cursor)?, Position::END, filter, limit)
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
        self.read_log(Position::parse(after)?, through, filter, limit)
            .await
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<EventCursor>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT cursor FROM consumer_checkpoint WHERE consumer = $1")
            .await?;
        Ok(client
            .query_opt(&statement, &[&consumer])
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
            .map(EventCursor))
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
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
            "postgres1:1:2",
            "postgres1:1:2:3:4",
            "sqlite1:1:2:3",
            "postgres1:-1:0:0",
            "postgres1:a:0:0",
        ] {
            assert!(Position::parse(&EventCursor(bad.into())).is_err(), "{bad}");
        }
    }
}
