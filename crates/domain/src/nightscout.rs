//! Nightscout's documents as the uploaders send them (xDrip+, AndroidAPS, Loop, Trio,
//! xDrip4iOS): entries (sensor and meter glucose, calibrations), treatments, device status
//! and profiles, normalised the way Nightscout's API v1 does and validated the way a
//! medical record must be.
//!
//! What Nightscout does and Wardline keeps: single documents and arrays alike, an `_id`
//! for every document, `created_at` added when missing, a client's UUID `_id` moved to
//! `identifier`, and de-duplication: entries by time and `type` (to the second), device
//! status by `identifier`, else `created_at` and `device`, treatments by their sync
//! identity (the app's own first: Loop's `syncIdentifier`, xDrip+'s `uuid`, Trio's `id`,
//! then `identifier`, then AndroidAPS's pump event number), else a client ObjectId
//! `_id`. What Wardline does differently: a treatment with none of those is keyed by its
//! whole content, not Nightscout's `created_at` and `eventType`, which would merge two
//! different treatments of one millisecond; numbers that a treatment's schema says are
//! never negative are refused when they are; a glucose outside what a sensor can report,
//! or a time more than 5 minutes ahead of the server's clock, is refused rather than
//! stored; and Dexcom's special values (an `sgv` of 12 or less: "sensor not ready", "no
//! antenna", …) are kept as entries but never become glucose readings, so that they
//! cannot raise a low alarm. Every refusal names the document's index, the field and the reason.

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::codes::ObservationCode;
use crate::json::kind as json_kind;
pub use crate::json::number;
use crate::observation::Reading;

pub mod query;

/// The collections of Nightscout's API v1 that uploaders write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    Entries,
    Treatments,
    DeviceStatus,
    Profile,
}

impl Collection {
    pub const ALL: [Collection; 4] = [
        Collection::Entries,
        Collection::Treatments,
        Collection::DeviceStatus,
        Collection::Profile,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Collection::Entries => "entries",
            Collection::Treatments => "treatments",
            Collection::DeviceStatus => "devicestatus",
            Collection::Profile => "profile",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Collection::ALL
            .into_iter()
            .find(|collection| collection.as_str() == text)
    }

    /// The field a document's time is kept in, as uploaders query it.
    pub fn time_field(self) -> &'static str {
        match self {
            Collection::Entries => "date",
            Collection::Treatments | Collection::DeviceStatus => "created_at",
            Collection::Profile => "startDate",
        }
    }

    /// The field [`Document::kind`] comes from.
    pub fn kind_field(self) -> Option<&'static str> {
        match self {
            Collection::Entries => Some("type"),
            Collection::Treatments => Some("eventType"),
            Collection::DeviceStatus => Some("device"),
            Collection::Profile => None,
        }
    }

    /// How many documents a read returns when the client does not say (`count`).
    pub fn default_count(self) -> usize {
        match self {
            Collection::Entries | Collection::DeviceStatus => 10,
            Collection::Treatments | Collection::Profile => 100,
        }
    }
}

/// Bounds on one upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Documents in one request (uploaders send up to a few hundred after a gap).
    pub max_documents: usize,
    /// Bytes of one document once normalised (a Loop device status with its
    /// predictions is tens of kilobytes).
    pub max_document_bytes: usize,
    /// How far ahead of the server's clock a document's time may be.
    pub max_future_skew: Duration,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_documents: 1000,
            max_document_bytes: 256 * 1024,
            max_future_skew: Duration::minutes(5),
        }
    }
}

/// Why one document of an upload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("document {index}: {field}: {reason}")]
pub struct DocumentError {
    /// Its position in the request (0 for a single document).
    pub index: usize,
    pub field: String,
    pub reason: String,
}

/// Why a whole upload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UploadError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is {0}; Nightscout documents are JSON objects, one or an array of them")]
    NotDocuments(&'static str),
    #[error("{count} documents in one request; at most {max} are taken")]
    TooMany { count: usize, max: usize },
    #[error("{collection} takes one document per request, not an array")]
    SingleOnly { collection: &'static str },
}

/// A document ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub collection: Collection,
    /// Nightscout's `_id`: 24 hexadecimal digits.
    pub id: String,
    /// What makes two uploads the same document (the de-duplication key).
    pub key: String,
    /// The document's time, in milliseconds since the epoch.
    pub time_ms: i64,
    /// Its `type`, `eventType` or `device`, for queries.
    pub kind: Option<String>,
    /// The normalised document, `_id` included.
    pub body: Map<String, Value>,
}

impl Document {
    /// The glucose reading an entry carries, if it carries one: `sgv` entries become
    /// CGM readings, `mbg` entries meter readings; calibrations, Dexcom's special values
    /// and other types carry none. The `seq` is made from the entry's time (to the
    /// second) and type, like its key, so a re-sent entry is the same reading.
    pub fn reading(&self) -> Option<Reading> {
        if self.collection != Collection::Entries {
            return None;
        }
        let (code, field, type_index) = match self.kind.as_deref() {
            Some("sgv") => (ObservationCode::GlucoseCgm, "sgv", 0),
            Some("mbg") => (ObservationCode::GlucoseMeter, "mbg", 1),
            _ => return None,
        };
        let value = number(self.body.get(field)?)?;
        if value <= DEXCOM_SPECIAL_MAX {
            return None;
        }
        Some(Reading {
            seq: self
                .time_ms
                .div_euclid(1000)
                .checked_mul(2)?
                .checked_add(type_index)?,
            code,
            value,
            original: None,
            effective: Utc.timestamp_millis_opt(self.time_ms).single()?,
        })
    }
}

/// Dexcom's special `sgv` values (1 "sensor not active", 5 "no antenna", 9 "absolute
/// deviation", 10 "power deviation", 12 "bad RF", …) are 12 or less; no sensor reports
/// a glucose that low.
pub const DEXCOM_SPECIAL_MAX: f64 = 12.0;

/// The earliest time a document may carry: uploaders' clocks that were never set give
/// the epoch, which is no one's glucose.
pub fn earliest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The documents of one upload, each valid or refused, in the request's order. An
/// empty object or array gives none (Nightscout stores nothing for them).
pub fn parse_upload(
    collection: Collection,
    body: &[u8],
    site: &str,
    now: DateTime<Utc>,
    limits: &UploadLimits,
) -> Result<Vec<Result<Document, DocumentError>>, UploadError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| UploadError::NotJson(error.to_string()))?;
    let items = match value {
        Value::Array(items) => {
            if collection == Collection::Profile && items.len() > 1 {
                return Err(UploadError::SingleOnly {
                    collection: collection.as_str(),
                });
            }
            items
        }
        Value::Object(object) if object.is_empty() => Vec::new(),
        object @ Value::Object(_) => vec![object],
        other => return Err(UploadError::NotDocuments(json_kind(&other))),
    };
    if items.len() > limits.max_documents {
        return Err(UploadError::TooMany {
            count: items.len(),
            max: limits.max_documents,
        });
    }
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            normalise(collection, item, site, now, limits).map_err(|(field, reason)| {
                DocumentError {
                    index,
                    field,
                    reason,
                }
            })
        })
        .collect())
}

type Refusal = (String, String);

fn refuse(field: &str, reason: impl Into<String>) -> Refusal {
    (field.to_owned(), reason.into())
}

fn normalise(
    collection: Collection,
    item: Value,
    site: &str,
    now: DateTime<Utc>,
    limits: &UploadLimits,
) -> Result<Document, Refusal> {
    let Value::Object(mut body) = item else {
        return Err(refuse(
            "$",
            format!("is {}; a document is a JSON object", json_kind(&item)),
        ));
    };
    let client_id = take_client_id(&mut body);
    let (time, key, kind) = match collection {
        Collection::Entries => entry(&mut body, now, limits)?,
        Collection::Treatments => treatment(&mut body, client_id.as_deref(), now, limits)?,
        Collection::DeviceStatus => device_status(&mut body, now, limits)?,
        Collection::Profile => profile(&mut body, client_id.as_deref(), now, limits)?,
    };
    let id = match client_id {
        Some(id) if is_object_id(&id) => id,
        _ => derived_id(site, collection, &key),
    };
    body.insert("_id".into(), Value::String(id.clone()));
    let size = serde_json::to_vec(&body).map_or(usize::MAX, |bytes| bytes.len());
    if size > limits.max_document_bytes {
        return Err(refuse(
            "$",
            format!(
                "the document is {size} bytes; at most {} are taken",
                limits.max_document_bytes
            ),
        ));
    }
    Ok(Document {
        collection,
        id,
        key,
        time_ms: time.timestamp_millis(),
        kind,
        body,
    })
}

/// Takes the client's `_id` out of the document. A UUID (Trio, Loop's overrides) goes
/// to `identifier` unless one is there, as Nightscout does; an ObjectId is kept as the
/// document's `_id`.
fn take_client_id(body: &mut Map<String, Value>) -> Option<String> {
    let id = match body.remove("_id")? {
        Value::String(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => return None,
    };
    // ObjectIds are kept in lower case, as they are looked up.
    let id = if is_object_id(&id) {
        id.to_ascii_lowercase()
    } else {
        id
    };
    if !is_object_id(&id) && !body.contains_key("identifier") {
        body.insert("identifier".into(), Value::String(id.clone()));
    }
    Some(id)
}

/// Whether `text` is a MongoDB ObjectId as Nightscout's clients keep them.
pub fn is_object_id(text: &str) -> bool {
    text.len() == 24 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// An `_id` made from what identifies the document: a re-sent document gets the one it
/// got the first time.
fn derived_id(site: &str, collection: Collection, key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{site}\u{1f}{}\u{1f}{key}", collection.as_str()).as_bytes(),
    );
    digest.as_ref()[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A time as uploaders write it: epoch milliseconds, epoch seconds (a number below
/// 10^11, which as milliseconds would be 1973), or an ISO 8601 text with or without an
/// offset. Returns the instant and the offset it was written with, in minutes.
fn parse_time(field: &str, value: &Value) -> Result<(DateTime<Utc>, Option<i32>), Refusal> {
    match value {
        Value::Number(_) => {
            let number = number(value).ok_or_else(|| refuse(field, "is not a finite number"))?;
            let ms = if number.abs() < 1e11 {
                number * 1000.0
            } else {
                number
            };
            if !(-8.64e15..=8.64e15).contains(&ms) {
                return Err(refuse(
                    field,
                    format!("{number} is no time (milliseconds since 1970)"),
                ));
            }
            Utc.timestamp_millis_opt(ms.round() as i64)
                .single()
                .map(|time| (time, None))
                .ok_or_else(|| refuse(field, format!("{number} is no time")))
        }
        Value::String(text) => {
            let text = text.trim();
            if let Ok(time) = DateTime::parse_from_rfc3339(text) {
                return Ok((
                    time.with_timezone(&Utc),
                    Some(time.offset().local_minus_utc() / 60),
                ));
            }
            // AndroidAPS writes offsets without a colon (`+0100`).
            if let Ok(time) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
                return Ok((
                    time.with_timezone(&Utc),
                    Some(time.offset().local_minus_utc() / 60),
                ));
            }
            // Some uploaders leave the zone out; Nightscout reads those as UTC.
            for format in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M",
            ] {
                if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, format) {
                    return Ok((time.and_utc(), None));
                }
            }
            if let Ok(ms) = text.parse::<i64>() {
                return parse_time(field, &Value::from(ms));
            }
            Err(refuse(
                field,
                format!(
                    "{text:?} is not a time (ISO 8601, such as 2026-01-15T10:00:00.000Z, or milliseconds since 1970)"
                ),
            ))
        }
        other => Err(refuse(
            field,
            format!(
                "is {}; a time is ISO 8601 text or milliseconds since 1970",
                json_kind(other)
            ),
        )),
    }
}

fn check_time(
    field: &str,
    time: DateTime<Utc>,
    now: DateTime<Utc>,
    limits: &UploadLimits,
) -> Result<(), Refusal> {
    if time > now + limits.max_future_skew {
        return Err(refuse(
            field,
            format!(
                "{} is in the future (the server's clock says {}); check the uploader's clock",
                iso(time),
                iso(now)
            ),
        ));
    }
    if time < earliest() {
        return Err(refuse(
            field,
            format!(
                "{} is before 2000; the uploader's clock is not set",
                iso(time)
            ),
        ));
    }
    Ok(())
}

fn text_field(body: &Map<String, Value>, field: &str) -> Option<String> {
    match body.get(field)? {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        _ => None,
    }
}

fn entry(
    body: &mut Map<String, Value>,
    now: DateTime<Utc>,
    limits: &UploadLimits,
) -> Result<(DateTime<Utc>, String, Option<String>), Refusal> {
    let kind = match body.get("type") {
        Some(Value::String(kind)) if !kind.trim().is_empty() => kind.trim().to_owned(),
        Some(Value::Null) | None => {
            if body.contains_key("sgv") {
                "sgv".to_owned()
            } else if body.contains_key("mbg") {
                "mbg".to_owned()
            } else {
                return Err(refuse(
                    "type",
                    "is missing; an entry says what it is (sgv, mbg, cal, …)",
                ));
            }
        }
        Some(other) => {
            return Err(refuse(
                "type",
                format!("is {}; it is a text such as \"sgv\"", json_kind(other)),
            ));
        }
    };
    body.insert("type".into(), Value::String(kind.clone()));
    let (time, offset) = if let Some(date) = body.get("date").filter(|date| !date.is_null()) {
        let (time, _) = parse_time("date", date)?;
        let offset = match body.get("dateString") {
            Some(text @ Value::String(_)) => parse_time("dateString", text)
                .ok()
                .and_then(|(_, offset)| offset),
            _ => None,
        };
        (time, offset)
    } else if let Some(text) = body.get("dateString").filter(|text| !text.is_null()) {
        parse_time("dateString", text)?
    } else if let Some(text) = body.get("sysTime").filter(|text| !text.is_null()) {
        parse_time("sysTime", text)?
    } else {
        return Err(refuse(
            "date",
            "is missing; an entry carries its time (date in milliseconds, or dateString)",
        ));
    };
    check_time("date", time, now, limits)?;
    match kind.as_str() {
        "sgv" => glucose(body, "sgv", true)?,
        "mbg" => glucose(body, "mbg", false)?,
        _ => {}
    }
    body.insert("date".into(), Value::from(time.timestamp_millis()));
    if !matches!(body.get("dateString"), Some(Value::String(_))) {
        body.insert("dateString".into(), Value::String(iso(time)));
    }
    body.insert("sysTime".into(), Value::String(iso(time)));
    body.insert("utcOffset".into(), Value::from(offset.unwrap_or(0)));
    // By the whole second: the same sensor reading relayed by two apps (or re-sent after
    // a clock correction) can differ in its milliseconds, and no sensor reads twice a
    // second.
    let key = format!("{}|{kind}", time.timestamp());
    Ok((time, key, Some(kind)))
}

/// Checks an entry's glucose (mg/dL, as Nightscout keeps it).
fn glucose(body: &Map<String, Value>, field: &str, sensor: bool) -> Result<(), Refusal> {
    let Some(value) = body.get(field) else {
        return Err(refuse(
            field,
            format!("is missing; a {field} entry carries its glucose in mg/dL"),
        ));
    };
    let Some(value) = number(value) else {
        return Err(refuse(
            field,
            format!("is {}; it is a glucose in mg/dL", json_kind(value)),
        ));
    };
    let code = if sensor {
        ObservationCode::GlucoseCgm
    } else {
        ObservationCode::GlucoseMeter
    };
    let (low, high) = code.spec().possible_range;
    if sensor && (0.0..=DEXCOM_SPECIAL_MAX).contains(&value) {
        return Ok(());
    }
    if !(low..=high).contains(&value) {
        return Err(refuse(
            field,
            format!("{value} mg/dL is outside what a glucose can be ({low}–{high} mg/dL)"),
        ));
    }
    Ok(())
}

/// The created_at of a treatment, device status or profile: normalised to ISO 8601 in
/// UTC with `mills` beside it, or now when missing (as Nightscout does).
fn created_at(
    body: &mut Map<String, Value>,
    fields: &[&str],
    now: DateTime<Utc>,
    limits: &UploadLimits,
) -> Result<DateTime<Utc>, Refusal> {
    let mut time = None;
    for field in fields {
        if let Some(value) = body.get(*field).filter(|value| !value.is_null()) {
            let (parsed, offset) = parse_time(field, value)?;
            check_time(field, parsed, now, limits)?;
            if *field == "created_at" && offset.is_some() && !body.contains_key("utcOffset") {
                body.insert("utcOffset".into(), Value::from(offset.unwrap_or(0)));
            }
            time = Some(parsed);
            break;
        }
    }
    let time = time.unwrap_or(now);
    body.insert("created_at".into(), Value::String(iso(time)));
    body.insert("mills".into(), Value::from(time.timestamp_millis()));
    Ok(time)
}

/// A treatment's fields that its schema says are never negative, and their units.
const NOT_NEGATIVE: &[(&str, &str)] = &[
    ("insulin", "units of insulin"),
    ("carbs", "grams"),
    ("protein", "grams"),
    ("fat", "grams"),
    ("duration", "minutes"),
    ("absolute", "U/h"),
    ("rate", "U/h"),
    ("absorptionTime", "minutes"),
];

fn treatment(
    body: &mut Map<String, Value>,
    client_id: Option<&str>,
    now: DateTime<Utc>,
    limits: &UploadLimits,
) -> Result<(DateTime<Utc>, String, Option<String>), Refusal> {
    let event_type = match body.get("eventType") {
        Some(Value::String(kind)) if !kind.trim().is_empty() => kind.trim().to_owned(),
        Some(Value::Null) | None => "<none>".to_owned(),
        Some(other) => {
            return Err(refuse(
                "eventType",
                format!(
                    "is {}; it is a text such as \"Meal Bolus\"",
                    json_kind(other)
                ),
            ));
        }
    };
    body.insert("eventType".into(), Value::String(event_type.clone()));
    let mut sent = body.clone();
    if ["created_at", "timestamp", "date"]
        .iter()
        .all(|field| body.get(*field).is_none_or(Value::is_null))
    {
        // Sent without a time, a treatment is the same one only when re-sent within the
        // hour (an app's retry); the same content hours later is another treatment.
        sent.insert(
            "received_hour".into(),
            Value::from(now.timestamp().div_euclid(3600)),
        );
    }
    let time = created_at(body, &["created_at", "timestamp", "date"], now, limits)?;
    for (field, unit) in NOT_NEGATIVE {
        if let Some(value) = body.get(*field).filter(|value| !value.is_null()) {
            let Some(number) = number(value) else {
                return Err(refuse(
                    field,
                    format!("is {}; it is a number of {unit}", json_kind(value)),
                ));
            };
            if number < 0.0 {
                return Err(refuse(
                    field,
                    format!("{number} is negative; it is a number of {unit}, 0 or more"),
                ));
            }
        }
    }
    for field in ["splitNow", "splitExt"] {
        if let Some(value) = body.get(field).filter(|value| !value.is_null()) {
            match number(value) {
                Some(percent) if (0.0..=100.0).contains(&percent) => {}
                _ => {
                    return Err(refuse(field, "is a percentage, from 0 to 100"));
                }
            }
        }
    }
    if let Some(value) = body.get("glucose").filter(|value| !value.is_null()) {
        match number(value) {
            Some(glucose) if glucose > 0.0 => {}
            _ => {
                return Err(refuse(
                    "glucose",
                    "is a glucose (in the treatment's units), more than 0",
                ));
            }
        }
    }
    let key = match (
        sync_identity(body).or_else(|| pump_identity(body, &event_type)),
        client_id,
    ) {
        (Some(identity), _) => identity,
        (None, Some(id)) => format!("_id|{id}"),
        // Nightscout's legacy key is `created_at` and `eventType`, which merges two
        // different treatments of one millisecond and keeps only one; the whole
        // document as sent (time and type included) keeps both and still recognises a
        // retry, which sends the same document again.
        (None, None) => content_key(&sent),
    };
    Ok((time, key, Some(event_type)))
}

/// A treatment's sync identity as its app keeps it: Loop's `syncIdentifier`, xDrip+'s
/// `uuid`, Trio's `id`, then `identifier` (AndroidAPS, API v3 clients, and a UUID `_id`
/// moved there). The apps' own fields come first because they are what a re-sent
/// treatment is sure to carry again; a bolus stored twice would read as twice the insulin.
fn sync_identity(body: &Map<String, Value>) -> Option<String> {
    ["syncIdentifier", "uuid", "id", "identifier"]
        .into_iter()
        .find_map(|field| text_field(body, field).map(|value| format!("{field}|{value}")))
}

/// AndroidAPS's key for a record from the pump's history: the pump's own event number,
/// its type and serial.
fn pump_identity(body: &Map<String, Value>, event_type: &str) -> Option<String> {
    let pump_id = match body.get("pumpId")? {
        Value::Number(number) => number.to_string(),
        Value::String(text) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => return None,
    };
    Some(format!(
        "pump|{}|{}|{pump_id}|{event_type}",
        text_field(body, "pumpType")?,
        text_field(body, "pumpSerial")?
    ))
}

/// The key of a treatment sent without an identity: its content as sent, so that an
/// app's retry of it is recognised, including one sent without a time (which Nightscout
/// stores anew at each retry, stamped with the time it arrived).
fn content_key(sent: &Map<String, Value>) -> String {
    // A retry sends the same document, which gives the same text.
    let text = Value::Object(sent.clone()).to_string();
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("content|{hex}")
}

fn device_status(
    body: &mut Map<String, Value>,
    now: DateTime<Utc>,
    limits: &UploadLimits,
) -> Result<(DateTime<Utc>, String, Option<String>), Refusal> {
    let time = created_at(body, &["created_at", "date"], now, limits)?;
    let device = match body.get("device") {
        Some(Value::String(device)) if !device.trim().is_empty() => Some(device.trim().to_owned()),
        Some(Value::Null) | None => None,
        Some(other) => {
            return Err(refuse(
                "device",
                format!("is {}; it names the uploader, as text", json_kind(other)),
            ));
        }
    };
    let key = match text_field(body, "identifier") {
        Some(identifier) => format!("identifier|{identifier}"),
        None => format!(
            "{}|{}",
            time.timestamp_millis(),
            device.as_deref().unwrap_or("")
        ),
    };
    Ok((time, key, device))
}

fn profile(
    body: &mut Map<String, Value>,
    client_id: Option<&str>,
    now: DateTime<Utc>,
    limits: &UploadLimits,
) -> Result<(DateTime<Utc>, String, Option<String>), Refusal> {
    let start = match body.get("startDate").filter(|value| !value.is_null()) {
        Some(value) => {
            let (start, _) = parse_time("startDate", value)?;
            check_time("startDate", start, now, limits)?;
            Some(start)
        }
        None => None,
    };
    let created = created_at(body, &["created_at", "mills"], now, limits)?;
    let time = start.unwrap_or(created);
    body.insert("startDate".into(), Value::String(iso(time)));
    if !matches!(body.get("store"), Some(Value::Object(_))) {
        return Err(refuse(
            "store",
            "is missing; a profile keeps its named therapy settings in store",
        ));
    }
    let key = match (text_field(body, "identifier"), client_id) {
        (Some(identifier), _) => format!("identifier|{identifier}"),
        (None, Some(id)) => format!("_id|{id}"),
        (None, None) => format!("{}", time.timestamp_millis()),
    };
    Ok((time, key, None))
}

/// The offset-aware text of a time in a zone, for `dateString` in responses.
pub fn date_string(time: DateTime<Utc>, offset_minutes: i32) -> String {
    FixedOffset::east_opt(offset_minutes * 60)
        .map(|offset| {
            time.with_timezone(&offset)
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        })
        .unwrap_or_else(|| iso(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 15, 10, 0, 0).unwrap()
    }

    fn one(collection: Collection, body: &str) -> Result<Document, DocumentError> {
        let mut documents = parse_upload(
            collection,
            body.as_bytes(),
            "site",
            now(),
            &UploadLimits::default(),
        )
        .unwrap();
        assert_eq!(documents.len(), 1);
        documents.remove(0)
    }

    #[test]
    fn an_sgv_entry_becomes_a_cgm_reading_keyed_by_time_and_type() {
        let document = one(
            Collection::Entries,
            r#"{"sgv": 120, "date": 1768471200000, "direction": "Flat", "noise": 1}"#,
        )
        .unwrap();
        assert_eq!(document.kind.as_deref(), Some("sgv"));
        assert_eq!(document.key, "1768471200|sgv");
        assert_eq!(document.body["sysTime"], "2026-01-15T10:00:00.000Z");
        assert_eq!(document.body["direction"], "Flat");
        let reading = document.reading().unwrap();
        assert_eq!(reading.code, ObservationCode::GlucoseCgm);
        assert_eq!(reading.value, 120.0);
        assert_eq!(reading.seq, 1768471200 * 2);
        let again = one(
            Collection::Entries,
            r#"{"type": "sgv", "sgv": 120, "date": 1768471200000}"#,
        )
        .unwrap();
        assert_eq!(again.id, document.id, "a re-sent entry gets the same _id");
    }

    #[test]
    fn dexcom_special_values_are_kept_but_are_no_reading() {
        let document = one(Collection::Entries, r#"{"sgv": 5, "date": 1768471200000}"#).unwrap();
        assert_eq!(document.reading(), None);
    }

    #[test]
    fn impossible_glucose_and_future_dates_are_refused_by_field() {
        let error = one(
            Collection::Entries,
            r#"{"type": "sgv", "sgv": 999999, "date": 1768471200000}"#,
        )
        .unwrap_err();
        assert_eq!(error.field, "sgv");
        assert!(error.reason.contains("outside"), "{}", error.reason);
        let error = one(
            Collection::Entries,
            r#"{"type": "sgv", "sgv": 120, "date": 9999999999999}"#,
        )
        .unwrap_err();
        assert_eq!(error.field, "date");
        assert!(error.reason.contains("future"), "{}", error.reason);
        let error = one(
            Collection::Entries,
            r#"{"type": "sgv", "sgv": "invalid", "date": 1768471200000}"#,
        )
        .unwrap_err();
        assert_eq!(error.field, "sgv");
    }

    #[test]
    fn treatments_take_every_time_format_and_refuse_negative_amounts() {
        for (created, expected) in [
            (r#""2024-01-18T12:00:00.000Z""#, "2024-01-18T12:00:00.000Z"),
            (
                r#""2024-01-18T14:00:00.000+02:00""#,
                "2024-01-18T12:00:00.000Z",
            ),
            ("1705579200000", "2024-01-18T12:00:00.000Z"),
            ("1705579200", "2024-01-18T12:00:00.000Z"),
        ] {
            let document = one(
                Collection::Treatments,
                &format!(r#"{{"eventType": "Note", "created_at": {created}}}"#),
            )
            .unwrap();
            assert_eq!(document.body["created_at"], expected, "{created}");
        }
        let error = one(
            Collection::Treatments,
            r#"{"eventType": "Note", "duration": -30, "created_at": "2026-01-15T09:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(error.field, "duration");
        let missing = one(Collection::Treatments, r#"{"carbs": 15}"#).unwrap();
        assert_eq!(missing.body["eventType"], "<none>");
        assert_eq!(missing.body["created_at"], "2026-01-15T10:00:00.000Z");
    }

    #[test]
    fn treatment_keys_follow_nightscout() {
        let by_identifier = one(
            Collection::Treatments,
            r#"{"eventType": "Meal Bolus", "identifier": "abc", "created_at": "2026-01-15T09:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(by_identifier.key, "identifier|abc");
        let loop_dose = one(
            Collection::Treatments,
            r#"{"eventType": "Temp Basal", "syncIdentifier": "loop-dose-1", "identifier": "moved", "created_at": "2026-01-15T09:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(loop_dose.key, "syncIdentifier|loop-dose-1");
        let uuid = one(
            Collection::Treatments,
            r#"{"eventType": "Temporary Override", "_id": "A1B2C3D4-E5F6-7890-ABCD-EF1234567890", "created_at": "2026-01-15T09:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            uuid.body["identifier"],
            "A1B2C3D4-E5F6-7890-ABCD-EF1234567890"
        );
        assert!(is_object_id(&uuid.id));
        let object_id = one(
            Collection::Treatments,
            r#"{"eventType": "Note", "_id": "65a5c1234567890abcdef123", "created_at": "2026-01-15T09:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(object_id.id, "65a5c1234567890abcdef123");
        assert_eq!(object_id.key, "_id|65a5c1234567890abcdef123");
        let plain = |notes: &str| {
            one(
                Collection::Treatments,
                &format!(r#"{{"eventType": "Note", "created_at": "2026-01-15T09:00:00Z", "notes": "{notes}"}}"#),
            )
            .unwrap()
            .key
        };
        assert_eq!(plain("a"), plain("a"), "a retry is the same treatment");
        assert_ne!(
            plain("a"),
            plain("b"),
            "two notes of one millisecond are two"
        );
    }

    #[test]
    fn whole_uploads_refused_for_what_they_are() {
        let limits = UploadLimits::default();
        assert!(matches!(
            parse_upload(Collection::Entries, b"[1", "s", now(), &limits),
            Err(UploadError::NotJson(_))
        ));
        assert!(matches!(
            parse_upload(Collection::Entries, b"42", "s", now(), &limits),
            Err(UploadError::NotDocuments(_))
        ));
        assert_eq!(
            parse_upload(Collection::Entries, b"{}", "s", now(), &limits).unwrap(),
            vec![]
        );
        assert_eq!(
            parse_upload(Collection::Treatments, b"[]", "s", now(), &limits).unwrap(),
            vec![]
        );
        let many = format!("[{}]", vec!["{}"; 1001].join(","));
        assert!(matches!(
            parse_upload(Collection::Entries, many.as_bytes(), "s", now(), &limits),
            Err(UploadError::TooMany { count: 1001, .. })
        ));
    }
}
