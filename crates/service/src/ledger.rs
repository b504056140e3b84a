//! The remote-monitoring ledger: from Wardline's own records, which US remote patient
//! monitoring codes a patient's monitoring supports, per 30-day device period and per
//! calendar month, and what is still short. The rules are `wardline_ledger`'s (pure,
//! table-tested); this module gathers the records they count:
//!
//! - **device days** from the quarter hours in which the patient's devices sent
//!   readings. Readings a person typed or uploaded count as entered by hand and never
//!   count: CGM files a clinic imports (`import-…` devices) and meter glucose from a
//!   Nightscout uploader app (a finger-stick the person enters in the app);
//! - **management time** from the monitoring time records: stays of care team members
//!   in a visit's room, the page timer, and corrections;
//! - **interactive contacts**: visits in which the patient and a care team member were
//!   in the room at the same time (a synchronous video or audio contact);
//! - **the episode** starts when the patient's first device was assigned to them.
//!
//! What it claims is what the records support; billing decisions stay with people.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use wardline_domain::{DeviceKind, ObservationCode, PatientId};
use wardline_ledger::{Ledger, LedgerInput, ManagementTime, ReadingOrigin};
use wardline_store::{PresenceSpan, ReadingQuarter, VisitQuery};

use crate::Wardline;
use crate::access::PatientAccess;
use crate::actor::Actor;
use crate::error::Error;

/// How far back the ledger reads: the open period and month and those before them.
const LOOKBACK: Duration = Duration::days(120);

/// One patient's ledger.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct PatientLedger {
    pub patient_id: PatientId,
    pub patient_name: String,
    /// When the first device was assigned; none for a patient without devices, who has
    /// no ledger.
    pub episode_start: Option<DateTime<Utc>>,
    /// The practice's time zone its days and months are counted in.
    pub time_zone: String,
    pub ledger: Option<Ledger>,
    /// The names of the people the ledger names by id (billing practitioners).
    pub practitioner_names: std::collections::BTreeMap<String, String>,
}

/// The instants at which the patient and a care team member were first in the room
/// together, one per visit.
pub fn interactive_contact(
    spans: &[PresenceSpan],
    is_patient: impl Fn(&PresenceSpan) -> bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let (patient, team): (Vec<&PresenceSpan>, Vec<&PresenceSpan>) =
        spans.iter().partition(|span| is_patient(span));
    patient
        .iter()
        .flat_map(|p| team.iter().map(move |t| (p, t)))
        .filter_map(|(p, t)| {
            let start = p.joined.max(t.joined);
            let end = p.left.unwrap_or(now).min(t.left.unwrap_or(now));
            (start < end).then_some(start)
        })
        .min()
}

impl Wardline {
    /// The ledger of one patient (the patient's care team).
    pub async fn patient_ledger(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<PatientLedger, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "ledger.read", None)
            .await?;
        if access.through_share()
            || matches!(
                actor.user().map(|user| user.role),
                Some(wardline_domain::Role::Patient)
            )
        {
            // The ledger is the practice's record of its work, not the patient's data.
            return Err(Error::Forbidden);
        }
        self.ledger_of(&access).await
    }

    /// The ledgers of every patient of the caller's care teams.
    pub async fn care_team_ledgers(&self, actor: &Actor) -> Result<Vec<PatientLedger>, Error> {
        if matches!(
            actor.user().map(|user| user.role),
            Some(wardline_domain::Role::Patient | wardline_domain::Role::Specialist) | None
        ) {
            return Err(Error::Forbidden);
        }
        let accesses = self.authorize_own_patients(actor, "ledger.read").await?;
        let mut ledgers = Vec::with_capacity(accesses.len());
        for access in &accesses {
            ledgers.push(self.ledger_of(access).await?);
        }
        ledgers.sort_by(|a, b| a.patient_name.cmp(&b.patient_name));
        Ok(ledgers)
    }

    async fn ledger_of(&self, access: &PatientAccess) -> Result<PatientLedger, Error> {
        let patient_id = access.patient_id();
        let now = self.now();
        let zone = self.settings.practice_time_zone;
        let patient = self
            .store
            .patient(patient_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("patient {patient_id}")))?;
        let devices = self.store.devices_of_patient(patient_id).await?;
        let mut episode_start: Option<DateTime<Utc>> = None;
        let mut kinds = std::collections::HashMap::new();
        for device in &devices {
            kinds.insert(device.id.clone(), device.kind);
            if device.id.as_str().starts_with("import-") {
                continue;
            }
            for assignment in self.store.device_assignments(&device.id).await? {
                if assignment.patient_id == patient_id {
                    episode_start = Some(
                        episode_start.map_or(assignment.start, |start: DateTime<Utc>| {
                            start.min(assignment.start)
                        }),
                    );
                }
            }
        }
        let Some(episode_start) = episode_start else {
            return Ok(PatientLedger {
                patient_id,
                patient_name: patient.display_name,
                episode_start: None,
                time_zone: zone.name().to_owned(),
                ledger: None,
                practitioner_names: std::collections::BTreeMap::new(),
            });
        };
        let from = episode_start.max(now - LOOKBACK) - Duration::days(31);
        let quarters = self
            .store
            .reading_quarters(patient_id, from, now + Duration::minutes(1))
            .await?;
        let readings: Vec<(DateTime<Utc>, ReadingOrigin)> = quarters
            .iter()
            .map(|quarter| {
                (
                    quarter.start,
                    origin(quarter, kinds.get(&quarter.device_id).copied()),
                )
            })
            .collect();
        let recorded = self
            .store
            .monitoring_time(patient_id, from, now + Duration::minutes(1))
            .await?;
        let practitioner_names = recorded
            .iter()
            .map(|time| (time.user_id.to_string(), time.user_name.clone()))
            .collect();
        let management = without_overlaps(recorded);
        let visits = self
            .store
            .visits(VisitQuery {
                patient: Some(patient_id),
                ending_after: Some(from),
                // A room opens before the visit's start.
                starting_before: Some(now + crate::visits::ROOM_OPENS_BEFORE),
                limit: 1000,
                ..VisitQuery::default()
            })
            .await?;
        let mut contacts = Vec::new();
        for visit in visits {
            let spans = self.store.visit_presence(visit.id).await?;
            if let Some(contact) =
                interactive_contact(&spans, |span| !visit.is_attendee(span.user_id), now)
            {
                contacts.push(contact);
            }
        }
        let ledger = wardline_ledger::ledger(&LedgerInput {
            time_zone: zone,
            episode_start,
            readings: &readings,
            management: &management,
            interactive_contacts: &contacts,
            now,
        });
        Ok(PatientLedger {
            patient_id,
            patient_name: patient.display_name,
            episode_start: Some(episode_start),
            time_zone: zone.name().to_owned(),
            ledger: Some(ledger),
            practitioner_names,
        })
    }
}

/// The management time of the records, each person's counted once: a stretch of one
/// person's timer or visit that overlaps another of theirs (two tabs of the same patient,
/// the timer running during a visit) counts only for the part not counted already.
/// Corrections are taken as they are.
fn without_overlaps(mut recorded: Vec<wardline_store::MonitoringTime>) -> Vec<ManagementTime> {
    recorded.sort_by_key(|time| (time.user_id, time.started));
    let mut counted_until: std::collections::HashMap<wardline_domain::UserId, DateTime<Utc>> =
        std::collections::HashMap::new();
    let mut management = Vec::with_capacity(recorded.len());
    for time in recorded {
        let seconds = if time.source == wardline_store::MonitoringSource::Correction {
            time.seconds
        } else {
            let end = time.started + Duration::seconds(time.seconds.max(0));
            let until = counted_until.entry(time.user_id).or_insert(time.started);
            let start = time.started.max(*until);
            let fresh = (end - start).num_seconds().max(0);
            *until = (*until).max(end);
            fresh
        };
        management.push(ManagementTime {
            at: time.started,
            seconds,
            practitioner: time.user_id.to_string(),
        });
    }
    management
}

/// Whether a device sent a reading or a person entered it.
fn origin(quarter: &ReadingQuarter, kind: Option<DeviceKind>) -> ReadingOrigin {
    let typed_in_app = kind == Some(DeviceKind::NightscoutUploader)
        && quarter.code == ObservationCode::GlucoseMeter;
    if quarter.device_id.as_str().starts_with("import-") || typed_in_app {
        ReadingOrigin::Manual
    } else {
        ReadingOrigin::Device
    }
}

/// The ledgers as CSV, one line per patient per period and per month: what the records
/// support and what is short.
pub fn ledgers_csv(ledgers: &[PatientLedger]) -> String {
    let mut csv = String::from(
        "patient_id,patient_name,kind,first_day,last_day,device_days,minutes,interactive_contacts,codes,complete,short_of\n",
    );
    for patient in ledgers {
        let Some(ledger) = &patient.ledger else {
            continue;
        };
        let codes = |codes: &[wardline_ledger::CodeUnits]| {
            codes
                .iter()
                .map(|code| {
                    if code.units > 1 {
                        format!("{}x{}", code.code.as_str(), code.units)
                    } else {
                        code.code.as_str().to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        for period in &ledger.periods {
            csv.push_str(&csv_line(&[
                patient.patient_id.to_string(),
                patient.patient_name.clone(),
                "device_period".into(),
                period.first_day.to_string(),
                period.last_day.to_string(),
                period.device_days.to_string(),
                String::new(),
                String::new(),
                codes(&period.codes),
                period.complete.to_string(),
                period
                    .shortfall
                    .as_ref()
                    .map(|s| s.message.clone())
                    .unwrap_or_default(),
            ]));
        }
        for month in &ledger.months {
            csv.push_str(&csv_line(&[
                patient.patient_id.to_string(),
                patient.patient_name.clone(),
                "management_month".into(),
                month.month.to_string(),
                month.last_day.to_string(),
                String::new(),
                month.minutes.to_string(),
                month.interactive_contacts.to_string(),
                codes(&month.codes),
                month.complete.to_string(),
                month
                    .shortfall
                    .as_ref()
                    .map(|s| s.message.clone())
                    .unwrap_or_default(),
            ]));
        }
    }
    csv
}

/// One CSV line (RFC 4180 quoting). A field a spreadsheet would run as a formula (a
/// name beginning `=`, `+`, `-` or `@`) gets a leading apostrophe.
fn csv_line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|field| {
            let field = if field.starts_with(['=', '+', '-', '@']) {
                format!("'{field}")
            } else {
                field.clone()
            };
            if field.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field
            }
        })
        .collect();
    format!("{}\n", quoted.join(","))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use wardline_domain::UserId;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap() + Duration::minutes(minute)
    }

    fn span(user: UserId, joined: i64, left: Option<i64>) -> PresenceSpan {
        PresenceSpan {
            user_id: user,
            joined: at(joined),
            left: left.map(at),
        }
    }

    #[test]
    fn a_contact_needs_the_patient_and_the_team_in_the_room_together() {
        let patient = UserId::random();
        let nurse = UserId::random();
        let is_patient = |span: &PresenceSpan| span.user_id == patient;
        // One after the other: no contact.
        let apart = [span(nurse, 0, Some(10)), span(patient, 11, Some(20))];
        assert_eq!(interactive_contact(&apart, is_patient, at(60)), None);
        // Overlapping from minute 5.
        let together = [span(nurse, 0, Some(10)), span(patient, 5, Some(20))];
        assert_eq!(
            interactive_contact(&together, is_patient, at(60)),
            Some(at(5))
        );
        // Both still in the room.
        let open = [span(patient, 2, None), span(nurse, 3, None)];
        assert_eq!(interactive_contact(&open, is_patient, at(4)), Some(at(3)));
        // Only the team.
        let alone = [span(nurse, 0, Some(30))];
        assert_eq!(interactive_contact(&alone, is_patient, at(60)), None);
    }

    #[test]
    fn a_persons_overlapping_stretches_count_once() {
        let nurse = UserId::random();
        let other = UserId::random();
        let time = |user, start: i64, seconds, source| wardline_store::MonitoringTime {
            id: uuid::Uuid::new_v4(),
            patient_id: wardline_domain::PatientId::random(),
            user_id: user,
            user_name: "N".into(),
            started: at(start),
            seconds,
            source,
            visit_id: None,
            reason: None,
        };
        use wardline_store::MonitoringSource::{Correction, Timer, Visit};
        let counted = without_overlaps(vec![
            // Two tabs: 0-10 min and 5-12 min count as 0-12.
            time(nurse, 0, 600, Timer),
            time(nurse, 5, 420, Timer),
            // A stretch inside another counts nothing more.
            time(nurse, 1, 60, Visit),
            // Another person's time is their own.
            time(other, 0, 600, Timer),
            // A correction stands as it is.
            time(nurse, 30, -120, Correction),
        ]);
        let of = |user: UserId| -> i64 {
            counted
                .iter()
                .filter(|time| time.practitioner == user.to_string())
                .map(|time| time.seconds)
                .sum()
        };
        assert_eq!(of(nurse), 12 * 60 - 120);
        assert_eq!(of(other), 600);
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(
            csv_line(&[
                "=HYPERLINK(\"x\")".into(),
                "Smith, Ann".into(),
                "plain".into()
            ]),
            "\"'=HYPERLINK(\"\"x\"\")\",\"Smith, Ann\",plain\n"
        );
    }
}
