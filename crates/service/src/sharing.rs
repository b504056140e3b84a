//! A patient shares part of their record with a specialist outside their care teams:
//! chosen categories of data, measured within a chosen window, until an expiry that is
//! never open-ended, and revocable at once. The share is consent recorded as data (who
//! consented, when, to what, for how long); reads through it go through the one access
//! check ([`crate::access`]), which cuts each read to the share's categories and window
//! and audits it with the share's id.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use wardline_domain::sharing::{DEFAULT_SHARE_DAYS, ShareCategory, share_window};
use wardline_domain::{PatientId, Role};
use wardline_store::{AuditOutcome, NewShare, Share};

use crate::actor::Actor;
use crate::error::Error;
use crate::{Wardline, clean_text};

/// A share as its patient asks for it.
#[derive(Debug, Clone)]
pub struct ShareRequest {
    /// The specialist's account name.
    pub grantee_username: String,
    pub categories: Vec<ShareCategory>,
    /// The data measured in the last so many days, and from then on while the share
    /// lasts; or a fixed range (`data_from`, `data_to`).
    pub data_last_days: Option<i64>,
    pub data_range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Days until it ends (default 30, at most the administrator's maximum).
    pub expires_in_days: Option<i64>,
    pub message: Option<String>,
}

impl Wardline {
    /// The patient, from their own account, shares part of their record with a
    /// specialist. Nobody else creates a share: not the care team (who may propose a
    /// referral, which the patient accepts), not a specialist (who cannot pass a share
    /// on), not another patient.
    pub async fn create_share(&self, actor: &Actor, request: ShareRequest) -> Result<Share, Error> {
        let user = actor.user().ok_or(Error::Forbidden)?;
        let patient_id = match (user.role, user.patient_id) {
            (Role::Patient, Some(patient_id)) => patient_id,
            _ => {
                self.audit(actor.audit(
                    "shares.create",
                    None,
                    AuditOutcome::Denied,
                    Some("only a patient shares their own record".into()),
                    self.now(),
                ))
                .await?;
                return Err(Error::Forbidden);
            }
        };
        let now = self.now();
        if request.categories.is_empty() {
            return Err(Error::invalid(
                "categories",
                "at least one of glucose, ecg, vital_signs, alarms, care_plan",
            ));
        }
        let mut categories = request.categories.clone();
        categories.sort_unstable();
        categories.dedup();
        let max_days = self.settings.max_share_days;
        let days = request
            .expires_in_days
            .unwrap_or(DEFAULT_SHARE_DAYS.min(max_days));
        if !(1..=max_days).contains(&days) {
            return Err(Error::invalid(
                "expires_in_days",
                format!("1 to {max_days} days: a share always ends"),
            ));
        }
        let expires = now + Duration::days(days);
        let (data_from, data_to) = share_window(now, request.data_last_days, request.data_range)
            .map_err(|reason| Error::invalid("data_last_days", reason))?;
        // "The last N days" goes on to the share's end: the specialist follows what is
        // measured while they look after the patient.
        let data_to = if request.data_last_days.is_some() {
            expires
        } else {
            data_to
        };
        let message = match &request.message {
            Some(text) => Some(clean_text("message", text, 500)?).filter(|text| !text.is_empty()),
            None => None,
        };
        let grantee = self
            .store
            .user_credentials(&request.grantee_username)
            .await?
            .map(|credentials| credentials.user)
            .filter(|grantee| grantee.role == Role::Specialist && !grantee.disabled)
            .ok_or_else(|| {
                Error::invalid(
                    "grantee_username",
                    "is not a specialist's account: ask your care team or the specialist for their Wardline user name",
                )
            })?;
        let id = Uuid::new_v4();
        let audit = actor.audit(
            "shares.create",
            Some(patient_id),
            AuditOutcome::Allowed,
            Some(format!(
                "share {id} with {} ({}): {} measured {} to {}, until {}",
                grantee.display_name,
                grantee.username,
                categories
                    .iter()
                    .map(|category| category.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                data_from.to_rfc3339(),
                data_to.to_rfc3339(),
                expires.to_rfc3339()
            )),
            now,
        );
        Ok(self
            .store
            .create_share(
                NewShare {
                    id,
                    patient_id,
                    grantee_id: grantee.id,
                    consented_by: user.id,
                    created: now,
                    categories,
                    data_from,
                    data_to,
                    expires,
                    message,
                },
                audit,
            )
            .await?)
    }

    /// Every share of the caller's own record, newest first: live, expired and revoked.
    pub async fn own_shares(&self, actor: &Actor) -> Result<Vec<Share>, Error> {
        let patient_id = own_record(actor)?;
        self.audit(actor.audit(
            "shares.list",
            Some(patient_id),
            AuditOutcome::Allowed,
            None,
            self.now(),
        ))
        .await?;
        Ok(self.store.shares_of_patient(patient_id).await?)
    }

    /// The patient ends one of their shares, at once: reads through it are refused from
    /// now on, and open pages lose access at their next request.
    pub async fn revoke_share(&self, actor: &Actor, share_id: Uuid) -> Result<(), Error> {
        let patient_id = own_record(actor)?;
        let share = self
            .store
            .share(share_id)
            .await?
            .filter(|share| share.patient_id == patient_id)
            .ok_or_else(|| Error::NotFound(format!("share {share_id}")))?;
        let audit = actor.audit(
            "shares.revoke",
            Some(patient_id),
            AuditOutcome::Allowed,
            Some(format!("share {} with {}", share.id, share.grantee_name)),
            self.now(),
        );
        self.store.revoke_share(share.id, self.now(), audit).await?;
        Ok(())
    }
}

/// The caller's own patient record: only a patient account has one.
fn own_record(actor: &Actor) -> Result<PatientId, Error> {
    actor
        .user()
        .filter(|user| user.role == Role::Patient)
        .and_then(|user| user.patient_id)
        .ok_or(Error::Forbidden)
}
