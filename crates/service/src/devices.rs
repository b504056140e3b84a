//! Devices: enrolment, assignment, revocation, and a device's own credential.

use chrono::{DateTime, Utc};
use wardline_domain::{DeviceId, DeviceKind, PatientId};
use wardline_store::{
    Device, DeviceAssignment, DeviceReport, DeviceStatus, InitialAssignment, NewDevice, StoreError,
};

use crate::actor::Actor;
use crate::credentials::{DeviceSecret, equal_in_constant_time, hash_secret};
use crate::error::Error;
use crate::{Wardline, bounded};

/// A device to enrol.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub kind: DeviceKind,
    pub model: String,
    pub serial: String,
    /// A random `dev_…` identifier when absent.
    pub device_id: Option<DeviceId>,
    /// Assign to this patient from now on, in the same commit.
    pub patient_id: Option<PatientId>,
}

/// An enrolled device and its secret, which Wardline shows only now.
#[derive(Debug, Clone)]
pub struct EnrolledDevice {
    pub device: Device,
    pub secret: DeviceSecret,
}

/// Why a device's credential was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeviceAuthError {
    /// Unknown device and wrong secret look alike, so a probe learns nothing.
    #[error("unknown device or wrong secret")]
    BadCredentials,
    #[error("device {0} is revoked")]
    Revoked(DeviceId),
    #[error(transparent)]
    Service(#[from] Error),
}

/// What a device reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatusReport {
    pub battery_percent: Option<f64>,
    pub fault: Option<String>,
}

impl Wardline {
    pub async fn list_devices(&self, actor: &Actor) -> Result<Vec<Device>, Error> {
        self.require_admin_read(actor, "devices.list", None).await?;
        Ok(self.store.devices().await?)
    }

    /// Creates a device and its credential and, when asked, assigns it to a patient, in
    /// one commit: for a patient who does not exist nothing is created.
    pub async fn enrol_device(
        &self,
        actor: &Actor,
        enrolment: Enrolment,
    ) -> Result<EnrolledDevice, Error> {
        let device_id = enrolment.device_id.unwrap_or_else(DeviceId::random);
        let allowed = self
            .require_admin(
                actor,
                "devices.enrol",
                enrolment.patient_id,
                Some(device_id.to_string()),
            )
            .await?;
        let model = bounded("model", &enrolment.model, 100)?;
        let serial = bounded("serial", &enrolment.serial, 100)?;
        let secret =
            DeviceSecret::generate().map_err(|_| Error::Internal("no randomness".into()))?;
        let now = self.now();
        let device = self
            .store
            .enrol_device(
                NewDevice {
                    id: device_id,
                    kind: enrolment.kind,
                    model,
                    serial,
                    secret_hash: secret.hash(),
                    created: now,
                },
                enrolment.patient_id.map(|patient_id| InitialAssignment {
                    patient_id,
                    from: now,
                }),
                allowed.audit,
            )
            .await?;
        if let Some(patient_id) = enrolment.patient_id {
            self.devices_changed(patient_id).await;
        }
        Ok(EnrolledDevice { device, secret })
    }

    /// Assigns a device to a patient from `from` (now when absent) on.
    pub async fn assign_device(
        &self,
        actor: &Actor,
        device_id: &DeviceId,
        patient_id: PatientId,
        from: Option<DateTime<Utc>>,
    ) -> Result<(), Error> {
        let from = from.unwrap_or_else(|| self.now());
        let mut allowed = self
            .require_admin(
                actor,
                "devices.assign",
                Some(patient_id),
                Some(device_id.to_string()),
            )
            .await?;
        // The audit entry names the device, the time and the patient it leaves (the
        // patient it goes to is the entry's patient).
        let previous = self
            .store
            .device_assignments(device_id)
            .await?
            .into_iter()
            .find(|assignment| assignment.end.is_none());
        allowed.audit.detail = Some(match previous {
            Some(previous) => format!(
                "device {device_id} from {}; until then patient {} (since {})",
                from.to_rfc3339(),
                previous.patient_id,
                previous.start.to_rfc3339()
            ),
            None => format!("device {device_id} from {}", from.to_rfc3339()),
        });
        self.store
            .assign_device(device_id, patient_id, from, allowed.audit)
            .await
            .map_err(|error| match error {
                StoreError::Invalid(message) => Error::invalid("from", message),
                other => other.into(),
            })?;
        self.devices_changed(patient_id).await;
        Ok(())
    }

    /// Revokes a device's credential and ends its live connections.
    pub async fn revoke_device(&self, actor: &Actor, device_id: &DeviceId) -> Result<(), Error> {
        let allowed = self
            .require_admin(actor, "devices.revoke", None, Some(device_id.to_string()))
            .await?;
        self.store
            .set_device_status(device_id, DeviceStatus::Revoked, allowed.audit)
            .await?;
        self.disconnect(device_id);
        Ok(())
    }

    pub async fn patient_devices(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<Device>, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "devices.read", None)
            .await?;
        Ok(self.store.devices_of_patient(access.patient_id()).await?)
    }

    /// Checks a device's identifier and secret, telling a revoked device apart (MQTT
    /// answers it with its own reason code).
    pub async fn check_device_credentials(
        &self,
        device_id: &str,
        secret: &[u8],
    ) -> Result<Device, DeviceAuthError> {
        let Ok(device_id) = DeviceId::parse(device_id) else {
            return Err(DeviceAuthError::BadCredentials);
        };
        let presented = hash_secret(secret);
        let Some(credentials) = self
            .store
            .device_credentials(&device_id)
            .await
            .map_err(Error::from)?
        else {
            return Err(DeviceAuthError::BadCredentials);
        };
        if !equal_in_constant_time(&presented, &credentials.secret_hash) {
            return Err(DeviceAuthError::BadCredentials);
        }
        if credentials.device.status == DeviceStatus::Revoked {
            return Err(DeviceAuthError::Revoked(device_id));
        }
        Ok(credentials.device)
    }

    /// A device presenting its secret over HTTP. Unknown, wrong and revoked all answer
    /// `unauthenticated`, so a probe learns nothing, and each refusal is counted.
    pub async fn authenticate_device(
        &self,
        device_id: &str,
        secret: &[u8],
    ) -> Result<Device, Error> {
        match self.check_device_credentials(device_id, secret).await {
            Ok(device) => Ok(device),
            Err(DeviceAuthError::Service(error)) => Err(error),
            Err(DeviceAuthError::BadCredentials | DeviceAuthError::Revoked(_)) => {
                metrics::counter!("wardline_http_device_auth_failed_total").increment(1);
                Err(Error::Unauthenticated)
            }
        }
    }

    /// A device's report about its battery and faults, kept so that its patient's
    /// technical alarms are evaluated from it (through the event log).
    pub async fn report_device_status(
        &self,
        device: &Device,
        report: DeviceStatusReport,
    ) -> Result<(), Error> {
        if let Some(battery) = report.battery_percent
            && !(battery.is_finite() && (0.0..=100.0).contains(&battery))
        {
            return Err(Error::invalid("battery_percent", "0 to 100"));
        }
        if let Some(fault) = &report.fault
            && (fault.is_empty() || fault.len() > 200 || fault.chars().any(char::is_control))
        {
            return Err(Error::invalid("fault", "1 to 200 printable characters"));
        }
        let now = self.now();
        let assignments = self.store.device_assignments(&device.id).await?;
        let patient_id = DeviceAssignment::patient_at(&assignments, now).ok_or_else(|| {
            Error::DeviceNotAssigned(format!("device {} has no patient now", device.id))
        })?;
        self.store
            .record_device_report(DeviceReport {
                device_id: device.id.clone(),
                patient_id,
                at: now,
                battery_percent: report.battery_percent,
                fault: report.fault,
            })
            .await
            .map_err(|error| match error {
                // Revoked or moved to another patient since the lookup above.
                StoreError::NotFound { .. } => Error::DeviceNotAssigned(format!(
                    "device {} was revoked or moved to another patient just now",
                    device.id
                )),
                other => other.into(),
            })?;
        Ok(())
    }
}
