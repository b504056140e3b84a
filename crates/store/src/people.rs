//! People, sessions, patients and care teams: who may see whose data.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::{CareTeamId, PatientId, Role, UserId};

use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::model::{
    CareTeam, LoginFailure, NewCareTeam, NewPatient, NewSession, NewUser, Patient, Session, User,
    UserCredentials,
};

/// Accounts, sessions, patient records and care teams. Every change takes the audit
/// entry that records it and commits both together.
#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// `Conflict` when the username is taken (compared without regard to case);
    /// `NotFound` when a patient account names no patient record.
    async fn create_user(&self, user: NewUser, audit: AuditEvent) -> Result<User, StoreError>;
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn user_credentials(&self, username: &str)
    -> Result<Option<UserCredentials>, StoreError>;
    /// Every account, by username.
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    /// Enabled accounts with this role.
    async fn count_users_with_role(&self, role: Role) -> Result<u64, StoreError>;
    /// Disabling also revokes every open session of the account, at `at`.
    async fn set_user_disabled(
        &self,
        id: UserId,
        disabled: bool,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Replaces an account's password hash, records whether its holder must change it
    /// before doing anything else, and ends every open session of it except `keep` (the
    /// session that changed it), at `at`, in one commit with `audit`.
    async fn set_password(
        &self,
        id: UserId,
        password_hash: String,
        change_required: bool,
        keep: Option<[u8; 32]>,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Starts setting up an account's second factor with a new sealed secret (replacing
    /// one set up before, confirmed or not: the caller decides whether that is allowed),
    /// or removes it (`None`), in one commit with `audit`. A new secret is not asked for
    /// at login until [`PeopleStore::accept_second_factor_step`] confirms it, and no step
    /// of it has been used yet (the steps used belong to the secret they came from).
    /// `NotFound` for an unknown account.
    async fn set_second_factor(
        &self,
        id: UserId,
        sealed: Option<Vec<u8>>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// Records that a code of TOTP time step `step` from the secret `sealed` was accepted,
    /// which confirms the secret if it was being set up. `false`, and nothing changed,
    /// when the account's secret is no longer `sealed` or a code of this step or a later
    /// one was accepted before: a code is good once. `audit`, if any, is committed with
    /// the change.
    async fn accept_second_factor_step(
        &self,
        id: UserId,
        sealed: Vec<u8>,
        step: i64,
        audit: Option<AuditEvent>,
    ) -> Result<bool, StoreError>;

    /// Opens a session (stored by the SHA-256 of its token) with the login's audit entry.
    /// `NotFound` when the account is unknown, disabled, or no longer has the password
    /// hash the login verified.
    async fn create_session(
        &self,
        session: NewSession,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// The live session for a token hash: not expired at `now`, not revoked, user enabled.
    async fn session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError>;
    /// Records that the session's person acted at `at` (a later time only: an earlier
    /// one leaves it as it is). Not audited: the actions themselves are. Nothing
    /// happens for a revoked or unknown session.
    async fn record_session_activity(
        &self,
        token_hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Ends a session, with its audit entry in the same commit. `false` when there was no
    /// open session with this hash, and then nothing is audited: of two requests that
    /// end one session at once (an idle timeout seen by a page and by its stream), one
    /// entry.
    async fn revoke_session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Records a failed login (a wrong password or one-time code) of the account
    /// `username` (compared without case) from `address`, and forgets every record older
    /// than `forget_before`. Kept in the database so that every worker throttles the same
    /// account and address together.
    async fn record_login_failure(
        &self,
        username: &str,
        address: &str,
        at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The account's failed logins since `since`, oldest first (the newest `limit`).
    async fn login_failures(
        &self,
        username: &str,
        address: &str,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<LoginFailure>, StoreError>;
    /// Forgets one failure recorded at `at` (an attempt counted before its password was
    /// checked that turned out not to be a failure); nothing when there is none.
    async fn forget_login_failure(
        &self,
        username: &str,
        address: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// After a successful login from `address`: the failures from that address are
    /// forgotten, and the others no longer count against the account (a lockout of
    /// another address stays).
    async fn clear_login_failures(&self, username: &str, address: &str) -> Result<(), StoreError>;

    /// `Conflict` when another patient has the same medical record number.
    async fn create_patient(
        &self,
        patient: NewPatient,
        audit: AuditEvent,
    ) -> Result<Patient, StoreError>;
    async fn patient(&self, id: PatientId) -> Result<Option<Patient>, StoreError>;
    async fn patients(&self) -> Result<Vec<Patient>, StoreError>;

    /// `Conflict` when a team has the same name.
    async fn create_care_team(
        &self,
        team: NewCareTeam,
        audit: AuditEvent,
    ) -> Result<CareTeam, StoreError>;
    /// Adding someone already a member changes nothing. `Invalid` for an account whose
    /// role cannot join care teams.
    async fn add_care_team_member(
        &self,
        team: CareTeamId,
        user: UserId,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    async fn add_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// Takes a member off a care team; `false` (and nothing stored, the audit entry
    /// included) when the account was not a member. `NotFound` for an unknown team.
    async fn remove_care_team_member(
        &self,
        team: CareTeamId,
        user: UserId,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Ends a care team's care of a patient; `false` (and nothing stored) when the
    /// patient was not in its care. `NotFound` for an unknown team.
    async fn remove_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;
    async fn care_teams(&self) -> Result<Vec<CareTeam>, StoreError>;
    /// The care teams looking after a patient.
    async fn care_teams_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CareTeamId>, StoreError>;
    /// The patients on any care team the user belongs to.
    async fn patients_of_care_team_member(
        &self,
        user: UserId,
    ) -> Result<Vec<PatientId>, StoreError>;
    async fn is_on_care_team_of(
        &self,
        user: UserId,
        patient: PatientId,
    ) -> Result<bool, StoreError>;
    /// Sets (or, with `None`, forgets) where the person wants mail from Wardline about
    /// themselves, with its audit entry. `NotFound` for an unknown account.
    async fn set_contact_email(
        &self,
        user: UserId,
        email: Option<String>,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    async fn contact_email(&self, user: UserId) -> Result<Option<String>, StoreError>;
    /// The contact addresses of the patient's own accounts that are not disabled.
    async fn patient_contact_emails(&self, patient: PatientId) -> Result<Vec<String>, StoreError>;
}
