//! Validate, store, then report: the path every device message takes, whatever transport
//! brought it. A message is acknowledged only from the verdict this returns, and the
//! verdict exists only after the commit holding the message is durable.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use wardline_domain::{
    DeviceId, DeviceMessage, PayloadError, PayloadLimits, WaveformChunk, parse_device_message,
};
use wardline_store::{
    EncodedWaveform, IngestItem, IngestOutcome, IngestPayload, Store, StoreError,
};

use crate::derived::{AnalysisHandle, NEWS2_INPUTS};
use crate::live::LiveFeed;

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
}

impl Rejection {
    /// Stable name for metrics and error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Payload(error) => error.kind.as_str(),
            Rejection::NotAssigned { .. } => "not_assigned",
            Rejection::Revoked(_) => "revoked",
            Rejection::UnknownDevice(_) => "unknown_device",
        }
    }
}

/// Ingest for all transports.
#[derive(Debug, Clone)]
pub struct IngestService {
    store: Arc<dyn Store>,
    limits: PayloadLimits,
    live: LiveFeed,
    /// Where committed ECG chunks and vital signs go for analysis; none in tools and
    /// tests that only store.
    analysis: Option<AnalysisHandle>,
}

impl IngestService {
    pub fn new(store: Arc<dyn Store>, limits: PayloadLimits, live: LiveFeed) -> Self {
        Self {
            store,
            limits,
            live,
            analysis: None,
        }
    }

    /// Hands committed ECG chunks and vital signs to the analysis task from now on.
    pub fn with_analysis(mut self, analysis: AnalysisHandle) -> Self {
        self.analysis = Some(analysis);
        self
    }

    pub fn limits(&self) -> &PayloadLimits {
        &self.limits
    }

    pub fn live(&self) -> &LiveFeed {
        &self.live
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
        // The samples of each ECG chunk stored, kept for the analysis after the commit
        // (the store keeps them only encoded); one entry per item, in order.
        let mut ecg_samples: Vec<Option<WaveformChunk>> = Vec::with_capacity(messages.len());
        for message in messages {
            match message {
                DeviceMessage::Readings(readings) => {
                    items.push(IngestItem {
                        device_id: device_id.clone(),
                        received,
                        payload: IngestPayload::Readings(readings),
                    });
                    verdicts.push(None);
                    ecg_samples.push(None);
                }
                DeviceMessage::Waveform(chunk) => match encode_waveform(&chunk) {
                    Ok(encoded) => {
                        items.push(IngestItem {
                            device_id: device_id.clone(),
                            received,
                            payload: IngestPayload::Waveform(encoded),
                        });
                        verdicts.push(None);
                        let analysed = self.analysis.is_some() && chunk.signal.is_ecg();
                        ecg_samples.push(analysed.then_some(chunk));
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
        let mut ecg_samples = ecg_samples.into_iter();
        let mut stored_readings = 0u64;
        let mut duplicate_readings = 0u64;
        let verdicts: Vec<MessageVerdict> = verdicts
            .into_iter()
            .map(|verdict| {
                if let Some(verdict) = verdict {
                    return verdict;
                }
                let samples = ecg_samples.next().flatten();
                match outcomes.next() {
                    Some(IngestOutcome::Stored {
                        patient_id,
                        stored,
                        duplicates,
                    }) => {
                        let new = stored.len();
                        stored_readings += new as u64;
                        duplicate_readings += duplicates as u64;
                        self.analyse_vitals(patient_id, &stored);
                        for observation in stored {
                            self.live.publish(observation);
                        }
                        MessageVerdict::Stored { new, duplicates }
                    }
                    Some(IngestOutcome::WaveformStored {
                        patient_id,
                        duplicate,
                    }) => {
                        self.live.publish_contact(crate::live::DeviceContact {
                            patient_id,
                            device_id: device_id.clone(),
                            at: received,
                        });
                        // A retried chunk was analysed when first stored.
                        if let (Some(analysis), Some(chunk), false) =
                            (&self.analysis, samples, duplicate)
                        {
                            analysis.ecg_chunk(patient_id, device_id.clone(), chunk);
                        }
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
    /// Asks for NEWS2 to be recomputed when a message brought a vital sign it scores.
    fn analyse_vitals(
        &self,
        patient_id: wardline_domain::PatientId,
        stored: &[wardline_domain::Observation],
    ) {
        let Some(analysis) = &self.analysis else {
            return;
        };
        let newest = stored
            .iter()
            .filter(|observation| NEWS2_INPUTS.contains(&observation.code))
            .map(|observation| observation.effective)
            .max();
        if let Some(at) = newest {
            analysis.vitals(patient_id, at);
        }
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
