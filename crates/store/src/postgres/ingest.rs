//! [`IngestStore`] on PostgreSQL: each call is one transaction under the event lock.
//!
//! A call usually holds a burst of messages from one device, so the device row and the
//! assignment in force are looked up once per call, not once per reading, and the
//! device's last contact is written once at the end. The device row stays locked until
//! commit (see [`super::devices`]), so an assignment or a revocation made meanwhile by
//! another worker waits for this call, or this call for it.
//!
//! A `(device, seq)` is stored once however many workers receive it: the unique index
//! decides (`ON CONFLICT DO NOTHING`), and a reading that finds its seq taken is compared
//! with the one stored to tell a retry from a reused seq.

use std::collections::HashMap;

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;
use uuid::Uuid;
use wardline_domain::{DeviceKind, Observation, PatientId};

use super::devices::insert_device_report;
use super::rows::to_ms;
use super::{PostgresStore, lock_events};
use crate::error::StoreError;
use crate::ingest::IngestStore;
use crate::model::{IngestItem, IngestOutcome, IngestPayload};

type Transaction<'a> = deadpool_postgres::Transaction<'a>;

/// A device as one call sees it, with the last assignment it resolved.
pub(super) struct DeviceInCall {
    pub(super) key: i64,
    kind: DeviceKind,
    pub(super) active: bool,
    /// Every assignment the device has had: read once per call, and stable until the
    /// commit, since a change of assignment waits for the device's row.
    assignments: Vec<Assignment>,
}

impl DeviceInCall {
    /// The patient the device measured at `at_ms`, if any.
    pub(super) fn patient_at(&self, at_ms: i64) -> Option<Assignment> {
        self.assignments
            .iter()
            .find(|assignment| assignment.covers(at_ms))
            .copied()
    }
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

/// Whether the outcome put rows in `observation`, `waveform_chunk` or `event_log`, which
/// the event log's readers are told of.
fn adds_events(outcome: &IngestOutcome) -> bool {
    match outcome {
        IngestOutcome::Stored { stored, .. } => !stored.is_empty(),
        IngestOutcome::WaveformStored { duplicate, .. } => !duplicate,
        // Its fault report.
        IngestOutcome::SeqConflict { .. } => true,
        _ => false,
    }
}

fn all_stored(outcomes: &[IngestOutcome]) -> bool {
    outcomes.iter().all(|outcome| {
        matches!(
            outcome,
            IngestOutcome::Stored { .. } | IngestOutcome::WaveformStored { .. }
        )
    })
}

async fn ingest_items(
    transaction: &Transaction<'_>,
    items: &[&IngestItem],
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut devices: HashMap<&str, Option<DeviceInCall>> = HashMap::new();
    let mut last_contact: HashMap<i64, i64> = HashMap::new();
    // The newest time of what each device had stored (duplicates included: their time was
    // stored before).
    let mut last_reading: HashMap<i64, i64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(items.len());
    // Readings are written for the whole group at once, except those of a device that
    // sends a seq twice in it: each of its messages must see the one before, so they go
    // one by one (a device's retry does not slow the others down).
    let one_by_one = devices_repeating_a_seq(items);
    let mut rows = (one_by_one.len() < items.len()).then(ReadingRows::default);
    let ids: Vec<&str> = items.iter().map(|item| item.device_id.as_str()).collect();
    let mut found = look_up_devices(transaction, ids).await?;
    for item in items {
        let id = item.device_id.as_str();
        if !devices.contains_key(id) {
            devices.insert(id, found.remove(id));
        }
        let Some(Some(device)) = devices.get_mut(id) else {
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
        let outcome = match (&item.payload, &mut rows) {
            (IngestPayload::Readings(readings), Some(rows)) if !one_by_one.contains(id) => {
                match rows.add(device, outcomes.len(), item, readings) {
                    Some(refused) => refused,
                    // Decided once the group's rows are written, below.
                    None => IngestOutcome::Stored {
                        patient_id: PatientId(Uuid::nil()),
                        stored: Vec::new(),
                        duplicates: 0,
                    },
                }
            }
            _ => ingest_one(transaction, device, item, received_ms).await?,
        };
        outcomes.push(outcome);
    }
    if let Some(rows) = rows {
        rows.write(transaction, items, &mut outcomes).await?;
    }
    for (item, outcome) in items.iter().zip(&outcomes) {
        let newest = match (outcome, &item.payload) {
            (IngestOutcome::Stored { .. }, IngestPayload::Readings(readings)) => readings
                .iter()
                .map(|reading| to_ms(reading.effective))
                .max(),
            (IngestOutcome::WaveformStored { .. }, IngestPayload::Waveform(chunk)) => {
                Some(to_ms(chunk.end))
            }
            _ => None,
        };
        let device = devices
            .get(item.device_id.as_str())
            .and_then(Option::as_ref);
        if let (Some(newest), Some(device)) = (newest, device) {
            let kept = last_reading.entry(device.key).or_insert(newest);
            *kept = (*kept).max(newest);
        }
    }
    let (keys, seen): (Vec<i64>, Vec<i64>) = last_contact.into_iter().unzip();
    let newest: Vec<Option<i64>> = keys
        .iter()
        .map(|key| last_reading.get(key).copied())
        .collect();
    let touch = transaction
        .prepare_cached(
            "UPDATE device d SET last_seen_ms = greatest(d.last_seen_ms, u.seen_ms),
                                 last_reading_ms = greatest(d.last_reading_ms, u.reading_ms)
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u (key, seen_ms, reading_ms)
             WHERE d.key = u.key",
        )
        .await?;
    transaction
        .execute(&touch, &[&keys, &seen, &newest])
        .await?;
    Ok(outcomes)
}

/// The devices that send some seq twice among `items`.
fn devices_repeating_a_seq<'a>(items: &[&'a IngestItem]) -> std::collections::HashSet<&'a str> {
    let mut seen = std::collections::HashSet::new();
    let mut repeating = std::collections::HashSet::new();
    for item in items {
        if let IngestPayload::Readings(readings) = &item.payload {
            for reading in readings {
                if !seen.insert((item.device_id.as_str(), reading.seq)) {
                    repeating.insert(item.device_id.as_str());
                }
            }
        }
    }
    repeating
}

/// A group's readings, written with one statement: a row per reading, in columns.
#[derive(Default)]
struct ReadingRows {
    /// Per message: its index among the group's items, its device and the assignment of
    /// each of its readings, in order.
    messages: Vec<(usize, i64, Vec<Assignment>)>,
    device_key: Vec<i64>,
    seq: Vec<i64>,
    code: Vec<&'static str>,
    value: Vec<f64>,
    original_value: Vec<Option<f64>>,
    original_unit: Vec<Option<String>>,
    effective_ms: Vec<i64>,
    patient_key: Vec<i64>,
    received_ms: Vec<i64>,
}

/// What the database holds under one `(device, seq)`, to tell a retry from another
/// reading.
#[derive(PartialEq)]
struct StoredContent {
    code: String,
    value: f64,
    original_value: Option<f64>,
    original_unit: Option<String>,
    effective_ms: i64,
}

impl ReadingRows {
    /// Adds a message's readings, or says why none of it can be stored (a reading outside
    /// every assignment of the device).
    fn add(
        &mut self,
        device: &DeviceInCall,
        index: usize,
        item: &IngestItem,
        readings: &[wardline_domain::Reading],
    ) -> Option<IngestOutcome> {
        // All of a message is stored or none of it: every reading must fall inside an
        // assignment before anything is written.
        let mut assignments = Vec::with_capacity(readings.len());
        for reading in readings {
            match device.patient_at(to_ms(reading.effective)) {
                Some(assignment) => assignments.push(assignment),
                None => {
                    return Some(IngestOutcome::NotAssigned {
                        device_id: item.device_id.clone(),
                        at: reading.effective,
                    });
                }
            }
        }
        for (reading, assignment) in readings.iter().zip(&assignments) {
            self.device_key.push(device.key);
            self.seq.push(reading.seq);
            self.code.push(reading.code.loinc());
            self.value.push(reading.value);
            self.original_value
                .push(reading.original.as_ref().map(|(value, _)| *value));
            self.original_unit
                .push(reading.original.as_ref().map(|(_, unit)| unit.clone()));
            self.effective_ms.push(to_ms(reading.effective));
            self.patient_key.push(assignment.patient_key);
        }
        self.messages.push((index, device.key, assignments));
        None
    }

    /// Writes every row, then decides each message's outcome as one by one would have.
    async fn write(
        mut self,
        transaction: &Transaction<'_>,
        items: &[&IngestItem],
        outcomes: &mut [IngestOutcome],
    ) -> Result<(), StoreError> {
        if self.messages.is_empty() {
            return Ok(());
        }
        for (index, _, assignments) in &self.messages {
            let received_ms = to_ms(items[*index].received);
            self.received_ms
                .extend(std::iter::repeat_n(received_ms, assignments.len()));
        }
        let insert = transaction
            .prepare_cached(
                "INSERT INTO observation (device_key, seq, code, value, original_value,
                    original_unit, effective_ms, patient_key, received_ms)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::float8[],
                    $5::float8[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])
                 ON CONFLICT (device_key, derived, seq) DO NOTHING
                 RETURNING key, device_key, seq",
            )
            .await?;
        let inserted: HashMap<(i64, i64), i64> = transaction
            .query(
                &insert,
                &[
                    &self.device_key,
                    &self.seq,
                    &self.code,
                    &self.value,
                    &self.original_value,
                    &self.original_unit,
                    &self.effective_ms,
                    &self.patient_key,
                    &self.received_ms,
                ],
            )
            .await?
            .iter()
            .map(|row| Ok(((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?)))
            .collect::<Result<_, StoreError>>()?;
        let stored_before = self.stored_before(transaction, &inserted).await?;
        let mut row = 0;
        for (index, device_key, assignments) in &self.messages {
            let item = items[*index];
            let IngestPayload::Readings(readings) = &item.payload else {
                continue;
            };
            let mut stored = Vec::new();
            let mut written_keys = Vec::new();
            let mut duplicates = 0;
            let mut conflict = None;
            for (reading, assignment) in readings.iter().zip(assignments) {
                let key = (*device_key, reading.seq);
                if let Some(written) = inserted.get(&key) {
                    written_keys.push(*written);
                    stored.push(Observation::from_reading(
                        assignment.patient_id,
                        item.device_id.clone(),
                        reading,
                        item.received,
                    ));
                } else if stored_before.get(&key) == Some(&self.content(row)) {
                    duplicates += 1;
                } else if conflict.is_none() {
                    conflict = Some((reading.seq, *assignment));
                }
                row += 1;
            }
            outcomes[*index] = match conflict {
                None => IngestOutcome::Stored {
                    patient_id: assignments
                        .first()
                        .map(|assignment| assignment.patient_id)
                        .ok_or_else(|| StoreError::Invalid("a message with no readings".into()))?,
                    stored,
                    duplicates,
                },
                Some((seq, assignment)) => {
                    seq_conflict(
                        transaction,
                        &written_keys,
                        *device_key,
                        item,
                        seq,
                        assignment,
                        to_ms(item.received),
                    )
                    .await?
                }
            };
        }
        Ok(())
    }

    fn content(&self, row: usize) -> StoredContent {
        StoredContent {
            code: self.code[row].to_owned(),
            value: self.value[row],
            original_value: self.original_value[row],
            original_unit: self.original_unit[row].clone(),
            effective_ms: self.effective_ms[row],
        }
    }

    /// What is stored under each `(device, seq)` of the group that was not written now.
    async fn stored_before(
        &self,
        transaction: &Transaction<'_>,
        inserted: &HashMap<(i64, i64), i64>,
    ) -> Result<HashMap<(i64, i64), StoredContent>, StoreError> {
        let (devices, seqs): (Vec<i64>, Vec<i64>) = self
            .device_key
            .iter()
            .zip(&self.seq)
            .filter(|(device, seq)| !inserted.contains_key(&(**device, **seq)))
            .map(|(device, seq)| (*device, *seq))
            .unzip();
        if devices.is_empty() {
            return Ok(HashMap::new());
        }
        let select = transaction
            .prepare_cached(
                "SELECT o.device_key, o.seq, o.code, o.value, o.original_value, o.original_unit,
                        o.effective_ms
                 FROM unnest($1::bigint[], $2::bigint[]) AS k (device_key, seq)
                 JOIN observation o
                   ON o.device_key = k.device_key AND NOT o.derived AND o.seq = k.seq",
            )
            .await?;
        transaction
            .query(&select, &[&devices, &seqs])
            .await?
            .iter()
            .map(|row| {
                Ok((
                    (row.try_get(0)?, row.try_get(1)?),
                    StoredContent {
                        code: row.try_get(2)?,
                        value: row.try_get(3)?,
                        original_value: row.try_get(4)?,
                        original_unit: row.try_get(5)?,
                        effective_ms: row.try_get(6)?,
                    },
                ))
            })
            .collect()
    }
}

/// The devices named by `ids` with their assignments, in two statements for the whole
/// call; their rows stay locked until the commit.
pub(super) async fn look_up_devices(
    transaction: &Transaction<'_>,
    mut ids: Vec<&str>,
) -> Result<HashMap<String, DeviceInCall>, StoreError> {
    ids.sort_unstable();
    ids.dedup();
    // Locked until commit (see the module's documentation), in the order of their keys
    // so that two calls never wait for each other.
    let devices = transaction
        .prepare_cached(
            "SELECT key, status, kind, id FROM device WHERE id = ANY($1)
             ORDER BY key FOR NO KEY UPDATE",
        )
        .await?;
    let mut found = HashMap::new();
    let mut by_key = HashMap::new();
    for row in transaction.query(&devices, &[&ids]).await? {
        let key: i64 = row.try_get(0)?;
        let status: &str = row.try_get(1)?;
        let kind: &str = row.try_get(2)?;
        let id: String = row.try_get(3)?;
        by_key.insert(key, id.clone());
        found.insert(
            id,
            DeviceInCall {
                key,
                kind: kind
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("device kind {kind:?}")))?,
                active: status == "active",
                assignments: Vec::new(),
            },
        );
    }
    let keys: Vec<i64> = by_key.keys().copied().collect();
    let assignments = transaction
        .prepare_cached(
            "SELECT a.device_key, a.patient_key, p.id, a.start_ms, a.end_ms
             FROM device_assignment a JOIN patient p ON p.key = a.patient_key
             WHERE a.device_key = ANY($1)",
        )
        .await?;
    for row in transaction.query(&assignments, &[&keys]).await? {
        let device_key: i64 = row.try_get(0)?;
        let device = by_key
            .get(&device_key)
            .and_then(|id| found.get_mut(id))
            .ok_or_else(|| StoreError::Corrupt(format!("assignment of device key {device_key}")))?;
        device.assignments.push(Assignment {
            patient_key: row.try_get(1)?,
            patient_id: PatientId(row.try_get::<_, Uuid>(2)?),
            start_ms: row.try_get(3)?,
            end_ms: row.try_get(4)?,
        });
    }
    Ok(found)
}

async fn ingest_one(
    transaction: &Transaction<'_>,
    device: &mut DeviceInCall,
    item: &IngestItem,
    received_ms: i64,
) -> Result<IngestOutcome, StoreError> {
    match &item.payload {
        IngestPayload::Readings(readings) => {
            // All of a message is stored or none of it: every reading must fall inside an
            // assignment before anything is written.
            let mut patients = Vec::with_capacity(readings.len());
            for reading in readings {
                match device.patient_at(to_ms(reading.effective)) {
                    Some(assignment) => patients.push(assignment),
                    None => {
                        return Ok(IngestOutcome::NotAssigned {
                            device_id: item.device_id.clone(),
                            at: reading.effective,
                        });
                    }
                }
            }
            let insert = transaction
                .prepare_cached(
                    "INSERT INTO observation (device_key, seq, code, value, original_value,
                        original_unit, effective_ms, patient_key, received_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (device_key, derived, seq) DO NOTHING RETURNING key",
                )
                .await?;
            let mut stored = Vec::with_capacity(readings.len());
            let mut inserted_keys: Vec<i64> = Vec::with_capacity(readings.len());
            let mut duplicates = 0;
            for (reading, assignment) in readings.iter().zip(&patients) {
                let (original_value, original_unit) = match &reading.original {
                    Some((value, unit)) => (Some(*value), Some(unit.as_str())),
                    None => (None, None),
                };
                // The reading's content, bound in this order by both statements.
                let code = reading.code.loinc();
                let effective_ms = to_ms(reading.effective);
                let content: [&(dyn ToSql + Sync); 7] = [
                    &device.key,
                    &reading.seq,
                    &code,
                    &reading.value,
                    &original_value,
                    &original_unit,
                    &effective_ms,
                ];
                let mut row: Vec<&(dyn ToSql + Sync)> = content.to_vec();
                row.extend([&assignment.patient_key as &(dyn ToSql + Sync), &received_ms]);
                match transaction.query_opt(&insert, &row).await? {
                    Some(inserted) => {
                        inserted_keys.push(inserted.try_get(0)?);
                        stored.push(Observation::from_reading(
                            assignment.patient_id,
                            item.device_id.clone(),
                            reading,
                            item.received,
                        ));
                    }
                    None => {
                        // A retry has the same content under the seq; anything else is
                        // another reading.
                        let same = transaction
                            .prepare_cached(
                                "SELECT code = $3 AND value = $4
                                        AND original_value IS NOT DISTINCT FROM $5
                                        AND original_unit IS NOT DISTINCT FROM $6
                                        AND effective_ms = $7
                                 FROM observation
                                 WHERE device_key = $1 AND NOT derived AND seq = $2",
                            )
                            .await?;
                        let same: Option<bool> = transaction
                            .query_opt(&same, &content)
                            .await?
                            .map(|row| row.try_get(0))
                            .transpose()?;
                        if same != Some(true) {
                            return seq_conflict(
                                transaction,
                                &inserted_keys,
                                device.key,
                                item,
                                reading.seq,
                                *assignment,
                                received_ms,
                            )
                            .await;
                        }
                        duplicates += 1;
                    }
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
            let Some(assignment) = device.patient_at(to_ms(chunk.start)) else {
                return Ok(IngestOutcome::NotAssigned {
                    device_id: item.device_id.clone(),
                    at: chunk.start,
                });
            };
            // The chunk's content, bound in this order by both statements below.
            let signal = chunk.signal.as_str();
            let (start_ms, end_ms) = (to_ms(chunk.start), to_ms(chunk.end));
            let sample_count = i64::from(chunk.sample_count);
            let content: [&(dyn ToSql + Sync); 8] = [
                &device.key,
                &chunk.seq,
                &signal,
                &chunk.sampling_rate_hz,
                &start_ms,
                &end_ms,
                &sample_count,
                &chunk.encoded,
            ];
            let mut row: Vec<&(dyn ToSql + Sync)> = content.to_vec();
            row.extend([&assignment.patient_key as &(dyn ToSql + Sync), &received_ms]);
            let insert = transaction
                .prepare_cached(
                    "INSERT INTO waveform_chunk (device_key, seq, signal, sampling_rate_hz,
                        start_ms, end_ms, sample_count, encoded, patient_key, received_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (device_key, seq) DO NOTHING",
                )
                .await?;
            let inserted = transaction.execute(&insert, &row).await?;
            if inserted == 0 {
                let same = transaction
                    .prepare_cached(
                        "SELECT signal = $3 AND sampling_rate_hz = $4 AND start_ms = $5
                                AND end_ms = $6 AND sample_count = $7 AND encoded = $8
                         FROM waveform_chunk WHERE device_key = $1 AND seq = $2",
                    )
                    .await?;
                let same: Option<bool> = transaction
                    .query_opt(&same, &content)
                    .await?
                    .map(|row| row.try_get(0))
                    .transpose()?;
                if same != Some(true) {
                    return seq_conflict(
                        transaction,
                        &[],
                        device.key,
                        item,
                        chunk.seq,
                        assignment,
                        received_ms,
                    )
                    .await;
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
async fn seq_conflict(
    transaction: &Transaction<'_>,
    written: &[i64],
    device_key: i64,
    item: &IngestItem,
    seq: i64,
    assignment: Assignment,
    received_ms: i64,
) -> Result<IngestOutcome, StoreError> {
    // Nothing of the message is stored: the rows it wrote in this transaction go again.
    if !written.is_empty() {
        transaction
            .execute("DELETE FROM observation WHERE key = ANY($1)", &[&written])
            .await?;
    }
    insert_device_report(
        transaction,
        device_key,
        assignment.patient_key,
        received_ms,
        None,
        Some(&format!(
            "seq_conflict: seq {seq} was used before for a different reading"
        )),
    )
    .await?;
    Ok(IngestOutcome::SeqConflict {
        device_id: item.device_id.clone(),
        seq,
    })
}

/// Calls of [`IngestStore::ingest`] waiting for the next commit.
///
/// One task per process commits them in groups: every call that arrived while the
/// previous group was committing goes into the next transaction. The event lock is taken
/// once per group and the commit's flush to disk is shared, which is what lets one
/// worker acknowledge many devices' readings at the rate a device-per-commit could not.
/// Each caller is answered after the commit that holds its readings.
#[derive(Debug, Clone)]
pub(crate) struct IngestQueue {
    jobs: mpsc::Sender<Job>,
}

struct Job {
    items: Vec<IngestItem>,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>>,
}

/// Calls queued at most before a caller waits to queue: backpressure, not a limit on
/// what is stored.
const QUEUED_CALLS: usize = 16_384;

impl IngestQueue {
    /// Starts the committing task; it ends when the last handle is dropped.
    pub(crate) fn spawn(
        pool: Pool,
        commits: Arc<watch::Sender<u64>>,
        max_items_per_commit: usize,
    ) -> Self {
        let (jobs, receiver) = mpsc::channel(QUEUED_CALLS);
        tokio::spawn(commit_groups(
            pool,
            commits,
            receiver,
            max_items_per_commit.max(1),
        ));
        Self { jobs }
    }

    async fn ingest(&self, items: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { items, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn commit_groups(
    pool: Pool,
    commits: Arc<watch::Sender<u64>>,
    mut receiver: mpsc::Receiver<Job>,
    max_items: usize,
) {
    while let Some(first) = receiver.recv().await {
        let mut items = first.items.len();
        let mut group = vec![first];
        while items < max_items {
            let Ok(job) = receiver.try_recv() else { break };
            items += job.items.len();
            group.push(job);
        }
        let answers = match commit_group(&pool, &group).await {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            // The database away is everyone's answer at once: trying each call alone
            // would keep every device waiting a connection timeout per call.
            Err(StoreError::Unavailable(reason)) => group
                .iter()
                .map(|_| Err(StoreError::Unavailable(reason.clone())))
                .collect(),
            // One call's trouble must not refuse the others' readings: each goes alone.
            Err(_) if group.len() > 1 => {
                let mut answers = Vec::with_capacity(group.len());
                for job in &group {
                    answers.push(
                        commit_group(&pool, std::slice::from_ref(job))
                            .await
                            .and_then(|mut answer| answer.pop().ok_or(StoreError::Closed)),
                    );
                }
                answers
            }
            Err(error) => vec![Err(error)],
        };
        if answers.iter().any(|answer| {
            answer
                .as_ref()
                .is_ok_and(|outcomes| outcomes.iter().any(adds_events))
        }) {
            commits.send_modify(|count| *count = count.wrapping_add(1));
        }
        for (job, answer) in group.into_iter().zip(answers) {
            // A caller that gave up waiting is not an error: its readings are stored.
            let _ = job.reply.send(answer);
        }
    }
}

/// Stores the group's calls in one transaction; the outcomes of each call, in order.
async fn commit_group(pool: &Pool, group: &[Job]) -> Result<Vec<Vec<IngestOutcome>>, StoreError> {
    let mut client = pool.get().await.map_err(super::pool_error)?;
    let transaction = client.transaction().await?;
    lock_events(&transaction).await?;
    let items: Vec<&IngestItem> = group.iter().flat_map(|job| &job.items).collect();
    let mut outcomes = ingest_items(&transaction, &items).await?.into_iter();
    transaction.commit().await?;
    metrics::counter!("wardline_store_commits_total").increment(1);
    Ok(group
        .iter()
        .map(|job| outcomes.by_ref().take(job.items.len()).collect())
        .collect())
}

#[async_trait]
impl IngestStore for PostgresStore {
    async fn ingest(&self, items: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError> {
        self.ingest_queue.ingest(items).await
    }

    async fn ingest_all_or_none(
        &self,
        items: Vec<IngestItem>,
    ) -> Result<(bool, Vec<IngestOutcome>), StoreError> {
        let mut client = self.client().await?;
        let mut transaction = client.transaction().await?;
        lock_events(&transaction).await?;
        // A savepoint, undone when an item is refused, so that the transaction (and the
        // event lock) goes on for the faults below.
        let attempt = transaction.savepoint("all_or_none").await?;
        let outcomes = ingest_items(&attempt, &items.iter().collect::<Vec<_>>()).await?;
        let stored = all_stored(&outcomes);
        if stored {
            attempt.commit().await?;
        } else {
            attempt.rollback().await?;
            // A reused seq is the device's fault for the rules to see even though nothing
            // is stored: each such item goes again alone, which records the fault as
            // `ingest` does. It is kept only if it clashes again: one that clashed with
            // another item of this call (undone above) would now be stored.
            for (item, outcome) in items.iter().zip(&outcomes) {
                if !matches!(outcome, IngestOutcome::SeqConflict { .. }) {
                    continue;
                }
                let fault = transaction.savepoint("fault").await?;
                let again = ingest_items(&fault, &[item]).await?;
                if matches!(again.first(), Some(IngestOutcome::SeqConflict { .. })) {
                    fault.commit().await?;
                } else {
                    fault.rollback().await?;
                }
            }
        }
        transaction.commit().await?;
        // Stored items, or the faults of refused ones.
        if !stored || outcomes.iter().any(adds_events) {
            self.announce_commit();
        }
        Ok((stored, outcomes))
    }
}
