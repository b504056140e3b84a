//! [`PeopleStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use super::audit::append;
use super::rows::*;
use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::model::{
    CareTeam, NewCareTeam, NewPatient, NewSession, NewUser, Patient, Session, User, UserCredentials,
};
use crate::people::PeopleStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::{CareTeamId, PatientId, Role, UserId};

/// Inserts an account (not audited: the caller commits its entry beside it).
pub(crate) async fn insert_user(
    transaction: &deadpool_postgres::Transaction<'_>,
    user: NewUser,
) -> Result<User, StoreError> {
    let patient_key = match user.patient_id {
        Some(patient) => Some(
            patient_key(transaction, patient)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("patient {patient}")))?,
        ),
        None => None,
    };
    let created = from_ms(to_ms(user.created))?;
    transaction
        .execute(
            "INSERT INTO app_user (id, username, display_name, role, password_hash, patient_key,
                created_ms, password_change_required)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &user.id.0,
                &user.username,
                &user.display_name,
                &user.role.as_str(),
                &user.password_hash,
                &patient_key,
                &to_ms(created),
                &user.password_change_required,
            ],
        )
        .await
        .map_err(|error| unique_violation(error, format!("user {}", user.username)))?;
    Ok(User {
        id: user.id,
        username: user.username,
        display_name: user.display_name,
        role: user.role,
        patient_id: user.patient_id,
        disabled: false,
        created,
        password_change_required: user.password_change_required,
        second_factor: false,
    })
}

#[async_trait]
impl PeopleStore for PostgresStore {
    async fn create_user(&self, user: NewUser, audit: AuditEvent) -> Result<User, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let created = insert_user(&transaction, user).await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(created)
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Err(StoreError::Unported("PeopleStore::user"))
    }

    async fn user_credentials(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, StoreError> {
        Err(StoreError::Unported("PeopleStore::user_credentials"))
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        Err(StoreError::Unported("PeopleStore::users"))
    }

    async fn count_users_with_role(&self, role: Role) -> Result<u64, StoreError> {
        Err(StoreError::Unported("PeopleStore::count_users_with_role"))
    }

    async fn set_user_disabled(
        &self,
        id: UserId,
        disabled: bool,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("PeopleStore::set_user_disabled"))
    }

    async fn set_password(
        &self,
        id: UserId,
        password_hash: String,
        change_required: bool,
        keep: Option<[u8; 32]>,
        at: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("PeopleStore::set_password"))
    }

    async fn set_second_factor(
        &self,
        id: UserId,
        sealed: Option<Vec<u8>>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("PeopleStore::set_second_factor"))
    }

    async fn accept_second_factor_step(
        &self,
        id: UserId,
        sealed: Vec<u8>,
        step: i64,
        audit: Option<AuditEvent>,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unported(
            "PeopleStore::accept_second_factor_step",
        ))
    }

    async fn create_session(
        &self,
        session: NewSession,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("PeopleStore::create_session"))
    }

    async fn session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        Err(StoreError::Unported("PeopleStore::session"))
    }

    async fn record_session_activity(
        &self,
        token_hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("PeopleStore::record_session_activity"))
    }

    async fn revoke_session(
        &self,
        token_hash: [u8; 32],
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unported("PeopleStore::revoke_session"))
    }

    async fn create_patient(
        &self,
        patient: NewPatient,
        audit: AuditEvent,
    ) -> Result<Patient, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let created = from_ms(to_ms(patient.created))?;
        transaction
            .execute(
                "INSERT INTO patient (id, display_name, birth_date, mrn, created_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &patient.id.0,
                    &patient.display_name,
                    &patient
                        .birth_date
                        .map(|date| date.format("%Y-%m-%d").to_string()),
                    &patient.mrn,
                    &to_ms(created),
                ],
            )
            .await
            .map_err(|error| unique_violation(error, "a patient with this id or MRN"))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(Patient {
            id: patient.id,
            display_name: patient.display_name,
            birth_date: patient.birth_date,
            mrn: patient.mrn,
            created,
        })
    }

    async fn patient(&self, id: PatientId) -> Result<Option<Patient>, StoreError> {
        Err(StoreError::Unported("PeopleStore::patient"))
    }

    async fn patients(&self) -> Result<Vec<Patient>, StoreError> {
        Err(StoreError::Unported("PeopleStore::patients"))
    }

    async fn create_care_team(
        &self,
        team: NewCareTeam,
        audit: AuditEvent,
    ) -> Result<CareTeam, StoreError> {
        Err(StoreError::Unported("PeopleStore::create_care_team"))
    }

    async fn add_care_team_member(
        &self,
        team: CareTeamId,
        user: UserId,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("PeopleStore::add_care_team_member"))
    }

    async fn add_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("PeopleStore::add_care_team_patient"))
    }

    async fn remove_care_team_member(
        &self,
        team: CareTeamId,
        user: UserId,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unported("PeopleStore::remove_care_team_member"))
    }

    async fn remove_care_team_patient(
        &self,
        team: CareTeamId,
        patient: PatientId,
        audit: AuditEvent,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unported(
            "PeopleStore::remove_care_team_patient",
        ))
    }

    async fn care_teams(&self) -> Result<Vec<CareTeam>, StoreError> {
        Err(StoreError::Unported("PeopleStore::care_teams"))
    }

    async fn care_teams_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<CareTeamId>, StoreError> {
        Err(StoreError::Unported("PeopleStore::care_teams_of_patient"))
    }

    async fn patients_of_care_team_member(
        &self,
        user: UserId,
    ) -> Result<Vec<PatientId>, StoreError> {
        Err(StoreError::Unported(
            "PeopleStore::patients_of_care_team_member",
        ))
    }

    async fn is_on_care_team_of(
        &self,
        user: UserId,
        patient: PatientId,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unported("PeopleStore::is_on_care_team_of"))
    }
}
