//! Nightscout sites: the diabetes apps people already run (xDrip+, AndroidAPS, Loop,
//! Trio, xDrip4iOS) upload to Wardline as they would to a Nightscout site, unmodified.
//!
//! A patient, or a clinician or nurse of their care team, enables a site and gets its
//! URL and API secret, shown once. The secret is the credential of a
//! `nightscout_uploader` device assigned to the patient: revoking the site revokes the
//! device. Uploaders send the secret's SHA-1 or SHA-512 in hexadecimal (`api-secret`
//! header, `?secret=` or `?token=`), so Wardline keeps the SHA-256 of each of those.
//!
//! An upload keeps its documents first, then stores the glucose of its entries as
//! readings through the same ingest as every device, made from the documents as kept:
//! both steps are idempotent, so an uploader that retries after a failure between them
//! completes the second without repeating the first, and the answer (an array with each
//! document's `_id`) comes only after both commits.

use std::fmt::Write as _;

use ring::digest;
use serde_json::{Map, Value};
use wardline_domain::nightscout::query::{Query, QueryError};
use wardline_domain::nightscout::{
    Collection, Document, DocumentError, UploadError, UploadLimits, parse_upload,
};
use wardline_domain::{DeviceId, DeviceKind, PatientId, Reading, Role};
use wardline_store::{
    AuditOutcome, DeviceStatus, InitialAssignment, NewDevice, NewNightscoutDocument,
    NewNightscoutSite, NightscoutDocumentQuery, NightscoutSite,
};

use crate::Wardline;
use crate::actor::{Actor, Uploader};
use crate::credentials::{DeviceSecret, equal_in_constant_time, hash_secret};
use crate::error::Error;
use crate::ingest::MessageVerdict;

/// Documents read from the store per page while `find` conditions are checked on them.
const PAGE: u32 = 1000;
/// Most documents one read looks at to find `count` that meet its conditions.
const MOST_SCANNED: usize = 50_000;
/// Most bytes of documents one answer holds (device statuses with their predictions
/// are tens of kilobytes each, and a document may be up to 256 KiB).
const MOST_BYTES: usize = 16 * 1024 * 1024;

/// A new site and its secret, which Wardline shows only now.
#[derive(Debug, Clone)]
pub struct EnabledSite {
    pub site: NightscoutSite,
    pub secret: DeviceSecret,
}

/// The lower-case hexadecimal of a digest.
fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// What the store keeps of a secret as uploaders send it: the SHA-256 of the hexadecimal
/// SHA-1 and of the hexadecimal SHA-512.
pub fn secret_checks(secret: &str) -> ([u8; 32], [u8; 32]) {
    let sha1 = hex(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes()).as_ref());
    let sha512 = hex(digest::digest(&digest::SHA512, secret.as_bytes()).as_ref());
    (hash_secret(sha1.as_bytes()), hash_secret(sha512.as_bytes()))
}

/// A site's name: 64 random bits as 16 hexadecimal digits.
fn new_site_name() -> Result<String, Error> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("no randomness".into()))?;
    Ok(hex(&bytes))
}

fn document_error(error: &DocumentError) -> Error {
    Error::invalid(
        format!("[{}].{}", error.index, error.field),
        format!(
            "document {}: {}: {}",
            error.index, error.field, error.reason
        ),
    )
}

impl From<UploadError> for Error {
    fn from(error: UploadError) -> Self {
        Error::invalid("$", error.to_string())
    }
}

impl From<QueryError> for Error {
    fn from(error: QueryError) -> Self {
        Error::invalid(error.parameter.clone(), error.to_string())
    }
}

impl Wardline {
    /// Enables a Nightscout site for the patient (the patient, or a clinician or nurse
    /// of their care team): a new uploader device assigned to them, its secret shown
    /// once.
    pub async fn enable_nightscout(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<EnabledSite, Error> {
        let name = new_site_name()?;
        let device_id = DeviceId::parse(&format!("ns-{name}"))
            .map_err(|error| Error::Internal(error.to_string()))?;
        let detail = format!("site {name}, device {device_id}");
        let audit = match actor {
            // `wardline` on the server's own machine (tools, benchmarks).
            Actor::CommandLine => {
                actor.allowed("nightscout_sites.create", Some(patient_id), Some(detail))
            }
            _ => {
                self.authorize_patient_change(
                    actor,
                    patient_id,
                    "nightscout_sites.create",
                    &[Role::Patient, Role::Clinician, Role::Nurse],
                    Some(detail),
                )
                .await?
                .audit
            }
        };
        let secret =
            DeviceSecret::generate().map_err(|_| Error::Internal("no randomness".into()))?;
        let (sha1_check, sha512_check) = secret_checks(secret.expose());
        let now = self.now();
        let site = self
            .store
            .create_nightscout_site(
                NewNightscoutSite {
                    id: name.clone(),
                    device: NewDevice {
                        id: device_id,
                        kind: DeviceKind::NightscoutUploader,
                        model: "Nightscout uploader".into(),
                        serial: name,
                        secret_hash: secret.hash(),
                        created: now,
                    },
                    // Whatever the apps upload for this site is this patient's, however
                    // old: they back-fill what they collected offline, and a patient
                    // moving from a Nightscout site of their own brings its history.
                    assignment: InitialAssignment {
                        patient_id,
                        from: wardline_domain::nightscout::earliest(),
                    },
                    sha1_check,
                    sha512_check,
                },
                audit,
            )
            .await?;
        Ok(EnabledSite { site, secret })
    }

    /// The patient's sites, live and revoked.
    pub async fn nightscout_sites(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<NightscoutSite>, Error> {
        self.authorize_patient(actor, patient_id, "nightscout_sites.read", None)
            .await?;
        Ok(self.store.nightscout_sites_of_patient(patient_id).await?)
    }

    /// Ends a site (the patient, or a clinician or nurse of their care team): its
    /// secret stops working at once. What it uploaded stays in the record.
    pub async fn revoke_nightscout_site(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        site: &str,
    ) -> Result<(), Error> {
        let allowed = self
            .authorize_patient_change(
                actor,
                patient_id,
                "nightscout_sites.revoke",
                &[Role::Patient, Role::Clinician, Role::Nurse],
                Some(format!("site {site}")),
            )
            .await?;
        let found = self
            .store
            .nightscout_site(site)
            .await?
            .filter(|found| found.patient_id == patient_id)
            .ok_or_else(|| Error::NotFound(format!("Nightscout site {site}")))?;
        self.store
            .set_device_status(&found.device_id, DeviceStatus::Revoked, allowed.audit)
            .await?;
        Ok(())
    }

    /// The uploader of `site` if `presented` is the SHA-1 or SHA-512 (hexadecimal, any
    /// case) of its secret and the site is live. A refusal for a site that exists is
    /// audited under its patient; every refusal is answered `Unauthenticated`.
    pub async fn authenticate_nightscout(
        &self,
        site: &str,
        presented: Option<&str>,
        remote_addr: Option<String>,
    ) -> Result<Actor, Error> {
        let found = if site.len() == 16 && site.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            self.store.nightscout_site(site).await?
        } else {
            None
        };
        let check = presented
            .map(|presented| hash_secret(presented.trim().to_ascii_lowercase().as_bytes()));
        let matches = match (&found, check) {
            (Some(found), Some(check)) => {
                // Both comparisons always run, so the time taken tells nothing.
                let sha1 = equal_in_constant_time(&found.sha1_check, &check);
                let sha512 = equal_in_constant_time(&found.sha512_check, &check);
                sha1 | sha512
            }
            _ => false,
        };
        match found {
            Some(found) if matches && found.device_status == DeviceStatus::Active => {
                Ok(Actor::Uploader(Uploader {
                    site: found.id,
                    device_id: found.device_id,
                    patient_id: found.patient_id,
                    remote_addr,
                }))
            }
            None => {
                // No such site: no patient's data was at stake, and a flood of made-up
                // site names must not fill the audit trail.
                metrics::counter!("wardline_nightscout_auth_failed_total").increment(1);
                Err(Error::Unauthenticated)
            }
            Some(found) => {
                metrics::counter!("wardline_nightscout_auth_failed_total").increment(1);
                let reason = match presented {
                    None => "no API secret",
                    Some(_) if matches => "the site is revoked",
                    Some(_) => "wrong API secret",
                };
                let audit = wardline_store::AuditEvent {
                    time: self.now(),
                    actor: None,
                    actor_label: format!("nightscout site {}", found.id),
                    action: "nightscout.authenticate".into(),
                    patient_id: Some(found.patient_id),
                    outcome: AuditOutcome::Denied,
                    remote_addr,
                    detail: Some(reason.into()),
                };
                self.audit(audit).await?;
                Err(Error::Unauthenticated)
            }
        }
    }

    /// Keeps an upload to `collection` and answers what Nightscout answers: an array in
    /// the request's order with each document as kept (`_id` included; a re-sent
    /// document is answered with the one kept before). A refused document is answered in
    /// its place with `ok: 0` and the field and reason; when every document is refused,
    /// the whole upload is refused with the first one's.
    pub async fn nightscout_upload(
        &self,
        actor: &Actor,
        collection: Collection,
        body: &[u8],
    ) -> Result<Vec<Value>, Error> {
        let Actor::Uploader(uploader) = actor else {
            return Err(Error::Forbidden);
        };
        let parsed = parse_upload(
            collection,
            body,
            &uploader.site,
            self.now(),
            &UploadLimits {
                max_future_skew: self.settings.payload_limits.max_future_skew,
                ..UploadLimits::default()
            },
        )?;
        if !parsed.is_empty() && parsed.iter().all(Result::is_err) {
            metrics::counter!("wardline_nightscout_documents_refused_total", "collection" => collection.as_str())
                .increment(parsed.len() as u64);
            if let Some(Err(error)) = parsed.first() {
                return Err(document_error(error));
            }
        }
        let valid: Vec<NewNightscoutDocument> = parsed
            .iter()
            .filter_map(|document| document.as_ref().ok())
            .map(|document| NewNightscoutDocument {
                collection,
                id: document.id.clone(),
                fallback_id: fallback_id(&document.id),
                key: document.key.clone(),
                time_ms: document.time_ms,
                kind: document.kind.clone(),
                body: Value::Object(document.body.clone()).to_string(),
            })
            .collect();
        let kept = if valid.is_empty() {
            Vec::new()
        } else {
            self.store
                .store_nightscout_documents(&uploader.site, valid)
                .await?
        };
        // Each kept document as a parsed one: the upload's own where it was kept new under
        // its own `_id` (nothing to read back), the stored one otherwise.
        let sent = parsed.iter().filter_map(|document| document.as_ref().ok());
        let mut as_kept = Vec::with_capacity(kept.len());
        for (document, kept) in sent.zip(&kept) {
            as_kept.push(if kept.new && kept.id == document.id {
                document.clone()
            } else {
                Document {
                    id: kept.id.clone(),
                    time_ms: kept.time_ms,
                    body: serde_json::from_str(&kept.body).map_err(|error| {
                        Error::Internal(format!("a kept document is not JSON: {error}"))
                    })?,
                    ..document.clone()
                }
            });
        }
        if as_kept.len() != kept.len() {
            return Err(Error::Internal("fewer documents kept than sent".into()));
        }
        if collection == Collection::Entries {
            // A kept entry's `type` decides its reading, as stored (a re-sent one may
            // differ from the first only where the key does not look).
            // Only documents this site kept: another site's copy of the same entry (two
            // apps relaying one sensor) has its reading under that site's device already.
            let readings: Vec<Reading> = as_kept
                .iter()
                .zip(&kept)
                .filter(|(_, kept)| kept.site == uploader.site)
                .filter_map(|(document, _)| {
                    Document {
                        kind: document
                            .body
                            .get("type")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        ..document.clone()
                    }
                    .reading()
                })
                .collect();
            self.store_entry_readings(uploader, readings).await?;
        }
        let refused = parsed.iter().filter(|document| document.is_err()).count();
        metrics::counter!("wardline_nightscout_documents_stored_total", "collection" => collection.as_str())
            .increment(kept.iter().filter(|document| document.new).count() as u64);
        metrics::counter!("wardline_nightscout_documents_refused_total", "collection" => collection.as_str())
            .increment(refused as u64);
        let mut as_kept = as_kept.into_iter();
        let mut answer = Vec::with_capacity(parsed.len());
        for document in &parsed {
            match document {
                Ok(_) => {
                    let Some(kept) = as_kept.next() else {
                        return Err(Error::Internal("fewer documents kept than sent".into()));
                    };
                    answer.push(Value::Object(kept.body));
                }
                Err(error) => answer.push(serde_json::json!({
                    "ok": 0,
                    "index": error.index,
                    "field": error.field,
                    "message": format!("{}: {}", error.field, error.reason),
                })),
            }
        }
        Ok(answer)
    }

    /// Stores the glucose of the kept entries as readings of the site's device.
    async fn store_entry_readings(
        &self,
        uploader: &Uploader,
        readings: Vec<Reading>,
    ) -> Result<(), Error> {
        if readings.is_empty() {
            return Ok(());
        }
        match self
            .ingest
            .store_readings(&uploader.device_id, "nightscout", readings)
            .await?
        {
            MessageVerdict::Stored { .. } => Ok(()),
            MessageVerdict::Rejected(rejection) => Err(Error::from(rejection)),
        }
    }

    /// Reads the patient's documents of `collection` newest first, `count` of those that
    /// meet the query, or the one with `_id` `id`. Audited as every read.
    pub async fn nightscout_read(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        collection: Collection,
        query: &Query,
        id: Option<&str>,
    ) -> Result<Vec<Value>, Error> {
        let action = match collection {
            Collection::Entries => "nightscout.entries.read",
            Collection::Treatments => "nightscout.treatments.read",
            Collection::DeviceStatus => "nightscout.devicestatus.read",
            Collection::Profile => "nightscout.profile.read",
        };
        self.authorize_patient(actor, patient_id, action, None)
            .await?;
        let mut found = Vec::new();
        let mut before = None;
        let mut scanned = 0usize;
        let mut bytes = 0usize;
        // One more sensor entry than asked, for the last one's delta.
        let wanted = query.count + usize::from(collection == Collection::Entries);
        loop {
            let page = self
                .store
                .nightscout_documents(NightscoutDocumentQuery {
                    patient_id,
                    collection,
                    from_ms: query.from_ms,
                    to_ms: query.to_ms,
                    kind: query.kind.clone(),
                    id: id.map(str::to_owned),
                    before,
                    limit: PAGE,
                })
                .await?;
            let full = page.len() == PAGE as usize;
            scanned += page.len();
            before = page.last().map(|document| (document.time_ms, document.row));
            for document in page {
                // An answer stops at MOST_BYTES of documents, whatever `count` asked.
                bytes += document.body.len();
                if bytes > MOST_BYTES {
                    break;
                }
                let body: Map<String, Value> =
                    serde_json::from_str(&document.body).map_err(|error| {
                        Error::Internal(format!("a kept document is not JSON: {error}"))
                    })?;
                if query.matches(&body) {
                    found.push(body);
                    if found.len() >= wanted {
                        break;
                    }
                }
            }
            if found.len() >= wanted || !full || scanned >= MOST_SCANNED || bytes > MOST_BYTES {
                break;
            }
        }
        if collection == Collection::Entries {
            // A delta is against the previous reading, which a condition may have left out.
            if query.conditions.is_empty() {
                add_deltas(&mut found);
            }
            found.truncate(query.count);
        }
        Ok(found.into_iter().map(Value::Object).collect())
    }
}

/// The `_id` a document gets when its client's ObjectId belongs to another document:
/// the same digits with the first changed, so that it is still an ObjectId.
fn fallback_id(id: &str) -> String {
    let mut digits: Vec<char> = id.chars().collect();
    if let Some(first) = digits.first_mut() {
        *first = if *first == 'f' { 'e' } else { 'f' };
    }
    digits.into_iter().collect()
}

/// Adds `delta` (mg/dL since the previous sensor reading, within 15 minutes) to sensor
/// entries that came without one, as Nightscout's followers expect it. `entries` are
/// newest first.
fn add_deltas(entries: &mut [Map<String, Value>]) {
    let sgv = |entry: &Map<String, Value>| -> Option<(f64, i64)> {
        if entry.get("type").and_then(Value::as_str) != Some("sgv") {
            return None;
        }
        Some((
            entry
                .get("sgv")
                .and_then(wardline_domain::nightscout::number)?,
            entry.get("date").and_then(Value::as_i64)?,
        ))
    };
    for index in 0..entries.len() {
        if entries[index].contains_key("delta") {
            continue;
        }
        let Some((value, date)) = sgv(&entries[index]) else {
            continue;
        };
        let previous = entries[index + 1..].iter().find_map(sgv);
        if let Some((previous, previous_date)) = previous
            && date - previous_date <= 15 * 60 * 1000
            && previous > wardline_domain::nightscout::DEXCOM_SPECIAL_MAX
            && value > wardline_domain::nightscout::DEXCOM_SPECIAL_MAX
        {
            entries[index].insert("delta".into(), Value::from(value - previous));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_secret_gives_its_documented_sha1() {
        // Nightscout's own example: "this is my long pass phrase" →
        // b723e97aa97846eb92d5264f084b2823f57c4aa1.
        let (sha1_check, _) = secret_checks("this is my long pass phrase");
        assert_eq!(
            sha1_check,
            hash_secret(b"b723e97aa97846eb92d5264f084b2823f57c4aa1")
        );
    }

    #[test]
    fn deltas_are_added_only_between_close_sensor_readings() {
        let mut entries: Vec<Map<String, Value>> = [
            r#"{"type": "sgv", "sgv": 130, "date": 1200000}"#,
            r#"{"type": "sgv", "sgv": 120, "date": 900000}"#,
            r#"{"type": "mbg", "mbg": 125, "date": 800000}"#,
            r#"{"type": "sgv", "sgv": 100, "date": -60000}"#,
        ]
        .iter()
        .map(|text| serde_json::from_str(text).unwrap())
        .collect();
        add_deltas(&mut entries);
        assert_eq!(entries[0]["delta"], 10.0);
        assert!(!entries[1].contains_key("delta"), "15 minutes apart");
        assert!(!entries[2].contains_key("delta"));
    }
}
