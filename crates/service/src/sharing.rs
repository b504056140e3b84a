//! A patient shares part of their record with a specialist outside their care teams:
//! chosen categories of data, measured within a chosen window, until an expiry that is
//! never open-ended, and revocable at once. The share is consent recorded as data (who
//! consented, when, to what, for how long); reads through it go through the one access
//! check ([`crate::access`]), which cuts each read to the share's categories and window
//! and audits it with the share's id.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;
use wardline_domain::sharing::{DEFAULT_SHARE_DAYS, ShareCategory, share_window};
use wardline_domain::{Observation, ObservationCode, PatientId, Role};
use wardline_store::{
    AuditEvent, AuditOutcome, CarePlanVersionRecord, InvitedAccount, LinkAttempt, NewShare,
    News2Query, News2Record, ObservationQuery, RhythmEventQuery, RhythmEventRecord, Share,
    ShareGrantee, StoreError,
};

use crate::actor::Actor;
use crate::credentials;
use crate::error::Error;
use crate::{Wardline, clean_text};

/// How long an invitation's link works.
pub const INVITATION_DAYS: i64 = 7;

/// Where invitations go out from.
#[derive(Debug, Clone)]
pub struct InvitationMail {
    pub smtp: wardline_alarms::SmtpSettings,
    /// The web app's address as the invited person reaches it, e.g. `https://ward.example.org`.
    pub app_url: String,
}

/// An invitation just made; its link shown this once (to send it, when Wardline did not
/// e-mail it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Serialize)]
pub struct CreatedInvitation {
    pub invitation: wardline_store::Invitation,
    /// The token that goes into the link (`/invite#{token}`).
    pub link_token: String,
    /// Wardline e-mailed the link to the address.
    pub emailed: bool,
}

impl std::fmt::Debug for CreatedInvitation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CreatedInvitation")
            .field("invitation", &self.invitation)
            .field("emailed", &self.emailed)
            .finish_non_exhaustive()
    }
}

/// Wrong passcodes a share link takes before it is disabled.
pub const PASSCODE_ATTEMPTS: u32 = 5;

/// Why a link or an invitation no longer opens, as the viewer is told (each said where
/// it is found, before the passcode or in the commit that would count the opening).
const USED_LINK: &str = "this link was for one use, and it has been used";
const USED_INVITATION: &str =
    "this invitation was used already: log in with the account that took it up";

fn disabled_link() -> String {
    format!(
        "this link was disabled after {PASSCODE_ATTEMPTS} wrong passcodes; the patient can make a new one"
    )
}

/// The passcode's alphabet: no 0/O, 1/I/L, so it can be read out over the phone.
const PASSCODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const PASSCODE_LENGTH: usize = 10;

/// Who a share is for.
#[derive(Debug, Clone)]
pub enum ShareTo {
    /// A specialist's account, by user name.
    Specialist(String),
    /// Whoever the patient gives a link and, separately, its passcode.
    Link { single_use: bool },
}

/// A share just made, with a link's token and passcode, shown this once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Serialize)]
pub struct CreatedShare {
    pub share: Share,
    /// For a link: the token that goes into its address (`/shared/{token}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_token: Option<String>,
    /// For a link: the passcode, to give separately from the link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passcode: Option<String>,
}

impl std::fmt::Debug for CreatedShare {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CreatedShare")
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

/// What a share link opens: exactly its scope, read once for the viewer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct SharedRecord {
    pub patient_name: String,
    pub categories: Vec<ShareCategory>,
    pub data_from: DateTime<Utc>,
    pub data_to: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub message: Option<String>,
    /// Observations of the shared categories measured in the window, oldest first per
    /// code (at most 5,000 per code).
    pub observations: Vec<Observation>,
    pub rhythm_events: Vec<RhythmEventRecord>,
    pub news2: Vec<News2Record>,
    /// Alarms raised in the window, newest first (at most 500), as the patient's record
    /// has them: what, how urgent, when, and whether it is over. Who on the care team
    /// handled them stays with the care team.
    pub alarms: Vec<SharedAlarm>,
    pub care_plan: Option<CarePlanVersionRecord>,
}

/// An alarm as a share shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct SharedAlarm {
    pub raised_at: DateTime<Utc>,
    pub priority: wardline_alerting::Priority,
    pub kind: wardline_alerting::AlarmKind,
    pub message: String,
    pub state_name: crate::alarms::AlarmStateName,
    pub condition_cleared_at: Option<DateTime<Utc>>,
    pub occurrences: u32,
}

/// A share as its patient asks for it.
#[derive(Debug, Clone)]
pub struct ShareRequest {
    pub to: ShareTo,
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
    pub async fn create_share(
        &self,
        actor: &Actor,
        request: ShareRequest,
    ) -> Result<CreatedShare, Error> {
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
        let categories = share_categories(&request.categories)?;
        let days = self.share_days(request.expires_in_days)?;
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
        let message = optional_message(request.message.as_deref())?;
        let id = Uuid::new_v4();
        let (grantee, to, link_token, passcode) = match &request.to {
            ShareTo::Specialist(username) => {
                let grantee = self.specialist_named(username).await?;
                let to = format!("{} ({})", grantee.display_name, grantee.username);
                (ShareGrantee::Person(grantee.id), to, None, None)
            }
            ShareTo::Link { single_use } => {
                let token = credentials::new_session_token()?.replacen(
                    credentials::TOKEN_PREFIX,
                    "wsl_",
                    1,
                );
                let passcode = new_passcode()?;
                let grantee = ShareGrantee::Link {
                    token_hash: credentials::token_hash(&token),
                    passcode_hash: credentials::hash_password(passcode.clone()).await?,
                    single_use: *single_use,
                };
                let to = if *single_use {
                    "a link with a passcode, for one use".to_owned()
                } else {
                    "a link with a passcode".to_owned()
                };
                (grantee, to, Some(token), Some(passcode))
            }
        };
        let audit = actor.audit(
            "shares.create",
            Some(patient_id),
            AuditOutcome::Allowed,
            Some(format!(
                "share {id} with {to}: {} measured {} to {}, until {}",
                category_names(&categories),
                data_from.to_rfc3339(),
                data_to.to_rfc3339(),
                expires.to_rfc3339()
            )),
            now,
        );
        let share = self
            .store
            .create_share(
                NewShare {
                    id,
                    patient_id,
                    grantee,
                    consented_by: Some(user.id),
                    proposed_by: None,
                    created: now,
                    categories,
                    data_from,
                    data_to,
                    expires,
                    message,
                },
                audit,
            )
            .await?;
        Ok(CreatedShare {
            share,
            link_token,
            passcode,
        })
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

    /// A clinician or nurse of the patient's care team proposes a share with a specialist
    /// (a referral). It opens nothing until the patient accepts it; the patient may also
    /// decline (revoke) it. Expires counts from the acceptance.
    pub async fn propose_referral(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        request: ShareRequest,
    ) -> Result<Share, Error> {
        let allowed = self
            .authorize_patient_change(
                actor,
                patient_id,
                "shares.propose",
                &[Role::Clinician, Role::Nurse],
                None,
            )
            .await?;
        let proposer = actor.user().ok_or(Error::Forbidden)?.id;
        let ShareTo::Specialist(username) = &request.to else {
            return Err(Error::invalid(
                "grantee_username",
                "a referral is to a specialist's account; only the patient makes links",
            ));
        };
        let now = self.now();
        let categories = share_categories(&request.categories)?;
        let days = self.share_days(request.expires_in_days)?;
        let expires = now + Duration::days(days);
        let (data_from, data_to) = share_window(now, request.data_last_days, request.data_range)
            .map_err(|reason| Error::invalid("data_last_days", reason))?;
        let data_to = if request.data_last_days.is_some() {
            // Until the end of the longest the share can last once accepted.
            now + Duration::days(self.settings.max_share_days + days)
        } else {
            data_to
        };
        let grantee = self.specialist_named(username).await?;
        let id = Uuid::new_v4();
        let mut audit = allowed.audit;
        audit.detail = Some(format!(
            "share {id} proposed with {} ({}): {}, waiting for the patient",
            grantee.display_name,
            grantee.username,
            category_names(&categories)
        ));
        Ok(self
            .store
            .create_share(
                NewShare {
                    id,
                    patient_id,
                    grantee: ShareGrantee::Person(grantee.id),
                    consented_by: None,
                    proposed_by: Some(proposer),
                    created: now,
                    categories,
                    data_from,
                    data_to,
                    expires,
                    message: optional_message(request.message.as_deref())?,
                },
                audit,
            )
            .await?)
    }

    /// The patient accepts a referral their care team proposed: it opens from now, for
    /// as long as was proposed.
    pub async fn accept_share(&self, actor: &Actor, share_id: Uuid) -> Result<Share, Error> {
        let patient_id = own_record(actor)?;
        let user = actor.user().ok_or(Error::Forbidden)?;
        let share = self
            .store
            .share(share_id)
            .await?
            .filter(|share| share.patient_id == patient_id)
            .ok_or_else(|| Error::NotFound(format!("share {share_id}")))?;
        let now = self.now();
        let expires = now + (share.expires - share.created);
        let audit = actor.audit(
            "shares.accept",
            Some(patient_id),
            AuditOutcome::Allowed,
            Some(format!(
                "share {} with {}, until {}",
                share.id,
                share.grantee_name.as_deref().unwrap_or("a link"),
                expires.to_rfc3339()
            )),
            now,
        );
        if !self
            .store
            .accept_share(share.id, user.id, now, expires, audit)
            .await?
        {
            return Err(Error::InvalidState(
                "this share was accepted or ended before".into(),
            ));
        }
        self.store
            .share(share.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("share {share_id}")))
    }

    /// The specialist account of a user name, or why not.
    async fn specialist_named(&self, username: &str) -> Result<wardline_store::User, Error> {
        self.store
            .user_credentials(username)
            .await?
            .map(|credentials| credentials.user)
            .filter(|grantee| grantee.role == Role::Specialist && !grantee.disabled)
            .ok_or_else(|| {
                Error::invalid(
                    "grantee_username",
                    "is not a specialist's account: ask your care team or the specialist for their Wardline user name",
                )
            })
    }

    /// Days a new share lasts: as asked, or the default, within the maximum.
    fn share_days(&self, asked: Option<i64>) -> Result<i64, Error> {
        let max_days = self.settings.max_share_days;
        let days = asked.unwrap_or(DEFAULT_SHARE_DAYS.min(max_days));
        if !(1..=max_days).contains(&days) {
            return Err(Error::invalid(
                "expires_in_days",
                format!("1 to {max_days} days: a share always ends"),
            ));
        }
        Ok(days)
    }

    /// Writes the end of every share that expired since the last call to the audit trail
    /// (once each), against its patient: expiry is a step of the share's life like its
    /// making and revocation. The server calls this every half minute. Returns how many
    /// it recorded.
    pub async fn record_share_expiries(&self) -> Result<u32, Error> {
        let now = self.now();
        let expired = self.store.expired_unrecorded_shares(now).await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let entries = expired
            .into_iter()
            .map(|share| {
                let audit = AuditEvent {
                    time: now,
                    actor: None,
                    actor_label: "Wardline".into(),
                    action: "shares.expire".into(),
                    patient_id: Some(share.patient_id),
                    outcome: AuditOutcome::Allowed,
                    remote_addr: None,
                    detail: Some(format!(
                        "share {} with {} ended at {}",
                        share.id,
                        share.grantee_name.as_deref().unwrap_or("a link"),
                        share.expires.to_rfc3339()
                    )),
                };
                (share.id, audit)
            })
            .collect();
        Ok(self.store.record_share_expiries(entries, now).await?)
    }

    /// The shares live now with the caller (specialists): what each patient shared, so
    /// that their pages show only that.
    pub async fn shares_with_me(&self, actor: &Actor) -> Result<Vec<Share>, Error> {
        let user = actor
            .user()
            .filter(|user| user.role == Role::Specialist)
            .ok_or(Error::Forbidden)?;
        let now = self.now();
        let mut shares = Vec::new();
        for patient_id in self.store.patients_sharing_with(user.id, now).await? {
            shares.extend(self.store.live_shares(user.id, patient_id, now).await?);
        }
        self.audit(actor.audit(
            "shares.list_mine",
            None,
            AuditOutcome::Allowed,
            Some(format!("{} shares", shares.len())),
            now,
        ))
        .await?;
        Ok(shares)
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
            Some(format!(
                "share {} with {}",
                share.id,
                share.grantee_name.as_deref().unwrap_or("a link")
            )),
            self.now(),
        );
        self.store.revoke_share(share.id, self.now(), audit).await?;
        Ok(())
    }
}

impl Wardline {
    /// Opens a share link with its passcode, for someone without an account: exactly the
    /// shared categories, measured in the shared window. Wrong passcodes count, and the
    /// fifth disables the link (the patient sees it in their list); an expired, revoked,
    /// used (single-use) or disabled link says which. Every attempt is audited against
    /// the patient's record.
    pub async fn open_share_link(
        &self,
        token: &str,
        passcode: String,
        remote_addr: Option<String>,
    ) -> Result<SharedRecord, Error> {
        if token.len() > 200 || passcode.len() > 100 {
            return Err(Error::NotFound("share link".into()));
        }
        // One attempt at a time: five wrong passcodes sent at once are counted as five
        // before any of them could be the sixth guess.
        let _one_at_a_time = self.link_opens.lock().await;
        let Some((share, passcode_hash)) = self
            .store
            .share_by_link(credentials::token_hash(token))
            .await?
        else {
            return Err(Error::NotFound("share link".into()));
        };
        let now = self.now();
        let link = share
            .link
            .clone()
            .ok_or_else(|| Error::NotFound("share link".into()))?;
        let closed = if share.revoked.is_some() {
            Some("the patient revoked this link".to_owned())
        } else if link.disabled.is_some() {
            Some(disabled_link())
        } else if now >= share.expires {
            Some(format!(
                "this link expired on {}",
                share.expires.format("%-d %B %Y at %H:%M UTC")
            ))
        } else if link.single_use && link.opened > 0 {
            Some(USED_LINK.to_owned())
        } else {
            None
        };
        if let Some(reason) = closed {
            self.audit(self.link_audit(&share, AuditOutcome::Denied, &reason, remote_addr))
                .await?;
            return Err(Error::ShareLinkClosed { reason });
        }
        if !credentials::password_matches(passcode, passcode_hash).await? {
            let share = self
                .store
                .record_link_attempt(
                    share.id,
                    LinkAttempt::WrongPasscode {
                        limit: PASSCODE_ATTEMPTS,
                    },
                    now,
                    self.link_audit(&share, AuditOutcome::Denied, "wrong passcode", remote_addr),
                )
                .await?;
            let failures = share
                .link
                .map_or(PASSCODE_ATTEMPTS, |link| link.passcode_failures);
            if failures >= PASSCODE_ATTEMPTS {
                return Err(Error::ShareLinkClosed {
                    reason: disabled_link(),
                });
            }
            return Err(Error::BadPasscode {
                remaining: PASSCODE_ATTEMPTS - failures,
                limit: PASSCODE_ATTEMPTS,
            });
        }
        let categories = share
            .categories
            .iter()
            .map(|category| category.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match self
            .store
            .record_link_attempt(
                share.id,
                LinkAttempt::Opened,
                now,
                self.link_audit(
                    &share,
                    AuditOutcome::Allowed,
                    &format!("viewed {categories}"),
                    remote_addr,
                ),
            )
            .await
        {
            Err(StoreError::Conflict { what }) => {
                return Err(Error::ShareLinkClosed {
                    reason: if what.contains("single-use") {
                        USED_LINK.into()
                    } else {
                        "this link no longer opens: ask the patient for a new one".into()
                    },
                });
            }
            other => other?,
        };
        self.shared_record(&share).await
    }

    /// A link's attempt as the audit trail keeps it: against the patient's record, by
    /// the link (there is no account), with the share's id first in the detail.
    fn link_audit(
        &self,
        share: &Share,
        outcome: AuditOutcome,
        what: &str,
        remote_addr: Option<String>,
    ) -> AuditEvent {
        AuditEvent {
            time: self.now(),
            actor: None,
            actor_label: "share link".into(),
            action: "share_links.open".into(),
            patient_id: Some(share.patient_id),
            outcome,
            remote_addr,
            detail: Some(format!("share {}; {what}", share.id)),
        }
    }

    /// The data a share opens, read with its categories and window.
    async fn shared_record(&self, share: &Share) -> Result<SharedRecord, Error> {
        let patient = self
            .store
            .patient(share.patient_id)
            .await?
            .ok_or_else(|| Error::NotFound("patient".into()))?;
        let shared = |category: ShareCategory| share.categories.contains(&category);
        let mut observations = Vec::new();
        for spec in wardline_domain::codes::CATALOGUE {
            let code: ObservationCode = spec.code;
            if !shared(ShareCategory::of_code(code)) {
                continue;
            }
            let page = self
                .store
                .observations(ObservationQuery {
                    patient_id: share.patient_id,
                    code,
                    from: share.data_from,
                    to: share.data_to,
                    after: None,
                    limit: 5000,
                    newest_first: false,
                })
                .await?;
            observations.extend(page.observations);
        }
        let rhythm_events = if shared(ShareCategory::Ecg) {
            self.store
                .rhythm_events(RhythmEventQuery {
                    patient_id: share.patient_id,
                    from: share.data_from,
                    to: share.data_to,
                    limit: 5000,
                })
                .await?
        } else {
            Vec::new()
        };
        let news2 = if shared(ShareCategory::VitalSigns) {
            self.store
                .news2_scores(News2Query {
                    patient_id: share.patient_id,
                    from: share.data_from,
                    to: share.data_to,
                    limit: 5000,
                    newest_first: false,
                })
                .await?
        } else {
            Vec::new()
        };
        let alarms = if shared(ShareCategory::Alarms) {
            self.store
                .alarms(wardline_store::AlarmQuery {
                    patients: vec![share.patient_id],
                    states: Vec::new(),
                    raised_from: Some(share.data_from),
                    raised_to: Some(share.data_to),
                    limit: 500,
                })
                .await?
                .iter()
                .map(|record| SharedAlarm {
                    raised_at: record.alarm.raised_at,
                    priority: record.alarm.priority,
                    kind: record.alarm.kind,
                    message: record.alarm.message.clone(),
                    state_name: crate::alarms::AlarmStateName::of(&record.alarm.state),
                    condition_cleared_at: record.alarm.condition_cleared_at,
                    occurrences: record.alarm.occurrences,
                })
                .collect()
        } else {
            Vec::new()
        };
        let care_plan = if shared(ShareCategory::CarePlan) {
            self.store
                .care_plan_versions(share.patient_id)
                .await?
                .into_iter()
                .max_by_key(|version| version.version)
        } else {
            None
        };
        Ok(SharedRecord {
            patient_name: patient.display_name,
            categories: share.categories.clone(),
            data_from: share.data_from,
            data_to: share.data_to,
            expires: share.expires,
            message: share.message.clone(),
            observations,
            rhythm_events,
            news2,
            alarms,
            care_plan,
        })
    }
}

/// A new passcode: 10 characters from a 31-letter alphabet (about 50 bits), which five
/// attempts cannot guess.
fn new_passcode() -> Result<String, Error> {
    let mut bytes = [0u8; PASSCODE_LENGTH];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::Internal("no randomness".into()))?;
    // 256 is not a multiple of 31: the first letters are a little likelier (by under
    // 1 %), which costs well under a bit of the passcode's strength.
    Ok(bytes
        .iter()
        .map(|byte| char::from(PASSCODE_ALPHABET[usize::from(*byte) % PASSCODE_ALPHABET.len()]))
        .collect())
}

impl Wardline {
    /// Invites a specialist to make a Wardline account (patients, clinicians, nurses and
    /// administrators may): a link that works once, for a week. With an SMTP server
    /// configured it is e-mailed to them; otherwise the inviter gets it to send.
    pub async fn invite_specialist(
        &self,
        actor: &Actor,
        email: &str,
        display_name: &str,
    ) -> Result<CreatedInvitation, Error> {
        let user = actor.user().ok_or(Error::Forbidden)?;
        if user.role == Role::Specialist {
            self.audit(actor.audit(
                "invitations.create",
                None,
                AuditOutcome::Denied,
                Some("a specialist does not invite".into()),
                self.now(),
            ))
            .await?;
            return Err(Error::Forbidden);
        }
        let email = check_email(email)?;
        let display_name = crate::bounded("display_name", display_name, 200)?;
        if let Err(wait) = self.invitations.take(user.id) {
            self.audit(actor.audit(
                "invitations.create",
                None,
                AuditOutcome::Denied,
                Some("too many invitations from this account".into()),
                self.now(),
            ))
            .await?;
            return Err(Error::TooManyInvitations {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let token =
            credentials::new_session_token()?.replacen(credentials::TOKEN_PREFIX, "wsi_", 1);
        let now = self.now();
        let id = Uuid::new_v4();
        let audit = actor.audit(
            "invitations.create",
            None,
            AuditOutcome::Allowed,
            Some(format!("invitation {id} for a specialist, {display_name}")),
            now,
        );
        let invitation = self
            .store
            .create_invitation(
                wardline_store::NewInvitation {
                    id,
                    token_hash: credentials::token_hash(&token),
                    email: email.clone(),
                    display_name: display_name.clone(),
                    invited_by: user.id,
                    created: now,
                    expires: now + Duration::days(INVITATION_DAYS),
                },
                audit,
            )
            .await?;
        let emailed = match &self.settings.invitation_mail {
            Some(mail) => {
                let text = format!(
                    "{} invites you to Wardline, where patients share their monitoring data with specialists.\n\n\
                     Make your account with this link within {INVITATION_DAYS} days (it works once):\n\
                     {}/invite#{token}\n\n\
                     You will see only what a patient chooses to share with you.\n",
                    user.display_name,
                    mail.app_url.trim_end_matches('/')
                );
                match wardline_alarms::send_plain_email(
                    &mail.smtp,
                    &email,
                    "Your invitation to Wardline",
                    &text,
                )
                .await
                {
                    Ok(()) => true,
                    Err(error) => {
                        // The inviter still has the link to send.
                        tracing::warn!(%error, "an invitation e-mail could not be sent");
                        false
                    }
                }
            }
            None => false,
        };
        Ok(CreatedInvitation {
            invitation,
            link_token: token,
            emailed,
        })
    }

    /// The invited person makes their specialist account with the invitation's link: a
    /// user name and a password of their own. The link works once, until it expires.
    pub async fn accept_invitation(
        &self,
        token: &str,
        username: &str,
        password: String,
        remote_addr: Option<String>,
    ) -> Result<wardline_store::User, Error> {
        let invitation = self.open_invitation(token).await?;
        let now = self.now();
        crate::people::check_username(username)?;
        credentials::check_password_strength(
            "password",
            &password,
            &[username, &invitation.display_name, &invitation.email],
        )?;
        let password_hash = credentials::hash_password(password).await?;
        let user_id = wardline_domain::UserId::random();
        let audit = AuditEvent {
            time: now,
            actor: Some(user_id),
            actor_label: username.to_owned(),
            action: "invitations.accept".into(),
            patient_id: None,
            outcome: AuditOutcome::Allowed,
            remote_addr,
            detail: Some(format!(
                "invitation {}: a specialist account",
                invitation.id
            )),
        };
        self.take_up_invitation(
            invitation.id,
            InvitedAccount::New(wardline_store::NewUser {
                id: user_id,
                username: username.to_owned(),
                display_name: invitation.display_name.clone(),
                role: Role::Specialist,
                password_hash,
                patient_id: None,
                created: now,
                password_change_required: false,
            }),
            audit,
        )
        .await
    }

    /// A specialist who has an account already (invited before, by another patient)
    /// takes up the invitation with it, logged in, instead of making a second one.
    pub async fn link_invitation(
        &self,
        actor: &Actor,
        token: &str,
    ) -> Result<wardline_store::User, Error> {
        let user = actor.user().ok_or(Error::Forbidden)?;
        if user.role != Role::Specialist {
            self.audit(actor.audit(
                "invitations.accept",
                None,
                AuditOutcome::Denied,
                Some("an invitation's link, with an account that is not a specialist's".into()),
                self.now(),
            ))
            .await?;
            return Err(Error::not_permitted(
                "token",
                format!(
                    "an invitation is taken up by a specialist account, and this one is a {} account; log out and make a new account with the link",
                    user.role.as_str()
                ),
            ));
        }
        let invitation = self.open_invitation(token).await?;
        let now = self.now();
        let audit = actor.audit(
            "invitations.accept",
            None,
            AuditOutcome::Allowed,
            Some(format!(
                "invitation {}: linked to the account {}",
                invitation.id, user.username
            )),
            now,
        );
        self.take_up_invitation(invitation.id, InvitedAccount::Existing(user.id), audit)
            .await
    }

    /// The invitation a link's token belongs to, while it can still be taken up.
    async fn open_invitation(&self, token: &str) -> Result<wardline_store::Invitation, Error> {
        if token.len() > 200 {
            return Err(Error::NotFound("invitation".into()));
        }
        let invitation = self
            .store
            .invitation_by_token(credentials::token_hash(token))
            .await?
            .ok_or_else(|| Error::NotFound("invitation".into()))?;
        if invitation.accepted.is_some() {
            return Err(Error::InvitationClosed {
                reason: USED_INVITATION.into(),
            });
        }
        let now = self.now();
        if now >= invitation.expires {
            return Err(Error::InvitationClosed {
                reason: format!(
                    "this invitation expired on {}; ask for a new one",
                    invitation.expires.format("%-d %B %Y")
                ),
            });
        }
        Ok(invitation)
    }

    async fn take_up_invitation(
        &self,
        id: Uuid,
        account: InvitedAccount,
        audit: AuditEvent,
    ) -> Result<wardline_store::User, Error> {
        self.store
            .accept_invitation(id, account, self.now(), audit)
            .await
            .map_err(|error| match error {
                StoreError::Conflict { what } if what.starts_with("invitation") => {
                    Error::InvitationClosed {
                        reason: USED_INVITATION.into(),
                    }
                }
                other => other.into(),
            })
    }
}

/// An e-mail address as far as Wardline checks it: one `@`, a dot in the domain, no
/// spaces or control characters, at most 254 characters. The mail server judges the rest.
pub(crate) fn check_email(email: &str) -> Result<String, Error> {
    let email = email.trim();
    let valid = email.len() <= 254
        && !email.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, ',' | ';' | '<' | '>' | '"')
        })
        && email.split('@').count() == 2
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(email.to_owned())
    } else {
        Err(Error::invalid(
            "email",
            "an e-mail address, such as name@clinic.example",
        ))
    }
}

/// The categories asked for, each once, in order; at least one.
fn share_categories(asked: &[ShareCategory]) -> Result<Vec<ShareCategory>, Error> {
    if asked.is_empty() {
        return Err(Error::invalid(
            "categories",
            "at least one of glucose, ecg, vital_signs, alarms, care_plan",
        ));
    }
    let mut categories = asked.to_vec();
    categories.sort_unstable();
    categories.dedup();
    Ok(categories)
}

fn category_names(categories: &[ShareCategory]) -> String {
    categories
        .iter()
        .map(|category| category.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A share's note as stored: clean text of at most 500 characters, or none.
fn optional_message(text: Option<&str>) -> Result<Option<String>, Error> {
    Ok(match text {
        Some(text) => Some(clean_text("message", text, 500)?).filter(|text| !text.is_empty()),
        None => None,
    })
}

/// The caller's own patient record: only a patient account has one.
fn own_record(actor: &Actor) -> Result<PatientId, Error> {
    actor
        .user()
        .filter(|user| user.role == Role::Patient)
        .and_then(|user| user.patient_id)
        .ok_or(Error::Forbidden)
}
