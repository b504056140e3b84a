//! [`DeviceStore`] on PostgreSQL: not ported yet; every method says so.

// Placeholders until the port: remove with the last of them.
#![allow(unused_variables, unused_imports)]

use crate::*;

use super::PostgresStore;
use crate::audit::AuditEvent;
use crate::devices::DeviceStore;
use crate::error::StoreError;
use crate::model::{
    CertifiedDevice, Device, DeviceAssignment, DeviceCertificate, DeviceCredentials, DeviceReport,
    DeviceStatus, NewDevice,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::{DeviceId, PatientId};

#[async_trait]
impl DeviceStore for PostgresStore {
    async fn enrol_device(
        &self,
        device: NewDevice,
        assignment: Option<InitialAssignment>,
        audit: AuditEvent,
    ) -> Result<Device, StoreError> {
        Err(StoreError::Unported("DeviceStore::enrol_device"))
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        Err(StoreError::Unported("DeviceStore::device"))
    }

    async fn device_credentials(
        &self,
        id: &DeviceId,
    ) -> Result<Option<DeviceCredentials>, StoreError> {
        Err(StoreError::Unported("DeviceStore::device_credentials"))
    }

    async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        Err(StoreError::Unported("DeviceStore::devices"))
    }

    async fn add_device_certificate(
        &self,
        id: &DeviceId,
        certificate: DeviceCertificate,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("DeviceStore::add_device_certificate"))
    }

    async fn device_by_certificate(
        &self,
        fingerprint: [u8; 32],
    ) -> Result<Option<CertifiedDevice>, StoreError> {
        Err(StoreError::Unported("DeviceStore::device_by_certificate"))
    }

    async fn set_device_status(
        &self,
        id: &DeviceId,
        status: DeviceStatus,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("DeviceStore::set_device_status"))
    }

    async fn assign_device(
        &self,
        device: &DeviceId,
        patient: PatientId,
        from: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unported("DeviceStore::assign_device"))
    }

    async fn device_assignments(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<DeviceAssignment>, StoreError> {
        Err(StoreError::Unported("DeviceStore::device_assignments"))
    }

    async fn devices_of_patient(&self, patient: PatientId) -> Result<Vec<Device>, StoreError> {
        Err(StoreError::Unported("DeviceStore::devices_of_patient"))
    }

    async fn record_device_report(&self, report: DeviceReport) -> Result<(), StoreError> {
        Err(StoreError::Unported("DeviceStore::record_device_report"))
    }
}
