//! [`ShareStore`] on PostgreSQL: shares, their links' use, referrals and specialist invitations.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;
use wardline_domain::sharing::ShareCategory;
use wardline_domain::{PatientId, UserId};

use super::PostgresStore;
use super::audit::{append, append_if_changed};
use super::rows::*;
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::model::User;
use crate::shares::{
    Invitation, InvitedAccount, LinkAttempt, NewInvitation, NewShare, Share, ShareGrantee,
    ShareLinkState, ShareStore,
};

const COLUMNS: &str = "s.id, p.id, g.id, g.display_name, c.id, s.created_ms, s.categories,
     s.data_from_ms, s.data_to_ms, s.expires_ms, s.message, s.revoked_ms,
     s.link_token_hash IS NOT NULL, s.single_use, s.opened_count, s.passcode_failures,
     s.disabled_ms, s.accepted_ms, r.id";
/// How many columns [`COLUMNS`] has: a query's own columns start here.
const COLUMN_COUNT: usize = 19;
const FROM: &str = "share s JOIN patient p ON p.key = s.patient_key
     LEFT JOIN app_user g ON g.key = s.grantee_key LEFT JOIN app_user c ON c.key = s.consented_by
     LEFT JOIN app_user r ON r.key = s.proposed_by";

fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

fn from_row(row: &tokio_postgres::Row) -> Result<Share, StoreError> {
    let categories: &str = row.try_get(6)?;
    let categories = categories
        .split(',')
        .map(|name| {
            ShareCategory::parse(name)
                .ok_or_else(|| StoreError::Corrupt(format!("share category {name:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Share {
        id: row.try_get(0)?,
        patient_id: PatientId(row.try_get(1)?),
        grantee_id: row.try_get::<_, Option<Uuid>>(2)?.map(UserId),
        grantee_name: row.try_get(3)?,
        link: if row.try_get::<_, bool>(12)? {
            Some(ShareLinkState {
                single_use: row.try_get(13)?,
                opened: count(row.try_get(14)?),
                passcode_failures: count(row.try_get(15)?),
                disabled: row
                    .try_get::<_, Option<i64>>(16)?
                    .map(from_ms)
                    .transpose()?,
            })
        } else {
            None
        },
        consented_by: row.try_get::<_, Option<Uuid>>(4)?.map(UserId),
        accepted: row
            .try_get::<_, Option<i64>>(17)?
            .map(from_ms)
            .transpose()?,
        proposed_by: row.try_get::<_, Option<Uuid>>(18)?.map(UserId),
        created: from_ms(row.try_get(5)?)?,
        categories,
        data_from: from_ms(row.try_get(7)?)?,
        data_to: from_ms(row.try_get(8)?)?,
        expires: from_ms(row.try_get(9)?)?,
        message: row.try_get(10)?,
        revoked: row
            .try_get::<_, Option<i64>>(11)?
            .map(from_ms)
            .transpose()?,
    })
}

async fn by_id(client: &impl GenericClient, id: Uuid) -> Result<Option<Share>, StoreError> {
    let statement = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE s.id = $1"))
        .await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

async fn shares_where(
    client: &impl GenericClient,
    condition: &str,
    parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Share>, StoreError> {
    let statement = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE {condition}"))
        .await?;
    client
        .query(&statement, parameters)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

const INVITATION_COLUMNS: &str = "i.id, i.email, i.display_name, b.id, i.created_ms, i.expires_ms,
     i.accepted_ms, u.id";
const INVITATION_FROM: &str = "specialist_invitation i JOIN app_user b ON b.key = i.invited_by
     LEFT JOIN app_user u ON u.key = i.user_key";

fn invitation_from_row(row: &tokio_postgres::Row) -> Result<Invitation, StoreError> {
    Ok(Invitation {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        display_name: row.try_get(2)?,
        invited_by: UserId(row.try_get(3)?),
        created: from_ms(row.try_get(4)?)?,
        expires: from_ms(row.try_get(5)?)?,
        accepted: row.try_get::<_, Option<i64>>(6)?.map(from_ms).transpose()?,
        user_id: row.try_get::<_, Option<Uuid>>(7)?.map(UserId),
    })
}

async fn invitation_where(
    client: &impl GenericClient,
    condition: &str,
    value: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<Option<Invitation>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {INVITATION_COLUMNS} FROM {INVITATION_FROM} WHERE {condition}"
        ))
        .await?;
    client
        .query_opt(&statement, &[value])
        .await?
        .as_ref()
        .map(invitation_from_row)
        .transpose()
}

async fn required_user_key(client: &impl GenericClient, user: UserId) -> Result<i64, StoreError> {
    user_key(client, user)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("user {user}")))
}

async fn optional_user_key(
    client: &impl GenericClient,
    user: Option<UserId>,
) -> Result<Option<i64>, StoreError> {
    match user {
        Some(user) => Ok(Some(required_user_key(client, user).await?)),
        None => Ok(None),
    }
}

#[async_trait]
impl ShareStore for PostgresStore {
    async fn create_invitation(
        &self,
        invitation: NewInvitation,
        audit: AuditEvent,
    ) -> Result<Invitation, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let inviter = required_user_key(&transaction, invitation.invited_by).await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO specialist_invitation (id, token_hash, email, display_name, invited_by,
                     created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await?;
        transaction
            .execute(
                &insert,
                &[
                    &invitation.id,
                    &invitation.token_hash.as_slice(),
                    &invitation.email,
                    &invitation.display_name,
                    &inviter,
                    &to_ms(invitation.created),
                    &to_ms(invitation.expires),
                ],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let created = invitation_where(&transaction, "i.id = $1", &invitation.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an invitation just stored is not there".into()))?;
        transaction.commit().await?;
        Ok(created)
    }

    async fn invitation_by_token(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<Invitation>, StoreError> {
        let client = self.client().await?;
        invitation_where(&client, "i.token_hash = $1", &token_hash.as_slice()).await
    }

    async fn accept_invitation(
        &self,
        id: Uuid,
        account: InvitedAccount,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<User, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let user = match account {
            InvitedAccount::New(user) => super::people::insert_user(&transaction, user).await?,
            InvitedAccount::Existing(id) => super::people::user_by_id(&transaction, id)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("user {id}")))?,
        };
        let user_key = required_user_key(&transaction, user.id).await?;
        // A concurrent acceptance waits for this row and then finds it used: one of them
        // takes the invitation up, and the others' new accounts go with their rollbacks.
        let accept = transaction
            .prepare_cached(
                "UPDATE specialist_invitation SET accepted_ms = $2, user_key = $3
                 WHERE id = $1 AND accepted_ms IS NULL",
            )
            .await?;
        let changed = transaction
            .execute(&accept, &[&id, &to_ms(at), &user_key])
            .await?;
        if changed == 0 {
            return Err(StoreError::Conflict {
                what: format!("invitation {id}, used before"),
            });
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(user)
    }

    async fn create_share(&self, share: NewShare, audit: AuditEvent) -> Result<Share, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let patient_key = patient_key(&transaction, share.patient_id)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("patient {}", share.patient_id)))?;
        let (grantee_key, token_hash, passcode_hash, single_use) = match &share.grantee {
            ShareGrantee::Person(user) => (
                Some(required_user_key(&transaction, *user).await?),
                None,
                None,
                false,
            ),
            ShareGrantee::Link {
                token_hash,
                passcode_hash,
                single_use,
            } => (
                None,
                Some(token_hash.as_slice()),
                Some(passcode_hash.as_str()),
                *single_use,
            ),
        };
        let consented_key = optional_user_key(&transaction, share.consented_by).await?;
        let proposed_key = optional_user_key(&transaction, share.proposed_by).await?;
        let accepted = share.consented_by.map(|_| to_ms(share.created));
        let categories = share
            .categories
            .iter()
            .map(|category| category.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let insert = transaction
            .prepare_cached(
                "INSERT INTO share (id, patient_key, grantee_key, consented_by, created_ms, categories,
                                    data_from_ms, data_to_ms, expires_ms, message,
                                    link_token_hash, passcode_hash, single_use, accepted_ms,
                                    proposed_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .await?;
        transaction
            .execute(
                &insert,
                &[
                    &share.id,
                    &patient_key,
                    &grantee_key,
                    &consented_key,
                    &to_ms(share.created),
                    &categories,
                    &to_ms(share.data_from),
                    &to_ms(share.data_to),
                    &to_ms(share.expires),
                    &share.message,
                    &token_hash,
                    &passcode_hash,
                    &single_use,
                    &accepted,
                    &proposed_key,
                ],
            )
            .await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        let created = by_id(&transaction, share.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a share just stored is not there".into()))?;
        transaction.commit().await?;
        Ok(created)
    }

    async fn share(&self, id: Uuid) -> Result<Option<Share>, StoreError> {
        let client = self.client().await?;
        by_id(&client, id).await
    }

    async fn shares_of_patient(&self, patient: PatientId) -> Result<Vec<Share>, StoreError> {
        let client = self.client().await?;
        shares_where(
            &client,
            "p.id = $1 ORDER BY s.created_ms DESC, s.key DESC",
            &[&patient.0],
        )
        .await
    }

    async fn live_shares(
        &self,
        grantee: UserId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Share>, StoreError> {
        let client = self.client().await?;
        shares_where(
            &client,
            "g.id = $1 AND p.id = $2 AND s.revoked_ms IS NULL AND s.expires_ms > $3
               AND s.accepted_ms IS NOT NULL
             ORDER BY s.created_ms DESC, s.key DESC",
            &[&grantee.0, &patient.0, &to_ms(now)],
        )
        .await
    }

    async fn patients_sharing_with(
        &self,
        grantee: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<PatientId>, StoreError> {
        self.read_all(
            "SELECT DISTINCT p.id FROM share s JOIN patient p ON p.key = s.patient_key
                 JOIN app_user g ON g.key = s.grantee_key
                 WHERE g.id = $1 AND s.revoked_ms IS NULL AND s.expires_ms > $2
                   AND s.accepted_ms IS NOT NULL ORDER BY p.id",
            &[&grantee.0, &to_ms(now)],
            |row| Ok(PatientId(row.try_get(0)?)),
        )
        .await
    }

    async fn accept_share(
        &self,
        id: Uuid,
        consented_by: UserId,
        at: DateTime<Utc>,
        expires: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        if find_key(&transaction, "share", &id).await?.is_none() {
            return Err(StoreError::not_found(format!("share {id}")));
        }
        let consented_key = required_user_key(&transaction, consented_by).await?;
        // Conditional: of two acceptances at once, the later finds the share accepted.
        let accept = transaction
            .prepare_cached(
                "UPDATE share SET consented_by = $2, accepted_ms = $3, expires_ms = $4,
                                  expiry_audited_ms = NULL
                 WHERE id = $1 AND accepted_ms IS NULL AND revoked_ms IS NULL",
            )
            .await?;
        let changed = transaction
            .execute(&accept, &[&id, &consented_key, &to_ms(at), &to_ms(expires)])
            .await?;
        let accepted = append_if_changed(&transaction, &self.audit_key, changed, &[audit]).await?;
        transaction.commit().await?;
        Ok(accepted)
    }

    async fn expired_unrecorded_shares(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Share>, StoreError> {
        let client = self.client().await?;
        shares_where(
            &client,
            "s.expires_ms <= $1 AND s.revoked_ms IS NULL AND s.expiry_audited_ms IS NULL
               AND s.accepted_ms IS NOT NULL
             ORDER BY s.expires_ms, s.key",
            &[&to_ms(now)],
        )
        .await
    }

    async fn record_share_expiries(
        &self,
        expiries: Vec<(Uuid, AuditEvent)>,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // Workers recording overlapping lists lock the shares in one order, so they wait
        // for each other instead of deadlocking; the entries keep the caller's order.
        let ids: Vec<Uuid> = expiries.iter().map(|(id, _)| *id).collect();
        let lock_shares = transaction
            .prepare_cached("SELECT key FROM share WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .await?;
        transaction.query(&lock_shares, &[&ids]).await?;
        let record = transaction
            .prepare_cached(
                "UPDATE share SET expiry_audited_ms = $2 WHERE id = $1 AND expiry_audited_ms IS NULL",
            )
            .await?;
        let mut recorded = 0;
        let mut entries = Vec::new();
        for (id, audit) in expiries {
            if transaction.execute(&record, &[&id, &to_ms(at)]).await? > 0 {
                recorded += 1;
                entries.push(audit);
            }
        }
        append(&transaction, &self.audit_key, &entries).await?;
        transaction.commit().await?;
        Ok(recorded)
    }

    async fn share_by_link(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<(Share, String)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, s.passcode_hash FROM {FROM} WHERE s.link_token_hash = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&token_hash.as_slice()])
            .await?
            .map(|row| Ok((from_row(&row)?, row.try_get(COLUMN_COUNT)?)))
            .transpose()
    }

    async fn record_link_attempt(
        &self,
        id: Uuid,
        attempt: LinkAttempt,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<Share, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // The share's row stays locked until commit: workers answering the same link at
        // once count their attempts one after the other, each seeing the ones before.
        let lock_share = transaction
            .prepare_cached("SELECT key FROM share WHERE id = $1 FOR UPDATE")
            .await?;
        let key: i64 = transaction
            .query_opt(&lock_share, &[&id])
            .await?
            .ok_or_else(|| StoreError::not_found(format!("share {id}")))?
            .try_get(0)?;
        let share = by_id(&transaction, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a share just locked is not there".into()))?;
        let link = share
            .link
            .as_ref()
            .ok_or_else(|| StoreError::Invalid(format!("share {id} is not a link")))?;
        match attempt {
            LinkAttempt::Opened => {
                // Checked again inside the commit: a link disabled, revoked or lapsed
                // since the caller looked does not open.
                if link.disabled.is_some() || share.revoked.is_some() || at >= share.expires {
                    return Err(StoreError::Conflict {
                        what: "a share link that no longer opens".into(),
                    });
                }
                if link.single_use && link.opened > 0 {
                    return Err(StoreError::Conflict {
                        what: "a single-use link opened before".into(),
                    });
                }
                let open = transaction
                    .prepare_cached(
                        "UPDATE share SET opened_count = opened_count + 1 WHERE key = $1",
                    )
                    .await?;
                transaction.execute(&open, &[&key]).await?;
            }
            LinkAttempt::WrongPasscode { limit } => {
                let fail = transaction
                    .prepare_cached(
                        "UPDATE share SET passcode_failures = passcode_failures + 1,
                             disabled_ms = CASE WHEN passcode_failures + 1 >= $2::bigint AND disabled_ms IS NULL
                                                THEN $3 ELSE disabled_ms END
                         WHERE key = $1",
                    )
                    .await?;
                transaction
                    .execute(&fail, &[&key, &i64::from(limit), &to_ms(at)])
                    .await?;
            }
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        let changed = by_id(&transaction, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a share just changed is not there".into()))?;
        transaction.commit().await?;
        Ok(changed)
    }

    async fn revoke_share(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        if find_key(&transaction, "share", &id).await?.is_none() {
            return Err(StoreError::not_found(format!("share {id}")));
        }
        // Conditional: of two revocations at once, only the first is audited.
        let revoke = transaction
            .prepare_cached("UPDATE share SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL")
            .await?;
        let changed = transaction.execute(&revoke, &[&id, &to_ms(at)]).await?;
        let revoked = append_if_changed(&transaction, &self.audit_key, changed, &[audit]).await?;
        transaction.commit().await?;
        Ok(revoked)
    }
}
