//! Home gateways: which devices a gateway may speak for, and what it last reported
//! about itself (last contact, backlog, clock offset).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use wardline_domain::{DeviceId, PatientId};

use crate::error::StoreError;

/// What a gateway says about itself on each contact.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayReport {
    pub gateway_id: DeviceId,
    pub contact: DateTime<Utc>,
    pub remote_addr: Option<String>,
    /// Messages still queued on the gateway (including those in this request).
    pub backlog_messages: u64,
    pub backlog_bytes: u64,
    pub oldest_queued: Option<DateTime<Utc>>,
    pub disk_limit_bytes: u64,
    /// The gateway's queue is close to its disk limit.
    pub near_disk_limit: bool,
    /// Server clock minus gateway clock, as the gateway measured it.
    pub clock_offset_ms: Option<i64>,
    /// Messages whose device timestamps the gateway had to correct, since it started.
    pub corrected_timestamps: u64,
    /// Messages forwarded in this contact (added to the running total).
    pub forwarded_messages: u64,
}

/// A gateway as operators see it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayStatus {
    pub gateway_id: DeviceId,
    /// The patient the gateway serves now, if assigned.
    pub patient_id: Option<PatientId>,
    pub last_contact: Option<DateTime<Utc>>,
    pub remote_addr: Option<String>,
    pub backlog_messages: u64,
    pub backlog_bytes: u64,
    pub oldest_queued: Option<DateTime<Utc>>,
    pub disk_limit_bytes: u64,
    pub near_disk_limit: bool,
    pub clock_offset_ms: Option<i64>,
    pub corrected_timestamps: u64,
    pub forwarded_messages: u64,
}

#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// The devices a gateway may forward for now: those assigned (open assignment) to
    /// the patient the gateway is assigned to, the gateway itself excluded.
    async fn gateway_devices(&self, gateway: &DeviceId) -> Result<Vec<DeviceId>, StoreError>;
    /// Records one contact. Waits for the commit.
    async fn record_gateway_contact(&self, report: GatewayReport) -> Result<(), StoreError>;
    /// Every device of kind `gateway`, with what it last reported.
    async fn gateway_statuses(&self) -> Result<Vec<GatewayStatus>, StoreError>;
}
