//! Wardline's records as FHIR resources, the same for a search and for a bulk export:
//! the facts `wardline_fhir` maps are taken from the store's and the service's records
//! here, once.

use serde_json::Value;
use wardline_alerting::{AlarmState, Resolution};
use wardline_store::AlarmEventKind;

use crate::alarms::AlarmView;
use crate::fhir::DeviceView;

/// The CarePlan of one version of a patient's monitoring plan.
pub fn care_plan_resource(version: &wardline_store::CarePlanVersionRecord) -> Value {
    wardline_fhir::care_plan(&wardline_fhir::CarePlanFacts {
        patient: version.patient_id,
        version: version.version,
        effective: version.effective,
        program: version.plan.program.title().to_owned(),
        author: version.author_label.clone(),
        reason: version.reason.clone(),
        rules: version
            .plan
            .rules
            .iter()
            .map(|rule| wardline_fhir::PlanRuleFacts {
                id: rule.id.to_string(),
                name: rule.name.clone(),
                condition: rule.condition_words(),
                priority: rule.priority.as_str(),
            })
            .collect(),
    })
}

/// A device as a FHIR Device.
pub fn device_resource(view: &DeviceView) -> Value {
    wardline_fhir::device(&wardline_fhir::DeviceFacts {
        id: view.device.id.clone(),
        kind: view.device.kind.as_str(),
        model: view.device.model.clone(),
        serial: view.device.serial.clone(),
        active: view.device.status != wardline_store::DeviceStatus::Revoked,
        patient: view.patient,
    })
}

/// What people did about an alarm, in order, for its mitigations.
fn alarm_actions(alarm: &AlarmView) -> Vec<wardline_fhir::AlarmActionFacts> {
    let name = |id: Option<wardline_domain::UserId>| {
        id.map(|id| {
            alarm
                .names
                .get(&id.to_string())
                .cloned()
                .unwrap_or_else(|| "a former member of the care team".to_owned())
        })
    };
    alarm
        .events
        .iter()
        .flatten()
        .filter_map(|event| {
            let action = match event.event {
                AlarmEventKind::Acknowledged => "acknowledged".to_owned(),
                AlarmEventKind::Snoozed => "snoozed: notifications paused".to_owned(),
                AlarmEventKind::Resolved => match &alarm.state {
                    AlarmState::Resolved {
                        resolution: Resolution::Person { note, .. },
                        ..
                    } if !note.is_empty() => format!("resolved: {note}"),
                    AlarmState::Resolved {
                        resolution: Resolution::ConditionCleared,
                        ..
                    } => "resolved: the condition cleared".to_owned(),
                    _ => "resolved".to_owned(),
                },
                _ => return None,
            };
            Some(wardline_fhir::AlarmActionFacts {
                action,
                time: event.time,
                by: name(event.actor),
            })
        })
        .collect()
}

pub fn detected_issue_resource(alarm: &AlarmView) -> Value {
    wardline_fhir::detected_issue(&wardline_fhir::AlarmFacts {
        id: alarm.id.clone(),
        patient: alarm.patient_id,
        rule_id: alarm.rule_id.to_string(),
        message: alarm.message.clone(),
        priority: alarm.priority.as_str(),
        state: alarm.state.name(),
        raised_at: alarm.raised_at,
        actions: alarm_actions(alarm),
    })
}

impl crate::Wardline {
    /// What each heart rate Wardline derived among `observations` was counted in, by the
    /// reading's FHIR id, for `actor` reading `patient_id`'s record: the ECG chunks of its
    /// device that overlap the 10 s before it. Empty for a reader who may not see the ECG
    /// (a share without it): the readings are still theirs to read.
    pub async fn fhir_derivation_sources(
        &self,
        actor: &crate::actor::Actor,
        patient_id: wardline_domain::PatientId,
        observations: &[wardline_domain::Observation],
    ) -> Result<std::collections::HashMap<String, Vec<String>>, crate::error::Error> {
        let derived = derived_heart_rates(observations);
        let (Some(first), Some(last)) = (
            derived.iter().map(|reading| reading.effective).min(),
            derived.iter().map(|reading| reading.effective).max(),
        ) else {
            return Ok(std::collections::HashMap::new());
        };
        let window = chrono::Duration::milliseconds(wardline_domain::DERIVED_HEART_RATE_WINDOW_MS);
        let access = self
            .authorize_patient_window(
                actor,
                patient_id,
                "waveforms.read",
                None,
                (first - window, last),
                Some("the ECG derived heart rates were counted in".into()),
            )
            .await;
        let (access, span) = match access {
            Ok(access) => access,
            Err(crate::error::Error::Forbidden) => return Ok(std::collections::HashMap::new()),
            Err(other) => return Err(other),
        };
        self.heart_rate_sources(access.patient_id(), &derived, span, |signal| {
            access.allows(crate::clinical::signal_category(signal))
        })
        .await
    }

    /// The ECG chunks each derived heart rate among `derived` was counted in, within
    /// `span`, of the signals `shown` lets through; the access is decided by the caller.
    pub(crate) async fn heart_rate_sources(
        &self,
        patient_id: wardline_domain::PatientId,
        derived: &[&wardline_domain::Observation],
        (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
        shown: impl Fn(wardline_domain::Signal) -> bool,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, crate::error::Error> {
        let window = chrono::Duration::milliseconds(wardline_domain::DERIVED_HEART_RATE_WINDOW_MS);
        let mut sources = std::collections::HashMap::new();
        for reading in derived {
            let (start, end) = (
                (reading.effective - window).max(from),
                reading.effective.min(to),
            );
            if start >= end {
                continue;
            }
            let chunks = self
                .store
                .waveforms(wardline_store::WaveformQuery {
                    patient_id,
                    signal: None,
                    from: start,
                    to: end,
                    // The store's most: ten seconds of six leads in chunks of a
                    // twentieth of a second.
                    limit: 1000,
                })
                .await?;
            let ids: Vec<String> = chunks
                .iter()
                .filter(|chunk| {
                    chunk.device_id == reading.device_id
                        && wardline_fhir::lead_code(chunk.signal).is_some()
                        && shown(chunk.signal)
                })
                .map(|chunk| wardline_fhir::waveform_id(&chunk.device_id, chunk.seq))
                .collect();
            if !ids.is_empty() {
                sources.insert(wardline_fhir::observation_id(reading), ids);
            }
        }
        Ok(sources)
    }
}

/// The heart rates Wardline derived (from an ECG) among `observations`.
pub(crate) fn derived_heart_rates(
    observations: &[wardline_domain::Observation],
) -> Vec<&wardline_domain::Observation> {
    observations
        .iter()
        .filter(|reading| {
            reading.derived && reading.code == wardline_domain::ObservationCode::HeartRate
        })
        .collect()
}

/// A NEWS2 result as an Observation, naming the readings it scored (those recorded with
/// their device and number; results from before that name none).
pub fn news2_resource(record: &wardline_store::News2Record) -> Value {
    let sources = record
        .inputs
        .as_object()
        .map(|inputs| {
            inputs
                .values()
                .filter_map(|input| {
                    let device =
                        wardline_domain::DeviceId::parse(input.get("device")?.as_str()?).ok()?;
                    let seq = input.get("seq")?.as_i64()?;
                    let derived = input.get("derived")?.as_bool()?;
                    Some(wardline_fhir::reading_id(&device, derived, seq))
                })
                .collect()
        })
        .unwrap_or_default();
    wardline_fhir::news2_observation(&wardline_fhir::News2Facts {
        patient: record.patient_id,
        time: record.time,
        complete: record.complete,
        total: record.total,
        risk: &record.risk,
        sub_scores: &record.sub_scores,
        missing: &record.missing,
        sources,
    })
}

/// A stored ECG chunk of `patient`, decoded, as an Observation with its samples, factor
/// and origin as stored; `None` for a signal that is not an ECG lead.
pub fn ecg_resource(
    patient: wardline_domain::PatientId,
    chunk: &wardline_store::StoredWaveform,
    decoded: &wardline_waveform::DecodedChunk,
) -> Option<Value> {
    wardline_fhir::ecg_observation(&wardline_fhir::WaveformFacts {
        device: chunk.device_id.clone(),
        seq: chunk.seq,
        patient,
        signal: chunk.signal,
        sampling_rate_hz: chunk.sampling_rate_hz,
        start: chunk.start,
        end: chunk.end,
        factor: decoded.header.scale.factor(),
        baseline: decoded.header.baseline,
        origin: decoded.header.origin,
        samples: &decoded.samples,
    })
}
