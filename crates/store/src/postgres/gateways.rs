//! [`GatewayStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::error::StoreError;
use crate::gateways::GatewayStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use wardline_domain::{DeviceId, PatientId};

#[async_trait]
impl GatewayStore for PostgresStore {
    async fn gateway_devices(&self, gateway: &DeviceId) -> Result<Vec<DeviceId>, StoreError> {
        Err(StoreError::Unported("GatewayStore::gateway_devices"))
    }

    async fn record_gateway_contact(&self, report: GatewayReport) -> Result<(), StoreError> {
        Err(StoreError::Unported("GatewayStore::record_gateway_contact"))
    }

    async fn gateway_statuses(&self) -> Result<Vec<GatewayStatus>, StoreError> {
        Err(StoreError::Unported("GatewayStore::gateway_statuses"))
    }
}
