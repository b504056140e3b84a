//! [`ShareStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;
use wardline_domain::sharing::ShareCategory;
use wardline_domain::{PatientId, UserId};

use super::audit::{append, append_if_changed};
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::model::User;
use crate::shares::*;

const COLUMNS: &str = "s.id, p.id, g.id, g.display_name, c.id, s.created_ms, s.categories,
     s.data_from_ms, s.data_to_ms, s.expires_ms, s.message, s.revoked_ms,
     s.link_token_hash IS NOT NULL, s.single_use, s.opened_count, s.passcode_failures,
     s.disabled_ms, s.accepted_ms, r.id";
/// How many columns [`COLUMNS`] has: a query's own columns start here.
const COLUMN_COUNT: usize = 19;
const FROM: &str = "share s JOIN patient p ON p.key = s.patient_key
     LEFT JOIN app_user g ON g.key = s.grantee_key LEFT JOIN app_user c ON c.key = s.consented_by
     LEFT JOIN app_user r ON r.key = s.proposed_by";

fn from_row(row: &Row<'_>) -> Result<Share, StoreError> {
    let id: String = row.get(0)?;
    let patient: String = row.get(1)?;
    let grantee: Option<String> = row.get(2)?;
    let consented_by: Option<String> = row.get(4)?;
    let proposed_by: Option<String> = row.get(18)?;
    let categories: String = row.get(6)?;
    let categories = categories
        .split(',')
        .map(|name| {
            ShareCategory::parse(name)
                .ok_or_else(|| StoreError::Corrupt(format!("share category {name:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Share {
        id: parse_uuid(&id, "share")?,
        patient_id: parse_uuid(&patient, "patient")?,
        grantee_id: grantee
            .map(|grantee| parse_uuid(&grantee, "user"))
            .transpose()?,
        grantee_name: row.get(3)?,
        link: if row.get::<_, bool>(12)? {
            Some(ShareLinkState {
                single_use: row.get(13)?,
                opened: count(row.get(14)?),
                passcode_failures: count(row.get(15)?),
                disabled: row.get::<_, Option<i64>>(16)?.map(from_ms).transpose()?,
            })
        } else {
            None
        },
        consented_by: consented_by
            .map(|user| parse_uuid(&user, "user"))
            .transpose()?,
        accepted: row.get::<_, Option<i64>>(17)?.map(from_ms).transpose()?,
        proposed_by: proposed_by
            .map(|user| parse_uuid(&user, "user"))
            .transpose()?,
        created: from_ms(row.get(5)?)?,
        categories,
        data_from: from_ms(row.get(7)?)?,
        data_to: from_ms(row.get(8)?)?,
        expires: from_ms(row.get(9)?)?,
        message: row.get(10)?,
        revoked: row.get::<_, Option<i64>>(11)?.map(from_ms).transpose()?,
    })
}

fn by_id(connection: &Connection, id: Uuid) -> Result<Option<Share>, StoreError> {
    connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE s.id = ?1"))?
        .query_row([id.to_string()], |row| Ok(from_row(row)))
        .optional()?
        .transpose()
}

const INVITATION_COLUMNS: &str = "i.id, i.email, i.display_name, b.id, i.created_ms, i.expires_ms,
     i.accepted_ms, u.id";
const INVITATION_FROM: &str = "specialist_invitation i JOIN app_user b ON b.key = i.invited_by
     LEFT JOIN app_user u ON u.key = i.user_key";

fn invitation_from_row(row: &Row<'_>) -> Result<Invitation, StoreError> {
    let id: String = row.get(0)?;
    let invited_by: String = row.get(3)?;
    let user: Option<String> = row.get(7)?;
    Ok(Invitation {
        id: parse_uuid(&id, "invitation")?,
        email: row.get(1)?,
        display_name: row.get(2)?,
        invited_by: parse_uuid(&invited_by, "user")?,
        created: from_ms(row.get(4)?)?,
        expires: from_ms(row.get(5)?)?,
        accepted: row.get::<_, Option<i64>>(6)?.map(from_ms).transpose()?,
        user_id: user.map(|user| parse_uuid(&user, "user")).transpose()?,
    })
}

fn invitation_where(
    connection: &Connection,
    condition: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<Option<Invitation>, StoreError> {
    connection
        .prepare_cached(&format!(
            "SELECT {INVITATION_COLUMNS} FROM {INVITATION_FROM} WHERE {condition}"
        ))?
        .query_row([value], |row| Ok(invitation_from_row(row)))
        .optional()?
        .transpose()
}

#[async_trait]
impl ShareStore for SqliteStore {
    async fn create_invitation(
        &self,
        invitation: NewInvitation,
        audit: AuditEvent,
    ) -> Result<Invitation, StoreError> {
        self.write(move |connection| {
            let inviter = key_of(connection, "app_user", &invitation.invited_by.to_string(), "user")?;
            connection.execute(
                "INSERT INTO specialist_invitation (id, token_hash, email, display_name, invited_by, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    invitation.id.to_string(),
                    invitation.token_hash.as_slice(),
                    invitation.email,
                    invitation.display_name,
                    inviter,
                    to_ms(invitation.created),
                    to_ms(invitation.expires)
                ],
            )?;
            append(connection, &[audit])?;
            invitation_where(connection, "i.id = ?1", &invitation.id.to_string())?
                .ok_or_else(|| StoreError::Corrupt("an invitation just stored is not there".into()))
        })
        .await
    }

    async fn invitation_by_token(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<Invitation>, StoreError> {
        self.read(move |connection| {
            invitation_where(connection, "i.token_hash = ?1", &token_hash.as_slice())
        })
        .await
    }

    async fn accept_invitation(
        &self,
        id: Uuid,
        account: InvitedAccount,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<User, StoreError> {
        self.write(move |connection| {
            let user = match account {
                InvitedAccount::New(user) => super::people::insert_user(connection, user)?,
                InvitedAccount::Existing(id) => super::people::user_by_id(connection, id)?
                    .ok_or_else(|| StoreError::NotFound {
                        what: format!("user {id}"),
                    })?,
            };
            let user_key = key_of(connection, "app_user", &user.id.to_string(), "user")?;
            let changed = connection.execute(
                "UPDATE specialist_invitation SET accepted_ms = ?2, user_key = ?3
                 WHERE id = ?1 AND accepted_ms IS NULL",
                params![id.to_string(), to_ms(at), user_key],
            )?;
            if changed == 0 {
                // Used before (or unknown): the account just made goes with the rollback.
                return Err(StoreError::Conflict {
                    what: format!("invitation {id}, used before"),
                });
            }
            append(connection, &[audit])?;
            Ok(user)
        })
        .await
    }

    async fn create_share(&self, share: NewShare, audit: AuditEvent) -> Result<Share, StoreError> {
        self.write(move |connection| {
            let patient_key = key_of(connection, "patient", &share.patient_id.to_string(), "patient")?;
            let (grantee_key, token_hash, passcode_hash, single_use) = match &share.grantee {
                ShareGrantee::Person(user) => (
                    Some(key_of(connection, "app_user", &user.to_string(), "user")?),
                    None,
                    None,
                    false,
                ),
                ShareGrantee::Link {
                    token_hash,
                    passcode_hash,
                    single_use,
                } => (None, Some(token_hash.to_vec()), Some(passcode_hash.clone()), *single_use),
            };
            let consented_key = optional_key_of(
                connection,
                "app_user",
                share.consented_by.map(|user| user.to_string()),
                "user",
            )?;
            let proposed_key = optional_key_of(
                connection,
                "app_user",
                share.proposed_by.map(|user| user.to_string()),
                "user",
            )?;
            let accepted = share.consented_by.map(|_| to_ms(share.created));
            let categories = share
                .categories
                .iter()
                .map(|category| category.as_str())
                .collect::<Vec<_>>()
                .join(",");
            connection
                .prepare_cached(
                    "INSERT INTO share (id, patient_key, grantee_key, consented_by, created_ms, categories,
                                        data_from_ms, data_to_ms, expires_ms, message,
                                        link_token_hash, passcode_hash, single_use, accepted_ms,
                                        proposed_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?
                .execute(params![
                    share.id.to_string(),
                    patient_key,
                    grantee_key,
                    consented_key,
                    to_ms(share.created),
                    categories,
                    to_ms(share.data_from),
                    to_ms(share.data_to),
                    to_ms(share.expires),
                    share.message,
                    token_hash,
                    passcode_hash,
                    single_use,
                    accepted,
                    proposed_key
                ])?;
            append(connection, &[audit])?;
            by_id(connection, share.id)?
                .ok_or_else(|| StoreError::Corrupt("a share just stored is not there".into()))
        })
        .await
    }

    async fn share(&self, id: Uuid) -> Result<Option<Share>, StoreError> {
        self.read(move |connection| by_id(connection, id)).await
    }

    async fn shares_of_patient(&self, patient: PatientId) -> Result<Vec<Share>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE p.id = ?1 ORDER BY s.created_ms DESC, s.key DESC"
            ))?;
            let rows = statement.query_map([patient.to_string()], |row| Ok(from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn live_shares(
        &self,
        grantee: UserId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Share>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM}
                 WHERE g.id = ?1 AND p.id = ?2 AND s.revoked_ms IS NULL AND s.expires_ms > ?3
                   AND s.accepted_ms IS NOT NULL
                 ORDER BY s.created_ms DESC, s.key DESC"
            ))?;
            let rows = statement.query_map(
                params![grantee.to_string(), patient.to_string(), to_ms(now)],
                |row| Ok(from_row(row)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn patients_sharing_with(
        &self,
        grantee: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<PatientId>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT DISTINCT p.id FROM share s JOIN patient p ON p.key = s.patient_key
                 JOIN app_user g ON g.key = s.grantee_key
                 WHERE g.id = ?1 AND s.revoked_ms IS NULL AND s.expires_ms > ?2
                   AND s.accepted_ms IS NOT NULL ORDER BY p.id",
            )?;
            let rows = statement.query_map(params![grantee.to_string(), to_ms(now)], |row| {
                row.get::<_, String>(0)
            })?;
            rows.map(|row| parse_uuid(&row?, "patient")).collect()
        })
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
        self.write(move |connection| {
            if by_id(connection, id)?.is_none() {
                return Err(StoreError::not_found(format!("share {id}")));
            }
            let consented_key = key_of(connection, "app_user", &consented_by.to_string(), "user")?;
            let changed = connection.execute(
                "UPDATE share SET consented_by = ?2, accepted_ms = ?3, expires_ms = ?4,
                                  expiry_audited_ms = NULL
                 WHERE id = ?1 AND accepted_ms IS NULL AND revoked_ms IS NULL",
                params![id.to_string(), consented_key, to_ms(at), to_ms(expires)],
            )?;
            append_if_changed(connection, changed, &[audit])
        })
        .await
    }

    async fn expired_unrecorded_shares(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Share>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM}
                 WHERE s.expires_ms <= ?1 AND s.revoked_ms IS NULL AND s.expiry_audited_ms IS NULL
                   AND s.accepted_ms IS NOT NULL
                 ORDER BY s.expires_ms, s.key"
            ))?;
            let rows = statement.query_map([to_ms(now)], |row| Ok(from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn record_share_expiries(
        &self,
        expiries: Vec<(Uuid, AuditEvent)>,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        self.write(move |connection| {
            let mut recorded = 0;
            let mut entries = Vec::new();
            for (id, audit) in expiries {
                let changed = connection.execute(
                    "UPDATE share SET expiry_audited_ms = ?2 WHERE id = ?1 AND expiry_audited_ms IS NULL",
                    params![id.to_string(), to_ms(at)],
                )?;
                if changed > 0 {
                    recorded += 1;
                    entries.push(audit);
                }
            }
            append(connection, &entries)?;
            Ok(recorded)
        })
        .await
    }

    async fn share_by_link(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<(Share, String)>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, s.passcode_hash FROM {FROM} WHERE s.link_token_hash = ?1"
                ))?
                .query_row([token_hash.as_slice()], |row| {
                    Ok(from_row(row).and_then(|share| Ok((share, row.get(COLUMN_COUNT)?))))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn record_link_attempt(
        &self,
        id: Uuid,
        attempt: LinkAttempt,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<Share, StoreError> {
        self.write(move |connection| {
            let share = by_id(connection, id)?
                .ok_or_else(|| StoreError::not_found(format!("share {id}")))?;
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
                    connection.execute(
                        "UPDATE share SET opened_count = opened_count + 1 WHERE id = ?1",
                        [id.to_string()],
                    )?;
                }
                LinkAttempt::WrongPasscode { limit } => {
                    connection.execute(
                        "UPDATE share SET passcode_failures = passcode_failures + 1,
                             disabled_ms = CASE WHEN passcode_failures + 1 >= ?2 AND disabled_ms IS NULL
                                                THEN ?3 ELSE disabled_ms END
                         WHERE id = ?1",
                        params![id.to_string(), limit, to_ms(at)],
                    )?;
                }
            }
            append(connection, &[audit])?;
            by_id(connection, id)?
                .ok_or_else(|| StoreError::Corrupt("a share just changed is not there".into()))
        })
        .await
    }

    async fn revoke_share(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        self.write(move |connection| {
            if by_id(connection, id)?.is_none() {
                return Err(StoreError::not_found(format!("share {id}")));
            }
            let changed = connection.execute(
                "UPDATE share SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                params![id.to_string(), to_ms(at)],
            )?;
            append_if_changed(connection, changed, &[audit])
        })
        .await
    }
}
