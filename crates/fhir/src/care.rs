//! What the care team does around the readings, as FHIR R4 resources: care teams
//! (`CareTeam`), the monitoring plan whose rules raise alarms (`CarePlan`), the alarms
//! themselves (`DetectedIssue`), and the audit trail (`AuditEvent`).
//!
//! An alarm is a `DetectedIssue`, not a `Flag`. A Flag is a standing warning about a
//! person that a record system shows whenever the record opens ("falls risk"), with no
//! severity and no record of what was done about it. An alarm is a finding Wardline made
//! from readings at one moment, with a priority, that people then acknowledge, snooze
//! and resolve: DetectedIssue has `severity`, `identifiedDateTime`, `detail` and
//! `mitigation` for exactly these.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use wardline_domain::{CareTeamId, PatientId};

use crate::resources::instant;

/// The code system of Wardline's care plan rules (a rule's id within its plan).
pub const RULE_SYSTEM: &str = "https://wardline.health/fhir/CodeSystem/care-plan-rule";
/// The extension on a DetectedIssue that gives the alarm's state (open, acknowledged,
/// snoozed or resolved), which DetectedIssue's status cannot say.
pub const ALARM_STATE_EXTENSION: &str =
    "https://wardline.health/fhir/StructureDefinition/alarm-state";
/// The code system of Wardline's audited actions (`observations.read`, …).
pub const AUDIT_ACTION_SYSTEM: &str = "https://wardline.health/fhir/CodeSystem/audit-action";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// A care team and the patient it looks after, as the reader may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CareTeamFacts {
    pub team: CareTeamId,
    pub name: String,
    pub patient: PatientId,
    /// Each active member's name and role ("clinician", "nurse").
    pub members: Vec<(String, String)>,
}

/// A care team as an R4 CareTeam of one patient: its name, and its members by name and
/// role (people are not served as Practitioner resources, so by display).
pub fn care_team(facts: &CareTeamFacts) -> Value {
    let participants: Vec<Value> = facts
        .members
        .iter()
        .map(|(name, role)| json!({"role": [{"text": role}], "member": {"display": name}}))
        .collect();
    let mut team = Map::new();
    team.insert("resourceType".into(), json!("CareTeam"));
    team.insert("id".into(), json!(care_team_id(facts.team, facts.patient)));
    team.insert(
        "identifier".into(),
        json!([{"system": "urn:wardline:care-team", "value": facts.team.to_string()}]),
    );
    team.insert("status".into(), json!("active"));
    team.insert("name".into(), json!(facts.name));
    team.insert(
        "subject".into(),
        json!({"reference": format!("Patient/{}", facts.patient)}),
    );
    if !participants.is_empty() {
        team.insert("participant".into(), Value::Array(participants));
    }
    Value::Object(team)
}

/// The id of a care team's CareTeam of one patient: both ids (each 128 bits, written in
/// 25 base-36 digits to fit FHIR's 64 characters), since a team looks after many patients
/// and each CareTeam is of one. The team's own id is its `identifier` (and its `Group`).
pub fn care_team_id(team: CareTeamId, patient: PatientId) -> String {
    format!(
        "{}.{}",
        base36(team.0.as_u128()),
        base36(patient.0.as_u128())
    )
}

/// The team and patient a [`care_team_id`] names; `None` for an id of another shape.
pub fn care_team_of_id(id: &str) -> Option<(CareTeamId, PatientId)> {
    let (team, patient) = id.split_once('.')?;
    let team = CareTeamId(uuid::Uuid::from_u128(from_base36(team)?));
    let patient = PatientId(uuid::Uuid::from_u128(from_base36(patient)?));
    (care_team_id(team, patient) == id).then_some((team, patient))
}

const BASE36_DIGITS: usize = 25;

fn base36(mut value: u128) -> String {
    let mut digits = [b'0'; BASE36_DIGITS];
    for digit in digits.iter_mut().rev() {
        let remainder = (value % 36) as u8;
        *digit = if remainder < 10 {
            b'0' + remainder
        } else {
            b'a' + remainder - 10
        };
        value /= 36;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

fn from_base36(text: &str) -> Option<u128> {
    if text.len() != BASE36_DIGITS {
        return None;
    }
    text.chars().try_fold(0u128, |value, digit| {
        value
            .checked_mul(36)?
            .checked_add(u128::from(digit.to_digit(36)?))
    })
}

/// One rule of a monitoring plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRuleFacts {
    pub id: String,
    /// What the care team calls it ("urgent low").
    pub name: String,
    /// What it watches for, in words.
    pub condition: String,
    /// `high`, `medium` or `low`.
    pub priority: &'static str,
}

/// The version of a patient's monitoring plan in force.
#[derive(Debug, Clone, PartialEq)]
pub struct CarePlanFacts {
    pub patient: PatientId,
    pub version: u32,
    /// When this version took effect.
    pub effective: DateTime<Utc>,
    /// The programme ("Diabetes").
    pub program: String,
    /// Who made this version, and why.
    pub author: String,
    pub reason: String,
    pub rules: Vec<PlanRuleFacts>,
}

/// The plan in force as an R4 CarePlan: one per patient (its id is the patient's),
/// versioned in `meta.versionId`; each rule an activity in progress, whose alarms are
/// the DetectedIssues.
pub fn care_plan(facts: &CarePlanFacts) -> Value {
    let activities: Vec<Value> = facts
        .rules
        .iter()
        .map(|rule| {
            json!({"detail": {
                "code": {"coding": [{"system": RULE_SYSTEM, "code": rule.id, "display": rule.name}],
                         "text": rule.name},
                "status": "in-progress",
                "description": format!("{} ({} priority alarm)", rule.condition, rule.priority),
            }})
        })
        .collect();
    let mut plan = Map::new();
    plan.insert("resourceType".into(), json!("CarePlan"));
    plan.insert("id".into(), json!(facts.patient.to_string()));
    plan.insert(
        "meta".into(),
        json!({"versionId": facts.version.to_string(), "lastUpdated": instant(facts.effective)}),
    );
    plan.insert("status".into(), json!("active"));
    plan.insert("intent".into(), json!("plan"));
    plan.insert(
        "category".into(),
        json!([{"text": "Remote patient monitoring"}]),
    );
    plan.insert(
        "title".into(),
        json!(format!("{} monitoring plan", facts.program)),
    );
    plan.insert(
        "subject".into(),
        json!({"reference": format!("Patient/{}", facts.patient)}),
    );
    plan.insert("period".into(), json!({"start": instant(facts.effective)}));
    plan.insert("author".into(), json!({"display": facts.author}));
    if !facts.reason.is_empty() {
        plan.insert(
            "note".into(),
            json!([{"text": format!("Version {}: {}", facts.version, facts.reason), "time": instant(facts.effective)}]),
        );
    }
    if !activities.is_empty() {
        plan.insert("activity".into(), Value::Array(activities));
    }
    Value::Object(plan)
}

/// What someone did about an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmActionFacts {
    /// `acknowledged`, `snoozed` or `resolved`.
    pub action: String,
    pub time: DateTime<Utc>,
    /// Who, by name; `None` when Wardline did it (a condition that cleared).
    pub by: Option<String>,
}

/// An alarm, for its DetectedIssue.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmFacts {
    /// The alarm's handle.
    pub id: String,
    pub patient: PatientId,
    /// The rule that raised it (its id in the patient's plan).
    pub rule_id: String,
    pub message: String,
    /// `high`, `medium` or `low`.
    pub priority: &'static str,
    /// `open`, `acknowledged`, `snoozed` or `resolved`.
    pub state: &'static str,
    pub raised_at: DateTime<Utc>,
    pub actions: Vec<AlarmActionFacts>,
}

/// An alarm as an R4 DetectedIssue: `preliminary` while the care team has not closed it
/// and `final` once resolved (its state in words in the `alarm-state` extension), the
/// rule as its code (the CarePlan's activity of the same code), the priority as its
/// severity, the message as its detail and its code's text, and each
/// acknowledgement, snooze and resolution as a mitigation.
pub fn detected_issue(facts: &AlarmFacts) -> Value {
    let severity = match facts.priority {
        "high" => "high",
        "medium" => "moderate",
        _ => "low",
    };
    let mitigations: Vec<Value> = facts
        .actions
        .iter()
        .map(|action| {
            let mut mitigation = Map::new();
            mitigation.insert("action".into(), json!({"text": action.action}));
            mitigation.insert("date".into(), json!(instant(action.time)));
            if let Some(by) = &action.by {
                mitigation.insert("author".into(), json!({"display": by}));
            }
            Value::Object(mitigation)
        })
        .collect();
    let mut issue = Map::new();
    issue.insert("resourceType".into(), json!("DetectedIssue"));
    issue.insert("id".into(), json!(facts.id));
    issue.insert(
        "extension".into(),
        json!([{"url": ALARM_STATE_EXTENSION, "valueCode": facts.state}]),
    );
    issue.insert(
        "status".into(),
        json!(if facts.state == "resolved" {
            "final"
        } else {
            "preliminary"
        }),
    );
    issue.insert(
        "code".into(),
        json!({"coding": [{"system": RULE_SYSTEM, "code": facts.rule_id}], "text": facts.message}),
    );
    issue.insert("severity".into(), json!(severity));
    issue.insert(
        "patient".into(),
        json!({"reference": format!("Patient/{}", facts.patient)}),
    );
    issue.insert("identifiedDateTime".into(), json!(instant(facts.raised_at)));
    issue.insert("detail".into(), json!(facts.message));
    if !mitigations.is_empty() {
        issue.insert("mitigation".into(), Value::Array(mitigations));
    }
    Value::Object(issue)
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditFacts {
    pub sequence: i64,
    pub time: DateTime<Utc>,
    /// The account's id, when a person acted.
    pub actor_id: Option<String>,
    pub actor_label: String,
    /// Wardline's action (`observations.read`).
    pub action: String,
    pub patient: Option<PatientId>,
    /// `allowed`, `denied` or `failed`.
    pub outcome: &'static str,
    pub remote_addr: Option<String>,
    pub detail: Option<String>,
}

/// An audit trail entry as an R4 AuditEvent: DICOM's "Patient Record" type when it
/// concerns a patient ("Application Activity" otherwise), Wardline's action as the
/// subtype, read/create/execute from the action, the outcome (0 success, 4 a refusal,
/// 8 a failure), the person as the requesting agent with their network address, and the
/// patient as the entity.
pub fn audit_event(facts: &AuditFacts, observer: &str) -> Value {
    let event_type = if facts.patient.is_some() {
        json!({"system": DICOM, "code": "110110", "display": "Patient Record"})
    } else {
        json!({"system": DICOM, "code": "110100", "display": "Application Activity"})
    };
    let verb = facts.action.rsplit('.').next().unwrap_or_default();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|prefix| verb.starts_with(prefix));
    let action = if starts(&[
        "read",
        "list",
        "stream",
        "count",
        "summary",
        "export",
        "versions",
        "inbox",
        "dead_letters",
    ]) {
        "R"
    } else if starts(&[
        "create", "enrol", "schedule", "register", "add_", "issue_", "propose",
    ]) {
        "C"
    } else if starts(&["delete", "remove", "revoke", "retire", "cancel"]) {
        "D"
    } else if starts(&[
        "set",
        "change",
        "edit",
        "update",
        "assign",
        "reschedule",
        "reset_",
        "disable",
    ]) {
        "U"
    } else {
        "E"
    };
    let outcome = match facts.outcome {
        "allowed" => "0",
        "denied" => "4",
        _ => "8",
    };
    let mut who = Map::new();
    if let Some(id) = &facts.actor_id {
        who.insert(
            "identifier".into(),
            json!({"system": "urn:wardline:user", "value": id}),
        );
    }
    who.insert("display".into(), json!(facts.actor_label));
    let mut agent = Map::new();
    agent.insert("who".into(), Value::Object(who));
    agent.insert("requestor".into(), json!(true));
    if let Some(address) = &facts.remote_addr {
        agent.insert("network".into(), json!({"address": address, "type": "2"}));
    }
    let mut event = Map::new();
    event.insert("resourceType".into(), json!("AuditEvent"));
    event.insert("id".into(), json!(facts.sequence.to_string()));
    event.insert("type".into(), event_type);
    event.insert(
        "subtype".into(),
        json!([{"system": AUDIT_ACTION_SYSTEM, "code": facts.action}]),
    );
    event.insert("action".into(), json!(action));
    event.insert("recorded".into(), json!(instant(facts.time)));
    event.insert("outcome".into(), json!(outcome));
    if let Some(detail) = &facts.detail {
        event.insert("outcomeDesc".into(), json!(detail));
    }
    event.insert("agent".into(), json!([Value::Object(agent)]));
    event.insert("source".into(), json!({"observer": {"display": observer}}));
    if let Some(patient) = facts.patient {
        event.insert(
            "entity".into(),
            json!([{"what": {"reference": format!("Patient/{patient}")},
                    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"}}]),
        );
    }
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_care_team_id_names_its_team_and_patient_and_fits_fhir() {
        for (team, patient) in [
            (CareTeamId(uuid::Uuid::nil()), PatientId(uuid::Uuid::max())),
            (CareTeamId::random(), PatientId::random()),
        ] {
            let id = care_team_id(team, patient);
            assert_eq!(id.len(), 51);
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
            assert_eq!(care_team_of_id(&id), Some((team, patient)));
            assert_eq!(care_team_of_id(&id.to_uppercase()), None);
        }
        assert_eq!(
            care_team_of_id("zzzzzzzzzzzzzzzzzzzzzzzzz.0000000000000000000000000"),
            None
        );
        assert_eq!(care_team_of_id("not-an-id"), None);
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_alarm_is_preliminary_until_resolved_with_what_was_done_as_mitigations() {
        let patient = PatientId::random();
        let mut facts = AlarmFacts {
            id: "00ff".into(),
            patient,
            rule_id: "urgent-low".into(),
            message: "Urgent low: glucose 48 mg/dL".into(),
            priority: "high",
            state: "acknowledged",
            raised_at: at("2026-12-01T08:00:00Z"),
            actions: vec![AlarmActionFacts {
                action: "acknowledged".into(),
                time: at("2026-12-01T08:01:30Z"),
                by: Some("Dr Grey".into()),
            }],
        };
        let issue = detected_issue(&facts);
        assert_eq!(issue["status"], "preliminary");
        assert_eq!(issue["severity"], "high");
        assert_eq!(issue["extension"][0]["valueCode"], "acknowledged");
        assert_eq!(issue["code"]["coding"][0]["code"], "urgent-low");
        assert_eq!(issue["patient"]["reference"], format!("Patient/{patient}"));
        assert_eq!(issue["mitigation"][0]["author"]["display"], "Dr Grey");
        assert_eq!(issue["identifiedDateTime"], "2026-12-01T08:00:00Z");
        facts.state = "resolved";
        facts.priority = "medium";
        facts.actions.push(AlarmActionFacts {
            action: "resolved: the condition cleared".into(),
            time: at("2026-12-01T08:20:00Z"),
            by: None,
        });
        let issue = detected_issue(&facts);
        assert_eq!(issue["status"], "final");
        assert_eq!(issue["severity"], "moderate");
        assert!(issue["mitigation"][1].get("author").is_none());
    }

    #[test]
    fn an_audit_entry_says_who_did_what_to_whose_record_and_how_it_ended() {
        let patient = PatientId::random();
        let facts = AuditFacts {
            sequence: 41,
            time: at("2026-12-01T08:00:00Z"),
            actor_id: Some("u-1".into()),
            actor_label: "Dr Grey".into(),
            action: "observations.read".into(),
            patient: Some(patient),
            outcome: "denied",
            remote_addr: Some("192.0.2.7".into()),
            detail: None,
        };
        let event = audit_event(&facts, "Wardline");
        assert_eq!(event["id"], "41");
        assert_eq!(event["type"]["code"], "110110");
        assert_eq!(event["action"], "R");
        assert_eq!(event["outcome"], "4");
        assert_eq!(event["agent"][0]["network"]["address"], "192.0.2.7");
        assert_eq!(
            event["entity"][0]["what"]["reference"],
            format!("Patient/{patient}")
        );
        let system = audit_event(
            &AuditFacts {
                patient: None,
                action: "users.create".into(),
                outcome: "allowed",
                remote_addr: None,
                ..facts
            },
            "Wardline",
        );
        assert_eq!(system["type"]["code"], "110100");
        assert_eq!(system["action"], "C");
        assert_eq!(system["outcome"], "0");
        assert!(system.get("entity").is_none());
    }

    #[test]
    fn a_plan_is_one_resource_per_patient_versioned_with_each_rule_an_activity() {
        let patient = PatientId::random();
        let plan = care_plan(&CarePlanFacts {
            patient,
            version: 3,
            effective: at("2026-12-01T08:00:00Z"),
            program: "Diabetes".into(),
            author: "Dr Grey".into(),
            reason: "Hypos at night".into(),
            rules: vec![PlanRuleFacts {
                id: "low".into(),
                name: "Low".into(),
                condition: "glucose below 70 mg/dL for 15 min".into(),
                priority: "medium",
            }],
        });
        assert_eq!(plan["id"], patient.to_string());
        assert_eq!(plan["meta"]["versionId"], "3");
        assert_eq!(plan["title"], "Diabetes monitoring plan");
        assert_eq!(
            plan["activity"][0]["detail"]["code"]["coding"][0]["code"],
            "low"
        );
        assert_eq!(
            plan["activity"][0]["detail"]["description"],
            "glucose below 70 mg/dL for 15 min (medium priority alarm)"
        );
    }
}
