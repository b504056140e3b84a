//! Turning rows into the store's types, and the small lookups every module needs.

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wardline_domain::{DeviceId, DeviceKind, Observation, ObservationCode, PatientId, Role};

use super::from_ms;
use crate::error::StoreError;
use crate::model::{Device, DeviceStatus, News2Record, Patient, User};

pub(super) fn parse_uuid<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} id {text:?} is not a UUID")))
}

pub(super) fn parse_device_id(text: &str) -> Result<DeviceId, StoreError> {
    DeviceId::parse(text).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// A JSON column as one of our types; `Undecodable` names what could not be read.
pub(super) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Undecodable {
        what: what.to_owned(),
        reason: error.to_string(),
    })
}

pub(super) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Invalid(error.to_string()))
}

/// The internal key of the row with public `id` in `table`; `NotFound` names `what`.
pub(super) fn key_of(
    connection: &Connection,
    table: &str,
    id: &str,
    what: &str,
) -> Result<i64, StoreError> {
    connection
        .prepare_cached(&format!("SELECT key FROM {table} WHERE id = ?1"))?
        .query_row([id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::not_found(format!("{what} {id}")))
}

pub(super) fn optional_key_of(
    connection: &Connection,
    table: &str,
    id: Option<String>,
    what: &str,
) -> Result<Option<i64>, StoreError> {
    id.map(|id| key_of(connection, table, &id, what))
        .transpose()
}

pub(super) fn patient_key_of(
    connection: &Connection,
    patient: PatientId,
) -> Result<Option<i64>, StoreError> {
    Ok(connection
        .prepare_cached("SELECT key FROM patient WHERE id = ?1")?
        .query_row([patient.to_string()], |row| row.get(0))
        .optional()?)
}

pub(super) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _)
        if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// `Conflict { what }` for a uniqueness violation, the SQLite error otherwise.
pub(super) fn unique_violation(error: rusqlite::Error, what: impl Into<String>) -> StoreError {
    if is_unique_violation(&error) {
        StoreError::Conflict { what: what.into() }
    } else {
        StoreError::Sqlite(error)
    }
}

pub(super) fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

pub(super) const USER_COLUMNS: &str = "u.id, u.username, u.display_name, u.role, p.id, u.disabled, u.created_ms, u.password_change_required, u.totp_sealed IS NOT NULL AND u.totp_confirmed = 1";
/// How many columns [`USER_COLUMNS`] has: the columns a query adds after it start here.
pub(super) const USER_COLUMN_COUNT: usize = 9;
pub(super) const USER_FROM: &str = "app_user u LEFT JOIN patient p ON p.key = u.patient_key";

pub(super) fn user_from_row(row: &Row<'_>) -> Result<User, StoreError> {
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
        password_change_required: row.get(7)?,
        second_factor: row.get(8)?,
    })
}

pub(super) const PATIENT_COLUMNS: &str = "id, display_name, birth_date, mrn, created_ms";

pub(super) fn patient_from_row(row: &Row<'_>) -> Result<Patient, StoreError> {
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

pub(super) const DEVICE_COLUMNS: &str =
    "d.id, d.kind, d.model, d.serial, d.status, d.created_ms, d.last_seen_ms";

pub(super) fn device_from_row(row: &Row<'_>) -> Result<Device, StoreError> {
    let id: String = row.get(0)?;
    let kind: String = row.get(1)?;
    let status: String = row.get(4)?;
    let last_seen: Option<i64> = row.get(6)?;
    Ok(Device {
        id: parse_device_id(&id)?,
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

pub(super) const OBSERVATION_COLUMNS: &str = "p.id, d.id, o.seq, o.code, o.value, o.original_value, o.original_unit, o.effective_ms, o.received_ms, o.key, o.derived";
pub(super) const OBSERVATION_FROM: &str =
    "observation o JOIN patient p ON p.key = o.patient_key JOIN device d ON d.key = o.device_key";

/// An observation from its columns, whatever query produced them.
#[allow(clippy::too_many_arguments)]
pub(super) fn observation(
    patient_id: PatientId,
    device_id: DeviceId,
    seq: i64,
    loinc: &str,
    value: f64,
    original_value: Option<f64>,
    original_unit: Option<String>,
    effective_ms: i64,
    received_ms: i64,
    derived: bool,
) -> Result<Observation, StoreError> {
    let code = ObservationCode::from_loinc(loinc)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown stored code {loinc}")))?;
    let spec = code.spec();
    Ok(Observation {
        patient_id,
        device_id,
        seq,
        code,
        loinc: spec.loinc,
        value,
        unit: spec.canonical_unit,
        original_value,
        original_unit,
        effective: from_ms(effective_ms)?,
        received: from_ms(received_ms)?,
        derived,
    })
}

/// An observation and its key, from [`OBSERVATION_COLUMNS`].
pub(super) fn observation_from_row(row: &Row<'_>) -> Result<(Observation, i64), StoreError> {
    let patient: String = row.get(0)?;
    let device: String = row.get(1)?;
    let loinc: String = row.get(3)?;
    Ok((
        observation(
            parse_uuid(&patient, "patient")?,
            parse_device_id(&device)?,
            row.get(2)?,
            &loinc,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
            row.get(10)?,
        )?,
        row.get(9)?,
    ))
}

pub(super) const NEWS2_COLUMNS: &str = "p.id, n.time_ms, n.complete, n.total, n.risk, n.any_parameter_3, n.missing, n.sub_scores, n.inputs, n.computed_ms";
pub(super) const NEWS2_FROM: &str = "news2_score n JOIN patient p ON p.key = n.patient_key";

/// A NEWS2 result from [`NEWS2_COLUMNS`] starting at column `offset`.
pub(super) fn news2_from_row(row: &Row<'_>, offset: usize) -> Result<News2Record, StoreError> {
    let patient: String = row.get(offset)?;
    let missing: String = row.get(offset + 6)?;
    let sub_scores: String = row.get(offset + 7)?;
    let inputs: String = row.get(offset + 8)?;
    Ok(News2Record {
        patient_id: parse_uuid(&patient, "patient")?,
        time: from_ms(row.get(offset + 1)?)?,
        complete: row.get(offset + 2)?,
        total: row.get(offset + 3)?,
        risk: row.get(offset + 4)?,
        any_parameter_3: row.get(offset + 5)?,
        missing: from_json(&missing, "NEWS2 missing parameters")?,
        sub_scores: from_json(&sub_scores, "NEWS2 sub-scores")?,
        inputs: from_json(&inputs, "NEWS2 inputs")?,
        computed: Some(from_ms(row.get(offset + 9)?)?),
    })
}

pub(super) const RHYTHM_COLUMNS: &str =
    "p.id, d.id, e.signal, e.kind, e.onset_ms, e.end_ms, e.detail";
pub(super) const RHYTHM_FROM: &str =
    "rhythm_event e JOIN patient p ON p.key = e.patient_key JOIN device d ON d.key = e.device_key";

/// A rhythm event from [`RHYTHM_COLUMNS`] starting at column `offset`.
pub(super) fn rhythm_from_row(
    row: &Row<'_>,
    offset: usize,
) -> Result<crate::model::RhythmEventRecord, StoreError> {
    let patient: String = row.get(offset)?;
    let device: String = row.get(offset + 1)?;
    let signal: String = row.get(offset + 2)?;
    let kind: String = row.get(offset + 3)?;
    let detail: Option<String> = row.get(offset + 6)?;
    Ok(crate::model::RhythmEventRecord {
        patient_id: parse_uuid(&patient, "patient")?,
        device_id: parse_device_id(&device)?,
        signal: wardline_domain::Signal::parse(&signal)
            .ok_or_else(|| StoreError::Corrupt(format!("signal {signal:?}")))?,
        kind: wardline_domain::RhythmKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("rhythm event kind {kind:?}")))?,
        onset: from_ms(row.get(offset + 4)?)?,
        end: from_ms(row.get(offset + 5)?)?,
        detail: detail
            .map(|text| from_json(&text, "rhythm event detail"))
            .transpose()?,
    })
}
