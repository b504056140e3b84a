//! The one place that decides who may see or change a patient's data, and writes down
//! every decision. An operation cannot read health data without a [`PatientAccess`], and
//! only this module makes one.
//!
//! The rules: a patient sees only their own record; clinicians and nurses see the
//! patients of their care teams, and read another patient's data while an emergency
//! access they opened for that patient lasts (see [`crate::emergency`]); a specialist
//! reads what a patient shared with them, of the shared categories and measured within
//! the shared window, while the share lasts (see [`crate::sharing`]); an admin manages
//! accounts and devices but sees clinical data only when also on the patient's care team.
//!
//! Reads are audited here, allowed or denied, before any data is read. A change that is
//! allowed gets its audit entry from [`Access::change`] and commits it with the change
//! itself; a refused one is audited here.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use wardline_domain::sharing::{ShareCategory, ShareScope};
use wardline_domain::{PatientId, Role, UserId};
use wardline_store::{AuditEvent, AuditOutcome};

use crate::Wardline;
use crate::actor::{Actor, Person};
use crate::error::Error;

/// How often an open live stream checks that its session and its access still hold:
/// a stream ends within this long of a logout, an expiry, a disabled account or a
/// removal from the care team.
pub const STREAM_RECHECK: Duration = Duration::from_secs(1);

/// Why access was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessBasis {
    OwnRecord,
    CareTeam,
    /// An emergency access the person opened: reads only, until it ends.
    Emergency,
    /// A patient's share with the person: reads only, of its categories and window.
    Share,
    /// The patient's own uploader app, with its Nightscout site's secret: the patient's
    /// Nightscout data only.
    Uploader,
}

/// What a read needs of a share to go through one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareNeed {
    /// A share that includes this category.
    Category(ShareCategory),
    /// Any share: the patient's name and the like, which every share shows.
    Any,
    /// Never through a share (the patient's devices, care teams, access log).
    Never,
    /// The patient's Nightscout data: never through a share; the only reads an
    /// uploader's credential may make.
    Nightscout,
    /// A bulk export of whole records: never through a share; the only reads a backend
    /// client's token may make.
    Export,
}

/// What a read of `action` needs of a share. Reads whose category depends on what is
/// asked (observations of a code) say so at the call
/// ([`Wardline::authorize_patient_window`]).
fn share_need(action: &str) -> ShareNeed {
    match action {
        // The patient's name, and the latest values of the shared categories only.
        "patient.read" | "observations.read_latest" | "observations.stream" => ShareNeed::Any,
        "care_plan.read" | "care_plan.versions" => ShareNeed::Category(ShareCategory::CarePlan),
        "alarms.read" => ShareNeed::Category(ShareCategory::Alarms),
        "waveforms.read" | "rhythm_events.read" => ShareNeed::Category(ShareCategory::Ecg),
        "news2.read" | "news2.read_latest" => ShareNeed::Category(ShareCategory::VitalSigns),
        "cgm_report.read" => ShareNeed::Category(ShareCategory::Glucose),
        nightscout if nightscout.starts_with("nightscout.") => ShareNeed::Nightscout,
        "fhir.export" | "fhir.export.download" => ShareNeed::Export,
        _ => ShareNeed::Never,
    }
}

/// Proof that the actor may read one patient's data. Private fields: only this module
/// constructs it.
#[derive(Debug, Clone)]
pub struct PatientAccess {
    patient_id: PatientId,
    basis: AccessBasis,
    /// Through a share: what it opens.
    scope: Option<ShareScope>,
}

impl PatientAccess {
    pub fn patient_id(&self) -> PatientId {
        self.patient_id
    }

    pub fn basis(&self) -> AccessBasis {
        self.basis
    }

    /// Whether the access goes through a share (and so is cut to it).
    pub fn through_share(&self) -> bool {
        self.scope.is_some()
    }

    /// Whether data measured at `time` is within the access's window (always, but
    /// through a share).
    pub fn in_window(&self, time: DateTime<Utc>) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|scope| scope.from <= time && time < scope.to)
    }

    /// A requested window with open ends, cut to the share's (unchanged otherwise);
    /// `None` when nothing of it is inside the share.
    pub fn clamp_open(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Option<OpenWindow> {
        match &self.scope {
            None => Some((from, to)),
            Some(scope) => scope
                .clamp(from.unwrap_or(scope.from), to.unwrap_or(scope.to))
                .map(|(from, to)| (Some(from), Some(to))),
        }
    }

    /// Whether data of `category` is within the access: always, but through a share,
    /// where the share must include it.
    pub fn allows(&self, category: ShareCategory) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|scope| scope.allows(category))
    }

    /// Whether an observation of `code` measured at `time` is within the access: always,
    /// but through a share, where it must be of a shared category and in the window.
    pub fn shows(&self, code: wardline_domain::ObservationCode, time: DateTime<Utc>) -> bool {
        self.scope.as_ref().is_none_or(|scope| {
            scope.allows(ShareCategory::of_code(code)) && scope.from <= time && time < scope.to
        })
    }
}

/// A window of time whose ends may be open.
pub type OpenWindow = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Why a read is allowed, with the share it goes through if it does.
#[derive(Debug, Clone)]
struct Grant {
    basis: AccessBasis,
    share: Option<(Uuid, ShareScope)>,
}

impl Grant {
    fn of(basis: AccessBasis) -> Self {
        Self { basis, share: None }
    }
}

/// A change the actor may make, with the audit entry to commit beside it.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub audit: AuditEvent,
}

impl Wardline {
    /// Why `actor` may read `patient_id`'s data now, if they may (not audited: for
    /// checks repeated while something stays open, whose opening was audited).
    pub(crate) async fn basis_of(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Option<AccessBasis>, Error> {
        self.basis(actor, patient_id).await
    }

    async fn basis(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Option<AccessBasis>, Error> {
        Ok(self
            .grant(actor, patient_id, ShareNeed::Any)
            .await?
            .map(|grant| grant.basis))
    }

    /// Why `actor` may read `patient_id`'s data, if they may; a share counts when it
    /// meets `need`.
    async fn grant(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        need: ShareNeed,
    ) -> Result<Option<Grant>, Error> {
        if let Actor::Uploader(uploader) = actor {
            return Ok(
                (uploader.patient_id == patient_id && need == ShareNeed::Nightscout)
                    .then_some(Grant::of(AccessBasis::Uploader)),
            );
        }
        if let Actor::Client(client) = actor {
            // A backend client bulk exports its care teams' patients, and reads nothing
            // else.
            if need != ShareNeed::Export {
                return Ok(None);
            }
            let teams = self.store.care_teams_of_patient(patient_id).await?;
            return Ok(client
                .care_teams
                .iter()
                .any(|team| teams.contains(team))
                .then_some(Grant::of(AccessBasis::CareTeam)));
        }
        let Some(user) = actor.user() else {
            // The command line reads no clinical data.
            return Ok(None);
        };
        Ok(match user.role {
            Role::Patient => {
                (user.patient_id == Some(patient_id)).then_some(Grant::of(AccessBasis::OwnRecord))
            }
            Role::Admin => self
                .store
                .is_on_care_team_of(user.id, patient_id)
                .await?
                .then_some(Grant::of(AccessBasis::CareTeam)),
            Role::Clinician | Role::Nurse => {
                if self.store.is_on_care_team_of(user.id, patient_id).await? {
                    Some(Grant::of(AccessBasis::CareTeam))
                } else {
                    self.store
                        .open_emergency_access_of(user.id, patient_id, self.now())
                        .await?
                        .map(|_| Grant::of(AccessBasis::Emergency))
                }
            }
            Role::Specialist => {
                if matches!(
                    need,
                    ShareNeed::Never | ShareNeed::Nightscout | ShareNeed::Export
                ) {
                    return Ok(None);
                }
                self.store
                    .live_shares(user.id, patient_id, self.now())
                    .await?
                    .into_iter()
                    .find(|share| match need {
                        ShareNeed::Category(category) => share.categories.contains(&category),
                        ShareNeed::Any
                        | ShareNeed::Never
                        | ShareNeed::Nightscout
                        | ShareNeed::Export => true,
                    })
                    .map(|share| Grant {
                        basis: AccessBasis::Share,
                        share: Some((share.id, share.scope())),
                    })
            }
        })
    }

    /// Decides whether `actor` may read `patient_id`'s data for `action`, audits the
    /// decision (allowed or denied) durably before answering, and returns the proof.
    pub async fn authorize_patient(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        action: &'static str,
        detail: Option<String>,
    ) -> Result<PatientAccess, Error> {
        let grant = self.grant(actor, patient_id, share_need(action)).await?;
        self.decide(actor, patient_id, action, grant, detail).await
    }

    /// [`Wardline::authorize_patient`] for a read of data measured in `[from, to)`, of
    /// `category` (or the action's own): through a share, the window is cut to the
    /// share's, and a read wholly outside it, or of a category the share does not
    /// include, is refused. Returns the window to read.
    pub async fn authorize_patient_window(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        action: &'static str,
        category: Option<ShareCategory>,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        detail: Option<String>,
    ) -> Result<(PatientAccess, (DateTime<Utc>, DateTime<Utc>)), Error> {
        let need = category.map_or_else(|| share_need(action), ShareNeed::Category);
        let grant = self.grant(actor, patient_id, need).await?;
        let window = match &grant {
            Some(Grant {
                share: Some((_, scope)),
                ..
            }) => scope.clamp(from, to),
            _ => Some((from, to)),
        };
        let grant = grant.filter(|_| window.is_some());
        let access = self
            .decide(actor, patient_id, action, grant, detail)
            .await?;
        Ok((access, window.unwrap_or((from, to))))
    }

    /// Audits a read's decision durably, then answers it.
    async fn decide(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        action: &'static str,
        grant: Option<Grant>,
        detail: Option<String>,
    ) -> Result<PatientAccess, Error> {
        let outcome = if grant.is_some() {
            AuditOutcome::Allowed
        } else {
            AuditOutcome::Denied
        };
        // A read under emergency access or through a share says so, for the review and
        // the patient's log.
        let through = match &grant {
            Some(Grant {
                basis: AccessBasis::Emergency,
                ..
            }) => Some("emergency access".to_owned()),
            Some(Grant {
                share: Some((id, _)),
                ..
            }) => Some(format!("share {id}")),
            _ => None,
        };
        let detail = match (through, detail) {
            (Some(through), Some(detail)) => Some(format!("{through}; {detail}")),
            (through, detail) => through.or(detail),
        };
        self.audit(actor.audit(action, Some(patient_id), outcome, detail, self.now()))
            .await?;
        match grant {
            Some(grant) => Ok(PatientAccess {
                patient_id,
                basis: grant.basis,
                scope: grant.share.map(|(_, scope)| scope),
            }),
            None => {
                metrics::counter!("wardline_access_denied_total", "action" => action).increment(1);
                Err(Error::Forbidden)
            }
        }
    }

    /// Whether `actor` may change `patient_id`'s data (a care team member of the given
    /// roles, or the patient where `own_record` allows): the audit entry to commit with
    /// the change, or `Forbidden` after auditing the refusal.
    pub async fn authorize_patient_change(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        action: &'static str,
        roles: &[Role],
        detail: Option<String>,
    ) -> Result<Allowed, Error> {
        let role_allowed = actor.user().is_some_and(|user| roles.contains(&user.role));
        // Emergency access and shares are for reading: changes stay with the care team.
        let basis = if role_allowed {
            self.basis(actor, patient_id)
                .await?
                .filter(|basis| !matches!(basis, AccessBasis::Emergency | AccessBasis::Share))
        } else {
            None
        };
        let outcome = if basis.is_some() {
            AuditOutcome::Allowed
        } else {
            AuditOutcome::Denied
        };
        let audit = actor.audit(action, Some(patient_id), outcome, detail, self.now());
        if basis.is_some() {
            return Ok(Allowed { audit });
        }
        self.audit(audit).await?;
        metrics::counter!("wardline_access_denied_total", "action" => action).increment(1);
        Err(Error::Forbidden)
    }

    /// Lets only admins (and the command line) through. A refusal is audited here; an
    /// allowed change gets the entry to commit with it.
    pub async fn require_admin(
        &self,
        actor: &Actor,
        action: &'static str,
        patient_id: Option<PatientId>,
        detail: Option<String>,
    ) -> Result<Allowed, Error> {
        if actor.is_admin() {
            return Ok(Allowed {
                audit: actor.audit(
                    action,
                    patient_id,
                    AuditOutcome::Allowed,
                    detail,
                    self.now(),
                ),
            });
        }
        self.audit(actor.audit(action, patient_id, AuditOutcome::Denied, detail, self.now()))
            .await?;
        metrics::counter!("wardline_access_denied_total", "action" => action).increment(1);
        Err(Error::Forbidden)
    }

    /// [`Self::require_admin`] for a change an administrator makes to another person's
    /// credentials (a password, a second factor), never their own: an account that could
    /// reset its own would need no current password or code to take itself over.
    /// `own` says what to do instead.
    pub(crate) async fn require_admin_over_another(
        &self,
        actor: &Actor,
        action: &'static str,
        user_id: UserId,
        own: &str,
    ) -> Result<Allowed, Error> {
        let allowed = self
            .require_admin(actor, action, None, Some(user_id.to_string()))
            .await?;
        if actor.user_id() == Some(user_id) {
            return Err(Error::not_permitted("user_id", own));
        }
        Ok(allowed)
    }

    /// [`Self::require_admin`] for a read: the allowed decision is audited at once.
    pub async fn require_admin_read(
        &self,
        actor: &Actor,
        action: &'static str,
        detail: Option<String>,
    ) -> Result<(), Error> {
        let allowed = self.require_admin(actor, action, None, detail).await?;
        self.audit(allowed.audit).await
    }

    /// The patients whose records the actor may list: their own, their care teams', or
    /// for an admin every record (names only; clinical reads still need a care team).
    pub async fn visible_patients(&self, actor: &Actor) -> Result<Vec<PatientId>, Error> {
        let patients = match actor.user().map(|user| (user.role, user)) {
            Some((Role::Patient, user)) => user.patient_id.into_iter().collect(),
            Some((Role::Clinician | Role::Nurse, user)) => {
                self.store.patients_of_care_team_member(user.id).await?
            }
            Some((Role::Specialist, user)) => {
                self.store
                    .patients_sharing_with(user.id, self.now())
                    .await?
            }
            Some((Role::Admin, _)) | None => self
                .store
                .patients()
                .await?
                .into_iter()
                .map(|patient| patient.id)
                .collect(),
        };
        self.audit(actor.audit(
            "patients.list",
            None,
            AuditOutcome::Allowed,
            Some(format!("{} records", patients.len())),
            self.now(),
        ))
        .await?;
        Ok(patients)
    }

    /// Every patient whose data the actor may read (their own record, or the patients of
    /// their care teams), each access audited in one durable append: for views across
    /// patients such as the alarm inbox and the live streams.
    pub async fn authorize_own_patients(
        &self,
        actor: &Actor,
        action: &'static str,
    ) -> Result<Vec<PatientAccess>, Error> {
        let (patients, basis) = self.own_patients(actor).await?;
        let time = self.now();
        let events: Vec<AuditEvent> = patients
            .iter()
            .map(|patient_id| {
                actor.audit(action, Some(*patient_id), AuditOutcome::Allowed, None, time)
            })
            .collect();
        self.store.append_audit(events).await?;
        Ok(patients
            .into_iter()
            .map(|patient_id| PatientAccess {
                patient_id,
                basis,
                scope: None,
            })
            .collect())
    }

    /// The patients whose data `actor` may read, and on what basis (not audited: the
    /// callers audit).
    async fn own_patients(&self, actor: &Actor) -> Result<(Vec<PatientId>, AccessBasis), Error> {
        Ok(match actor.user() {
            Some(user) if user.role == Role::Patient => (
                user.patient_id.into_iter().collect(),
                AccessBasis::OwnRecord,
            ),
            // A specialist's views across patients (the alarm inbox, the ward stream) are
            // empty: they read what each patient shared, on that patient's pages.
            Some(user) if user.role == Role::Specialist => (Vec::new(), AccessBasis::Share),
            Some(user) => (
                self.store.patients_of_care_team_member(user.id).await?,
                AccessBasis::CareTeam,
            ),
            None => (Vec::new(), AccessBasis::CareTeam),
        })
    }

    /// Whether a live stream that `person` opened for `patients` may go on: the session
    /// is still live (not logged out, not expired, not idle for the idle timeout — the
    /// stream itself is not activity —, its account not disabled) and each
    /// patient is still one the person may read, by the same rules as at the opening,
    /// which was audited (this check is not, or a screen would write an entry a second).
    /// A store error ends the stream: it fails closed, and the client reconnects.
    pub async fn stream_may_continue(
        &self,
        person: &Person,
        patients: &HashSet<PatientId>,
    ) -> bool {
        self.stream_may_continue_with(person, patients, &[]).await
    }

    /// [`Wardline::stream_may_continue`] for a stream opened with `accesses`: one opened
    /// through a share goes on only while the share it was cut to is still the one that
    /// would be used (a revoked or expired share, or another taking its place, ends it;
    /// the client reconnects and gets the new scope).
    pub async fn stream_may_continue_with(
        &self,
        person: &Person,
        patients: &HashSet<PatientId>,
        accesses: &[PatientAccess],
    ) -> bool {
        let Ok(session) = self
            .live_session(
                person.token_hash,
                person.remote_addr.clone(),
                crate::people::SessionUse::Refresh,
            )
            .await
        else {
            return false;
        };
        if session.user.password_change_required {
            return false;
        }
        // The account as it is now (a changed role counts), and the patients it may read
        // by the rules the opening used.
        let actor = Actor::Person(Person {
            user: session.user,
            token_hash: person.token_hash,
            remote_addr: person.remote_addr.clone(),
        });
        let Ok((readable, _)) = self.own_patients(&actor).await else {
            return false;
        };
        for access in accesses.iter().filter(|access| access.scope.is_some()) {
            match self.grant(&actor, access.patient_id, ShareNeed::Any).await {
                Ok(Some(grant))
                    if grant.share.as_ref().map(|(_, scope)| scope) == access.scope.as_ref() => {}
                _ => return false,
            }
        }
        for patient in patients {
            if readable.contains(patient) {
                continue;
            }
            // A patient outside the person's care teams: only while an emergency access
            // lasts.
            match self.basis(&actor, *patient).await {
                Ok(Some(_)) => {}
                _ => return false,
            }
        }
        true
    }

    /// Completes when a live stream opened by `person` for `patients` must end (see
    /// [`Wardline::stream_may_continue`]), checking every [`STREAM_RECHECK`]. It owns what
    /// it needs, so a stream can hold it.
    pub fn stream_ended(
        &self,
        person: Person,
        patients: HashSet<PatientId>,
    ) -> impl Future<Output = ()> + Send + use<> {
        self.stream_ended_with(person, patients, Vec::new())
    }

    /// [`Wardline::stream_ended`] for a stream opened with `accesses` (see
    /// [`Wardline::stream_may_continue_with`]).
    pub fn stream_ended_with(
        &self,
        person: Person,
        patients: HashSet<PatientId>,
        accesses: Vec<PatientAccess>,
    ) -> impl Future<Output = ()> + Send + use<> {
        let service = self.clone();
        async move {
            loop {
                tokio::time::sleep(STREAM_RECHECK).await;
                if !service
                    .stream_may_continue_with(&person, &patients, &accesses)
                    .await
                {
                    metrics::counter!("wardline_streams_ended_by_access_total").increment(1);
                    return;
                }
            }
        }
    }

    /// Writes one audit entry on its own; the caller waits for it to be durable.
    pub async fn audit(&self, event: AuditEvent) -> Result<(), Error> {
        self.store
            .append_audit(vec![event])
            .await
            .map_err(Error::from)
    }
}
