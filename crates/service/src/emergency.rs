//! Emergency ("break-the-glass") access: when a patient outside a clinician's or nurse's
//! care teams needs them now (a cardiac arrest on another ward, a covering night shift),
//! they open read access to that patient's data themselves, for a limited time and with a
//! reason. Every read under it is audited as such, it ends by itself, it never allows a
//! change, and each one waits on the administrators' list until someone reviews it.

use uuid::Uuid;
use wardline_domain::{PatientId, Role};
use wardline_store::{AuditOutcome, EmergencyAccess, NewEmergencyAccess};

use crate::actor::Actor;
use crate::error::Error;
use crate::{Wardline, bounded};

/// The shortest reason accepted: a word or two says nothing a reviewer can check.
const MIN_REASON_CHARS: usize = 10;

impl Wardline {
    /// Opens emergency read access to `patient_id` for the calling clinician or nurse,
    /// until [`crate::ServiceSettings::emergency_access`] from now. Refused (and audited)
    /// for anyone else; `InvalidState` when the caller is on the patient's care team
    /// already.
    pub async fn open_emergency_access(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        reason: &str,
    ) -> Result<EmergencyAccess, Error> {
        let now = self.now();
        let Some(user) = actor
            .user()
            .filter(|user| matches!(user.role, Role::Clinician | Role::Nurse))
        else {
            self.audit(actor.audit(
                "emergency_access.open",
                Some(patient_id),
                AuditOutcome::Denied,
                Some("only clinicians and nurses open emergency access".into()),
                now,
            ))
            .await?;
            metrics::counter!("wardline_access_denied_total", "action" => "emergency_access.open")
                .increment(1);
            return Err(Error::not_permitted(
                "role",
                "only clinicians and nurses can open emergency access",
            ));
        };
        // Counted as sent (trimmed), as the API's schema counts: normalising may join
        // characters.
        if reason.trim().chars().count() < MIN_REASON_CHARS {
            return Err(Error::invalid(
                "reason",
                format!("say why in at least {MIN_REASON_CHARS} characters: a reviewer reads it"),
            ));
        }
        let reason = bounded("reason", reason, 500)?;
        if self.store.is_on_care_team_of(user.id, patient_id).await? {
            return Err(Error::InvalidState(
                "you are on this patient's care team: no emergency access is needed".into(),
            ));
        }
        let expires = now + self.settings.emergency_access;
        let audit = actor.audit(
            "emergency_access.open",
            Some(patient_id),
            AuditOutcome::Allowed,
            Some(format!(
                "until {}; reason: {reason}",
                expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            now,
        );
        let access = self
            .store
            .open_emergency_access(
                NewEmergencyAccess {
                    id: Uuid::new_v4(),
                    user_id: user.id,
                    patient_id,
                    reason,
                    opened: now,
                    expires,
                },
                audit,
            )
            .await?;
        metrics::counter!("wardline_emergency_access_opened_total").increment(1);
        tracing::warn!(
            minutes = self.settings.emergency_access.num_minutes(),
            "emergency access opened; it waits for an administrator's review"
        );
        Ok(access)
    }

    /// The caller's emergency access to `patient_id` that is open now, if any (to show
    /// that the page is seen under it, and until when). What the caller may see of
    /// themselves, so not audited as a read of the patient's data.
    pub async fn my_emergency_access(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Option<EmergencyAccess>, Error> {
        let Some(user) = actor.user() else {
            return Ok(None);
        };
        Ok(self
            .store
            .open_emergency_access_of(user.id, patient_id, self.now())
            .await?)
    }

    /// Emergency accesses, newest first, all or only those not reviewed yet (admin).
    pub async fn emergency_accesses(
        &self,
        actor: &Actor,
        unreviewed_only: bool,
        limit: u32,
    ) -> Result<Vec<EmergencyAccess>, Error> {
        self.require_admin_read(actor, "emergency_access.list", None)
            .await?;
        Ok(self
            .store
            .emergency_accesses(unreviewed_only, limit.clamp(1, 1000))
            .await?)
    }

    /// Records an administrator's review of an emergency access, with a note of what
    /// was checked. A review is final: a second one is refused.
    pub async fn review_emergency_access(
        &self,
        actor: &Actor,
        id: Uuid,
        note: &str,
    ) -> Result<EmergencyAccess, Error> {
        let allowed = self
            .require_admin(actor, "emergency_access.review", None, Some(id.to_string()))
            .await?;
        let Some(reviewer) = actor.user_id() else {
            return Err(Error::not_permitted(
                "reviewer",
                "a review is signed by a person: use an administrator's account",
            ));
        };
        let note = bounded("note", note, 1000)?;
        let mut audit = allowed.audit;
        audit.detail = Some(format!("{id}: {note}"));
        let reviewed = self
            .store
            .review_emergency_access(id, reviewer, note, self.now(), audit)
            .await
            .map_err(|error| match error {
                wardline_store::StoreError::Conflict { .. } => {
                    Error::InvalidState(format!("emergency access {id} was reviewed already"))
                }
                other => other.into(),
            })?;
        Ok(reviewed)
    }
}
