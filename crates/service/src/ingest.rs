//! Validate, store, then report: the path every device message takes, whatever transport
//! brought it. A message is acknowledged only from the verdict this returns, and the
//! verdict exists only after the commit holding the message is durable. What is stored
//! reaches rule evaluation, analysis and the live screens through the event log, never
//! through this path, so an acknowledgement waits for none of them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use wardline_domain::{
    DeviceId, DeviceMessage, PayloadError, PayloadErrorKind, PayloadLimits, WaveformChunk,
    parse_device_message,
};
use wardline_mapping::{ApplyContext, Mapping};
use wardline_store::{
    Device, EncodedWaveform, IngestItem, IngestOutcome, IngestPayload, IngestStore,
    MappingTemplate, StoreError,
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

/// A mapping template version in force for a device model.
#[derive(Debug)]
pub struct TemplateInForce {
    pub id: String,
    pub version: u32,
    pub mapping: Mapping,
}

/// Ingest for all transports.
#[derive(Clone)]
pub struct IngestService {
    store: Arc<dyn IngestStore>,
    limits: PayloadLimits,
    /// By device model: the template that reads its messages instead of format v1.
    templates: Arc<RwLock<HashMap<String, Arc<TemplateInForce>>>>,
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
        Self {
            store,
            limits,
            templates: Arc::default(),
        }
    }

    /// Makes these the templates in force, replacing any before. A stored version that
    /// no longer compiles is left out and logged: its model's messages are then refused
    /// as not format v1, never read with a template that is not what was checked.
    pub fn set_templates_in_force(&self, templates: &[MappingTemplate]) {
        let mut compiled = HashMap::new();
        for template in templates {
            match Mapping::from_documents(
                template.device_template.as_bytes(),
                template.fhir_template.as_bytes(),
            ) {
                Ok(mapping) => {
                    compiled.insert(
                        template.model.clone(),
                        Arc::new(TemplateInForce {
                            id: template.id.clone(),
                            version: template.version,
                            mapping,
                        }),
                    );
                }
                Err(error) => tracing::error!(
                    template = %template.id,
                    %error,
                    "a mapping template in force does not compile; its model's messages will be refused"
                ),
            }
        }
        if let Ok(mut in_force) = self.templates.write() {
            *in_force = compiled;
        }
    }

    /// Whether these, and only these, are the versions held in force.
    pub fn holds_templates(&self, in_force: &[MappingTemplate]) -> bool {
        self.templates.read().is_ok_and(|held| {
            held.len() == in_force.len()
                && in_force.iter().all(|template| {
                    held.get(&template.model)
                        .is_some_and(|current| current.id == template.id)
                })
        })
    }

    /// Whether any model has a template in force.
    pub fn has_templates(&self) -> bool {
        self.templates
            .read()
            .is_ok_and(|templates| !templates.is_empty())
    }

    /// The template in force for a device model, if any.
    pub fn template_for(&self, model: &str) -> Option<Arc<TemplateInForce>> {
        self.templates
            .read()
            .ok()
            .and_then(|templates| templates.get(model).cloned())
    }

    /// Validates one payload of `device`: with its model's template when one is in
    /// force, else as format v1.
    pub fn parse_from(
        &self,
        device: &Device,
        payload: &[u8],
    ) -> Result<DeviceMessage, PayloadError> {
        match self.template_for(&device.model) {
            Some(template) => {
                let ids = [device.id.as_str(), device.serial.as_str()];
                let mapped = self.map(
                    &template.mapping,
                    device.id.as_str(),
                    &ids,
                    payload,
                    Utc::now(),
                )?;
                Ok(DeviceMessage::Readings(
                    mapped
                        .readings
                        .into_iter()
                        .map(|mapped| mapped.reading)
                        .collect(),
                ))
            }
            None => self.parse(payload),
        }
    }

    /// What `mapping` makes of a payload received at `now` from the device `sender`,
    /// which a measurement may name by any of `sender_names` (none: not checked): the
    /// readings, and what gives none. A message that gives no reading at all is refused,
    /// saying why.
    pub fn map(
        &self,
        mapping: &Mapping,
        sender: &str,
        sender_names: &[&str],
        payload: &[u8],
        now: DateTime<Utc>,
    ) -> Result<wardline_mapping::Mapped, PayloadError> {
        let refuse = |kind, reason: String| PayloadError {
            kind,
            field: "$".into(),
            reason,
        };
        if payload.len() > self.limits.max_bytes {
            return Err(refuse(
                PayloadErrorKind::TooLarge,
                format!("the limit is {} bytes", self.limits.max_bytes),
            ));
        }
        let body: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|error| refuse(PayloadErrorKind::Malformed, format!("not JSON: {error}")))?;
        let message = wardline_mapping::envelope(body, sender, now);
        let mapped = mapping.apply(
            &message,
            sender_names,
            &ApplyContext {
                now,
                max_future_skew: self.limits.max_future_skew,
                max_readings: self.limits.max_readings,
                // The event around the payload adds a few hundred bytes.
                message_bytes: payload.len() + 512,
            },
        )?;
        if !mapped.not_kept.is_empty() {
            metrics::counter!("wardline_mapping_values_not_kept_total")
                .increment(mapped.not_kept.len() as u64);
        }
        if mapped.readings.is_empty() {
            let reason = if mapped.not_kept.is_empty() {
                "the message matches the template but gives no value of a reading (every value it maps is optional and absent)".to_owned()
            } else {
                format!(
                    "nothing in the message is a reading Wardline keeps: {}",
                    mapped
                        .not_kept
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            };
            return Err(refuse(PayloadErrorKind::UnknownCode, reason));
        }
        Ok(mapped)
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
        let verdicts: Vec<MessageVerdict> = verdicts
            .into_iter()
            .map(|verdict| {
                if let Some(verdict) = verdict {
                    return verdict;
                }
                match outcomes.next() {
                    Some(outcome) => verdict_of(outcome),
                    // Counted above: the store answers every item.
                    None => MessageVerdict::Rejected(Rejection::UnknownDevice(device_id.clone())),
                }
            })
            .collect();
        count_verdicts(transport, &verdicts, true);
        Ok(verdicts)
    }

    /// Stores each device's readings as one message of its own, all in one commit, and
    /// all or nothing: every message is stored (or was before), or none is, and the
    /// verdicts say why. Returns whether they were stored.
    pub async fn store_all_or_none(
        &self,
        transport: &'static str,
        messages: Vec<(DeviceId, IngestPayload)>,
    ) -> Result<(bool, Vec<MessageVerdict>), StoreError> {
        if messages.is_empty() {
            return Ok((true, Vec::new()));
        }
        let received = Utc::now();
        let expected = messages.len();
        let items = messages
            .into_iter()
            .map(|(device_id, payload)| IngestItem {
                device_id,
                received,
                payload,
            })
            .collect();
        let (stored, outcomes) = self.store.ingest_all_or_none(items).await?;
        let verdicts = verdicts_of(outcomes, expected)?;
        count_verdicts(transport, &verdicts, stored);
        Ok((stored, verdicts))
    }
}

/// The verdicts on `expected` messages from what the store made of them: it answers
/// every item, or nothing can be said of any.
fn verdicts_of(
    outcomes: Vec<IngestOutcome>,
    expected: usize,
) -> Result<Vec<MessageVerdict>, StoreError> {
    if outcomes.len() != expected {
        return Err(StoreError::Corrupt(format!(
            "{} outcomes for {expected} messages",
            outcomes.len()
        )));
    }
    Ok(outcomes.into_iter().map(verdict_of).collect())
}

/// The verdict on one message from what the store made of it.
fn verdict_of(outcome: IngestOutcome) -> MessageVerdict {
    match outcome {
        IngestOutcome::Stored {
            stored, duplicates, ..
        } => MessageVerdict::Stored {
            new: stored.len(),
            duplicates,
        },
        IngestOutcome::WaveformStored { duplicate, .. } => MessageVerdict::Stored {
            new: usize::from(!duplicate),
            duplicates: usize::from(duplicate),
        },
        IngestOutcome::NotAssigned { device_id, at } => {
            MessageVerdict::Rejected(Rejection::NotAssigned { device_id, at })
        }
        IngestOutcome::Revoked { device_id } => {
            MessageVerdict::Rejected(Rejection::Revoked(device_id))
        }
        IngestOutcome::UnknownDevice { device_id } => {
            MessageVerdict::Rejected(Rejection::UnknownDevice(device_id))
        }
        IngestOutcome::NotForDevice(error) => MessageVerdict::Rejected(Rejection::Payload(error)),
        IngestOutcome::SeqConflict { device_id, seq } => {
            MessageVerdict::Rejected(Rejection::SeqConflict { device_id, seq })
        }
    }
}

/// Counts what was stored (when it was) and every refusal.
fn count_verdicts(transport: &'static str, verdicts: &[MessageVerdict], stored: bool) {
    let (mut new_readings, mut duplicate_readings) = (0u64, 0u64);
    for verdict in verdicts {
        match verdict {
            MessageVerdict::Stored { new, duplicates } => {
                new_readings += *new as u64;
                duplicate_readings += *duplicates as u64;
            }
            MessageVerdict::Rejected(rejection) => count_rejection(transport, rejection),
        }
    }
    if stored {
        metrics::counter!("wardline_ingest_readings_stored_total", "transport" => transport)
            .increment(new_readings);
        metrics::counter!("wardline_ingest_readings_duplicate_total", "transport" => transport)
            .increment(duplicate_readings);
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

    /// Stores messages a server-side source made and encoded (a FHIR upload's readings
    /// and ECG leads) as messages of `device_id` in one commit: a verdict for each.
    pub async fn store_payloads(
        &self,
        device_id: &DeviceId,
        transport: &'static str,
        payloads: Vec<IngestPayload>,
    ) -> Result<Vec<MessageVerdict>, StoreError> {
        let received = Utc::now();
        let items: Vec<IngestItem> = payloads
            .into_iter()
            .map(|payload| IngestItem {
                device_id: device_id.clone(),
                received,
                payload,
            })
            .collect();
        let expected = items.len();
        let outcomes = self.store.ingest(items).await?;
        let verdicts = verdicts_of(outcomes, expected)?;
        count_verdicts(transport, &verdicts, true);
        Ok(verdicts)
    }
}

pub fn count_rejection(transport: &'static str, rejection: &Rejection) {
    metrics::counter!("wardline_ingest_messages_rejected_total", "transport" => transport, "reason" => rejection.kind())
        .increment(1);
}

fn encode_waveform(chunk: &WaveformChunk) -> Result<EncodedWaveform, PayloadError> {
    let header = wardline_waveform::ChunkHeader::with_gain(
        chunk.sampling_rate_hz,
        chunk.start.timestamp_millis(),
        chunk.gain,
        chunk.baseline,
    );
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
