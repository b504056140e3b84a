//! [`NightscoutStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use wardline_domain::PatientId;

use super::audit::append;
use super::devices::{assign, insert_device};
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::model::DeviceStatus;
use crate::nightscout::*;

const SITE_COLUMNS: &str = "s.id, p.id, d.id, d.status, s.created_ms, s.sha1_check, s.sha512_check,
     (SELECT min(a.start_ms) FROM device_assignment a WHERE a.device_key = d.key)";
const SITE_FROM: &str = "nightscout_site s JOIN patient p ON p.key = s.patient_key JOIN device d ON d.key = s.device_key";

fn check(row: &Row<'_>, index: usize) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = row.get(index)?;
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a Nightscout secret check is not 32 bytes".into()))
}

fn site_from_row(row: &Row<'_>) -> Result<NightscoutSite, StoreError> {
    let patient: String = row.get(1)?;
    let device: String = row.get(2)?;
    let status: String = row.get(3)?;
    let created = from_ms(row.get(4)?)?;
    Ok(NightscoutSite {
        id: row.get(0)?,
        patient_id: parse_uuid(&patient, "patient")?,
        device_id: parse_device_id(&device)?,
        device_status: match status.as_str() {
            "active" => DeviceStatus::Active,
            _ => DeviceStatus::Revoked,
        },
        created,
        accepts_from: row
            .get::<_, Option<i64>>(7)?
            .map(from_ms)
            .transpose()?
            .unwrap_or(created),
        sha1_check: check(row, 5)?,
        sha512_check: check(row, 6)?,
    })
}

fn site_where(
    connection: &Connection,
    condition: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<Vec<NightscoutSite>, StoreError> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {SITE_COLUMNS} FROM {SITE_FROM} WHERE {condition} ORDER BY s.key DESC"
    ))?;
    let rows = statement.query_map([value], |row| Ok(site_from_row(row)))?;
    rows.map(|row| row?).collect()
}

fn document_from_row(row: &Row<'_>, new: bool) -> Result<NightscoutDocument, StoreError> {
    Ok(NightscoutDocument {
        row: row.get(0)?,
        id: row.get(1)?,
        time_ms: row.get(2)?,
        body: row.get(3)?,
        new,
        site: row.get(4)?,
    })
}

/// The document kept under `condition` for the patient and collection, if any.
fn kept(
    connection: &Connection,
    patient_key: i64,
    collection: &str,
    condition: &str,
    value: &str,
) -> Result<Option<NightscoutDocument>, StoreError> {
    connection
        .prepare_cached(&format!(
            "SELECT d.key, d.id, d.time_ms, d.body, s.id FROM nightscout_document d
             JOIN nightscout_site s ON s.key = d.site_key
             WHERE d.patient_key = ?1 AND d.collection = ?2 AND d.{condition} = ?3"
        ))?
        .query_row(params![patient_key, collection, value], |row| {
            Ok(document_from_row(row, false))
        })
        .optional()?
        .transpose()
}

/// 96 random bits as 24 hexadecimal digits, the shape of an ObjectId.
fn random_object_id() -> Result<String, StoreError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Corrupt("no randomness for a document id".into()))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The document's JSON with its `_id` set to the one it is kept under.
fn with_id(body: &str, id: &str) -> Result<String, StoreError> {
    let mut value: serde_json::Map<String, serde_json::Value> = from_json(body, "document")?;
    value.insert("_id".into(), serde_json::Value::String(id.to_owned()));
    to_json(&value)
}

#[async_trait]
impl NightscoutStore for SqliteStore {
    async fn create_nightscout_site(
        &self,
        site: NewNightscoutSite,
        audit: AuditEvent,
    ) -> Result<NightscoutSite, StoreError> {
        self.write(move |connection| {
            let patient_key = key_of(
                connection,
                "patient",
                &site.assignment.patient_id.to_string(),
                "patient",
            )?;
            let device = insert_device(connection, site.device)?;
            assign(
                connection,
                &device.id,
                site.assignment.patient_id,
                site.assignment.from,
            )?;
            let device_key = key_of(connection, "device", device.id.as_str(), "device")?;
            connection
                .execute(
                    "INSERT INTO nightscout_site (id, patient_key, device_key, sha1_check, sha512_check, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        site.id,
                        patient_key,
                        device_key,
                        site.sha1_check.as_slice(),
                        site.sha512_check.as_slice(),
                        to_ms(device.created)
                    ],
                )
                .map_err(|error| unique_violation(error, format!("Nightscout site {}", site.id)))?;
            append(connection, &[audit])?;
            site_where(connection, "s.id = ?1", &site.id)?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Corrupt("a site just stored is not there".into()))
        })
        .await
    }

    async fn nightscout_site(&self, id: &str) -> Result<Option<NightscoutSite>, StoreError> {
        let id = id.to_owned();
        self.read(move |connection| {
            Ok(site_where(connection, "s.id = ?1", &id)?.into_iter().next())
        })
        .await
    }

    async fn nightscout_sites_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<NightscoutSite>, StoreError> {
        self.read(move |connection| site_where(connection, "p.id = ?1", &patient.to_string()))
            .await
    }

    async fn store_nightscout_documents(
        &self,
        site: &str,
        documents: Vec<NewNightscoutDocument>,
    ) -> Result<Vec<NightscoutDocument>, StoreError> {
        let site = site.to_owned();
        self.write(move |connection| {
            let (site_key, patient_key): (i64, i64) = connection
                .prepare_cached("SELECT key, patient_key FROM nightscout_site WHERE id = ?1")?
                .query_row([&site], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?
                .ok_or_else(|| StoreError::not_found(format!("Nightscout site {site}")))?;
            let received = to_ms(chrono::Utc::now());
            let mut kept_documents = Vec::with_capacity(documents.len());
            for document in documents {
                let collection = document.collection.as_str();
                // The common case in one statement: a new key under its own `_id`. A key
                // kept before inserts nothing; an `_id` another document has fails, and
                // the document goes in under its fallback.
                let insert = |id: &str, body: &str| {
                    connection
                        .prepare_cached(
                            "INSERT INTO nightscout_document
                             (patient_key, site_key, collection, id, dedup_key, time_ms, kind, body, received_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                             ON CONFLICT (patient_key, collection, dedup_key) DO NOTHING",
                        )?
                        .execute(params![
                            patient_key,
                            site_key,
                            collection,
                            id,
                            document.key,
                            document.time_ms,
                            document.kind,
                            body,
                            received
                        ])
                };
                let (inserted, id, body) = match insert(&document.id, &document.body) {
                    Ok(inserted) => (inserted, document.id.clone(), document.body.clone()),
                    Err(error) if is_unique_violation(&error) => {
                        // The fallback, or, should that be taken too (three documents sent
                        // with one `_id`), a random one: one document's `_id` must not
                        // refuse an upload on every retry.
                        let mut id = document.fallback_id.clone();
                        let mut attempts = 0;
                        loop {
                            let body = with_id(&document.body, &id)?;
                            match insert(&id, &body) {
                                Ok(inserted) => break (inserted, id, body),
                                Err(error) if is_unique_violation(&error) && attempts < 3 => {
                                    attempts += 1;
                                    id = random_object_id()?;
                                }
                                Err(error) => {
                                    return Err(unique_violation(error, format!("Nightscout document {id}")));
                                }
                            }
                        }
                    }
                    Err(error) => return Err(error.into()),
                };
                if inserted == 0 {
                    let before = kept(connection, patient_key, collection, "dedup_key", &document.key)?
                        .ok_or_else(|| StoreError::Corrupt("a Nightscout document's key conflicts with nothing".into()))?;
                    kept_documents.push(before);
                    continue;
                }
                kept_documents.push(NightscoutDocument {
                    row: connection.last_insert_rowid(),
                    id,
                    time_ms: document.time_ms,
                    body,
                    new: true,
                    site: site.clone(),
                });
            }
            Ok(kept_documents)
        })
        .await
    }

    async fn nightscout_documents(
        &self,
        query: NightscoutDocumentQuery,
    ) -> Result<Vec<NightscoutDocument>, StoreError> {
        self.read(move |connection| {
            let Some(patient_key) = patient_key_of(connection, query.patient_id)? else {
                return Ok(Vec::new());
            };
            let (before_time, before_row) = query.before.unwrap_or((i64::MAX, i64::MAX));
            let mut statement = connection.prepare_cached(
                "SELECT d.key, d.id, d.time_ms, d.body, s.id FROM nightscout_document d
                 JOIN nightscout_site s ON s.key = d.site_key
                 WHERE d.patient_key = ?1 AND d.collection = ?2
                   AND d.time_ms >= ?3 AND d.time_ms <= ?4
                   AND (?5 IS NULL OR d.kind = ?5)
                   AND (?6 IS NULL OR d.id = ?6)
                   AND (d.time_ms < ?7 OR (d.time_ms = ?7 AND d.key < ?8))
                 ORDER BY d.time_ms DESC, d.key DESC
                 LIMIT ?9",
            )?;
            let rows = statement.query_map(
                params![
                    patient_key,
                    query.collection.as_str(),
                    query.from_ms.unwrap_or(i64::MIN),
                    query.to_ms.unwrap_or(i64::MAX),
                    query.kind,
                    query.id,
                    before_time,
                    before_row,
                    query.limit
                ],
                |row| Ok(document_from_row(row, false)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }
}
