//! Nightscout sites: a patient's uploader apps (xDrip+, AndroidAPS, Loop, Trio) write to
//! a site URL with an API secret, and the documents they send are kept as they sent them
//! (normalised), beside the glucose readings made of them.
//!
//! A site's credential is a device of kind `nightscout_uploader` assigned to the patient:
//! revoking the device ends the site. Uploaders send the SHA-1 or SHA-512 of the secret
//! in hexadecimal; the store keeps only the SHA-256 of each of those two texts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::nightscout::Collection;
use wardline_domain::{DeviceId, PatientId};

use crate::audit::AuditEvent;
use crate::devices::InitialAssignment;
use crate::error::StoreError;
use crate::model::{DeviceStatus, NewDevice};

/// A site, live or revoked (its device's status).
#[derive(Debug, Clone, PartialEq)]
pub struct NightscoutSite {
    /// The name in the site's URL: 16 lower-case hexadecimal digits.
    pub id: String,
    pub patient_id: PatientId,
    pub device_id: DeviceId,
    pub device_status: DeviceStatus,
    pub created: DateTime<Utc>,
    /// Documents measured before this are refused: the start of the uploader's
    /// assignment to the patient.
    pub accepts_from: DateTime<Utc>,
    /// SHA-256 of the hexadecimal SHA-1 of the secret.
    pub sha1_check: [u8; 32],
    /// SHA-256 of the hexadecimal SHA-512 of the secret.
    pub sha512_check: [u8; 32],
}

/// A site to create, with its device.
#[derive(Debug, Clone)]
pub struct NewNightscoutSite {
    pub id: String,
    pub device: NewDevice,
    pub assignment: InitialAssignment,
    pub sha1_check: [u8; 32],
    pub sha512_check: [u8; 32],
}

/// A document to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNightscoutDocument {
    pub collection: Collection,
    pub id: String,
    /// Used instead of `id` when another document of the patient has that `_id`
    /// already (a client's ObjectId is not trusted to be unique).
    pub fallback_id: String,
    pub key: String,
    pub time_ms: i64,
    pub kind: Option<String>,
    /// The normalised document as JSON; its `_id` is rewritten to the one kept.
    pub body: String,
}

/// A kept document.
#[derive(Debug, Clone, PartialEq)]
pub struct NightscoutDocument {
    /// Order of storing, for paging.
    pub row: i64,
    pub id: String,
    pub time_ms: i64,
    pub body: String,
    /// False when the upload matched a document kept before (a re-sent one).
    pub new: bool,
    /// The site that uploaded it first.
    pub site: String,
}

/// A read of one collection of one patient, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct NightscoutDocumentQuery {
    pub patient_id: PatientId,
    pub collection: Collection,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub kind: Option<String>,
    /// `_id` equal to this.
    pub id: Option<String>,
    /// Documents strictly older than this `(time_ms, row)`: the next page.
    pub before: Option<(i64, i64)>,
    pub limit: u32,
}

#[async_trait]
pub trait NightscoutStore: Send + Sync {
    /// Creates the site and enrols its device, assigned to the patient, in one commit
    /// with the audit entry. `NotFound` for an unknown patient (nothing is created).
    async fn create_nightscout_site(
        &self,
        site: NewNightscoutSite,
        audit: AuditEvent,
    ) -> Result<NightscoutSite, StoreError>;
    async fn nightscout_site(&self, id: &str) -> Result<Option<NightscoutSite>, StoreError>;
    /// The patient's sites, newest first.
    async fn nightscout_sites_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<NightscoutSite>, StoreError>;
    /// Keeps the documents of one upload to the site in one commit, in order: each one
    /// whose key the patient has kept before is not kept again and is answered with the
    /// one kept (`new: false`).
    async fn store_nightscout_documents(
        &self,
        site: &str,
        documents: Vec<NewNightscoutDocument>,
    ) -> Result<Vec<NightscoutDocument>, StoreError>;
    async fn nightscout_documents(
        &self,
        query: NightscoutDocumentQuery,
    ) -> Result<Vec<NightscoutDocument>, StoreError>;
}
