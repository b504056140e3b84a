//! Validate, store, then report: the path every device message takes, whatever transport
//! brought it. A message is acknowledged only from the verdict this returns, and the
//! verdict exists only after the commit holding the message is durable. What is stored
//! reaches rule evaluation, analysis and the live screens through the event log, never
//! through this path, so an acknowledgement waits for none of them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use wardline_domain::{
    DeviceId, DeviceMessage, PayloadError, PayloadLimits, WaveformChunk, parse_device_message,
};
use wardline_store::{
    EncodedWaveform, IngestItem, IngestOutcome, IngestPayload, IngestStore, StoreError,
};

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageVerdict {
    /// Durably stored; `duplicates` readings had been stored before (a retry).
    Stored {
        new: usize,
        duplicates: usize,
    },
    Rejected(Rejection),
}

/// Why a message was not stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("device {device_id} is not assigned to a patient at {at}")]
    NotAssigned {
        device_id: DeviceId,
        at: DateTime<Utc>,
    },
    #[error("device {0} is revoked")]
    Revoked(DeviceId),
    #[error("device {0} is not enrolled")]
    UnknownDevice(DeviceId),
    #[error(
        "seq: {seq} was used before by device {device_id} for a different reading; nothing of the message was stored"
    )]
    SeqConflict { device_id: DeviceId, seq: i64 },
}

impl Rejection {
    /// Stable name for metrics and error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Payload(error) => error.kind.as_str(),
            Rejection::NotAssigned { .. } => "not_assigned",
            Rejection::Revoked(_) => "revoked",
            Rejection::UnknownDevice(_) => "unknown_device",
            Rejection::SeqConflict { .. } => "seq_conflict",
        }
    }

    /// Whether sending the same message later may succeed: a device not assigned to a
    /// patient (yet) may be assigned, so its reading must not be acknowledged as handled.
    pub fn is_transient(&self) -> bool {
        matches!(self, Rejection::NotAssigned { .. })
    }
}

/// Ingest for all transports.
#[derive(Clone)]
pub struct IngestService {
    store: Arc<dyn IngestStore>,
    limits: PayloadLimits,
}

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl IngestService {
    pub fn new(store: Arc<dyn IngestStore>, limits: PayloadLimits) -> Self {
        Self { store, limits }
    }

    pub fn limits(&self) -> &PayloadLimits {
        &self.limits
    }

    /// Validates one payload against the server clock now.
    pub fn parse(&self, payload: &[u8]) -> Result<DeviceMessage, PayloadError> {
        parse_device_message(payload, Utc::now(), &self.limits)
    }

    /// Stores valid messages of one device in one commit and returns a verdict for each,
    /// in order. `Err` means nothing can be said about durability: acknowledge nothing.
    pub async fn store(
        &self,
        device_id: &DeviceId,
        transport: &'static str,
        messages: Vec<DeviceMessage>,
    ) -> Result<Vec<MessageVerdict>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let received = Utc::now();
        let mut items = Vec::with_capacity(messages.len());
        let mut verdicts: Vec<Option<MessageVerdict>> = Vec::with_capacity(messages.len());
        for message in messages {
            match message {
                DeviceMessage::Readings(readings) => {
                    items.push(IngestItem {
                        device_id: device_id.clone(),
                        received,
                        payload: IngestPayload::Readings(readings),
                    });
                    verdicts.push(None);
                }
                DeviceMessage::Waveform(chunk) => match encode_waveform(&chunk) {
                    Ok(encoded) => {
                        items.push(IngestItem {
                            device_id: device_id.clone(),
                            received,
                            payload: IngestPayload::Waveform(encoded),
                        });
                        verdicts.push(None);
                    }
                    Err(error) => {
                        verdicts.push(Some(MessageVerdict::Rejected(Rejection::Payload(error))))
                    }
                },
            }
        }
        let expected = items.len();
        let outcomes = self.store.ingest(items).await?;
        if outcomes.len() != expected {
            return Err(StoreError::Corrupt(format!(
                "{} outcomes for {expected} messages",
                outcomes.len()
            )));
        }
        let mut outcomes = outcomes.into_iter();
        let mut stored_readings = 0u64;
        let mut duplicate_readings = 0u64;
        let verdicts: Vec<MessageVerdict> = verdicts
            .into_iter()
            .map(|verdict| {
                if let Some(verdict) = verdict {
                    return verdict;
                }
                match outcomes.next() {
                    Some(IngestOutcome::Stored {
                        stored, duplicates, ..
                    }) => {
                        let new = stored.len();
                        stored_readings += new as u64;
                        duplicate_readings += duplicates as u64;
                        MessageVerdict::Stored { new, duplicates }
                    }
                    Some(IngestOutcome::WaveformStored { duplicate, .. }) => {
                        MessageVerdict::Stored {
                            new: usize::from(!duplicate),
                            duplicates: usize::from(duplicate),
                        }
                    }
                    Some(IngestOutcome::NotAssigned { device_id, at }) => {
                        MessageVerdict::Rejected(Rejection::NotAssigned { device_id, at })
                    }
                    Some(IngestOutcome::Revoked { device_id }) => {
                        MessageVerdict::Rejected(Rejection::Revoked(device_id))
                    }
                    Some(IngestOutcome::UnknownDevice { device_id }) => {
                        MessageVerdict::Rejected(Rejection::UnknownDevice(device_id))
                    }
                    Some(IngestOutcome::NotForDevice(error)) => {
                        MessageVerdict::Rejected(Rejection::Payload(error))
                    }
                    Some(IngestOutcome::SeqConflict { device_id, seq }) => {
                        MessageVerdict::Rejected(Rejection::SeqConflict { device_id, seq })
                    }
                    // Counted above: the store answers every item.
                    None => MessageVerdict::Rejected(Rejection::UnknownDevice(device_id.clone())),
                }
            })
            .collect();
        metrics::counter!("wardline_ingest_readings_stored_total", "transport" => transport)
            .increment(stored_readings);
        metrics::counter!("wardline_ingest_readings_duplicate_total", "transport" => transport)
            .increment(duplicate_readings);
        for verdict in &verdicts {
            if let MessageVerdict::Rejected(rejection) = verdict {
                count_rejection(transport, rejection);
            }
        }
        Ok(verdicts)
    }
}

impl IngestService {
    /// Stores readings a server-side source made (a Nightscout upload's entries, an
    /// imported export) as one message of `device_id`: its one verdict.
    pub async fn store_readings(
        &self,
        device_id: &DeviceId,
        transport: &'static str,
        readings: Vec<wardline_domain::Reading>,
    ) -> Result<MessageVerdict, StoreError> {
        self.store(
            device_id,
            transport,
            vec![DeviceMessage::Readings(readings)],
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("no verdict for a stored message".into()))
    }
}

pub fn count_rejection(transport: &'static str, rejection: &Rejection) {
    metrics::counter!("wardline_ingest_messages_rejected_total", "transport" => transport, "reason" => rejection.kind())
        .increment(1);
}

fn encode_waveform(chunk: &WaveformChunk) -> Result<EncodedWaveform, PayloadError> {
    let header = wardline_waveform::ChunkHeader {
        sampling_rate_hz: chunk.sampling_rate_hz,
        start_ms: chunk.start.timestamp_millis(),
        gain: chunk.gain,
        baseline: chunk.baseline,
    };
    let encoded =
        wardline_waveform::encode(&header, &chunk.samples).map_err(|error| PayloadError {
            kind: wardline_domain::PayloadErrorKind::ImpossibleValue,
            field: "waveform".into(),
            reason: error.to_string(),
        })?;
    Ok(EncodedWaveform {
        seq: chunk.seq,
        signal: chunk.signal,
        sampling_rate_hz: chunk.sampling_rate_hz,
        start: chunk.start,
        end: chunk.end(),
        sample_count: u32::try_from(chunk.samples.len()).unwrap_or(u32::MAX),
        encoded,
    })
}
