//! Devices, their credentials, and which patient each measured when.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wardline_domain::{DeviceId, PatientId};

use crate::audit::AuditEvent;
use crate::error::StoreError;
use crate::model::{
    CertifiedDevice, Device, DeviceAssignment, DeviceCertificate, DeviceCredentials, DeviceReport,
    DeviceStatus, NewDevice,
};

/// A device's first assignment, made in the same commit as its enrolment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InitialAssignment {
    pub patient_id: PatientId,
    pub from: DateTime<Utc>,
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Creates the device and, when asked, its first assignment, in one commit with the
    /// audit entry: an enrolment for a patient who does not exist is refused
    /// (`NotFound`) and leaves nothing behind.
    async fn enrol_device(
        &self,
        device: NewDevice,
        assignment: Option<InitialAssignment>,
        audit: AuditEvent,
    ) -> Result<Device, StoreError>;
    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError>;
    async fn device_credentials(
        &self,
        id: &DeviceId,
    ) -> Result<Option<DeviceCredentials>, StoreError>;
    async fn devices(&self) -> Result<Vec<Device>, StoreError>;
    /// Records a certificate issued to the device, in one commit with `audit`.
    /// `NotFound` for an unknown device; `Conflict` for a fingerprint already recorded.
    async fn add_device_certificate(
        &self,
        id: &DeviceId,
        certificate: DeviceCertificate,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// The device a certificate was issued to, whatever its status (the caller refuses a
    /// revoked one), and the certificate.
    async fn device_by_certificate(
        &self,
        fingerprint: [u8; 32],
    ) -> Result<Option<CertifiedDevice>, StoreError>;
    async fn set_device_status(
        &self,
        id: &DeviceId,
        status: DeviceStatus,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// Assigns the device to a patient from `from` on, ending any assignment open then.
    /// `Invalid` when an assignment already starts at or after `from`.
    async fn assign_device(
        &self,
        device: &DeviceId,
        patient: PatientId,
        from: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;
    /// Every assignment of the device, oldest first.
    async fn device_assignments(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<DeviceAssignment>, StoreError>;
    /// Every assignment of a device to the patient, past and present, oldest first.
    async fn assignments_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<DeviceAssignment>, StoreError>;
    /// The devices assigned to the patient now.
    async fn devices_of_patient(&self, patient: PatientId) -> Result<Vec<Device>, StoreError>;
    /// Keeps a device's report about itself; it reaches rule evaluation through the
    /// [`EventLog`](crate::EventLog).
    async fn record_device_report(&self, report: DeviceReport) -> Result<(), StoreError>;
}
