//! [`EmergencyAccessStore`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;
use wardline_domain::{PatientId, UserId};

use super::PostgresStore;
use super::audit::append;
use super::rows::*;
use crate::audit::AuditEvent;
use crate::emergency::{
    EmergencyAccess, EmergencyAccessReview, EmergencyAccessStore, NewEmergencyAccess,
};
use crate::error::StoreError;

const COLUMNS: &str = "e.id, u.id, u.username, p.id, e.reason, e.opened_ms, e.expires_ms,
     e.reviewed_ms, r.id, r.username, e.review_note";
const FROM: &str = "emergency_access e JOIN app_user u ON u.key = e.user_key
     JOIN patient p ON p.key = e.patient_key LEFT JOIN app_user r ON r.key = e.reviewer_key";

fn from_row(row: &Row) -> Result<EmergencyAccess, StoreError> {
    let review = match row.try_get::<_, Option<i64>>(7)? {
        Some(reviewed) => Some(EmergencyAccessReview {
            reviewer_id: UserId(row.try_get(8)?),
            reviewer: row.try_get(9)?,
            reviewed: from_ms(reviewed)?,
            note: row.try_get::<_, Option<String>>(10)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(EmergencyAccess {
        id: row.try_get(0)?,
        user_id: UserId(row.try_get(1)?),
        username: row.try_get(2)?,
        patient_id: PatientId(row.try_get(3)?),
        reason: row.try_get(4)?,
        opened: from_ms(row.try_get(5)?)?,
        expires: from_ms(row.try_get(6)?)?,
        review,
    })
}

async fn by_id(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<EmergencyAccess>, StoreError> {
    let statement = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE e.id = $1"))
        .await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .map(|row| from_row(&row))
        .transpose()
}

#[async_trait]
impl EmergencyAccessStore for PostgresStore {
    async fn open_emergency_access(
        &self,
        access: NewEmergencyAccess,
        audit: AuditEvent,
    ) -> Result<EmergencyAccess, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let user_key = key_of(
            &transaction,
            "app_user",
            &access.user_id.0,
            &format!("user {}", access.user_id),
        )
        .await?;
        let patient_key = key_of(
            &transaction,
            "patient",
            &access.patient_id.0,
            &format!("patient {}", access.patient_id),
        )
        .await?;
        transaction
            .execute(
                "INSERT INTO emergency_access (id, user_key, patient_key, reason, opened_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &access.id,
                    &user_key,
                    &patient_key,
                    &access.reason,
                    &to_ms(access.opened),
                    &to_ms(access.expires),
                ],
            )
            .await
            .map_err(|error| unique_violation(error, format!("emergency access {}", access.id)))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let opened = by_id(&transaction, access.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an emergency access just stored".into()))?;
        transaction.commit().await?;
        Ok(opened)
    }

    async fn open_emergency_access_of(
        &self,
        user: UserId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Option<EmergencyAccess>, StoreError> {
        self.read_optional(
            &format!(
                "SELECT {COLUMNS} FROM {FROM}
                 WHERE u.id = $1 AND p.id = $2 AND e.opened_ms <= $3 AND e.expires_ms > $3
                 ORDER BY e.expires_ms DESC LIMIT 1"
            ),
            &[&user.0, &patient.0, &to_ms(now)],
            from_row,
        )
        .await
    }

    async fn emergency_accesses(
        &self,
        unreviewed_only: bool,
        limit: u32,
    ) -> Result<Vec<EmergencyAccess>, StoreError> {
        self.read_all(
            &format!(
                "SELECT {COLUMNS} FROM {FROM}
                 WHERE (NOT $1 OR e.reviewed_ms IS NULL)
                 ORDER BY e.opened_ms DESC, e.key DESC LIMIT $2"
            ),
            &[&unreviewed_only, &i64::from(limit)],
            from_row,
        )
        .await
    }

    async fn review_emergency_access(
        &self,
        id: Uuid,
        reviewer: UserId,
        note: String,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<EmergencyAccess, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Locked while it is read: of two reviews at once, the second waits and then
        // finds the first, so an access is reviewed once.
        let reviewed = transaction
            .query_opt(
                "SELECT reviewed_ms IS NOT NULL FROM emergency_access WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
            .ok_or_else(|| StoreError::not_found(format!("emergency access {id}")))?
            .try_get::<_, bool>(0)?;
        if reviewed {
            return Err(StoreError::Conflict {
                what: format!("a review of emergency access {id}"),
            });
        }
        let reviewer_key = key_of(
            &transaction,
            "app_user",
            &reviewer.0,
            &format!("user {reviewer}"),
        )
        .await?;
        transaction
            .execute(
                "UPDATE emergency_access SET reviewed_ms = $2, reviewer_key = $3, review_note = $4
                 WHERE id = $1",
                &[&id, &to_ms(at), &reviewer_key, &note],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let access = by_id(&transaction, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an emergency access just reviewed".into()))?;
        transaction.commit().await?;
        Ok(access)
    }
}
