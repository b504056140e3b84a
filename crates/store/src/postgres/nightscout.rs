//! [`NightscoutStore`] on PostgreSQL. A document is kept once per patient, collection and
//! key however many workers receive it: the unique indexes decide, and an insert that
//! inserts nothing is answered with the document kept under its key, or tried again under
//! another `_id` when only the `_id` was taken.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use uuid::Uuid;
use wardline_domain::PatientId;

use super::audit::append;
use super::devices::{assign, insert_device};
use super::rows::*;
use super::{PostgresStore, lock, nightscout_upload_lock};
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::model::DeviceStatus;
use crate::nightscout::{
    NewNightscoutDocument, NewNightscoutSite, NightscoutDocument, NightscoutDocumentQuery,
    NightscoutSite, NightscoutStore,
};

const SITE_COLUMNS: &str = "s.id, p.id, d.id, d.status, s.created_ms, s.sha1_check, s.sha512_check,
     (SELECT min(a.start_ms) FROM device_assignment a WHERE a.device_key = d.key)";
const SITE_FROM: &str = "nightscout_site s JOIN patient p ON p.key = s.patient_key JOIN device d ON d.key = s.device_key";

fn check(row: &tokio_postgres::Row, index: usize) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = row.try_get(index)?;
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a Nightscout secret check is not 32 bytes".into()))
}

fn site_from_row(row: &tokio_postgres::Row) -> Result<NightscoutSite, StoreError> {
    let status: &str = row.try_get(3)?;
    let created = from_ms(row.try_get(4)?)?;
    Ok(NightscoutSite {
        id: row.try_get(0)?,
        patient_id: PatientId(row.try_get::<_, Uuid>(1)?),
        device_id: parse_device_id(row.try_get(2)?)?,
        device_status: match status {
            "active" => DeviceStatus::Active,
            _ => DeviceStatus::Revoked,
        },
        created,
        accepts_from: row
            .try_get::<_, Option<i64>>(7)?
            .map(from_ms)
            .transpose()?
            .unwrap_or(created),
        sha1_check: check(row, 5)?,
        sha512_check: check(row, 6)?,
    })
}

async fn site_where(
    client: &impl deadpool_postgres::GenericClient,
    condition: &str,
    value: &(dyn ToSql + Sync),
) -> Result<Vec<NightscoutSite>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {SITE_COLUMNS} FROM {SITE_FROM} WHERE {condition} ORDER BY s.key DESC"
        ))
        .await?;
    client
        .query(&statement, &[value])
        .await?
        .iter()
        .map(site_from_row)
        .collect()
}

const DOCUMENT_COLUMNS: &str = "d.key, d.id, d.time_ms, d.body, s.id";

fn document_from_row(
    row: &tokio_postgres::Row,
    new: bool,
) -> Result<NightscoutDocument, StoreError> {
    Ok(NightscoutDocument {
        row: row.try_get(0)?,
        id: row.try_get(1)?,
        time_ms: row.try_get(2)?,
        body: row.try_get(3)?,
        new,
        site: row.try_get(4)?,
    })
}

/// The document kept under `key` for the patient and collection, if any.
async fn kept(
    transaction: &deadpool_postgres::Transaction<'_>,
    patient_key: i64,
    collection: &str,
    key: &str,
) -> Result<Option<NightscoutDocument>, StoreError> {
    let statement = transaction
        .prepare_cached(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM nightscout_document d
             JOIN nightscout_site s ON s.key = d.site_key
             WHERE d.patient_key = $1 AND d.collection = $2 AND d.dedup_key = $3"
        ))
        .await?;
    transaction
        .query_opt(&statement, &[&patient_key, &collection, &key])
        .await?
        .map(|row| document_from_row(&row, false))
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
impl NightscoutStore for PostgresStore {
    async fn create_nightscout_site(
        &self,
        site: NewNightscoutSite,
        audit: AuditEvent,
    ) -> Result<NightscoutSite, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let patient = site.assignment.patient_id;
        let patient_key = key_of(
            &transaction,
            "patient",
            &patient.0,
            &format!("patient {patient}"),
        )
        .await?;
        let device = insert_device(&transaction, site.device).await?;
        assign(&transaction, &device.id, patient, site.assignment.from).await?;
        let device_key = key_of(
            &transaction,
            "device",
            &device.id.as_str(),
            &format!("device {}", device.id),
        )
        .await?;
        transaction
            .execute(
                "INSERT INTO nightscout_site (id, patient_key, device_key, sha1_check, sha512_check, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &site.id,
                    &patient_key,
                    &device_key,
                    &site.sha1_check.as_slice(),
                    &site.sha512_check.as_slice(),
                    &to_ms(device.created),
                ],
            )
            .await
            .map_err(|error| unique_violation(error, format!("Nightscout site {}", site.id)))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let created = site_where(&transaction, "s.id = $1", &site.id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("a site just stored is not there".into()))?;
        transaction.commit().await?;
        Ok(created)
    }

    async fn nightscout_site(&self, id: &str) -> Result<Option<NightscoutSite>, StoreError> {
        let client = self.client().await?;
        Ok(site_where(&client, "s.id = $1", &id)
            .await?
            .into_iter()
            .next())
    }

    async fn nightscout_sites_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<NightscoutSite>, StoreError> {
        let client = self.client().await?;
        site_where(&client, "p.id = $1", &patient.0).await
    }

    async fn store_nightscout_documents(
        &self,
        site: &str,
        documents: Vec<NewNightscoutDocument>,
    ) -> Result<Vec<NightscoutDocument>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let (site_key, patient_key): (i64, i64) = match transaction
            .query_opt(
                "SELECT key, patient_key FROM nightscout_site WHERE id = $1",
                &[&site],
            )
            .await?
        {
            Some(row) => (row.try_get(0)?, row.try_get(1)?),
            None => return Err(StoreError::not_found(format!("Nightscout site {site}"))),
        };
        lock(&transaction, nightscout_upload_lock(patient_key)).await?;
        let received = to_ms(chrono::Utc::now());
        // Either unique index (key or `_id`) makes the insert insert nothing, rather than
        // fail and end the transaction; which one it was is read after.
        let insert = transaction
            .prepare_cached(
                "INSERT INTO nightscout_document
                 (patient_key, site_key, collection, id, dedup_key, time_ms, kind, body, received_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT DO NOTHING RETURNING key",
            )
            .await?;
        let mut kept_documents = Vec::with_capacity(documents.len());
        for document in documents {
            let collection = document.collection.as_str();
            let mut id = document.id.clone();
            let mut body = document.body.clone();
            // The client's `_id`, then the fallback, then, should that be taken too (three
            // documents sent with one `_id`), random ones: one document's `_id` must not
            // refuse an upload on every retry.
            let mut attempts = 0;
            let kept_document = loop {
                let inserted = transaction
                    .query_opt(
                        &insert,
                        &[
                            &patient_key,
                            &site_key,
                            &collection,
                            &id,
                            &document.key,
                            &document.time_ms,
                            &document.kind,
                            &body,
                            &received,
                        ],
                    )
                    .await?;
                if let Some(inserted) = inserted {
                    break NightscoutDocument {
                        row: inserted.try_get(0)?,
                        id,
                        time_ms: document.time_ms,
                        body,
                        new: true,
                        site: site.to_owned(),
                    };
                }
                if let Some(before) =
                    kept(&transaction, patient_key, collection, &document.key).await?
                {
                    break before;
                }
                // Only the `_id` was taken.
                id = match attempts {
                    0 => document.fallback_id.clone(),
                    1..=3 => random_object_id()?,
                    _ => {
                        return Err(StoreError::Conflict {
                            what: format!("Nightscout document {id}"),
                        });
                    }
                };
                attempts += 1;
                body = with_id(&document.body, &id)?;
            };
            kept_documents.push(kept_document);
        }
        transaction.commit().await?;
        Ok(kept_documents)
    }

    async fn nightscout_documents(
        &self,
        query: NightscoutDocumentQuery,
    ) -> Result<Vec<NightscoutDocument>, StoreError> {
        let client = self.client().await?;
        let Some(patient_key) = patient_key(&client, query.patient_id).await? else {
            return Ok(Vec::new());
        };
        let (before_time, before_row) = query.before.unwrap_or((i64::MAX, i64::MAX));
        let statement = client
            .prepare_cached(&format!(
                "SELECT {DOCUMENT_COLUMNS} FROM nightscout_document d
                 JOIN nightscout_site s ON s.key = d.site_key
                 WHERE d.patient_key = $1 AND d.collection = $2
                   AND d.time_ms >= $3 AND d.time_ms <= $4
                   AND ($5::text IS NULL OR d.kind = $5)
                   AND ($6::text IS NULL OR d.id = $6)
                   AND (d.time_ms < $7 OR (d.time_ms = $7 AND d.key < $8))
                 ORDER BY d.time_ms DESC, d.key DESC
                 LIMIT $9"
            ))
            .await?;
        client
            .query(
                &statement,
                &[
                    &patient_key,
                    &query.collection.as_str(),
                    &query.from_ms.unwrap_or(i64::MIN),
                    &query.to_ms.unwrap_or(i64::MAX),
                    &query.kind,
                    &query.id,
                    &before_time,
                    &before_row,
                    &i64::from(query.limit),
                ],
            )
            .await?
            .iter()
            .map(|row| document_from_row(row, false))
            .collect()
    }
}
