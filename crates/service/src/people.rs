//! Logging in and out, accounts, patients and care teams.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use wardline_domain::{CareTeamId, PatientId, Role, UserId};
use wardline_store::{
    AuditCheckpoint, AuditOutcome, AuditQuery, AuditRecord, CareTeam, NewCareTeam, NewPatient,
    NewSession, NewUser, Patient, StoreError, User,
};

use crate::actor::{Actor, Person};
use crate::credentials::{self, token_hash};
use crate::error::Error;
use crate::{Wardline, bounded};

/// What `verify-audit` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every entry links to the one before, and the newest checkpoint (if one was given)
    /// is still there with the same hash.
    Intact {
        events: u64,
        checkpoint: Option<i64>,
    },
    /// Why the trail cannot be trusted.
    Broken(String),
}

/// A fixed hash to verify against when the user is unknown, so that a login for an
/// unknown name takes as long as one with a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Yq8b0o7ohd0vJg9C8d3s7H1l1Q7v2m9Zb6bN3S5v6bI";

/// A session just opened: the token is shown to the client this once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct LoggedIn {
    pub token: String,
    pub expires: DateTime<Utc>,
    pub user: User,
}

/// An account to create; without a password one is generated and returned once.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password: Option<String>,
    pub patient_id: Option<PatientId>,
    /// Whether the holder must change the password at the first login. `None`: yes when
    /// it is generated (whoever created the account saw it) or when a person (an
    /// administrator) chose it; no when the server's own command line chose it (an
    /// operator provisioning accounts on the machine).
    pub password_change_required: Option<bool>,
}

/// How a request uses its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionUse {
    /// A person acting: it keeps the session from ending for idleness.
    Action,
    /// A screen refreshing itself (a poll, a live stream's check): the session still
    /// ends when its person has done nothing for the idle timeout.
    Refresh,
}

/// The idle timeout is counted from the last recorded action, which is written at most
/// once per this long (or a tenth of the timeout, if shorter) so that a busy screen does
/// not write on every request: a session ends between the timeout less this and the
/// timeout after its person's last action.
const ACTIVITY_RESOLUTION: chrono::Duration = chrono::Duration::seconds(60);

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct CreatedAccount {
    pub user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_password: Option<String>,
}

/// A patient record to create.
#[derive(Debug, Clone)]
pub struct PatientDetails {
    pub display_name: String,
    pub birth_date: Option<NaiveDate>,
    pub mrn: Option<String>,
}

/// A member of a patient's care team as the patient sees them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct CareTeamMemberView {
    /// Their account, for the care team itself (to invite a colleague to a visit); the
    /// patient sees names and roles only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    pub display_name: String,
    pub role: Role,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct PatientCareTeamView {
    pub id: CareTeamId,
    pub name: String,
    pub members: Vec<CareTeamMemberView>,
}

/// One look at a patient's data, as the patient sees it: who, what, the outcome; no
/// address and no detail.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct AccessLogEntry {
    pub sequence: i64,
    pub time: DateTime<Utc>,
    /// The person's display name, or the account name when the account is gone.
    pub who: String,
    pub role: Option<Role>,
    pub action: String,
    pub outcome: AuditOutcome,
    /// How someone outside the care team came to look: through one of the patient's
    /// shares (its id), or by emergency access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_id: Option<uuid::Uuid>,
    pub emergency: bool,
}

pub fn check_username(username: &str) -> Result<(), Error> {
    let valid = (3..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "username",
            "3 to 64 characters from letters, digits, '.', '_', '-' and '@'",
        ))
    }
}

impl Wardline {
    /// Checks a password and opens a session. Failures are audited and throttled per
    /// account, per address and overall.
    ///
    /// An account with a second factor needs `one_time_code` as well: without one the
    /// answer, once the password is right, is `SecondFactorRequired` (which is not a
    /// failure); a wrong or reused code is a failed login.
    pub async fn login(
        &self,
        username: &str,
        password: String,
        one_time_code: Option<&str>,
        remote_addr: &str,
    ) -> Result<LoggedIn, Error> {
        if username.len() > 200 || password.len() > 1024 {
            return Err(Error::BadLogin);
        }
        if let Some(code) = one_time_code {
            crate::second_factor::parse_code(code)?;
        }
        self.not_locked_out(username, remote_addr).await?;
        let attempt = self.count_attempt(username, remote_addr).await?;
        let credentials = self.store.user_credentials(username).await?;
        let (stored_hash, account) = match credentials {
            Some(credentials) if !credentials.user.disabled => (
                credentials.password_hash,
                Some((credentials.user, credentials.second_factor)),
            ),
            _ => (DUMMY_HASH.to_owned(), None),
        };
        let verified = credentials::password_matches(password, stored_hash.clone()).await?;
        let Some((user, second_factor)) = account.filter(|_| verified) else {
            self.failed_login(username, remote_addr, None).await?;
            return Err(Error::BadLogin);
        };
        if let Some(secret) = second_factor.filter(|secret| secret.confirmed) {
            let Some(code) = one_time_code else {
                // The right password, asked for the code: not a failure.
                self.store
                    .forget_login_failure(username, remote_addr, attempt)
                    .await?;
                return Err(Error::SecondFactorRequired);
            };
            let accepted = match self.code_step(&user, &secret, code)? {
                Some(step) => {
                    self.store
                        .accept_second_factor_step(user.id, secret.sealed, step, None)
                        .await?
                }
                None => false,
            };
            if !accepted {
                self.failed_login(username, remote_addr, Some("wrong or reused one-time code"))
                    .await?;
                return Err(Error::BadOneTimeCode);
            }
        }
        self.store
            .clear_login_failures(username, remote_addr)
            .await?;
        let token = credentials::new_session_token()?;
        let created = self.now();
        let expires = created + self.settings.session_lifetime;
        let person = Person {
            user: user.clone(),
            token_hash: token_hash(&token),
            remote_addr: Some(remote_addr.to_owned()),
        };
        self.store
            .create_session(
                NewSession {
                    token_hash: person.token_hash,
                    user_id: user.id,
                    password_hash: stored_hash,
                    created,
                    expires,
                },
                Actor::from(person).allowed("login", None, None),
            )
            .await
            .map_err(|error| match error {
                // Disabled, or its password changed, since the password was checked.
                StoreError::NotFound { .. } => Error::BadLogin,
                other => other.into(),
            })?;
        Ok(LoggedIn {
            token,
            expires,
            user,
        })
    }

    /// Counts a failed login for the throttle, audits it and counts it in the metrics.
    async fn failed_login(
        &self,
        username: &str,
        remote_addr: &str,
        why: Option<&str>,
    ) -> Result<(), Error> {
        let locked_out = self.attempt_failed(username, remote_addr).await?;
        let detail = [
            why,
            locked_out.then_some("locked out for 15 min after 5 failures"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
        self.audit(wardline_store::AuditEvent {
            time: self.now(),
            actor: None,
            actor_label: username.chars().take(200).collect(),
            action: "login.failed".into(),
            patient_id: None,
            outcome: AuditOutcome::Denied,
            remote_addr: Some(remote_addr.to_owned()),
            detail: (!detail.is_empty()).then_some(detail),
        })
        .await?;
        metrics::counter!("wardline_logins_failed_total").increment(1);
        Ok(())
    }

    /// The person a session token belongs to, if the session is live, for any
    /// operation: refused with `PasswordChangeRequired` while the account must change its
    /// password, and `SecondFactorSetupRequired` while its role requires a second factor
    /// it has not set up.
    pub async fn authenticate(
        &self,
        token: &str,
        remote_addr: Option<String>,
        used: SessionUse,
    ) -> Result<Person, Error> {
        let person = self
            .authenticate_for_account(token, remote_addr, used)
            .await?;
        if person.user.password_change_required {
            return Err(Error::PasswordChangeRequired);
        }
        if self.second_factor_missing(&person.user) {
            return Err(Error::SecondFactorSetupRequired);
        }
        Ok(person)
    }

    /// As [`Wardline::authenticate`], for what an account may do while it must change its
    /// password or set up a second factor: those two, read its own account, log out.
    pub async fn authenticate_for_account(
        &self,
        token: &str,
        remote_addr: Option<String>,
        used: SessionUse,
    ) -> Result<Person, Error> {
        let hash = token_hash(token);
        let session = self.live_session(hash, remote_addr.clone(), used).await?;
        Ok(Person {
            user: session.user,
            token_hash: hash,
            remote_addr,
        })
    }

    /// The session for a token hash if it is live: not logged out, expired or disabled,
    /// and used within the idle timeout. A session found idle ends here, audited; an
    /// action is recorded (see [`ACTIVITY_RESOLUTION`]).
    pub(crate) async fn live_session(
        &self,
        hash: [u8; 32],
        remote_addr: Option<String>,
        used: SessionUse,
    ) -> Result<wardline_store::Session, Error> {
        let now = self.now();
        let session = self
            .store
            .session(hash, now)
            .await?
            .ok_or(Error::Unauthenticated)?;
        let Some(idle) = self.settings.session_idle_timeout else {
            return Ok(session);
        };
        if now - session.active >= idle {
            let person = Person {
                user: session.user,
                token_hash: hash,
                remote_addr,
            };
            let idle = if idle.num_seconds() % 60 == 0 {
                format!("{} minutes", idle.num_minutes())
            } else {
                format!("{} seconds", idle.num_seconds())
            };
            let audit = Actor::from(person).audit(
                "session.idle_timeout",
                None,
                AuditOutcome::Allowed,
                Some(format!("ended after {idle} without activity")),
                now,
            );
            self.store.revoke_session(hash, now, audit).await?;
            metrics::counter!("wardline_sessions_ended_idle_total").increment(1);
            return Err(Error::SessionIdle { idle });
        }
        if used == SessionUse::Action && now - session.active >= ACTIVITY_RESOLUTION.min(idle / 10)
        {
            self.store.record_session_activity(hash, now).await?;
        }
        Ok(session)
    }

    /// Records an attempt to log in (or to prove the password) as failed, before the
    /// password is checked; a success clears it (`clear_login_failures`). Attempts made at
    /// the same moment, on this worker or another, so count against each other before
    /// the deliberately slow password check of any of them ends.
    async fn count_attempt(&self, username: &str, address: &str) -> Result<DateTime<Utc>, Error> {
        let now = self.now();
        self.store
            .record_login_failure(username, address, now, crate::throttle::looked_back_to(now))
            .await?;
        Ok(now)
    }

    /// An attempt counted by [`Wardline::count_attempt`] failed: it costs its address
    /// here too (see [`crate::throttle`]). True when the account is now locked out from
    /// this address.
    async fn attempt_failed(&self, username: &str, address: &str) -> Result<bool, Error> {
        self.logins.failed(address, std::time::Instant::now());
        let (from_address, _) = self.login_failures(username, address).await?;
        Ok(crate::throttle::newest_failure_locks(&from_address))
    }

    /// The account's failed logins that still matter, oldest first: those from `address`,
    /// and those that count against the account.
    async fn login_failures(
        &self,
        username: &str,
        address: &str,
    ) -> Result<(Vec<DateTime<Utc>>, Vec<DateTime<Utc>>), Error> {
        // The newest 64 are enough: five lock a pair, and the account's delay stops
        // growing after eight.
        let failures = self
            .store
            .login_failures(
                username,
                address,
                crate::throttle::looked_back_to(self.now()),
                64,
            )
            .await?;
        Ok((
            failures
                .iter()
                .filter(|failure| failure.from_address)
                .map(|failure| failure.at)
                .collect(),
            failures
                .iter()
                .filter(|failure| failure.counts_for_account)
                .map(|failure| failure.at)
                .collect(),
        ))
    }

    /// `TooManyAttempts` while the login throttle holds this username or address back, or
    /// all logins (see [`crate::throttle`]).
    async fn not_locked_out(&self, username: &str, address: &str) -> Result<(), Error> {
        let now = self.now();
        let (from_address, of_account) = self.login_failures(username, address).await?;
        let stored = [
            crate::throttle::pair_locked_until(&from_address),
            crate::throttle::account_next_allowed(&of_account),
        ]
        .into_iter()
        .flatten()
        .filter(|until| *until > now)
        .max()
        .map(|until| (until - now).to_std().unwrap_or_default());
        match stored.or_else(|| self.logins.locked(address, std::time::Instant::now())) {
            Some(wait) => {
                metrics::counter!("wardline_logins_throttled_total").increment(1);
                Err(Error::TooManyAttempts {
                    retry_after_secs: wait.as_secs().max(1),
                })
            }
            None => Ok(()),
        }
    }

    /// Changes the caller's own password after checking the current one (a wrong one
    /// counts as a failed login for the throttle). Every other session of the account
    /// ends; this one goes on.
    pub async fn change_password(
        &self,
        person: &Person,
        current: String,
        new: String,
    ) -> Result<(), Error> {
        let address = person.remote_addr.clone().unwrap_or_default();
        let username = person.user.username.clone();
        self.not_locked_out(&username, &address).await?;
        credentials::check_password_strength(
            "new_password",
            &new,
            &[&username, &person.user.display_name],
        )?;
        let stored = self
            .store
            .user_credentials(&username)
            .await?
            .ok_or(Error::Unauthenticated)?
            .password_hash;
        let current_for_reuse_check = current.clone();
        self.count_attempt(&username, &address).await?;
        if !credentials::password_matches(current, stored).await? {
            self.attempt_failed(&username, &address).await?;
            self.audit(Actor::from(person.clone()).audit(
                "password.change",
                None,
                AuditOutcome::Denied,
                Some("wrong current password".into()),
                self.now(),
            ))
            .await?;
            return Err(Error::not_permitted(
                "current_password",
                "is not the account's password",
            ));
        }
        self.store.clear_login_failures(&username, &address).await?;
        if new == current_for_reuse_check {
            return Err(Error::invalid(
                "new_password",
                "must differ from the current password",
            ));
        }
        let hash = credentials::hash_password(new).await?;
        let audit = Actor::from(person.clone()).allowed("password.change", None, None);
        self.store
            .set_password(
                person.user.id,
                hash,
                false,
                Some(person.token_hash),
                self.now(),
                audit,
            )
            .await?;
        Ok(())
    }

    /// Gives an account a new generated password (admin; never one's own, which is
    /// changed with the current one): every session of the account ends. Returns the
    /// password, to hand over once.
    pub async fn reset_password(&self, actor: &Actor, user_id: UserId) -> Result<String, Error> {
        let allowed = self
            .require_admin_over_another(
                actor,
                "users.reset_password",
                user_id,
                "change your own password with your current one",
            )
            .await?;
        let password = credentials::generate_password()?;
        let hash = credentials::hash_password(password.clone()).await?;
        self.store
            .set_password(user_id, hash, true, None, self.now(), allowed.audit)
            .await?;
        Ok(password)
    }

    pub async fn logout(&self, person: &Person) -> Result<(), Error> {
        let audit = Actor::from(person.clone()).allowed("logout", None, None);
        self.store
            .revoke_session(person.token_hash, self.now(), audit)
            .await?;
        Ok(())
    }

    /// Creates the first administrator when there is none (`true` then), with a
    /// generated one-time password that `deliver` has put where the operator will find
    /// it *before* the account exists: an account whose password nobody could be given
    /// would lock everyone out, as the next start sees an administrator and makes none.
    pub async fn bootstrap_admin(
        &self,
        deliver: impl FnOnce(&str) -> Result<(), String>,
    ) -> Result<bool, Error> {
        if self.store.count_users_with_role(Role::Admin).await? > 0 {
            return Ok(false);
        }
        let password = credentials::generate_password()?;
        deliver(&password).map_err(Error::Internal)?;
        self.create_user(
            &Actor::CommandLine,
            NewAccount {
                username: "admin".into(),
                display_name: "Administrator".into(),
                role: Role::Admin,
                password: Some(password),
                patient_id: None,
                password_change_required: Some(true),
            },
        )
        .await?;
        Ok(true)
    }

    pub async fn list_users(&self, actor: &Actor) -> Result<Vec<User>, Error> {
        self.require_admin_read(actor, "users.list", None).await?;
        Ok(self.store.users().await?)
    }

    pub async fn create_user(
        &self,
        actor: &Actor,
        account: NewAccount,
    ) -> Result<CreatedAccount, Error> {
        let allowed = self
            .require_admin(actor, "users.create", None, Some(account.username.clone()))
            .await?;
        check_username(&account.username)?;
        let display_name = bounded("display_name", &account.display_name, 200)?;
        if (account.role == Role::Patient) != account.patient_id.is_some() {
            return Err(Error::invalid(
                "patient_id",
                "required for a patient account, and only for one",
            ));
        }
        let set_by_a_person = matches!(actor, Actor::Person(_));
        let change_required = account
            .password_change_required
            .unwrap_or(account.password.is_none() || set_by_a_person);
        let (password, generated_password) = match account.password {
            Some(password) => {
                credentials::check_password_strength(
                    "password",
                    &password,
                    &[&account.username, &display_name],
                )?;
                (password, None)
            }
            None => {
                let generated = credentials::generate_password()?;
                (generated.clone(), Some(generated))
            }
        };
        let password_hash = credentials::hash_password(password).await?;
        let user = self
            .store
            .create_user(
                NewUser {
                    id: UserId::random(),
                    username: account.username,
                    display_name,
                    role: account.role,
                    password_hash,
                    patient_id: account.patient_id,
                    created: self.now(),
                    password_change_required: change_required,
                },
                allowed.audit,
            )
            .await?;
        Ok(CreatedAccount {
            user,
            generated_password,
        })
    }

    /// Disables an account (someone who left): their sessions end at once and they cannot
    /// log in again. Accounts are never deleted, so the audit trail keeps its names.
    pub async fn disable_user(&self, actor: &Actor, user_id: UserId) -> Result<(), Error> {
        let allowed = self
            .require_admin(actor, "users.disable", None, Some(user_id.to_string()))
            .await?;
        if actor.user_id() == Some(user_id) {
            return Err(Error::invalid(
                "user_id",
                "an admin cannot disable their own account (ask another admin)",
            ));
        }
        // The store answers "not found" for an unknown id.
        self.store
            .set_user_disabled(user_id, true, self.now(), allowed.audit)
            .await?;
        Ok(())
    }

    /// The account with this username (for the command line).
    pub async fn user_named(&self, username: &str) -> Result<User, Error> {
        self.store
            .user_credentials(username)
            .await?
            .map(|credentials| credentials.user)
            .ok_or_else(|| Error::NotFound(format!("user {username:?}")))
    }

    /// The accounts with these ids, each read once; unknown ids are left out. For naming
    /// the few people a page mentions without reading every account.
    pub async fn users_by_id(
        &self,
        ids: impl IntoIterator<Item = UserId>,
    ) -> Result<HashMap<UserId, User>, Error> {
        let mut users = HashMap::new();
        for id in ids.into_iter().collect::<HashSet<_>>() {
            if let Some(user) = self.store.user(id).await? {
                users.insert(id, user);
            }
        }
        Ok(users)
    }

    pub async fn list_patients(&self, actor: &Actor) -> Result<Vec<Patient>, Error> {
        let visible = self.visible_patients(actor).await?;
        let mut patients = Vec::with_capacity(visible.len());
        for patient_id in visible {
            if let Some(patient) = self.store.patient(patient_id).await? {
                patients.push(patient);
            }
        }
        Ok(patients)
    }

    pub async fn create_patient(
        &self,
        actor: &Actor,
        details: PatientDetails,
    ) -> Result<Patient, Error> {
        let id = PatientId::random();
        let allowed = self
            .require_admin(actor, "patients.create", Some(id), None)
            .await?;
        let display_name = bounded("display_name", &details.display_name, 200)?;
        if details
            .birth_date
            .is_some_and(|date| date > self.now().date_naive())
        {
            return Err(Error::invalid("birth_date", "is in the future"));
        }
        if details
            .mrn
            .as_ref()
            .is_some_and(|mrn| mrn.is_empty() || mrn.len() > 64)
        {
            return Err(Error::invalid("mrn", "1 to 64 characters"));
        }
        Ok(self
            .store
            .create_patient(
                NewPatient {
                    id,
                    display_name,
                    birth_date: details.birth_date,
                    mrn: details.mrn,
                    created: self.now(),
                },
                allowed.audit,
            )
            .await?)
    }

    pub async fn patient(&self, actor: &Actor, patient_id: PatientId) -> Result<Patient, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "patient.read", None)
            .await?;
        self.store
            .patient(access.patient_id())
            .await?
            .ok_or_else(|| Error::NotFound(format!("patient {patient_id}")))
    }

    pub async fn list_care_teams(&self, actor: &Actor) -> Result<Vec<CareTeam>, Error> {
        self.require_admin_read(actor, "care_teams.list", None)
            .await?;
        Ok(self.store.care_teams().await?)
    }

    pub async fn create_care_team(&self, actor: &Actor, name: &str) -> Result<CareTeam, Error> {
        let allowed = self
            .require_admin(actor, "care_teams.create", None, Some(name.to_owned()))
            .await?;
        let name = bounded("name", name, 200)?;
        Ok(self
            .store
            .create_care_team(
                NewCareTeam {
                    id: CareTeamId::random(),
                    name: name.to_owned(),
                    created: self.now(),
                },
                allowed.audit,
            )
            .await?)
    }

    pub async fn add_care_team_member(
        &self,
        actor: &Actor,
        team: CareTeamId,
        user: UserId,
    ) -> Result<(), Error> {
        let detail = format!("team {team} user {user}");
        let allowed = self
            .require_admin(actor, "care_teams.add_member", None, Some(detail.clone()))
            .await?;
        // Joining a care team opens its patients' records: an admin, who manages accounts,
        // does not grant that to themselves; another admin must (and is audited doing it).
        if actor.user_id() == Some(user) {
            self.audit(actor.audit(
                "care_teams.add_member",
                None,
                AuditOutcome::Denied,
                Some(format!("{detail}: adding oneself")),
                self.now(),
            ))
            .await?;
            return Err(Error::not_permitted(
                "user_id",
                "an admin cannot add themselves to a care team (ask another admin)",
            ));
        }
        self.store
            .add_care_team_member(team, user, allowed.audit)
            .await?;
        self.reload_alarms().await;
        Ok(())
    }

    pub async fn add_care_team_patient(
        &self,
        actor: &Actor,
        team: CareTeamId,
        patient: PatientId,
    ) -> Result<(), Error> {
        let allowed = self
            .require_admin(
                actor,
                "care_teams.add_patient",
                Some(patient),
                Some(format!("team {team}")),
            )
            .await?;
        self.store
            .add_care_team_patient(team, patient, allowed.audit)
            .await?;
        self.reload_alarms().await;
        Ok(())
    }

    /// Takes a clinician or nurse off a care team (admin): their access to the team's
    /// patients ends at once, their open streams of those patients within a second.
    /// `not_found` when they were not a member.
    pub async fn remove_care_team_member(
        &self,
        actor: &Actor,
        team: CareTeamId,
        user: UserId,
    ) -> Result<(), Error> {
        let allowed = self
            .require_admin(
                actor,
                "care_teams.remove_member",
                None,
                Some(format!("team {team} user {user}")),
            )
            .await?;
        let removed = self
            .store
            .remove_care_team_member(team, user, allowed.audit);
        self.removed_from_team(removed.await?, "care team member")
            .await
    }

    /// Ends a care team's care of a patient (admin): the team's members lose access to
    /// the patient's data at once, their open streams of it within a second.
    /// `not_found` when the patient was not in the team's care.
    pub async fn remove_care_team_patient(
        &self,
        actor: &Actor,
        team: CareTeamId,
        patient: PatientId,
    ) -> Result<(), Error> {
        let allowed = self
            .require_admin(
                actor,
                "care_teams.remove_patient",
                Some(patient),
                Some(format!("team {team}")),
            )
            .await?;
        let removed = self
            .store
            .remove_care_team_patient(team, patient, allowed.audit);
        self.removed_from_team(removed.await?, "patient in the team's care")
            .await
    }

    /// After a removal: the alarm engine learns the new teams; nothing removed is "not
    /// found".
    async fn removed_from_team(&self, removed: bool, what: &str) -> Result<(), Error> {
        if !removed {
            return Err(Error::NotFound(what.into()));
        }
        self.reload_alarms().await;
        Ok(())
    }

    /// Who can see a patient's data besides the patient: the active members of the
    /// patient's care teams, by name and role.
    pub async fn patient_care_teams(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<PatientCareTeamView>, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "care_teams.read", None)
            .await?;
        let teams: Vec<CareTeam> = self
            .store
            .care_teams()
            .await?
            .into_iter()
            .filter(|team| team.patients.contains(&access.patient_id()))
            .collect();
        let users = self
            .users_by_id(teams.iter().flat_map(|team| team.members.clone()))
            .await?;
        let staff = actor
            .user()
            .is_some_and(|user| matches!(user.role, Role::Clinician | Role::Nurse | Role::Admin))
            && matches!(access.basis(), crate::AccessBasis::CareTeam);
        Ok(teams
            .into_iter()
            .map(|team| PatientCareTeamView {
                id: team.id,
                name: team.name,
                members: team
                    .members
                    .iter()
                    .filter_map(|id| users.get(id))
                    .filter(|user| !user.disabled)
                    .map(|user| CareTeamMemberView {
                        user_id: staff.then_some(user.id),
                        display_name: user.display_name.clone(),
                        role: user.role,
                    })
                    .collect(),
            })
            .collect())
    }

    /// Every recorded look at a patient's data and every refused attempt, newest first:
    /// the audit trail as the patient (or their care team) may see it.
    pub async fn patient_access_log(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<AccessLogEntry>, Error> {
        let limit = limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(Error::invalid("limit", "1 to 500"));
        }
        let access = self
            .authorize_patient(actor, patient_id, "access_log.read", None)
            .await?;
        let events = self
            .store
            .audit_events(AuditQuery {
                patient_id: Some(access.patient_id()),
                actor: None,
                action: None,
                before,
                limit,
            })
            .await?;
        let users = self
            .users_by_id(events.iter().filter_map(|event| event.actor))
            .await?;
        Ok(events
            .into_iter()
            .map(|event| {
                let user = event.actor.and_then(|id| users.get(&id));
                // Another patient who tried to look is named to nobody: who they are is
                // their own health information.
                let who = match user {
                    Some(user)
                        if user.role == Role::Patient
                            && user.patient_id != Some(access.patient_id()) =>
                    {
                        "another patient account".to_owned()
                    }
                    Some(user) => user.display_name.clone(),
                    None => event.actor_label,
                };
                // The access check writes how the read came about first in the detail.
                let detail = event.detail.as_deref().unwrap_or_default();
                let share_id = detail
                    .strip_prefix("share ")
                    .and_then(|rest| rest.get(..36))
                    .and_then(|id| uuid::Uuid::parse_str(id).ok());
                AccessLogEntry {
                    sequence: event.sequence,
                    time: event.time,
                    who,
                    role: user.map(|user| user.role),
                    action: event.action,
                    outcome: event.outcome,
                    share_id,
                    emergency: detail.starts_with("emergency access"),
                }
            })
            .collect())
    }

    /// The audit trail (admin).
    pub async fn audit_log(
        &self,
        actor: &Actor,
        query: AuditQuery,
    ) -> Result<Vec<AuditRecord>, Error> {
        self.require_admin_read(actor, "audit.read", None).await?;
        Ok(self
            .store
            .audit_events(AuditQuery {
                limit: query.limit.clamp(1, 1000),
                ..query
            })
            .await?)
    }

    /// Recomputes the audit trail's chain and checks that the newest exported checkpoint
    /// (whose signature the caller checked) is still in it.
    pub async fn verify_audit(
        &self,
        actor: &Actor,
        newest_checkpoint: Option<&AuditCheckpoint>,
    ) -> Result<AuditVerdict, Error> {
        let allowed = self
            .require_admin(actor, "audit.verify", None, None)
            .await?;
        // The check is audited after it ran, with what it found, so that it reads the
        // trail as it was given.
        let verdict = self.audit_verdict(newest_checkpoint).await?;
        let mut audit = allowed.audit;
        audit.detail = Some(match &verdict {
            AuditVerdict::Intact { events, .. } => format!("intact: {events} entries"),
            AuditVerdict::Broken(reason) => format!("broken: {reason}"),
        });
        self.audit(audit).await?;
        Ok(verdict)
    }

    async fn audit_verdict(
        &self,
        newest_checkpoint: Option<&AuditCheckpoint>,
    ) -> Result<AuditVerdict, Error> {
        let events = match self.store.verify_audit_chain().await {
            Ok(events) => events,
            Err(StoreError::Corrupt(reason)) => return Ok(AuditVerdict::Broken(reason)),
            Err(other) => return Err(other.into()),
        };
        // A database in use always holds entries (its first administrator's creation).
        if events == 0 {
            return Ok(AuditVerdict::Broken(
                "the audit trail is empty: its entries were deleted".into(),
            ));
        }
        let Some(checkpoint) = newest_checkpoint else {
            return Ok(AuditVerdict::Intact {
                events,
                checkpoint: None,
            });
        };
        let entry = self
            .store
            .audit_events(AuditQuery {
                before: Some(checkpoint.sequence.saturating_add(1)),
                limit: 1,
                ..AuditQuery::default()
            })
            .await?
            .into_iter()
            .next();
        let newest = self
            .store
            .audit_events(AuditQuery {
                limit: 1,
                ..AuditQuery::default()
            })
            .await?
            .into_iter()
            .next()
            .map_or(0, |entry| entry.sequence);
        Ok(match entry {
            Some(entry) if entry.sequence == checkpoint.sequence => {
                if entry.chain_hash == checkpoint.chain_hash {
                    AuditVerdict::Intact {
                        events,
                        checkpoint: Some(checkpoint.sequence),
                    }
                } else {
                    AuditVerdict::Broken(format!(
                        "entry {} differs from the checkpoint of {}: the trail was rewritten",
                        checkpoint.sequence, checkpoint.time
                    ))
                }
            }
            _ => AuditVerdict::Broken(format!(
                "the checkpoint of {} names entry {}, but the trail ends at entry {newest}: \
                 its newest entries were deleted",
                checkpoint.time, checkpoint.sequence
            )),
        })
    }

    /// Tells the alarm engine that care teams, policies or channels changed.
    /// Tells the alarm engine that a device was enrolled for, or assigned to, the
    /// patient: rules that watch the patient's devices by kind now include it.
    pub(crate) async fn devices_changed(&self, patient_id: PatientId) {
        if let Some(alarms) = &self.alarms
            && let Err(error) = alarms.devices_changed(patient_id).await
        {
            tracing::warn!(%error, "the alarm engine could not learn of a device");
        }
    }

    pub(crate) async fn reload_alarms(&self) {
        if let Some(alarms) = &self.alarms
            && let Err(error) = alarms.reload().await
        {
            tracing::warn!(%error, "the alarm engine could not reload");
        }
    }
}
