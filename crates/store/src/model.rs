//! What the store takes and returns.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use wardline_domain::payload::PayloadError;
use wardline_domain::{
    CareTeamId, DeviceId, DeviceKind, Observation, ObservationCode, PatientId, Reading, RhythmKind,
    Role, Signal, UserId,
};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// For a patient account, the patient record it is.
    pub patient_id: Option<PatientId>,
    pub disabled: bool,
    pub created: DateTime<Utc>,
    /// The password was set by someone else (generated, reset, or chosen by an
    /// administrator): the account must change it before it may do anything else.
    pub password_change_required: bool,
    /// A second factor (an authenticator app's one-time codes) is set up: logging in takes
    /// a code as well as the password.
    pub second_factor: bool,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    /// Chosen by the caller, so that the change's audit entry can name it.
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// A PHC string (Argon2id); never the password itself.
    pub password_hash: String,
    pub patient_id: Option<PatientId>,
    pub created: DateTime<Utc>,
    /// See [`User::password_change_required`].
    pub password_change_required: bool,
}

/// Its `Debug` leaves out the password hash.
#[derive(Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
    /// The account's second factor, set up or being set up.
    pub second_factor: Option<SecondFactorSecret>,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UserCredentials")
            .field("user", &self.user)
            .field("second_factor", &self.second_factor)
            .finish_non_exhaustive()
    }
}

/// An account's TOTP secret as the store keeps it: sealed by the service, which alone
/// holds the key. Its `Debug` shows no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecondFactorSecret {
    pub sealed: Vec<u8>,
    /// A code from it has been accepted: logging in asks for one. Until then the account
    /// is only setting it up.
    pub confirmed: bool,
    /// The TOTP time step of the last code accepted: a code is good once.
    pub last_step: Option<i64>,
}

impl std::fmt::Debug for SecondFactorSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecondFactorSecret")
            .field("confirmed", &self.confirmed)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

/// Its `Debug` leaves out the token's hash and the password hash.
#[derive(Clone)]
pub struct NewSession {
    pub token_hash: [u8; 32],
    pub user_id: UserId,
    /// The password hash the login verified: a session is opened only while the account
    /// still has it and is enabled, so a login that raced a password change or a
    /// disabling opens nothing (not a session that re-enabling would bring back).
    pub password_hash: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NewSession")
            .field("user_id", &self.user_id)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A failed login as the throttle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailure {
    pub at: DateTime<Utc>,
    /// From the address asked about.
    pub from_address: bool,
    /// Counts against the account: no successful login came after it.
    pub counts_for_account: bool,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// When its person last acted, as recorded by
    /// [`crate::PeopleStore::record_session_activity`] (at the login at first).
    pub active: DateTime<Utc>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Patient {
    pub id: PatientId,
    pub display_name: String,
    pub birth_date: Option<NaiveDate>,
    /// The hospital's medical record number, when known.
    pub mrn: Option<String>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewPatient {
    /// Chosen by the caller, so that the change's audit entry can name it.
    pub id: PatientId,
    pub display_name: String,
    pub birth_date: Option<NaiveDate>,
    pub mrn: Option<String>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewCareTeam {
    pub id: CareTeamId,
    pub name: String,
    pub created: DateTime<Utc>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CareTeam {
    pub id: CareTeamId,
    pub name: String,
    pub members: Vec<UserId>,
    pub patients: Vec<PatientId>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Active,
    /// A revoked device can no longer connect or send.
    Revoked,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Revoked => "revoked",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    pub id: DeviceId,
    pub kind: DeviceKind,
    pub model: String,
    pub serial: String,
    pub status: DeviceStatus,
    pub created: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: DeviceId,
    pub kind: DeviceKind,
    pub model: String,
    pub serial: String,
    /// SHA-256 of the device secret. The secret is 256 random bits, so a fast hash is as
    /// strong as a slow one here, and a device can authenticate every request cheaply.
    pub secret_hash: [u8; 32],
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct DeviceCredentials {
    pub device: Device,
    pub secret_hash: [u8; 32],
}

/// A certificate issued to a device, known by its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    /// SHA-256 of the certificate's DER encoding.
    pub fingerprint: [u8; 32],
    /// The serial number, in hex, as the certificate states it.
    pub serial: String,
    pub issued: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// The device a certificate identifies, with the certificate.
#[derive(Debug, Clone)]
pub struct CertifiedDevice {
    pub device: Device,
    pub certificate: DeviceCertificate,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceAssignment {
    pub device_id: DeviceId,
    pub patient_id: PatientId,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl DeviceAssignment {
    /// Whether the device was assigned to this patient at `at` (the start included, the
    /// end not).
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && self.end.is_none_or(|end| at < end)
    }

    /// The patient a device was assigned to at `at`, among its assignments.
    pub fn patient_at(assignments: &[DeviceAssignment], at: DateTime<Utc>) -> Option<PatientId> {
        assignments
            .iter()
            .find(|assignment| assignment.covers(at))
            .map(|assignment| assignment.patient_id)
    }
}

/// One device message to store.
#[derive(Debug, Clone)]
pub struct IngestItem {
    pub device_id: DeviceId,
    pub received: DateTime<Utc>,
    pub payload: IngestPayload,
}

#[derive(Debug, Clone)]
pub enum IngestPayload {
    Readings(Vec<Reading>),
    Waveform(EncodedWaveform),
}

impl IngestPayload {
    /// Why a device of `kind` cannot have sent this: a code or signal it does not
    /// measure. Every backend refuses such a message before storing anything of it.
    pub fn not_for(&self, kind: wardline_domain::DeviceKind) -> Option<PayloadError> {
        match self {
            IngestPayload::Readings(readings) => {
                readings
                    .iter()
                    .enumerate()
                    .find(|(_, reading)| !kind.measures(reading.code))
                    .map(|(index, reading)| {
                        // A message of one reading names its fields at the top level.
                        let field = if readings.len() == 1 {
                            "code".to_owned()
                        } else {
                            format!("readings[{index}].code")
                        };
                        let spec = reading.code.spec();
                        let what = format!("{} ({})", spec.loinc, spec.display);
                        PayloadError::not_for_device(field, &what, kind)
                    })
            }
            IngestPayload::Waveform(chunk) => (!kind.records(chunk.signal)).then(|| {
                PayloadError::not_for_device(
                    "waveform.signal",
                    &format!("the {} signal", chunk.signal.as_str()),
                    kind,
                )
            }),
        }
    }
}

/// A waveform chunk already encoded in the versioned chunk format.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedWaveform {
    pub seq: i64,
    pub signal: Signal,
    pub sampling_rate_hz: f64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub sample_count: u32,
    pub encoded: Vec<u8>,
}

/// What happened to one ingested item.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    Stored {
        patient_id: PatientId,
        /// The observations newly stored (duplicates left out).
        stored: Vec<Observation>,
        duplicates: usize,
    },
    WaveformStored {
        patient_id: PatientId,
        duplicate: bool,
    },
    /// The device had no patient at the time of this reading; nothing was stored.
    NotAssigned {
        device_id: DeviceId,
        at: DateTime<Utc>,
    },
    UnknownDevice {
        device_id: DeviceId,
    },
    /// The device is revoked; nothing was stored.
    Revoked {
        device_id: DeviceId,
    },
    /// The message holds a code or signal the device's kind does not measure; nothing
    /// of it was stored.
    NotForDevice(wardline_domain::payload::PayloadError),
    /// The device used `seq` before for a different reading or chunk: nothing of the
    /// message was stored (a counter that went back, or a clash of two devices), and a
    /// fault report of the device was stored for rule evaluation.
    SeqConflict {
        device_id: DeviceId,
        seq: i64,
    },
}

/// Position after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub effective_ms: i64,
    pub key: i64,
}

impl PageCursor {
    pub fn encode(self) -> String {
        format!("{}.{}", self.effective_ms, self.key)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (effective_ms, key) = text.split_once('.')?;
        Some(Self {
            effective_ms: effective_ms.parse().ok()?,
            key: key.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ObservationQuery {
    pub patient_id: PatientId,
    pub code: ObservationCode,
    /// Inclusive.
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
    pub after: Option<PageCursor>,
    pub limit: u32,
    /// Newest first (a cursor then continues toward older readings); oldest first when
    /// false.
    pub newest_first: bool,
}

/// One code's observations summarised per fixed time bucket, for charts of periods too
/// long to draw reading by reading.
#[derive(Debug, Clone)]
pub struct ObservationSummaryQuery {
    pub patient_id: PatientId,
    pub code: ObservationCode,
    /// Inclusive; buckets are counted from here.
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
    /// At least one second.
    pub bucket: chrono::Duration,
}

/// The observations in `[start, start + bucket)`; buckets without any are left out.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservationBucket {
    pub start: DateTime<Utc>,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone)]
pub struct ObservationPage {
    pub observations: Vec<Observation>,
    pub next: Option<PageCursor>,
}

#[derive(Debug, Clone)]
pub struct WaveformQuery {
    pub patient_id: PatientId,
    pub signal: Option<Signal>,
    /// Chunks overlapping `[from, to)` are returned.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredWaveform {
    pub device_id: DeviceId,
    pub seq: i64,
    pub signal: Signal,
    pub sampling_rate_hz: f64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub sample_count: u32,
    pub encoded: Vec<u8>,
    /// When it reached Wardline.
    pub received: DateTime<Utc>,
}

/// An observation Wardline computed from other data (e.g. heart rate from an ECG), to
/// store. `seq` is Wardline's own number for it, unique per device among derived
/// observations; deriving it from the effective time makes a re-derivation a no-op.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDerivedObservation {
    pub patient_id: PatientId,
    pub device_id: DeviceId,
    pub seq: i64,
    pub code: ObservationCode,
    /// In the code's canonical unit.
    pub value: f64,
    pub effective: DateTime<Utc>,
    pub received: DateTime<Utc>,
}

/// A rhythm event, as stored and as read back. Storing an event again with the same
/// device, signal, kind and onset extends it (the later end wins): that is how an event
/// still going on grows as the stream goes on, and why storing twice is harmless.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RhythmEventRecord {
    pub patient_id: PatientId,
    pub device_id: DeviceId,
    pub signal: Signal,
    pub kind: RhythmKind,
    pub onset: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// What the analysis measured, e.g. `{"median_bpm": 44}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct RhythmEventQuery {
    pub patient_id: PatientId,
    /// Events overlapping `[from, to)` are returned, oldest onset first.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: u32,
}

/// A NEWS2 result. When `complete` is false a parameter was missing: `total` and `risk`
/// are then only the minimum (the missing parameters can only add points), and `missing`
/// names them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct News2Record {
    pub patient_id: PatientId,
    /// The effective time of the newest vital sign scored.
    pub time: DateTime<Utc>,
    pub complete: bool,
    /// The total when complete, otherwise the minimum total.
    pub total: u8,
    /// `low`, `low-medium`, `medium` or `high`; the minimum band when partial.
    pub risk: String,
    pub any_parameter_3: bool,
    /// Parameter names, e.g. `consciousness`.
    pub missing: Vec<String>,
    /// Per-parameter scores, `null` where missing.
    pub sub_scores: serde_json::Value,
    /// The values scored, with their codes and times.
    pub inputs: serde_json::Value,
    /// When the analysis computed it (a FHIR export's `_since` is by this): given by the
    /// store when it reads a result, and taken from the analysis' `recorded` when it
    /// stores one, so `None` there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub computed: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct News2Query {
    pub patient_id: PatientId,
    /// Inclusive.
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
    pub limit: u32,
    /// Newest first (else oldest first).
    pub newest_first: bool,
}

/// What a device said about itself (battery, fault), kept so that its patient's
/// technical alarms are evaluated even when the alarm engine is behind or restarting.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceReport {
    pub device_id: DeviceId,
    /// The patient the device was assigned to at `at`.
    pub patient_id: PatientId,
    pub at: DateTime<Utc>,
    /// Remaining battery, 0 to 100 %.
    pub battery_percent: Option<f64>,
    /// The device's fault, `None` when it reports none.
    pub fault: Option<String>,
}

impl DeviceReport {
    /// Why a report is refused when its device is not (or no longer) an active device
    /// measuring the named patient at the report's time.
    pub(crate) fn refused(&self, active: bool) -> crate::error::StoreError {
        let what = if active {
            format!(
                "an assignment of device {} to patient {} at {}",
                self.device_id, self.patient_id, self.at
            )
        } else {
            format!("active device {}", self.device_id)
        };
        crate::error::StoreError::NotFound { what }
    }
}
