//! The [`Store`] implementation: one SQL statement or short transaction per method.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use ring::digest;
use rusqlite::{Connection, OptionalExtension, Row, params};
use wardline_domain::{
    CareTeamId, DeviceId, DeviceKind, Observation, ObservationCode, PatientId, Role, Signal, UserId,
};

use super::{SqliteStore, from_ms, to_ms};
use crate::Store;
use crate::error::StoreError;
use crate::model::*;

const USER_COLUMNS: &str =
    "u.id, u.username, u.display_name, u.role, p.id, u.disabled, u.created_ms";
const USER_FROM: &str = "app_user u LEFT JOIN patient p ON p.key = u.patient_key";

fn parse_uuid<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} id {text:?} is not a UUID")))
}

fn user_from_row(row: &Row<'_>) -> Result<User, StoreError> {
    let id: String = row.get(0)?;
    let role: String = row.get(3)?;
    let patient: Option<String> = row.get(4)?;
    Ok(User {
        id: parse_uuid(&id, "user")?,
        username: row.get(1)?,
        display_name: row.get(2)?,
        role: role
            .parse::<Role>()
            .map_err(|error| StoreError::Corrupt(error.to_string()))?,
        patient_id: patient
            .map(|text| parse_uuid(&text, "patient"))
            .transpose()?,
        disabled: row.get(5)?,
        created: from_ms(row.get(6)?)?,
    })
}

fn patient_from_row(row: &Row<'_>) -> Result<Patient, StoreError> {
    let id: String = row.get(0)?;
    let birth_date: Option<String> = row.get(2)?;
    Ok(Patient {
        id: parse_uuid(&id, "patient")?,
        display_name: row.get(1)?,
        birth_date: birth_date
            .map(|text| {
                NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .map_err(|_| StoreError::Corrupt(format!("birth date {text:?}")))
            })
            .transpose()?,
        mrn: row.get(3)?,
        created: from_ms(row.get(4)?)?,
    })
}

const DEVICE_COLUMNS: &str =
    "d.id, d.kind, d.model, d.serial, d.status, d.created_ms, d.last_seen_ms";

fn device_from_row(row: &Row<'_>) -> Result<Device, StoreError> {
    let id: String = row.get(0)?;
    let kind: String = row.get(1)?;
    let status: String = row.get(4)?;
    let last_seen: Option<i64> = row.get(6)?;
    Ok(Device {
        id: DeviceId::parse(&id).map_err(|error| StoreError::Corrupt(error.to_string()))?,
        kind: kind
            .parse::<DeviceKind>()
            .map_err(|error| StoreError::Corrupt(error.to_string()))?,
        model: row.get(2)?,
        serial: row.get(3)?,
        status: match status.as_str() {
            "active" => DeviceStatus::Active,
            "revoked" => DeviceStatus::Revoked,
            other => return Err(StoreError::Corrupt(format!("device status {other:?}"))),
        },
        created: from_ms(row.get(5)?)?,
        last_seen: last_seen.map(from_ms).transpose()?,
    })
}

fn key_of(connection: &Connection, table: &str, id: &str, what: &str) -> Result<i64, StoreError> {
    connection
        .prepare_cached(&format!("SELECT key FROM {table} WHERE id = ?1"))?
        .query_row([id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::not_found(format!("{what} {id}")))
}

fn unique_violation(error: rusqlite::Error, what: impl Into<String>) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict { what: what.into() }
        }
        _ => StoreError::Sqlite(error),
    }
}

const OBSERVATION_COLUMNS: &str = "p.id, d.id, o.seq, o.code, o.value, o.original_value, o.original_unit, o.effective_ms, o.received_ms, o.key, o.derived";
const OBSERVATION_FROM: &str =
    "observation o JOIN patient p ON p.key = o.patient_key JOIN device d ON d.key = o.device_key";

fn observation_from_row(row: &Row<'_>) -> Result<(Observation, i64), StoreError> {
    let patient: String = row.get(0)?;
    let device: String = row.get(1)?;
    let loinc: String = row.get(3)?;
    let code = ObservationCode::from_loinc(&loinc)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown stored code {loinc}")))?;
    let spec = code.spec();
    Ok((
        Observation {
            patient_id: parse_uuid(&patient, "patient")?,
            device_id: DeviceId::parse(&device)
                .map_err(|error| StoreError::Corrupt(error.to_string()))?,
            seq: row.get(2)?,
            code,
            loinc: spec.loinc,
            value: row.get(4)?,
            unit: spec.canonical_unit,
            original_value: row.get(5)?,
            original_unit: row.get(6)?,
            effective: from_ms(row.get(7)?)?,
            received: from_ms(row.get(8)?)?,
            derived: row.get(10)?,
        },
        row.get(9)?,
    ))
}

/// The audit chain: SHA-256 over the previous hash and the event's fields, each
/// length-prefixed so that no two different events serialise alike.
fn chain_hash(
    previous: &[u8],
    event: &AuditEvent,
    actor_key: Option<i64>,
    patient_key: Option<i64>,
) -> Vec<u8> {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(previous);
    let mut field = |bytes: &[u8]| {
        context.update(&(bytes.len() as u64).to_le_bytes());
        context.update(bytes);
    };
    field(&to_ms(event.time).to_le_bytes());
    field(&actor_key.unwrap_or(-1).to_le_bytes());
    field(event.actor_label.as_bytes());
    field(event.action.as_bytes());
    field(&patient_key.unwrap_or(-1).to_le_bytes());
    field(event.outcome.as_str().as_bytes());
    field(event.remote_addr.as_deref().unwrap_or("").as_bytes());
    field(event.detail.as_deref().unwrap_or("").as_bytes());
    context.finish().as_ref().to_vec()
}

fn optional_key(
    connection: &Connection,
    table: &str,
    id: Option<String>,
    what: &str,
) -> Result<Option<i64>, StoreError> {
    id.map(|id| key_of(connection, table, &id, what))
        .transpose()
}

fn patient_key_of(connection: &Connection, patient: PatientId) -> Result<Option<i64>, StoreError> {
    Ok(connection
        .prepare_cached("SELECT key FROM patient WHERE id = ?1")?
        .query_row([patient.to_string()], |row| row.get(0))
        .optional()?)
}

fn json_column(text: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(format!("{what} is not JSON")))
}

fn to_json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Invalid(error.to_string()))
}

const NEWS2_COLUMNS: &str = "p.id, n.time_ms, n.complete, n.total, n.risk, n.any_parameter_3, n.missing, n.sub_scores, n.inputs";
const NEWS2_FROM: &str = "news2_score n JOIN patient p ON p.key = n.patient_key";

fn news2_from_row(row: &Row<'_>) -> Result<News2Record, StoreError> {
    let patient: String = row.get(0)?;
    let missing: String = row.get(6)?;
    let sub_scores: String = row.get(7)?;
    let inputs: String = row.get(8)?;
    Ok(News2Record {
        patient_id: parse_uuid(&patient, "patient")?,
        time: from_ms(row.get(1)?)?,
        complete: row.get(2)?,
        total: row.get(3)?,
        risk: row.get(4)?,
        any_parameter_3: row.get(5)?,
        missing: serde_json::from_str(&missing).map_err(|_| {
            StoreError::Corrupt("NEWS2 missing parameters are not a JSON list".into())
        })?,
        sub_scores: json_column(&sub_scores, "NEWS2 sub-scores")?,
        inputs: json_column(&inputs, "NEWS2 inputs")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        self.write(move |connection| {
            let patient_key = optional_key(connection, "patient", user.patient_id.map(|id| id.to_string()), "patient")?;
            let id = UserId::random();
            let now = Utc::now();
            connection
                .execute(
                    "INSERT INTO app_user (id, username, display_name, role, password_hash, patient_key, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![id.to_string(), user.username, user.display_name, user.role.as_str(), user.password_hash, patient_key, to_ms(now)],
                )
                .map_err(|error| unique_violation(error, format!("user {}", user.username)))?;
            Ok(User {
                id,
                username: user.username,
                display_name: user.display_name,
                role: user.role,
                patient_id: user.patient_id,
                disabled: false,
                created: from_ms(to_ms(now))?,
            })
        })
        .await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM {USER_FROM} WHERE u.id = ?1"
                ))?
                .query_row([id.to_string()], |row| Ok(user_from_row(row)))
                .optional()?
                .transpose()
        })
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
                    "SELECT {USER_COLUMNS}, u.password_hash FROM {USER_FROM} WHERE u.username = ?1"
                ))?
                .query_row([username], |row| {
                    Ok(user_from_row(row).and_then(|user| {
                        Ok(UserCredentials {
                            user,
                            password_hash: row.get(7)?,
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

    async fn set_user_disabled(&self, id: UserId, disabled: bool) -> Result<(), StoreError> {
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
                    params![id.to_string(), to_ms(Utc::now())],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn create_session(&self, session: NewSession) -> Result<(), StoreError> {
        self.write(move |connection| {
            let user_key = key_of(connection, "app_user", &session.user_id.to_string(), "user")?;
            connection.execute(
                "INSERT INTO session (token_hash, user_key, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![session.token_hash.as_slice(), user_key, to_ms(session.created), to_ms(session.expires)],
            )?;
            Ok(())
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
                    "SELECT {USER_COLUMNS}, s.created_ms, s.expires_ms FROM session s
                     JOIN app_user u ON u.key = s.user_key LEFT JOIN patient p ON p.key = u.patient_key
                     WHERE s.token_hash = ?1 AND s.revoked_ms IS NULL AND s.expires_ms > ?2 AND u.disabled = 0"
                ))?
                .query_row(params![token_hash.as_slice(), to_ms(now)], |row| {
                    Ok(user_from_row(row).and_then(|user| {
                        Ok(Session {
                            user,
                            created: from_ms(row.get(7)?)?,
                            expires: from_ms(row.get(8)?)?,
                        })
                    }))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn revoke_session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE session SET revoked_ms = ?2 WHERE token_hash = ?1 AND revoked_ms IS NULL",
                params![token_hash.as_slice(), to_ms(now)],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    async fn create_patient(&self, patient: NewPatient) -> Result<Patient, StoreError> {
        self.write(move |connection| {
            let id = PatientId::random();
            let created = from_ms(to_ms(Utc::now()))?;
            connection
                .execute(
                    "INSERT INTO patient (id, display_name, birth_date, mrn, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        id.to_string(),
                        patient.display_name,
                        patient.birth_date.map(|date| date.format("%Y-%m-%d").to_string()),
                        patient.mrn,
                        to_ms(created)
                    ],
                )
                .map_err(|error| unique_violation(error, "a patient with this MRN"))?;
            Ok(Patient {
                id,
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
                .prepare_cached("SELECT id, display_name, birth_date, mrn, created_ms FROM patient WHERE id = ?1")?
                .query_row([id.to_string()], |row| Ok(patient_from_row(row)))
                .optional()?
                .transpose()
        })
        .await
    }

    async fn patients(&self) -> Result<Vec<Patient>, StoreError> {
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT id, display_name, birth_date, mrn, created_ms FROM patient ORDER BY display_name, key")?;
            let rows = statement.query_map([], |row| Ok(patient_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn create_care_team(&self, name: &str) -> Result<CareTeam, StoreError> {
        let name = name.to_owned();
        self.write(move |connection| {
            let id = CareTeamId::random();
            connection
                .execute(
                    "INSERT INTO care_team (id, name, created_ms) VALUES (?1, ?2, ?3)",
                    params![id.to_string(), name, to_ms(Utc::now())],
                )
                .map_err(|error| unique_violation(error, format!("care team {name}")))?;
            Ok(CareTeam {
                id,
                name,
                members: Vec::new(),
                patients: Vec::new(),
            })
        })
        .await
    }

    async fn add_care_team_member(&self, team: CareTeamId, user: UserId) -> Result<(), StoreError> {
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
            Ok(())
        })
        .await
    }

    async fn add_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
    ) -> Result<(), StoreError> {
        self.write(move |connection| {
            let team_key = key_of(connection, "care_team", &team.to_string(), "care team")?;
            let patient_key = key_of(connection, "patient", &patient.to_string(), "patient")?;
            connection.execute(
                "INSERT OR IGNORE INTO care_team_patient (team_key, patient_key) VALUES (?1, ?2)",
                params![team_key, patient_key],
            )?;
            Ok(())
        })
        .await
    }

    async fn care_teams(&self) -> Result<Vec<CareTeam>, StoreError> {
        self.read(|connection| {
            let mut teams_statement = connection.prepare_cached("SELECT key, id, name FROM care_team ORDER BY name")?;
            let teams = teams_statement
                .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))?
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

    async fn create_device(&self, device: NewDevice) -> Result<Device, StoreError> {
        self.write(move |connection| {
            let created = from_ms(to_ms(Utc::now()))?;
            connection
                .execute(
                    "INSERT INTO device (id, kind, model, serial, secret_hash, status, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6)",
                    params![device.id.as_str(), device.kind.as_str(), device.model, device.serial, device.secret_hash.as_slice(), to_ms(created)],
                )
                .map_err(|error| unique_violation(error, format!("device {}", device.id)))?;
            Ok(Device {
                id: device.id,
                kind: device.kind,
                model: device.model,
                serial: device.serial,
                status: DeviceStatus::Active,
                created,
                last_seen: None,
            })
        })
        .await
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        Ok(self
            .device_credentials(id)
            .await?
            .map(|credentials| credentials.device))
    }

    async fn device_credentials(
        &self,
        id: &DeviceId,
    ) -> Result<Option<DeviceCredentials>, StoreError> {
        let id = id.clone();
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS}, d.secret_hash FROM device d WHERE d.id = ?1"
                ))?
                .query_row([id.as_str()], |row| {
                    Ok(device_from_row(row).and_then(|device| {
                        let hash: Vec<u8> = row.get(7)?;
                        let secret_hash: [u8; 32] = hash.try_into().map_err(|_| {
                            StoreError::Corrupt("device secret hash is not 32 bytes".into())
                        })?;
                        Ok(DeviceCredentials {
                            device,
                            secret_hash,
                        })
                    }))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM device d ORDER BY d.id"
            ))?;
            let rows = statement.query_map([], |row| Ok(device_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn set_device_status(
        &self,
        id: &DeviceId,
        status: DeviceStatus,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE device SET status = ?2 WHERE id = ?1",
                params![id.as_str(), status.as_str()],
            )?;
            if changed == 0 {
                return Err(StoreError::not_found(format!("device {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn assign_device(
        &self,
        device: &DeviceId,
        patient: PatientId,
        from: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let device = device.clone();
        self.write(move |connection| {
            let device_key = key_of(connection, "device", device.as_str(), "device")?;
            let patient_key = key_of(connection, "patient", &patient.to_string(), "patient")?;
            let from_ms = to_ms(from);
            let later: bool = connection.query_row(
                "SELECT EXISTS (SELECT 1 FROM device_assignment WHERE device_key = ?1 AND start_ms >= ?2)",
                params![device_key, from_ms],
                |row| row.get(0),
            )?;
            if later {
                return Err(StoreError::Invalid(format!(
                    "device {device} already has an assignment starting at or after {from}"
                )));
            }
            connection.execute(
                "UPDATE device_assignment SET end_ms = ?2 WHERE device_key = ?1 AND (end_ms IS NULL OR end_ms > ?2)",
                params![device_key, from_ms],
            )?;
            connection.execute(
                "INSERT INTO device_assignment (device_key, patient_key, start_ms) VALUES (?1, ?2, ?3)",
                params![device_key, patient_key, from_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn device_assignments(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<DeviceAssignment>, StoreError> {
        let device = device.clone();
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT p.id, a.start_ms, a.end_ms FROM device_assignment a
                 JOIN device d ON d.key = a.device_key JOIN patient p ON p.key = a.patient_key
                 WHERE d.id = ?1 ORDER BY a.start_ms",
            )?;
            let rows = statement.query_map([device.as_str()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (patient, start, end) = row?;
                Ok(DeviceAssignment {
                    device_id: device.clone(),
                    patient_id: parse_uuid(&patient, "patient")?,
                    start: from_ms(start)?,
                    end: end.map(from_ms).transpose()?,
                })
            })
            .collect()
        })
        .await
    }

    async fn devices_of_patient(&self, patient: PatientId) -> Result<Vec<Device>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT DISTINCT {DEVICE_COLUMNS} FROM device d
                 JOIN device_assignment a ON a.device_key = d.key JOIN patient p ON p.key = a.patient_key
                 WHERE p.id = ?1 AND a.end_ms IS NULL ORDER BY d.id"
            ))?;
            let rows = statement.query_map([patient.to_string()], |row| Ok(device_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn ingest(&self, items: Vec<IngestItem>) -> Result<Vec<IngestOutcome>, StoreError> {
        self.write(move |connection| super::ingest::ingest_items(connection, &items))
            .await
    }

    async fn count_observations(&self) -> Result<u64, StoreError> {
        self.read(|connection| {
            Ok(connection.query_row("SELECT count(*) FROM observation", [], |row| row.get(0))?)
        })
        .await
    }

    async fn observation_summary(
        &self,
        query: ObservationSummaryQuery,
    ) -> Result<Vec<ObservationBucket>, StoreError> {
        self.read(move |connection| {
            let start_ms = to_ms(query.from);
            let bucket_ms = query.bucket.num_milliseconds().max(1000);
            let mut statement = connection.prepare_cached(
                "SELECT (o.effective_ms - ?3) / ?5 AS bucket, count(*), min(o.value),
                        max(o.value), avg(o.value)
                 FROM observation o
                 WHERE o.patient_key = (SELECT key FROM patient WHERE id = ?1) AND o.code = ?2
                   AND o.effective_ms >= ?3 AND o.effective_ms < ?4
                 GROUP BY bucket ORDER BY bucket",
            )?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    query.code.loinc(),
                    start_ms,
                    to_ms(query.to),
                    bucket_ms
                ],
                |row| {
                    let index: i64 = row.get(0)?;
                    let count: i64 = row.get(1)?;
                    Ok((index, count, row.get(2)?, row.get(3)?, row.get(4)?))
                },
            )?;
            let mut buckets = Vec::new();
            for row in rows {
                let (index, count, min, max, mean): (i64, i64, f64, f64, f64) = row?;
                buckets.push(ObservationBucket {
                    start: from_ms(start_ms + index * bucket_ms)?,
                    count: u64::try_from(count).unwrap_or(0),
                    min,
                    max,
                    mean,
                });
            }
            Ok(buckets)
        })
        .await
    }

    async fn observations(&self, query: ObservationQuery) -> Result<ObservationPage, StoreError> {
        self.read(move |connection| {
            let (after_ms, after_key) = query
                .after
                .map_or((i64::MIN, i64::MIN), |cursor| (cursor.effective_ms, cursor.key));
            let limit = query.limit.clamp(1, 10_000);
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {OBSERVATION_COLUMNS} FROM {OBSERVATION_FROM}
                 WHERE o.patient_key = (SELECT key FROM patient WHERE id = ?1) AND o.code = ?2
                   AND o.effective_ms >= ?3 AND o.effective_ms < ?4
                   AND (o.effective_ms > ?5 OR (o.effective_ms = ?5 AND o.key > ?6))
                 ORDER BY o.effective_ms, o.key LIMIT ?7"
            ))?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    query.code.loinc(),
                    to_ms(query.from),
                    to_ms(query.to),
                    after_ms,
                    after_key,
                    i64::from(limit) + 1
                ],
                |row| Ok(observation_from_row(row)),
            )?;
            let mut observations = Vec::new();
            let mut next = None;
            for row in rows {
                let (observation, key) = row??;
                if observations.len() == limit as usize {
                    break;
                }
                next = Some(PageCursor {
                    effective_ms: to_ms(observation.effective),
                    key,
                });
                observations.push(observation);
            }
            let has_more = observations.len() == limit as usize
                && connection
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM observation o
                         WHERE o.patient_key = (SELECT key FROM patient WHERE id = ?1) AND o.code = ?2
                           AND o.effective_ms < ?4
                           AND (o.effective_ms > ?3 OR (o.effective_ms = ?3 AND o.key > ?5)))",
                    )?
                    .query_row(
                        params![
                            query.patient_id.to_string(),
                            query.code.loinc(),
                            next.map_or(0, |cursor| cursor.effective_ms),
                            to_ms(query.to),
                            next.map_or(0, |cursor| cursor.key)
                        ],
                        |row| row.get::<_, bool>(0),
                    )?;
            Ok(ObservationPage {
                observations,
                next: if has_more { next } else { None },
            })
        })
        .await
    }

    async fn latest_observations(
        &self,
        patient: PatientId,
    ) -> Result<Vec<Observation>, StoreError> {
        self.read(move |connection| {
            let patient_key: Option<i64> = connection
                .prepare_cached("SELECT key FROM patient WHERE id = ?1")?
                .query_row([patient.to_string()], |row| row.get(0))
                .optional()?;
            let Some(patient_key) = patient_key else {
                return Ok(Vec::new());
            };
            // One index probe per known code beats a GROUP BY over all of a patient's rows.
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {OBSERVATION_COLUMNS} FROM {OBSERVATION_FROM}
                 WHERE o.patient_key = ?1 AND o.code = ?2 ORDER BY o.effective_ms DESC, o.key DESC LIMIT 1"
            ))?;
            let mut latest = Vec::new();
            for spec in wardline_domain::codes::CATALOGUE {
                let found = statement
                    .query_row(params![patient_key, spec.loinc], |row| Ok(observation_from_row(row)))
                    .optional()?;
                if let Some(row) = found {
                    latest.push(row?.0);
                }
            }
            Ok(latest)
        })
        .await
    }

    async fn waveforms(&self, query: WaveformQuery) -> Result<Vec<StoredWaveform>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT d.id, w.seq, w.signal, w.sampling_rate_hz, w.start_ms, w.end_ms, w.sample_count, w.encoded
                 FROM waveform_chunk w JOIN device d ON d.key = w.device_key
                 WHERE w.patient_key = (SELECT key FROM patient WHERE id = ?1)
                   AND (?2 IS NULL OR w.signal = ?2)
                   AND w.start_ms < ?4 AND w.end_ms > ?3
                 ORDER BY w.start_ms, w.key LIMIT ?5",
            )?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    query.signal.map(Signal::as_str),
                    to_ms(query.from),
                    to_ms(query.to),
                    query.limit.clamp(1, 1000)
                ],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, f64>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, i64>(5)?,
                        row.get::<_, u32>(6)?,
                        row.get::<_, Vec<u8>>(7)?,
                    ))
                },
            )?;
            rows.map(|row| {
                let (device, seq, signal, rate, start, end, count, encoded) = row?;
                Ok(StoredWaveform {
                    device_id: DeviceId::parse(&device).map_err(|error| StoreError::Corrupt(error.to_string()))?,
                    seq,
                    signal: Signal::parse(&signal)
                        .ok_or_else(|| StoreError::Corrupt(format!("signal {signal:?}")))?,
                    sampling_rate_hz: rate,
                    start: from_ms(start)?,
                    end: from_ms(end)?,
                    sample_count: count,
                    encoded,
                })
            })
            .collect()
        })
        .await
    }

    async fn latest_observations_between(
        &self,
        patient: PatientId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Observation>, StoreError> {
        self.read(move |connection| {
            let Some(patient_key) = patient_key_of(connection, patient)? else {
                return Ok(Vec::new());
            };
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {OBSERVATION_COLUMNS} FROM {OBSERVATION_FROM}
                 WHERE o.patient_key = ?1 AND o.code = ?2 AND o.effective_ms >= ?3 AND o.effective_ms <= ?4
                 ORDER BY o.effective_ms DESC, o.key DESC LIMIT 1"
            ))?;
            let mut latest = Vec::new();
            for spec in wardline_domain::codes::CATALOGUE {
                let found = statement
                    .query_row(
                        params![patient_key, spec.loinc, to_ms(from), to_ms(until)],
                        |row| Ok(observation_from_row(row)),
                    )
                    .optional()?;
                if let Some(row) = found {
                    latest.push(row?.0);
                }
            }
            Ok(latest)
        })
        .await
    }

    async fn store_derived_observations(
        &self,
        observations: Vec<NewDerivedObservation>,
    ) -> Result<Vec<Observation>, StoreError> {
        if observations.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |connection| {
            let mut insert = connection.prepare_cached(
                "INSERT INTO observation (patient_key, device_key, seq, code, value, effective_ms, received_ms, derived)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1) ON CONFLICT (device_key, derived, seq) DO NOTHING",
            )?;
            let mut stored = Vec::with_capacity(observations.len());
            for observation in observations {
                let patient_key =
                    key_of(connection, "patient", &observation.patient_id.to_string(), "patient")?;
                let device_key =
                    key_of(connection, "device", observation.device_id.as_str(), "device")?;
                let inserted = insert.execute(params![
                    patient_key,
                    device_key,
                    observation.seq,
                    observation.code.loinc(),
                    observation.value,
                    to_ms(observation.effective),
                    to_ms(observation.received),
                ])?;
                if inserted > 0 {
                    let spec = observation.code.spec();
                    stored.push(Observation {
                        patient_id: observation.patient_id,
                        device_id: observation.device_id,
                        seq: observation.seq,
                        code: observation.code,
                        loinc: spec.loinc,
                        value: observation.value,
                        unit: spec.canonical_unit,
                        original_value: None,
                        original_unit: None,
                        effective: from_ms(to_ms(observation.effective))?,
                        received: from_ms(to_ms(observation.received))?,
                        derived: true,
                    });
                }
            }
            Ok(stored)
        })
        .await
    }

    async fn record_rhythm_events(&self, events: Vec<RhythmEventRecord>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let recorded_ms = to_ms(Utc::now());
        self.write(move |connection| {
            let mut upsert = connection.prepare_cached(
                "INSERT INTO rhythm_event (patient_key, device_key, signal, kind, onset_ms, end_ms, detail, recorded_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (device_key, signal, kind, onset_ms) DO UPDATE SET
                     end_ms = max(end_ms, excluded.end_ms),
                     detail = coalesce(excluded.detail, detail),
                     recorded_ms = excluded.recorded_ms",
            )?;
            for event in events {
                if event.end < event.onset {
                    return Err(StoreError::Invalid(format!(
                        "a {} event ends before its onset",
                        event.kind.as_str()
                    )));
                }
                let patient_key =
                    key_of(connection, "patient", &event.patient_id.to_string(), "patient")?;
                let device_key = key_of(connection, "device", event.device_id.as_str(), "device")?;
                let detail = event
                    .detail
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|error| StoreError::Invalid(error.to_string()))?;
                upsert.execute(params![
                    patient_key,
                    device_key,
                    event.signal.as_str(),
                    event.kind.as_str(),
                    to_ms(event.onset),
                    to_ms(event.end),
                    detail,
                    recorded_ms,
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn rhythm_events(
        &self,
        query: RhythmEventQuery,
    ) -> Result<Vec<RhythmEventRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT p.id, d.id, e.signal, e.kind, e.onset_ms, e.end_ms, e.detail
                 FROM rhythm_event e JOIN patient p ON p.key = e.patient_key JOIN device d ON d.key = e.device_key
                 WHERE e.patient_key = (SELECT key FROM patient WHERE id = ?1)
                   AND e.onset_ms < ?3 AND e.end_ms >= ?2
                 ORDER BY e.onset_ms, e.key LIMIT ?4",
            )?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    to_ms(query.from),
                    to_ms(query.to),
                    query.limit.clamp(1, 10_000)
                ],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, i64>(5)?,
                        row.get::<_, Option<String>>(6)?,
                    ))
                },
            )?;
            rows.map(|row| {
                let (patient, device, signal, kind, onset, end, detail) = row?;
                Ok(RhythmEventRecord {
                    patient_id: parse_uuid(&patient, "patient")?,
                    device_id: DeviceId::parse(&device)
                        .map_err(|error| StoreError::Corrupt(error.to_string()))?,
                    signal: Signal::parse(&signal)
                        .ok_or_else(|| StoreError::Corrupt(format!("signal {signal:?}")))?,
                    kind: RhythmEventKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("rhythm event kind {kind:?}")))?,
                    onset: from_ms(onset)?,
                    end: from_ms(end)?,
                    detail: detail.map(|text| json_column(&text, "rhythm event detail")).transpose()?,
                })
            })
            .collect()
        })
        .await
    }

    async fn record_news2(&self, score: News2Record) -> Result<(), StoreError> {
        let computed_ms = to_ms(Utc::now());
        self.write(move |connection| {
            let patient_key =
                key_of(connection, "patient", &score.patient_id.to_string(), "patient")?;
            let missing = to_json_text(&score.missing)?;
            let sub_scores = to_json_text(&score.sub_scores)?;
            let inputs = to_json_text(&score.inputs)?;
            connection
                .prepare_cached(
                    "INSERT INTO news2_score (patient_key, time_ms, complete, total, risk, any_parameter_3, missing, sub_scores, inputs, computed_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (patient_key, time_ms) DO UPDATE SET
                         complete = excluded.complete, total = excluded.total, risk = excluded.risk,
                         any_parameter_3 = excluded.any_parameter_3, missing = excluded.missing,
                         sub_scores = excluded.sub_scores, inputs = excluded.inputs,
                         computed_ms = excluded.computed_ms",
                )?
                .execute(params![
                    patient_key,
                    to_ms(score.time),
                    score.complete,
                    score.total,
                    score.risk,
                    score.any_parameter_3,
                    missing,
                    sub_scores,
                    inputs,
                    computed_ms,
                ])?;
            Ok(())
        })
        .await
    }

    async fn news2_scores(&self, query: News2Query) -> Result<Vec<News2Record>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {NEWS2_COLUMNS} FROM {NEWS2_FROM}
                 WHERE n.patient_key = (SELECT key FROM patient WHERE id = ?1)
                   AND n.time_ms >= ?2 AND n.time_ms < ?3
                 ORDER BY n.time_ms LIMIT ?4"
            ))?;
            let rows = statement.query_map(
                params![
                    query.patient_id.to_string(),
                    to_ms(query.from),
                    to_ms(query.to),
                    query.limit.clamp(1, 10_000)
                ],
                |row| Ok(news2_from_row(row)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn latest_news2(&self, patient: PatientId) -> Result<Option<News2Record>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {NEWS2_COLUMNS} FROM {NEWS2_FROM}
                     WHERE n.patient_key = (SELECT key FROM patient WHERE id = ?1)
                     ORDER BY n.time_ms DESC LIMIT 1"
                ))?
                .query_row([patient.to_string()], |row| Ok(news2_from_row(row)))
                .optional()?
                .transpose()
        })
        .await
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(move |connection| {
            let mut previous: Vec<u8> = connection
                .prepare_cached("SELECT chain_hash FROM audit_event ORDER BY key DESC LIMIT 1")?
                .query_row([], |row| row.get(0))
                .optional()?
                .unwrap_or_default();
            let mut insert = connection.prepare_cached(
                "INSERT INTO audit_event (time_ms, actor_key, actor_label, action, patient_key, outcome, remote_addr, detail, chain_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for event in &events {
                let actor_key = optional_key(connection, "app_user", event.actor.map(|id| id.to_string()), "user")?;
                let patient_key = optional_key(connection, "patient", event.patient_id.map(|id| id.to_string()), "patient")
                    .or_else(|error| match error {
                        // A denied read of a patient that does not exist is still audited.
                        StoreError::NotFound { .. } => Ok(None),
                        other => Err(other),
                    })?;
                let hash = chain_hash(&previous, event, actor_key, patient_key);
                insert.execute(params![
                    to_ms(event.time),
                    actor_key,
                    event.actor_label,
                    event.action,
                    patient_key,
                    event.outcome.as_str(),
                    event.remote_addr,
                    event.detail,
                    hash
                ])?;
                previous = hash;
            }
            Ok(())
        })
        .await
    }

    async fn audit_events(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT e.key, e.time_ms, u.id, e.actor_label, e.action, p.id, e.outcome, e.remote_addr, e.detail, e.chain_hash
                 FROM audit_event e LEFT JOIN app_user u ON u.key = e.actor_key LEFT JOIN patient p ON p.key = e.patient_key
                 WHERE (?1 IS NULL OR p.id = ?1) AND (?2 IS NULL OR u.id = ?2) AND (?3 IS NULL OR e.action = ?3)
                   AND e.key < ?4
                 ORDER BY e.key DESC LIMIT ?5",
            )?;
            let rows = statement.query_map(
                params![
                    query.patient_id.map(|id| id.to_string()),
                    query.actor.map(|id| id.to_string()),
                    query.action,
                    query.before.unwrap_or(i64::MAX),
                    query.limit.clamp(1, 10_000)
                ],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, Option<String>>(5)?,
                        row.get::<_, String>(6)?,
                        row.get::<_, Option<String>>(7)?,
                        row.get::<_, Option<String>>(8)?,
                        row.get::<_, Vec<u8>>(9)?,
                    ))
                },
            )?;
            rows.map(|row| {
                let (key, time, actor, label, action, patient, outcome, remote, detail, hash) = row?;
                Ok(AuditRecord {
                    sequence: key,
                    time: from_ms(time)?,
                    actor: actor.map(|id| parse_uuid(&id, "user")).transpose()?,
                    actor_label: label,
                    action,
                    patient_id: patient.map(|id| parse_uuid(&id, "patient")).transpose()?,
                    outcome: match outcome.as_str() {
                        "allowed" => AuditOutcome::Allowed,
                        "denied" => AuditOutcome::Denied,
                        _ => AuditOutcome::Failed,
                    },
                    remote_addr: remote,
                    detail,
                    chain_hash: hex::encode(hash),
                })
            })
            .collect()
        })
        .await
    }

    async fn verify_audit_chain(&self) -> Result<u64, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare(
                "SELECT key, time_ms, actor_key, actor_label, action, patient_key, outcome, remote_addr, detail, chain_hash
                 FROM audit_event ORDER BY key",
            )?;
            let mut rows = statement.query([])?;
            let mut previous: Vec<u8> = Vec::new();
            let mut verified = 0;
            while let Some(row) = rows.next()? {
                let key: i64 = row.get(0)?;
                let outcome: String = row.get(6)?;
                let event = AuditEvent {
                    time: from_ms(row.get(1)?)?,
                    actor: None,
                    actor_label: row.get(3)?,
                    action: row.get(4)?,
                    patient_id: None,
                    outcome: match outcome.as_str() {
                        "allowed" => AuditOutcome::Allowed,
                        "denied" => AuditOutcome::Denied,
                        _ => AuditOutcome::Failed,
                    },
                    remote_addr: row.get(7)?,
                    detail: row.get(8)?,
                };
                let stored: Vec<u8> = row.get(9)?;
                let expected = chain_hash(&previous, &event, row.get(2)?, row.get(5)?);
                if stored != expected {
                    return Err(StoreError::Corrupt(format!("audit chain broken at event {key}")));
                }
                previous = stored;
                verified += 1;
            }
            Ok(verified)
        })
        .await
    }
}
