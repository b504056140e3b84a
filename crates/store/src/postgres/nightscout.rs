//! [`NightscoutStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::audit::AuditEvent;
use crate::devices::InitialAssignment;
use crate::error::StoreError;
use crate::model::{DeviceStatus, NewDevice};
use crate::nightscout::NightscoutStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::nightscout::Collection;
use wardline_domain::{DeviceId, PatientId};

#[async_trait]
impl NightscoutStore for PostgresStore {
    async fn create_nightscout_site(
        &self,
        site: NewNightscoutSite,
        audit: AuditEvent,
    ) -> Result<NightscoutSite, StoreError> {
        Err(StoreError::Unported(
            "NightscoutStore::create_nightscout_site",
        ))
    }

    async fn nightscout_site(&self, id: &str) -> Result<Option<NightscoutSite>, StoreError> {
        Err(StoreError::Unported("NightscoutStore::nightscout_site"))
    }

    async fn nightscout_sites_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<NightscoutSite>, StoreError> {
        Err(StoreError::Unported(
            "NightscoutStore::nightscout_sites_of_patient",
        ))
    }

    async fn store_nightscout_documents(
        &self,
        site: &str,
        documents: Vec<NewNightscoutDocument>,
    ) -> Result<Vec<NightscoutDocument>, StoreError> {
        Err(StoreError::Unported(
            "NightscoutStore::store_nightscout_documents",
        ))
    }

    async fn nightscout_documents(
        &self,
        query: NightscoutDocumentQuery,
    ) -> Result<Vec<NightscoutDocument>, StoreError> {
        Err(StoreError::Unported(
            "NightscoutStore::nightscout_documents",
        ))
    }
}
