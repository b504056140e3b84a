//! Storing device messages inside the writer's transaction.
//!
//! A job usually holds a burst of messages from one device, so the device row and the
//! assignment in force are looked up once per job, not once per reading, and the
//! device's last contact is written once at the end. Nothing is cached across jobs:
//! another process (the admin CLI) may change devices between them.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use wardline_domain::{DeviceKind, Observation, PatientId};

use super::to_ms;
use crate::error::StoreError;
use crate::model::{IngestItem, IngestOutcome, IngestPayload};

/// A device as one job sees it, with the last assignment it resolved.
pub(super) struct DeviceInJob {
    pub(super) key: i64,
    kind: DeviceKind,
    pub(super) active: bool,
    assignment: Option<Assignment>,
}

#[derive(Clone, Copy)]
pub(super) struct Assignment {
    pub(super) patient_key: i64,
    pub(super) patient_id: PatientId,
    start_ms: i64,
    end_ms: Option<i64>,
}

impl Assignment {
    fn covers(&self, at_ms: i64) -> bool {
        self.start_ms <= at_ms && self.end_ms.is_none_or(|end| end > at_ms)
    }
}

fn ingest_items(
    connection: &Connection,
    items: &[IngestItem],
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut devices: HashMap<&str, Option<DeviceInJob>> = HashMap::new();
    let mut last_contact: HashMap<i64, i64> = HashMap::new();
    // The newest time of what each device had stored (duplicates included: their time was
    // stored before).
    let mut last_reading: HashMap<i64, i64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let device = match devices.get_mut(item.device_id.as_str()) {
            Some(device) => device,
            None => {
                let found = look_up_device(connection, item.device_id.as_str())?;
                devices.entry(item.device_id.as_str()).or_insert(found)
            }
        };
        let Some(device) = device else {
            outcomes.push(IngestOutcome::UnknownDevice {
                device_id: item.device_id.clone(),
            });
            continue;
        };
        if !device.active {
            outcomes.push(IngestOutcome::Revoked {
                device_id: item.device_id.clone(),
            });
            continue;
        }
        let received_ms = to_ms(item.received);
        let contact = last_contact.entry(device.key).or_insert(received_ms);
        *contact = (*contact).max(received_ms);
        if let Some(error) = item.payload.not_for(device.kind) {
            outcomes.push(IngestOutcome::NotForDevice(error));
            continue;
        }
        let outcome = ingest_one(connection, device, item, received_ms)?;
        let newest = match (&outcome, &item.payload) {
            (IngestOutcome::Stored { .. }, IngestPayload::Readings(readings)) => readings
                .iter()
                .map(|reading| to_ms(reading.effective))
                .max(),
            (IngestOutcome::WaveformStored { .. }, IngestPayload::Waveform(chunk)) => {
                Some(to_ms(chunk.end))
            }
            _ => None,
        };
        if let Some(newest) = newest {
            let kept = last_reading.entry(device.key).or_insert(newest);
            *kept = (*kept).max(newest);
        }
        outcomes.push(outcome);
    }
    let mut touch = connection.prepare_cached(
        "UPDATE device SET last_seen_ms = max(coalesce(last_seen_ms, 0), ?2),
                           last_reading_ms = coalesce(max(last_reading_ms, ?3), last_reading_ms, ?3)
         WHERE key = ?1",
    )?;
    for (device_key, received_ms) in last_contact {
        touch.execute(params![
            device_key,
            received_ms,
            last_reading.get(&device_key)
        ])?;
    }
    Ok(outcomes)
}

pub(super) fn look_up_device(
    connection: &Connection,
    device_id: &str,
) -> Result<Option<DeviceInJob>, StoreError> {
    connection
        .prepare_cached("SELECT key, status, kind FROM device WHERE id = ?1")?
        .query_row([device_id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .optional()?
        .map(|(key, status, kind)| {
            Ok(DeviceInJob {
                key,
                kind: kind
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("device kind {kind:?}")))?,
                active: status == "active",
                assignment: None,
            })
        })
        .transpose()
}

/// The patient the device measured at `at_ms`, if any.
pub(super) fn patient_at(
    connection: &Connection,
    device: &mut DeviceInJob,
    at_ms: i64,
) -> Result<Option<Assignment>, StoreError> {
    if let Some(assignment) = device
        .assignment
        .filter(|assignment| assignment.covers(at_ms))
    {
        return Ok(Some(assignment));
    }
    let found = connection
        .prepare_cached(
            "SELECT a.patient_key, p.id, a.start_ms, a.end_ms FROM device_assignment a JOIN patient p ON p.key = a.patient_key
             WHERE a.device_key = ?1 AND a.start_ms <= ?2 AND (a.end_ms IS NULL OR a.end_ms > ?2)",
        )?
        .query_row(params![device.key, at_ms], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?, row.get::<_, Option<i64>>(3)?))
        })
        .optional()?;
    let Some((patient_key, patient_id, start_ms, end_ms)) = found else {
        return Ok(None);
    };
    let assignment = Assignment {
        patient_key,
        patient_id: patient_id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("patient id {patient_id:?} is not a UUID")))?,
        start_ms,
        end_ms,
    };
    device.assignment = Some(assignment);
    Ok(Some(assignment))
}

fn ingest_one(
    connection: &Connection,
    device: &mut DeviceInJob,
    item: &IngestItem,
    received_ms: i64,
) -> Result<IngestOutcome, StoreError> {
    match &item.payload {
        IngestPayload::Readings(readings) => {
            // All of a message is stored or none of it: every reading must fall inside an
            // assignment before anything is written.
            let mut patients = Vec::with_capacity(readings.len());
            for reading in readings {
                match patient_at(connection, device, to_ms(reading.effective))? {
                    Some(assignment) => patients.push(assignment),
                    None => {
                        return Ok(IngestOutcome::NotAssigned {
                            device_id: item.device_id.clone(),
                            at: reading.effective,
                        });
                    }
                }
            }
            let mut insert = connection.prepare_cached(
                "INSERT INTO observation (device_key, seq, code, value, original_value, original_unit, effective_ms, patient_key, received_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (device_key, derived, seq) DO NOTHING",
            )?;
            let mut stored = Vec::with_capacity(readings.len());
            let mut inserted_keys = Vec::with_capacity(readings.len());
            let mut duplicates = 0;
            for (reading, assignment) in readings.iter().zip(&patients) {
                let (original_value, original_unit) = match &reading.original {
                    Some((value, unit)) => (Some(*value), Some(unit.as_str())),
                    None => (None, None),
                };
                // The reading's content, bound in this order by both statements.
                let code = reading.code.loinc();
                let effective_ms = to_ms(reading.effective);
                let content: [&dyn rusqlite::ToSql; 7] = [
                    &device.key,
                    &reading.seq,
                    &code,
                    &reading.value,
                    &original_value,
                    &original_unit,
                    &effective_ms,
                ];
                let inserted =
                    insert.execute(rusqlite::params_from_iter(content.into_iter().chain([
                        &assignment.patient_key as &dyn rusqlite::ToSql,
                        &received_ms,
                    ])))?;
                if inserted == 0 {
                    // A retry has the same content under the seq; anything else is
                    // another reading.
                    let same: Option<bool> = connection
                        .prepare_cached(
                            "SELECT code = ?3 AND value = ?4 AND original_value IS ?5
                                    AND original_unit IS ?6 AND effective_ms = ?7
                             FROM observation WHERE device_key = ?1 AND derived = 0 AND seq = ?2",
                        )?
                        .query_row(rusqlite::params_from_iter(content), |row| row.get(0))
                        .optional()?;
                    if same != Some(true) {
                        // Nothing of the message is stored: the rows it already wrote in
                        // this transaction go again.
                        let mut delete =
                            connection.prepare_cached("DELETE FROM observation WHERE key = ?1")?;
                        for key in inserted_keys {
                            delete.execute([key])?;
                        }
                        return seq_conflict(
                            connection,
                            device,
                            item,
                            reading.seq,
                            *assignment,
                            received_ms,
                        );
                    }
                    duplicates += 1;
                } else {
                    inserted_keys.push(connection.last_insert_rowid());
                    stored.push(Observation::from_reading(
                        assignment.patient_id,
                        item.device_id.clone(),
                        reading,
                        item.received,
                    ));
                }
            }
            let patient_id = patients
                .first()
                .map(|assignment| assignment.patient_id)
                .ok_or_else(|| StoreError::Invalid("a message with no readings".into()))?;
            Ok(IngestOutcome::Stored {
                patient_id,
                stored,
                duplicates,
            })
        }
        IngestPayload::Waveform(chunk) => {
            let Some(assignment) = patient_at(connection, device, to_ms(chunk.start))? else {
                return Ok(IngestOutcome::NotAssigned {
                    device_id: item.device_id.clone(),
                    at: chunk.start,
                });
            };
            // The chunk's content, bound in this order by both statements below.
            let signal = chunk.signal.as_str();
            let (start_ms, end_ms) = (to_ms(chunk.start), to_ms(chunk.end));
            let content: [&dyn rusqlite::ToSql; 8] = [
                &device.key,
                &chunk.seq,
                &signal,
                &chunk.sampling_rate_hz,
                &start_ms,
                &end_ms,
                &chunk.sample_count,
                &chunk.encoded,
            ];
            let inserted = connection
                .prepare_cached(
                    "INSERT INTO waveform_chunk (device_key, seq, signal, sampling_rate_hz, start_ms, end_ms, sample_count, encoded, patient_key, received_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (device_key, seq) DO NOTHING",
                )?
                .execute(rusqlite::params_from_iter(
                    content.into_iter().chain([
                        &assignment.patient_key as &dyn rusqlite::ToSql,
                        &received_ms,
                    ]),
                ))?;
            if inserted == 0 {
                let same: Option<bool> = connection
                    .prepare_cached(
                        "SELECT signal = ?3 AND sampling_rate_hz = ?4 AND start_ms = ?5 AND end_ms = ?6
                                AND sample_count = ?7 AND encoded = ?8
                         FROM waveform_chunk WHERE device_key = ?1 AND seq = ?2",
                    )?
                    .query_row(rusqlite::params_from_iter(content), |row| row.get(0))
                    .optional()?;
                if same != Some(true) {
                    return seq_conflict(
                        connection,
                        device,
                        item,
                        chunk.seq,
                        assignment,
                        received_ms,
                    );
                }
            }
            Ok(IngestOutcome::WaveformStored {
                patient_id: assignment.patient_id,
                duplicate: inserted == 0,
            })
        }
    }
}

/// Refuses a message whose `seq` the device used before for something else, and stores
/// a fault report of the device (for the patient it measured), in the same transaction,
/// so that the care plan's device-fault rules see it.
fn seq_conflict(
    connection: &Connection,
    device: &DeviceInJob,
    item: &IngestItem,
    seq: i64,
    assignment: Assignment,
    received_ms: i64,
) -> Result<IngestOutcome, StoreError> {
    super::devices::insert_device_report(
        connection,
        device.key,
        assignment.patient_key,
        received_ms,
        None,
        Some(&format!(
            "seq_conflict: seq {seq} was used before for a different reading"
        )),
    )?;
    Ok(IngestOutcome::SeqConflict {
        device_id: item.device_id.clone(),
        seq,
    })
}

#[async_trait::async_trait]
impl crate::ingest::IngestStore for super::SqliteStore {
    async fn ingest(&self, items: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError> {
        self.write(move |connection| ingest_items(connection, &items))
            .await
    }

    async fn ingest_all_or_none(
        &self,
        items: Vec<IngestItem>,
    ) -> Result<(bool, Vec<IngestOutcome>), StoreError> {
        self.write(move |connection| {
            // A savepoint of its own inside the job's: undone here when an item is
            // refused, so the job still commits (with nothing in it) and says why.
            connection.execute_batch("SAVEPOINT all_or_none")?;
            let outcomes = match ingest_items(connection, &items) {
                Ok(outcomes) => outcomes,
                Err(error) => {
                    connection.execute_batch("ROLLBACK TO all_or_none; RELEASE all_or_none")?;
                    return Err(error);
                }
            };
            let stored = outcomes.iter().all(|outcome| {
                matches!(
                    outcome,
                    IngestOutcome::Stored { .. } | IngestOutcome::WaveformStored { .. }
                )
            });
            if stored {
                connection.execute_batch("RELEASE all_or_none")?;
                return Ok((true, outcomes));
            }
            connection.execute_batch("ROLLBACK TO all_or_none; RELEASE all_or_none")?;
            // A reused seq is the device's fault for the rules to see even though nothing
            // is stored: each such item goes again alone, which records the fault as
            // `ingest` does. It is kept only if it clashes again: one that clashed with
            // another item of this call (undone above) would now be stored.
            for (item, outcome) in items.iter().zip(&outcomes) {
                if !matches!(outcome, IngestOutcome::SeqConflict { .. }) {
                    continue;
                }
                connection.execute_batch("SAVEPOINT fault")?;
                match ingest_items(connection, std::slice::from_ref(item)) {
                    Ok(again)
                        if matches!(again.first(), Some(IngestOutcome::SeqConflict { .. })) =>
                    {
                        connection.execute_batch("RELEASE fault")?;
                    }
                    Ok(_) => connection.execute_batch("ROLLBACK TO fault; RELEASE fault")?,
                    Err(error) => {
                        connection.execute_batch("ROLLBACK TO fault; RELEASE fault")?;
                        return Err(error);
                    }
                }
            }
            Ok((false, outcomes))
        })
        .await
    }
}
