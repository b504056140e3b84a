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
