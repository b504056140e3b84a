//! [`PeopleStore`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;
use wardline_domain::{CareTeamId, PatientId, Role, UserId};

use super::PostgresStore;
use super::audit::{append, append_if_changed};
use super::rows::*;
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::model::{
    CareTeam, LoginFailure, NewCareTeam, NewPatient, NewSession, NewUser, Patient,
    SecondFactorSecret, Session, User, UserCredentials,
};
use crate::people::PeopleStore;

/// An account's columns, read by [`user_from_row`]; a query's own columns follow them.
pub(crate) const USER_COLUMNS: &str = "u.id, u.username, u.display_name, u.role, p.id, u.disabled, \
     u.created_ms, u.password_change_required, u.totp_sealed IS NOT NULL AND u.totp_confirmed";
/// How many columns [`USER_COLUMNS`] has: the columns a query adds after it start here.
pub(crate) const USER_COLUMN_COUNT: usize = 9;
pub(crate) const USER_FROM: &str = "app_user u LEFT JOIN patient p ON p.key = u.patient_key";

/// Usernames in SQLite's `COLLATE NOCASE` order (ASCII letters folded, then bytes), so
/// that both backends list accounts alike whatever the database's locale.
const BY_USERNAME: &str = r#"lower(u.username COLLATE "C")"#;

pub(crate) fn user_from_row(row: &Row) -> Result<User, StoreError> {
    let role: &str = row.try_get(3)?;
    Ok(User {
        id: UserId(row.try_get(0)?),
        username: row.try_get(1)?,
        display_name: row.try_get(2)?,
        role: role
            .parse::<Role>()
            .map_err(|error| StoreError::Corrupt(error.to_string()))?,
        patient_id: row.try_get::<_, Option<Uuid>>(4)?.map(PatientId),
        disabled: row.try_get(5)?,
        created: from_ms(row.try_get(6)?)?,
        password_change_required: row.try_get(7)?,
        second_factor: row.try_get(8)?,
    })
}

pub(crate) async fn user_by_id(
    client: &impl GenericClient,
    id: UserId,
) -> Result<Option<User>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM {USER_FROM} WHERE u.id = $1"
        ))
        .await?;
    client
        .query_opt(&statement, &[&id.0])
        .await?
        .map(|row| user_from_row(&row))
        .transpose()
}

const PATIENT_COLUMNS: &str = "id, display_name, birth_date, mrn, created_ms";

fn patient_from_row(row: &Row) -> Result<Patient, StoreError> {
    let birth_date: Option<&str> = row.try_get(2)?;
    Ok(Patient {
        id: PatientId(row.try_get(0)?),
        display_name: row.try_get(1)?,
        birth_date: birth_date
            .map(|text| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| StoreError::Corrupt(format!("birth date {text:?}")))
            })
            .transpose()?,
        mrn: row.try_get(3)?,
        created: from_ms(row.try_get(4)?)?,
    })
}

/// Inserts an account (not audited: the caller commits its entry beside it).
pub(crate) async fn insert_user(
    transaction: &deadpool_postgres::Transaction<'_>,
    user: NewUser,
) -> Result<User, StoreError> {
    let patient_key = match user.patient_id {
        Some(patient) => Some(
            patient_key(transaction, patient)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("patient {patient}")))?,
        ),
        None => None,
    };
    let created = from_ms(to_ms(user.created))?;
    transaction
        .execute(
            "INSERT INTO app_user (id, username, display_name, role, password_hash, patient_key,
                created_ms, password_change_required)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &user.id.0,
                &user.username,
                &user.display_name,
                &user.role.as_str(),
                &user.password_hash,
                &patient_key,
                &to_ms(created),
                &user.password_change_required,
            ],
        )
        .await
        .map_err(|error| unique_violation(error, format!("user {}", user.username)))?;
    Ok(User {
        id: user.id,
        username: user.username,
        display_name: user.display_name,
        role: user.role,
        patient_id: user.patient_id,
        disabled: false,
        created,
        password_change_required: user.password_change_required,
        second_factor: false,
    })
}

#[async_trait]
impl PeopleStore for PostgresStore {
    async fn create_user(&self, user: NewUser, audit: AuditEvent) -> Result<User, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let created = insert_user(&transaction, user).await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(created)
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        user_by_id(&self.client().await?, id).await
    }

    async fn user_credentials(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, u.password_hash, u.totp_sealed, u.totp_confirmed,
                     u.totp_last_step
                 FROM {USER_FROM} WHERE lower(u.username) = lower($1)"
            ))
            .await?;
        let Some(row) = client.query_opt(&statement, &[&username]).await? else {
            return Ok(None);
        };
        let second_factor = match row.try_get::<_, Option<Vec<u8>>>(USER_COLUMN_COUNT + 1)? {
            Some(sealed) => Some(SecondFactorSecret {
                sealed,
                confirmed: row.try_get(USER_COLUMN_COUNT + 2)?,
                last_step: row.try_get(USER_COLUMN_COUNT + 3)?,
            }),
            None => None,
        };
        Ok(Some(UserCredentials {
            user: user_from_row(&row)?,
            password_hash: row.try_get(USER_COLUMN_COUNT)?,
            second_factor,
        }))
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read_all(
            &format!("SELECT {USER_COLUMNS} FROM {USER_FROM} ORDER BY {BY_USERNAME}, u.key"),
            &[],
            user_from_row,
        )
        .await
    }

    async fn count_users_with_role(&self, role: Role) -> Result<u64, StoreError> {
        let count: i64 = self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM app_user WHERE role = $1 AND NOT disabled",
                &[&role.as_str()],
            )
            .await?
            .try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn set_user_disabled(
        &self,
        id: UserId,
        disabled: bool,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let user_key: i64 = transaction
            .query_opt(
                "UPDATE app_user SET disabled = $2 WHERE id = $1 RETURNING key",
                &[&id.0, &disabled],
            )
            .await?
            .ok_or_else(|| StoreError::not_found(format!("user {id}")))?
            .try_get(0)?;
        if disabled {
            transaction
                .execute(
                    "UPDATE session SET revoked_ms = $2 WHERE user_key = $1 AND revoked_ms IS NULL",
                    &[&user_key, &to_ms(at)],
                )
                .await?;
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn set_password(
        &self,
        id: UserId,
        password_hash: String,
        change_required: bool,
        keep: Option<[u8; 32]>,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let user_key: i64 = transaction
            .query_opt(
                "UPDATE app_user SET password_hash = $2, password_change_required = $3
                 WHERE id = $1 RETURNING key",
                &[&id.0, &password_hash, &change_required],
            )
            .await?
            .ok_or_else(|| StoreError::not_found(format!("user {id}")))?
            .try_get(0)?;
        transaction
            .execute(
                "UPDATE session SET revoked_ms = $2
                 WHERE user_key = $1 AND revoked_ms IS NULL
                   AND ($3::bytea IS NULL OR token_hash <> $3)",
                &[
                    &user_key,
                    &to_ms(at),
                    &keep.as_ref().map(|hash| hash.as_slice()),
                ],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn set_second_factor(
        &self,
        id: UserId,
        sealed: Option<Vec<u8>>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let changed = transaction
            .execute(
                "UPDATE app_user SET totp_sealed = $2, totp_confirmed = false, totp_last_step = NULL
                 WHERE id = $1",
                &[&id.0, &sealed],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::not_found(format!("user {id}")));
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn accept_second_factor_step(
        &self,
        id: UserId,
        sealed: Vec<u8>,
        step: i64,
        audit: Option<AuditEvent>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Of two logins with codes of one step at once, the second waits for the first's
        // row lock and then finds the step used: a code is accepted once.
        let accept = transaction
            .prepare_cached(
                "UPDATE app_user SET totp_last_step = $3, totp_confirmed = true
                 WHERE id = $1 AND totp_sealed = $2
                   AND (totp_last_step IS NULL OR totp_last_step < $3)",
            )
            .await?;
        let changed = transaction
            .execute(&accept, &[&id.0, &sealed, &step])
            .await?;
        let accepted =
            append_if_changed(&transaction, &self.audit_key, changed, audit.as_slice()).await?;
        transaction.commit().await?;
        Ok(accepted)
    }

    async fn create_session(
        &self,
        session: NewSession,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // A share lock on the account: disabling it or changing its password waits for
        // this login to commit, and then ends this session too; one committed before is
        // seen here, and the login opens nothing.
        let user_key: i64 = transaction
            .query_opt(
                "SELECT key FROM app_user WHERE id = $1 AND NOT disabled AND password_hash = $2
                 FOR SHARE",
                &[&session.user_id.0, &session.password_hash],
            )
            .await?
            .ok_or_else(|| {
                StoreError::not_found(format!(
                    "enabled account {} with the password the login checked",
                    session.user_id
                ))
            })?
            .try_get(0)?;
        transaction
            .execute(
                "INSERT INTO session (token_hash, user_key, created_ms, expires_ms, active_ms)
                 VALUES ($1, $2, $3, $4, $3)",
                &[
                    &session.token_hash.as_slice(),
                    &user_key,
                    &to_ms(session.created),
                    &to_ms(session.expires),
                ],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, s.created_ms, s.expires_ms,
                     coalesce(s.active_ms, s.created_ms)
                 FROM session s JOIN app_user u ON u.key = s.user_key
                     LEFT JOIN patient p ON p.key = u.patient_key
                 WHERE s.token_hash = $1 AND s.revoked_ms IS NULL AND s.expires_ms > $2
                   AND NOT u.disabled"
            ))
            .await?;
        let Some(row) = client
            .query_opt(&statement, &[&token_hash.as_slice(), &to_ms(now)])
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Session {
            user: user_from_row(&row)?,
            created: from_ms(row.try_get(USER_COLUMN_COUNT)?)?,
            expires: from_ms(row.try_get(USER_COLUMN_COUNT + 1)?)?,
            active: from_ms(row.try_get(USER_COLUMN_COUNT + 2)?)?,
        }))
    }

    async fn record_session_activity(
        &self,
        token_hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE session SET active_ms = greatest(coalesce(active_ms, created_ms), $2)
                 WHERE token_hash = $1 AND revoked_ms IS NULL",
            )
            .await?;
        client
            .execute(&statement, &[&token_hash.as_slice(), &to_ms(at)])
            .await?;
        Ok(())
    }

    async fn revoke_session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Of two requests ending one session at once, the second finds it revoked once
        // the first commits, and leaves no entry.
        let changed = transaction
            .execute(
                "UPDATE session SET revoked_ms = $2 WHERE token_hash = $1 AND revoked_ms IS NULL",
                &[&token_hash.as_slice(), &to_ms(now)],
            )
            .await?;
        let revoked = append_if_changed(&transaction, &self.audit_key, changed, &[audit]).await?;
        transaction.commit().await?;
        Ok(revoked)
    }

    async fn record_login_failure(
        &self,
        username: &str,
        address: &str,
        at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let forget = client
            .prepare_cached("DELETE FROM login_failure WHERE at_ms < $1")
            .await?;
        client.execute(&forget, &[&to_ms(forget_before)]).await?;
        let insert = client
            .prepare_cached(
                "INSERT INTO login_failure (username, address, at_ms) VALUES ($1, $2, $3)",
            )
            .await?;
        client
            .execute(&insert, &[&username.to_lowercase(), &address, &to_ms(at)])
            .await?;
        Ok(())
    }

    async fn login_failures(
        &self,
        username: &str,
        address: &str,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<LoginFailure>, StoreError> {
        let mut failures = self
            .read_all(
                "SELECT at_ms, address = $2, counts_for_account FROM login_failure
                 WHERE username = $1 AND at_ms >= $3 ORDER BY at_ms DESC LIMIT $4",
                &[
                    &username.to_lowercase(),
                    &address,
                    &to_ms(since),
                    &i64::from(limit),
                ],
                |row| {
                    Ok(LoginFailure {
                        at: from_ms(row.try_get(0)?)?,
                        from_address: row.try_get(1)?,
                        counts_for_account: row.try_get(2)?,
                    })
                },
            )
            .await?;
        failures.reverse();
        Ok(failures)
    }

    async fn forget_login_failure(
        &self,
        username: &str,
        address: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "DELETE FROM login_failure WHERE ctid = (SELECT ctid FROM login_failure
                 WHERE username = $1 AND address = $2 AND at_ms = $3 LIMIT 1)",
            )
            .await?;
        client
            .execute(
                &statement,
                &[&username.to_lowercase(), &address, &to_ms(at)],
            )
            .await?;
        Ok(())
    }

    async fn clear_login_failures(&self, username: &str, address: &str) -> Result<(), StoreError> {
        let username = username.to_lowercase();
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "DELETE FROM login_failure WHERE username = $1 AND address = $2",
                &[&username, &address],
            )
            .await?;
        transaction
            .execute(
                "UPDATE login_failure SET counts_for_account = false WHERE username = $1",
                &[&username],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn create_patient(
        &self,
        patient: NewPatient,
        audit: AuditEvent,
    ) -> Result<Patient, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let created = from_ms(to_ms(patient.created))?;
        transaction
            .execute(
                "INSERT INTO patient (id, display_name, birth_date, mrn, created_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &patient.id.0,
                    &patient.display_name,
                    &patient
                        .birth_date
                        .map(|date| date.format("%Y-%m-%d").to_string()),
                    &patient.mrn,
                    &to_ms(created),
                ],
            )
            .await
            .map_err(|error| unique_violation(error, "a patient with this id or MRN"))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(Patient {
            id: patient.id,
            display_name: patient.display_name,
            birth_date: patient.birth_date,
            mrn: patient.mrn,
            created,
        })
    }

    async fn patient(&self, id: PatientId) -> Result<Option<Patient>, StoreError> {
        self.read_optional(
            &format!("SELECT {PATIENT_COLUMNS} FROM patient WHERE id = $1"),
            &[&id.0],
            patient_from_row,
        )
        .await
    }

    async fn patients(&self) -> Result<Vec<Patient>, StoreError> {
        self.read_all(
            &format!(
                r#"SELECT {PATIENT_COLUMNS} FROM patient ORDER BY display_name COLLATE "C", key"#
            ),
            &[],
            patient_from_row,
        )
        .await
    }

    async fn create_care_team(
        &self,
        team: NewCareTeam,
        audit: AuditEvent,
    ) -> Result<CareTeam, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "INSERT INTO care_team (id, name, created_ms) VALUES ($1, $2, $3)",
                &[&team.id.0, &team.name, &to_ms(team.created)],
            )
            .await
            .map_err(|error| unique_violation(error, format!("care team {}", team.name)))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(CareTeam {
            id: team.id,
            name: team.name,
            members: Vec::new(),
            patients: Vec::new(),
        })
    }

    async fn add_care_team_member(
        &self,
        team: CareTeamId,
        user: UserId,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let team_key = care_team_key(&transaction, team).await?;
        let account = transaction
            .query_opt("SELECT key, role FROM app_user WHERE id = $1", &[&user.0])
            .await?
            .ok_or_else(|| StoreError::not_found(format!("user {user}")))?;
        let user_key: i64 = account.try_get(0)?;
        let role: &str = account.try_get(1)?;
        let joins = role
            .parse::<Role>()
            .map(Role::joins_care_teams)
            .unwrap_or(false);
        if !joins {
            return Err(StoreError::Invalid(format!(
                "a {role} cannot be a care team member"
            )));
        }
        transaction
            .execute(
                "INSERT INTO care_team_member (team_key, user_key) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&team_key, &user_key],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn add_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let team_key = care_team_key(&transaction, team).await?;
        let patient_key = key_of(
            &transaction,
            "patient",
            &patient.0,
            &format!("patient {patient}"),
        )
        .await?;
        transaction
            .execute(
                "INSERT INTO care_team_patient (team_key, patient_key) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&team_key, &patient_key],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn remove_care_team_member(
        &self,
        team: CareTeamId,
        user: UserId,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.remove_from_team(team, Membership::Member, user.0, audit)
            .await
    }

    async fn remove_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.remove_from_team(team, Membership::Patient, patient.0, audit)
            .await
    }

    async fn care_teams(&self) -> Result<Vec<CareTeam>, StoreError> {
        let client = self.client().await?;
        // One statement, so the teams and their people are read from one snapshot.
        let statement = client
            .prepare_cached(&format!(
                r#"SELECT t.id, t.name,
                     ARRAY(SELECT u.id FROM care_team_member m JOIN app_user u ON u.key = m.user_key
                           WHERE m.team_key = t.key ORDER BY {BY_USERNAME}, u.key),
                     ARRAY(SELECT p.id FROM care_team_patient c JOIN patient p ON p.key = c.patient_key
                           WHERE c.team_key = t.key ORDER BY p.display_name COLLATE "C", p.key)
                 FROM care_team t ORDER BY t.name COLLATE "C""#
            ))
            .await?;
        client
            .query(&statement, &[])
            .await?
            .iter()
            .map(|row| {
                Ok(CareTeam {
                    id: CareTeamId(row.try_get(0)?),
                    name: row.try_get(1)?,
                    members: row
                        .try_get::<_, Vec<Uuid>>(2)?
                        .into_iter()
                        .map(UserId)
                        .collect(),
                    patients: row
                        .try_get::<_, Vec<Uuid>>(3)?
                        .into_iter()
                        .map(PatientId)
                        .collect(),
                })
            })
            .collect()
    }

    async fn care_teams_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CareTeamId>, StoreError> {
        self.read_all(
            "SELECT t.id FROM care_team_patient c
                 JOIN care_team t ON t.key = c.team_key
                 JOIN patient p ON p.key = c.patient_key
                 WHERE p.id = $1 ORDER BY t.id",
            &[&patient.0],
            |row| Ok(CareTeamId(row.try_get(0)?)),
        )
        .await
    }

    async fn patients_of_care_team_member(
        &self,
        user: UserId,
    ) -> Result<Vec<PatientId>, StoreError> {
        self.read_all(
            r#"SELECT p.id FROM patient p
                 WHERE EXISTS (SELECT 1 FROM app_user u
                     JOIN care_team_member m ON m.user_key = u.key
                     JOIN care_team_patient c ON c.team_key = m.team_key
                     WHERE u.id = $1 AND c.patient_key = p.key)
                 ORDER BY p.display_name COLLATE "C", p.key"#,
            &[&user.0],
            |row| Ok(PatientId(row.try_get(0)?)),
        )
        .await
    }

    async fn is_on_care_team_of(
        &self,
        user: UserId,
        patient: PatientId,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM app_user u
                     JOIN care_team_member m ON m.user_key = u.key
                     JOIN care_team_patient c ON c.team_key = m.team_key
                     JOIN patient p ON p.key = c.patient_key
                     WHERE u.id = $1 AND p.id = $2)",
            )
            .await?;
        Ok(client
            .query_one(&statement, &[&user.0, &patient.0])
            .await?
            .try_get(0)?)
    }

    async fn set_contact_email(
        &self,
        user: UserId,
        email: Option<String>,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let user_key = key_of(&transaction, "app_user", &user.0, &format!("user {user}")).await?;
        match email {
            Some(email) => transaction
                .execute(
                    "INSERT INTO contact_email (user_key, email, updated_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (user_key) DO UPDATE SET email = excluded.email,
                           updated_ms = excluded.updated_ms",
                    &[&user_key, &email, &to_ms(at)],
                )
                .await?,
            None => {
                transaction
                    .execute(
                        "DELETE FROM contact_email WHERE user_key = $1",
                        &[&user_key],
                    )
                    .await?
            }
        };
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn contact_email(&self, user: UserId) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT e.email FROM contact_email e JOIN app_user u ON u.key = e.user_key
                 WHERE u.id = $1",
                &[&user.0],
            )
            .await?
            .map(|row| row.try_get(0))
            .transpose()?)
    }

    async fn patient_contact_emails(&self, patient: PatientId) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT e.email FROM contact_email e JOIN app_user u ON u.key = e.user_key
                 JOIN patient p ON p.key = u.patient_key
                 WHERE p.id = $1 AND NOT u.disabled ORDER BY u.key",
                &[&patient.0],
            )
            .await?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    }
}

async fn care_team_key(client: &impl GenericClient, team: CareTeamId) -> Result<i64, StoreError> {
    key_of(client, "care_team", &team.0, &format!("care team {team}")).await
}

/// What ties someone to a care team.
#[derive(Debug, Clone, Copy)]
enum Membership {
    Member,
    Patient,
}

impl PostgresStore {
    /// Deletes one tie to a team, with its audit entry; nothing (not even the entry) when
    /// there was none.
    async fn remove_from_team(
        &self,
        team: CareTeamId,
        membership: Membership,
        id: Uuid,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let team_key = care_team_key(&transaction, team).await?;
        let statement = match membership {
            Membership::Member => {
                "DELETE FROM care_team_member
                 WHERE team_key = $1 AND user_key = (SELECT key FROM app_user WHERE id = $2)"
            }
            Membership::Patient => {
                "DELETE FROM care_team_patient
                 WHERE team_key = $1 AND patient_key = (SELECT key FROM patient WHERE id = $2)"
            }
        };
        let removed = transaction.execute(statement, &[&team_key, &id]).await?;
        let removed = append_if_changed(&transaction, &self.audit_key, removed, &[audit]).await?;
        transaction.commit().await?;
        Ok(removed)
    }
}
