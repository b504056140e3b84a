//! [`PeopleStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use wardline_domain::{CareTeamId, PatientId, Role, UserId};

use super::audit::{append, append_if_changed};
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::model::*;
use crate::people::PeopleStore;

/// Inserts an account (not audited: the caller commits its entry beside it).
pub(super) fn user_by_id(connection: &Connection, id: UserId) -> Result<Option<User>, StoreError> {
    connection
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM {USER_FROM} WHERE u.id = ?1"
        ))?
        .query_row([id.to_string()], |row| Ok(user_from_row(row)))
        .optional()?
        .transpose()
}

pub(super) fn insert_user(connection: &Connection, user: NewUser) -> Result<User, StoreError> {
    let patient_key = optional_key_of(
        connection,
        "patient",
        user.patient_id.map(|id| id.to_string()),
        "patient",
    )?;
    let created = from_ms(to_ms(user.created))?;
    connection
        .execute(
            "INSERT INTO app_user (id, username, display_name, role, password_hash, patient_key, created_ms, password_change_required)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                user.id.to_string(),
                user.username,
                user.display_name,
                user.role.as_str(),
                user.password_hash,
                patient_key,
                to_ms(created),
                user.password_change_required
            ],
        )
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
impl PeopleStore for SqliteStore {
    async fn create_user(&self, user: NewUser, audit: AuditEvent) -> Result<User, StoreError> {
        self.write(move |connection| {
            let created = insert_user(connection, user)?;
            append(connection, &[audit])?;
            Ok(created)
        })
        .await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.read(move |connection| user_by_id(connection, id))
            .await
    }

    async fn user_credentials(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let username = username.to_owned();
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS}, u.password_hash, u.totp_sealed, u.totp_confirmed, u.totp_last_step
                     FROM {USER_FROM} WHERE u.username = ?1"
                ))?
                .query_row([username], |row| {
                    Ok(user_from_row(row).and_then(|user| {
                        let sealed: Option<Vec<u8>> = row.get(USER_COLUMN_COUNT + 1)?;
                        let second_factor = match sealed {
                            Some(sealed) => Some(SecondFactorSecret {
                                sealed,
                                confirmed: row.get(USER_COLUMN_COUNT + 2)?,
                                last_step: row.get(USER_COLUMN_COUNT + 3)?,
                            }),
                            None => None,
                        };
                        Ok(UserCredentials {
                            user,
                            password_hash: row.get(USER_COLUMN_COUNT)?,
                            second_factor,
                        })
                    }))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM {USER_FROM} ORDER BY u.username"
            ))?;
            let rows = statement.query_map([], |row| Ok(user_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn count_users_with_role(&self, role: Role) -> Result<u64, StoreError> {
        self.read(move |connection| {
            Ok(connection.query_row(
                "SELECT count(*) FROM app_user WHERE role = ?1 AND disabled = 0",
                [role.as_str()],
                |row| row.get(0),
            )?)
        })
        .await
    }

    async fn set_user_disabled(
        &self,
        id: UserId,
        disabled: bool,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE app_user SET disabled = ?2 WHERE id = ?1",
                params![id.to_string(), disabled],
            )?;
            if changed == 0 {
                return Err(StoreError::not_found(format!("user {id}")));
            }
            if disabled {
                connection.execute(
                    "UPDATE session SET revoked_ms = ?2 WHERE revoked_ms IS NULL AND user_key = (SELECT key FROM app_user WHERE id = ?1)",
                    params![id.to_string(), to_ms(at)],
                )?;
            }
            append(connection, &[audit])
        })
        .await
    }

    async fn create_session(
        &self,
        session: NewSession,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            // In the writing transaction: a disabling or a password change committed before
            // is seen, and the login opens nothing.
            let user_key: i64 = connection
                .query_row(
                    "SELECT key FROM app_user WHERE id = ?1 AND disabled = 0 AND password_hash = ?2",
                    params![session.user_id.to_string(), session.password_hash],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| {
                    StoreError::not_found(format!(
                        "enabled account {} with the password the login checked",
                        session.user_id
                    ))
                })?;
            connection.execute(
                "INSERT INTO session (token_hash, user_key, created_ms, expires_ms, active_ms) VALUES (?1, ?2, ?3, ?4, ?3)",
                params![session.token_hash.as_slice(), user_key, to_ms(session.created), to_ms(session.expires)],
            )?;
            append(connection, &[audit])
        })
        .await
    }

    async fn session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS}, s.created_ms, s.expires_ms, coalesce(s.active_ms, s.created_ms) FROM session s
                     JOIN app_user u ON u.key = s.user_key LEFT JOIN patient p ON p.key = u.patient_key
                     WHERE s.token_hash = ?1 AND s.revoked_ms IS NULL AND s.expires_ms > ?2 AND u.disabled = 0"
                ))?
                .query_row(params![token_hash.as_slice(), to_ms(now)], |row| {
                    Ok(user_from_row(row).and_then(|user| {
                        Ok(Session {
                            user,
                            created: from_ms(row.get(USER_COLUMN_COUNT)?)?,
                            expires: from_ms(row.get(USER_COLUMN_COUNT + 1)?)?,
                            active: from_ms(row.get(USER_COLUMN_COUNT + 2)?)?,
                        })
                    }))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn record_session_activity(
        &self,
        token_hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            connection
                .prepare_cached(
                    "UPDATE session SET active_ms = max(coalesce(active_ms, created_ms), ?2)
                     WHERE token_hash = ?1 AND revoked_ms IS NULL",
                )?
                .execute(params![token_hash.as_slice(), to_ms(at)])?;
            Ok(())
        })
        .await
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
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE app_user SET password_hash = ?2, password_change_required = ?3 WHERE id = ?1",
                params![id.to_string(), password_hash, change_required],
            )?;
            if changed == 0 {
                return Err(StoreError::not_found(format!("user {id}")));
            }
            connection.execute(
                "UPDATE session SET revoked_ms = ?2
                 WHERE revoked_ms IS NULL AND user_key = (SELECT key FROM app_user WHERE id = ?1)
                   AND (?3 IS NULL OR token_hash != ?3)",
                params![
                    id.to_string(),
                    to_ms(at),
                    keep.as_ref().map(|hash| hash.as_slice())
                ],
            )?;
            append(connection, &[audit])
        })
        .await
    }

    async fn set_second_factor(
        &self,
        id: UserId,
        sealed: Option<Vec<u8>>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE app_user SET totp_sealed = ?2, totp_confirmed = 0, totp_last_step = NULL WHERE id = ?1",
                params![id.to_string(), sealed],
            )?;
            if changed == 0 {
                return Err(StoreError::not_found(format!("user {id}")));
            }
            append(connection, &[audit])
        })
        .await
    }

    async fn accept_second_factor_step(
        &self,
        id: UserId,
        sealed: Vec<u8>,
        step: i64,
        audit: Option<AuditEvent>,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE app_user SET totp_last_step = ?3, totp_confirmed = 1
                 WHERE id = ?1 AND totp_sealed = ?2 AND (totp_last_step IS NULL OR totp_last_step < ?3)",
                params![id.to_string(), sealed, step],
            )?;
            append_if_changed(connection, changed, audit.as_slice())
        })
        .await
    }

    async fn revoke_session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE session SET revoked_ms = ?2 WHERE token_hash = ?1 AND revoked_ms IS NULL",
                params![token_hash.as_slice(), to_ms(now)],
            )?;
            append_if_changed(connection, changed, &[audit])
        })
        .await
    }

    async fn record_login_failure(
        &self,
        username: &str,
        address: &str,
        at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let username = username.to_lowercase();
        let address = address.to_owned();
        self.write(move |connection| {
            connection
                .prepare_cached("DELETE FROM login_failure WHERE at_ms < ?1")?
                .execute(params![to_ms(forget_before)])?;
            connection
                .prepare_cached(
                    "INSERT INTO login_failure (username, address, at_ms) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![username, address, to_ms(at)])?;
            Ok(())
        })
        .await
    }

    async fn login_failures(
        &self,
        username: &str,
        address: &str,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<LoginFailure>, StoreError> {
        let username = username.to_lowercase();
        let address = address.to_owned();
        self.read(move |connection| {
            let mut failures = connection
                .prepare_cached(
                    "SELECT at_ms, address = ?2, counts_for_account FROM login_failure
                     WHERE username = ?1 AND at_ms >= ?3 ORDER BY at_ms DESC LIMIT ?4",
                )?
                .query_map(params![username, address, to_ms(since), limit], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, bool>(1)?,
                        row.get::<_, bool>(2)?,
                    ))
                })?
                .map(|row| {
                    let (at, from_address, counts_for_account) = row?;
                    Ok(LoginFailure {
                        at: from_ms(at)?,
                        from_address,
                        counts_for_account,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            failures.reverse();
            Ok(failures)
        })
        .await
    }

    async fn forget_login_failure(
        &self,
        username: &str,
        address: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let username = username.to_lowercase();
        let address = address.to_owned();
        self.write(move |connection| {
            connection
                .prepare_cached(
                    "DELETE FROM login_failure WHERE rowid = (SELECT rowid FROM login_failure
                     WHERE username = ?1 AND address = ?2 AND at_ms = ?3 LIMIT 1)",
                )?
                .execute(params![username, address, to_ms(at)])?;
            Ok(())
        })
        .await
    }

    async fn clear_login_failures(&self, username: &str, address: &str) -> Result<(), StoreError> {
        let username = username.to_lowercase();
        let address = address.to_owned();
        self.write(move |connection| {
            connection
                .prepare_cached("DELETE FROM login_failure WHERE username = ?1 AND address = ?2")?
                .execute(params![username, address])?;
            connection
                .prepare_cached(
                    "UPDATE login_failure SET counts_for_account = 0 WHERE username = ?1",
                )?
                .execute(params![username])?;
            Ok(())
        })
        .await
    }

    async fn create_patient(
        &self,
        patient: NewPatient,
        audit: AuditEvent,
    ) -> Result<Patient, StoreError> {
        self.write(move |connection| {
            let created = from_ms(to_ms(patient.created))?;
            connection
                .execute(
                    "INSERT INTO patient (id, display_name, birth_date, mrn, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        patient.id.to_string(),
                        patient.display_name,
                        patient.birth_date.map(|date| date.format("%Y-%m-%d").to_string()),
                        patient.mrn,
                        to_ms(created)
                    ],
                )
                .map_err(|error| unique_violation(error, "a patient with this id or MRN"))?;
            append(connection, &[audit])?;
            Ok(Patient {
                id: patient.id,
                display_name: patient.display_name,
                birth_date: patient.birth_date,
                mrn: patient.mrn,
                created,
            })
        })
        .await
    }

    async fn patient(&self, id: PatientId) -> Result<Option<Patient>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {PATIENT_COLUMNS} FROM patient WHERE id = ?1"
                ))?
                .query_row([id.to_string()], |row| Ok(patient_from_row(row)))
                .optional()?
                .transpose()
        })
        .await
    }

    async fn patients(&self) -> Result<Vec<Patient>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {PATIENT_COLUMNS} FROM patient ORDER BY display_name, key"
            ))?;
            let rows = statement.query_map([], |row| Ok(patient_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn create_care_team(
        &self,
        team: NewCareTeam,
        audit: AuditEvent,
    ) -> Result<CareTeam, StoreError> {
        self.write(move |connection| {
            connection
                .execute(
                    "INSERT INTO care_team (id, name, created_ms) VALUES (?1, ?2, ?3)",
                    params![team.id.to_string(), team.name, to_ms(team.created)],
                )
                .map_err(|error| unique_violation(error, format!("care team {}", team.name)))?;
            append(connection, &[audit])?;
            Ok(CareTeam {
                id: team.id,
                name: team.name,
                members: Vec::new(),
                patients: Vec::new(),
            })
        })
        .await
    }

    async fn add_care_team_member(
        &self,
        team: CareTeamId,
        user: UserId,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let team_key = key_of(connection, "care_team", &team.to_string(), "care team")?;
            let (user_key, role): (i64, String) = connection
                .query_row(
                    "SELECT key, role FROM app_user WHERE id = ?1",
                    [user.to_string()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| StoreError::not_found(format!("user {user}")))?;
            let joins = role
                .parse::<Role>()
                .map(Role::joins_care_teams)
                .unwrap_or(false);
            if !joins {
                return Err(StoreError::Invalid(format!(
                    "a {role} cannot be a care team member"
                )));
            }
            connection.execute(
                "INSERT OR IGNORE INTO care_team_member (team_key, user_key) VALUES (?1, ?2)",
                params![team_key, user_key],
            )?;
            append(connection, &[audit])
        })
        .await
    }

    async fn add_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let team_key = key_of(connection, "care_team", &team.to_string(), "care team")?;
            let patient_key = key_of(connection, "patient", &patient.to_string(), "patient")?;
            connection.execute(
                "INSERT OR IGNORE INTO care_team_patient (team_key, patient_key) VALUES (?1, ?2)",
                params![team_key, patient_key],
            )?;
            append(connection, &[audit])
        })
        .await
    }

    async fn remove_care_team_member(
        &self,
        team: CareTeamId,
        user: UserId,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            remove_from_team(
                connection,
                team,
                Membership::Member,
                &user.to_string(),
                audit,
            )
        })
        .await
    }

    async fn remove_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            remove_from_team(
                connection,
                team,
                Membership::Patient,
                &patient.to_string(),
                audit,
            )
        })
        .await
    }

    async fn care_teams(&self) -> Result<Vec<CareTeam>, StoreError> {
        self.read(|connection| {
            let mut teams_statement =
                connection.prepare_cached("SELECT key, id, name FROM care_team ORDER BY name")?;
            let teams = teams_statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut members_statement = connection.prepare_cached(
                "SELECT u.id FROM care_team_member m JOIN app_user u ON u.key = m.user_key WHERE m.team_key = ?1 ORDER BY u.username",
            )?;
            let mut patients_statement = connection.prepare_cached(
                "SELECT p.id FROM care_team_patient c JOIN patient p ON p.key = c.patient_key WHERE c.team_key = ?1 ORDER BY p.display_name",
            )?;
            let mut result = Vec::with_capacity(teams.len());
            for (key, id, name) in teams {
                let members = members_statement
                    .query_map([key], |row| row.get::<_, String>(0))?
                    .map(|id| parse_uuid(&id?, "user"))
                    .collect::<Result<Vec<_>, _>>()?;
                let patients = patients_statement
                    .query_map([key], |row| row.get::<_, String>(0))?
                    .map(|id| parse_uuid(&id?, "patient"))
                    .collect::<Result<Vec<_>, _>>()?;
                result.push(CareTeam {
                    id: parse_uuid(&id, "care team")?,
                    name,
                    members,
                    patients,
                });
            }
            Ok(result)
        })
        .await
    }

    async fn care_teams_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CareTeamId>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT t.id FROM care_team_patient c
                 JOIN care_team t ON t.key = c.team_key
                 JOIN patient p ON p.key = c.patient_key
                 WHERE p.id = ?1 ORDER BY t.id",
            )?;
            let rows = statement.query_map([patient.to_string()], |row| row.get::<_, String>(0))?;
            rows.map(|id| parse_uuid(&id?, "care team")).collect()
        })
        .await
    }

    async fn patients_of_care_team_member(
        &self,
        user: UserId,
    ) -> Result<Vec<PatientId>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT DISTINCT p.id FROM app_user u
                 JOIN care_team_member m ON m.user_key = u.key
                 JOIN care_team_patient c ON c.team_key = m.team_key
                 JOIN patient p ON p.key = c.patient_key
                 WHERE u.id = ?1 ORDER BY p.display_name",
            )?;
            let rows = statement.query_map([user.to_string()], |row| row.get::<_, String>(0))?;
            rows.map(|id| parse_uuid(&id?, "patient")).collect()
        })
        .await
    }

    async fn is_on_care_team_of(
        &self,
        user: UserId,
        patient: PatientId,
    ) -> Result<bool, StoreError> {
        self.read(move |connection| {
            Ok(connection
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM app_user u
                     JOIN care_team_member m ON m.user_key = u.key
                     JOIN care_team_patient c ON c.team_key = m.team_key
                     JOIN patient p ON p.key = c.patient_key
                     WHERE u.id = ?1 AND p.id = ?2)",
                )?
                .query_row(params![user.to_string(), patient.to_string()], |row| {
                    row.get(0)
                })?)
        })
        .await
    }

    async fn set_contact_email(
        &self,
        user: UserId,
        email: Option<String>,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let user_key = key_of(connection, "app_user", &user.to_string(), "user")?;
            match email {
                Some(email) => connection.execute(
                    "INSERT INTO contact_email (user_key, email, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_key) DO UPDATE SET email = excluded.email,
                       updated_ms = excluded.updated_ms",
                    params![user_key, email, super::to_ms(at)],
                )?,
                None => connection.execute(
                    "DELETE FROM contact_email WHERE user_key = ?1",
                    params![user_key],
                )?,
            };
            super::audit::append(connection, &[audit])
        })
        .await
    }

    async fn contact_email(&self, user: UserId) -> Result<Option<String>, StoreError> {
        self.read(move |connection| {
            Ok(connection
                .prepare_cached(
                    "SELECT e.email FROM contact_email e JOIN app_user u ON u.key = e.user_key
                     WHERE u.id = ?1",
                )?
                .query_row([user.to_string()], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn patient_contact_emails(&self, patient: PatientId) -> Result<Vec<String>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(
                    "SELECT e.email FROM contact_email e JOIN app_user u ON u.key = e.user_key
                     JOIN patient p ON p.key = u.patient_key
                     WHERE p.id = ?1 AND u.disabled = 0 ORDER BY u.key",
                )?
                .query_map([patient.to_string()], |row| row.get(0))?
                .map(|email| Ok(email?))
                .collect()
        })
        .await
    }
}

/// What ties someone to a care team.
#[derive(Debug, Clone, Copy)]
enum Membership {
    Member,
    Patient,
}

/// Deletes one tie to a team, with its audit entry; nothing (not even the entry) when
/// there was none.
fn remove_from_team(
    connection: &super::writer::Writing<'_>,
    team: CareTeamId,
    membership: Membership,
    id: &str,
    audit: AuditEvent,
) -> Result<bool, StoreError> {
    let team_key = key_of(connection, "care_team", &team.to_string(), "care team")?;
    let statement = match membership {
        Membership::Member => {
            "DELETE FROM care_team_member
             WHERE team_key = ?1 AND user_key = (SELECT key FROM app_user WHERE id = ?2)"
        }
        Membership::Patient => {
            "DELETE FROM care_team_patient
             WHERE team_key = ?1 AND patient_key = (SELECT key FROM patient WHERE id = ?2)"
        }
    };
    let removed = connection.execute(statement, params![team_key, id])? > 0;
    if removed {
        append(connection, &[audit])?;
    }
    Ok(removed)
}
