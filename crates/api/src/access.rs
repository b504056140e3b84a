//! The one place that decides who may see a patient's data, and writes down every
//! decision. A handler cannot read health data without a [`PatientAccess`], and only
//! [`authorize_patient`] makes one, after the decision is durably audited.
//!
//! The rules: a patient sees only their own record; clinicians and nurses see the
//! patients of their care teams; an admin manages accounts and devices but sees clinical
//! data only when also on the patient's care team.

use chrono::Utc;
use wardline_domain::{PatientId, Role};
use wardline_store::{AuditEvent, AuditOutcome};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Why access was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessBasis {
    OwnRecord,
    CareTeam,
}

/// Proof that the caller may read one patient's data. Private fields: only this module
/// constructs it.
#[derive(Debug, Clone)]
pub struct PatientAccess {
    patient_id: PatientId,
    basis: AccessBasis,
}

impl PatientAccess {
    pub fn patient_id(&self) -> PatientId {
        self.patient_id
    }

    pub fn basis(&self) -> AccessBasis {
        self.basis
    }
}

/// Decides whether `caller` may perform `action` on `patient_id`'s data, audits the
/// decision (allowed or denied) before answering, and returns the proof of access.
pub async fn authorize_patient(
    state: &AppState,
    caller: &Caller,
    patient_id: PatientId,
    action: &'static str,
    detail: Option<String>,
) -> Result<PatientAccess, ApiError> {
    let basis = match caller.user.role {
        Role::Patient => {
            (caller.user.patient_id == Some(patient_id)).then_some(AccessBasis::OwnRecord)
        }
        Role::Clinician | Role::Nurse | Role::Admin => state
            .store
            .is_on_care_team_of(caller.user.id, patient_id)
            .await?
            .then_some(AccessBasis::CareTeam),
    };
    let outcome = if basis.is_some() {
        AuditOutcome::Allowed
    } else {
        AuditOutcome::Denied
    };
    audit(state, caller, action, Some(patient_id), outcome, detail).await?;
    match basis {
        Some(basis) => Ok(PatientAccess { patient_id, basis }),
        None => {
            metrics::counter!("wardline_access_denied_total", "action" => action).increment(1);
            Err(ApiError::Forbidden)
        }
    }
}

/// Lets only admins through, auditing the attempt either way.
pub async fn require_admin(
    state: &AppState,
    caller: &Caller,
    action: &'static str,
    detail: Option<String>,
) -> Result<(), ApiError> {
    let allowed = caller.user.role == Role::Admin;
    let outcome = if allowed {
        AuditOutcome::Allowed
    } else {
        AuditOutcome::Denied
    };
    audit(state, caller, action, None, outcome, detail).await?;
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// The patients whose records the caller may list: their own, their care teams', or for
/// an admin every record (names only; clinical reads still need a care team).
pub async fn visible_patients(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<PatientId>, ApiError> {
    let patients = match caller.user.role {
        Role::Patient => caller.user.patient_id.into_iter().collect(),
        Role::Clinician | Role::Nurse => {
            state
                .store
                .patients_of_care_team_member(caller.user.id)
                .await?
        }
        Role::Admin => state
            .store
            .patients()
            .await?
            .into_iter()
            .map(|patient| patient.id)
            .collect(),
    };
    audit(
        state,
        caller,
        "patients.list",
        None,
        AuditOutcome::Allowed,
        Some(format!("{} records", patients.len())),
    )
    .await?;
    Ok(patients)
}

/// Every patient whose data the caller may read (their own record, or the patients of
/// their care teams), each access audited in one durable append: for views across
/// patients such as the alarm inbox and the alarm stream.
pub async fn authorize_own_patients(
    state: &AppState,
    caller: &Caller,
    action: &'static str,
) -> Result<Vec<PatientAccess>, ApiError> {
    let (patients, basis) = match caller.user.role {
        Role::Patient => (
            caller.user.patient_id.into_iter().collect::<Vec<_>>(),
            AccessBasis::OwnRecord,
        ),
        Role::Clinician | Role::Nurse | Role::Admin => (
            state
                .store
                .patients_of_care_team_member(caller.user.id)
                .await?,
            AccessBasis::CareTeam,
        ),
    };
    let time = Utc::now();
    let events: Vec<AuditEvent> = patients
        .iter()
        .map(|patient_id| AuditEvent {
            time,
            actor: Some(caller.user.id),
            actor_label: caller.user.username.clone(),
            action: action.to_owned(),
            patient_id: Some(*patient_id),
            outcome: AuditOutcome::Allowed,
            remote_addr: caller.remote_addr.clone(),
            detail: None,
        })
        .collect();
    if !events.is_empty() {
        state.store.append_audit(events).await?;
    }
    Ok(patients
        .into_iter()
        .map(|patient_id| PatientAccess { patient_id, basis })
        .collect())
}

/// Writes one audit event for a person's action; the caller waits for it to be durable.
pub async fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    patient_id: Option<PatientId>,
    outcome: AuditOutcome,
    detail: Option<String>,
) -> Result<(), ApiError> {
    state
        .store
        .append_audit(vec![AuditEvent {
            time: Utc::now(),
            actor: Some(caller.user.id),
            actor_label: caller.user.username.clone(),
            action: action.to_owned(),
            patient_id,
            outcome,
            remote_addr: caller.remote_addr.clone(),
            detail,
        }])
        .await
        .map_err(ApiError::from)
}
