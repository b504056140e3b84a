//! [`DeviceStore`] on PostgreSQL.
//!
//! A device's row is the lock that orders what happens to it across workers: an
//! assignment locks it before reading the device's assignments and newest reading, and
//! ingest locks it before resolving whom a reading belongs to, so an assignment is never
//! made over readings stored meanwhile, nor a reading stored for an assignment ended
//! meanwhile.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;
use wardline_domain::{DeviceId, DeviceKind, PatientId};

use super::audit::append;
use super::events::log_event;
use super::ingest::look_up_devices;
use super::rows::*;
use super::{PostgresStore, lock_events};
use crate::audit::AuditEvent;
use crate::devices::{DeviceStore, InitialAssignment};
use crate::error::StoreError;
use crate::model::{
    CertifiedDevice, Device, DeviceAssignment, DeviceCertificate, DeviceCredentials, DeviceReport,
    DeviceStatus, NewDevice,
};

pub(super) const DEVICE_COLUMNS: &str =
    "d.id, d.kind, d.model, d.serial, d.status, d.created_ms, d.last_seen_ms";

pub(super) fn device_from_row(row: &tokio_postgres::Row) -> Result<Device, StoreError> {
    let kind: &str = row.try_get(1)?;
    let status: &str = row.try_get(4)?;
    Ok(Device {
        id: parse_device_id(row.try_get(0)?)?,
        kind: kind
            .parse::<DeviceKind>()
            .map_err(|error| StoreError::Corrupt(error.to_string()))?,
        model: row.try_get(2)?,
        serial: row.try_get(3)?,
        status: match status {
            "active" => DeviceStatus::Active,
            "revoked" => DeviceStatus::Revoked,
            other => return Err(StoreError::Corrupt(format!("device status {other:?}"))),
        },
        created: from_ms(row.try_get(5)?)?,
        last_seen: row.try_get::<_, Option<i64>>(6)?.map(from_ms).transpose()?,
    })
}

/// Inserts a new, active device.
pub(super) async fn insert_device(
    transaction: &deadpool_postgres::Transaction<'_>,
    device: NewDevice,
) -> Result<Device, StoreError> {
    let created = from_ms(to_ms(device.created))?;
    transaction
        .execute(
            "INSERT INTO device (id, kind, model, serial, secret_hash, status, created_ms)
             VALUES ($1, $2, $3, $4, $5, 'active', $6)",
            &[
                &device.id.as_str(),
                &device.kind.as_str(),
                &device.model,
                &device.serial,
                &device.secret_hash.as_slice(),
                &to_ms(created),
            ],
        )
        .await
        .map_err(|error| unique_violation(error, format!("device {}", device.id)))?;
    Ok(Device {
        id: device.id,
        kind: device.kind,
        model: device.model,
        serial: device.serial,
        status: DeviceStatus::Active,
        created,
        last_seen: None,
    })
}

/// Ends the device's assignment open at `from` and starts one to `patient`.
pub(super) async fn assign(
    transaction: &deadpool_postgres::Transaction<'_>,
    device: &DeviceId,
    patient: PatientId,
    from: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Locked until commit: ingest of this device waits, so the newest reading read here
    // stays the newest (see the module's documentation).
    let locked = transaction
        .prepare_cached("SELECT key, last_reading_ms FROM device WHERE id = $1 FOR NO KEY UPDATE")
        .await?;
    let (device_key, last_reading): (i64, Option<i64>) =
        match transaction.query_opt(&locked, &[&device.as_str()]).await? {
            Some(row) => (row.try_get(0)?, row.try_get(1)?),
            None => return Err(StoreError::not_found(format!("device {device}"))),
        };
    let patient_key = patient_key(transaction, patient)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("patient {patient}")))?;
    let from_ms = to_ms(from);
    let later: bool = transaction
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM device_assignment WHERE device_key = $1 AND start_ms >= $2)",
            &[&device_key, &from_ms],
        )
        .await?
        .try_get(0)?;
    if later {
        return Err(StoreError::Invalid(format!(
            "device {device} already has an assignment starting at or after {from}"
        )));
    }
    // Readings already stored stay with the patient they were stored for; an assignment
    // starting before the newest of them would end that patient's assignment early and
    // give the device's late readings of that time to the other patient.
    if let Some(last_reading) = last_reading.filter(|last| from_ms <= *last) {
        return Err(StoreError::Invalid(format!(
            "{from} is not after the newest reading device {device} has stored ({}); an assignment starts after it",
            from_ms_text(last_reading)
        )));
    }
    transaction
        .execute(
            "UPDATE device_assignment SET end_ms = $2
             WHERE device_key = $1 AND (end_ms IS NULL OR end_ms > $2)",
            &[&device_key, &from_ms],
        )
        .await?;
    transaction
        .execute(
            "INSERT INTO device_assignment (device_key, patient_key, start_ms) VALUES ($1, $2, $3)",
            &[&device_key, &patient_key, &from_ms],
        )
        .await?;
    Ok(())
}

/// Stores what a device said about itself and lists it in the event log, for the rules.
/// The caller holds the event lock.
pub(super) async fn insert_device_report(
    client: &impl GenericClient,
    device_key: i64,
    patient_key: i64,
    at_ms: i64,
    battery_percent: Option<f64>,
    fault: Option<&str>,
) -> Result<(), StoreError> {
    let insert = client
        .prepare_cached(
            "INSERT INTO device_report (device_key, patient_key, at_ms, battery_percent, fault)
             VALUES ($1, $2, $3, $4, $5) RETURNING key",
        )
        .await?;
    let key: i64 = client
        .query_one(
            &insert,
            &[&device_key, &patient_key, &at_ms, &battery_percent, &fault],
        )
        .await?
        .try_get(0)?;
    log_event(client, "device_report", key).await
}

/// A stored time as RFC 3339, for messages.
fn from_ms_text(ms: i64) -> String {
    from_ms(ms).map_or_else(|_| format!("{ms} ms"), |at| at.to_rfc3339())
}

fn secret_hash(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("device secret hash is not 32 bytes".into()))
}

#[async_trait]
impl DeviceStore for PostgresStore {
    async fn enrol_device(
        &self,
        device: NewDevice,
        assignment: Option<InitialAssignment>,
        audit: AuditEvent,
    ) -> Result<Device, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let device = insert_device(&transaction, device).await?;
        // In the same transaction: an unknown patient undoes the device too.
        if let Some(assignment) = assignment {
            assign(
                &transaction,
                &device.id,
                assignment.patient_id,
                assignment.from,
            )
            .await?;
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(device)
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        self.read_optional(
            &format!("SELECT {DEVICE_COLUMNS} FROM device d WHERE d.id = $1"),
            &[&id.as_str()],
            device_from_row,
        )
        .await
    }

    async fn device_credentials(
        &self,
        id: &DeviceId,
    ) -> Result<Option<DeviceCredentials>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS}, d.secret_hash FROM device d WHERE d.id = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&id.as_str()])
            .await?
            .map(|row| {
                Ok(DeviceCredentials {
                    device: device_from_row(&row)?,
                    secret_hash: secret_hash(row.try_get(7)?)?,
                })
            })
            .transpose()
    }

    async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        self.read_all(
            &format!("SELECT {DEVICE_COLUMNS} FROM device d ORDER BY d.id"),
            &[],
            device_from_row,
        )
        .await
    }

    async fn add_device_certificate(
        &self,
        id: &DeviceId,
        certificate: DeviceCertificate,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let device_key = key_of(
            &transaction,
            "device",
            &id.as_str(),
            &format!("device {id}"),
        )
        .await?;
        transaction
            .execute(
                "INSERT INTO device_certificate (fingerprint, device_key, serial, issued_ms, not_after_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &certificate.fingerprint.as_slice(),
                    &device_key,
                    &certificate.serial,
                    &to_ms(certificate.issued),
                    &to_ms(certificate.not_after),
                ],
            )
            .await
            .map_err(|error| unique_violation(error, "a certificate with this fingerprint"))?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn device_by_certificate(
        &self,
        fingerprint: [u8; 32],
    ) -> Result<Option<CertifiedDevice>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS}, c.serial, c.issued_ms, c.not_after_ms
                 FROM device_certificate c JOIN device d ON d.key = c.device_key
                 WHERE c.fingerprint = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&fingerprint.as_slice()])
            .await?
            .map(|row| {
                Ok(CertifiedDevice {
                    device: device_from_row(&row)?,
                    certificate: DeviceCertificate {
                        fingerprint,
                        serial: row.try_get(7)?,
                        issued: from_ms(row.try_get(8)?)?,
                        not_after: from_ms(row.try_get(9)?)?,
                    },
                })
            })
            .transpose()
    }

    async fn set_device_status(
        &self,
        id: &DeviceId,
        status: DeviceStatus,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // The row lock this takes waits for an ingest of the device under way: once
        // revoked, nothing more of the device is stored.
        let changed = transaction
            .execute(
                "UPDATE device SET status = $2 WHERE id = $1",
                &[&id.as_str(), &status.as_str()],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::not_found(format!("device {id}")));
        }
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn assign_device(
        &self,
        device: &DeviceId,
        patient: PatientId,
        from: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        assign(&transaction, device, patient, from).await?;
        append(&transaction, &self.audit_key, &[audit]).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn assignments_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<DeviceAssignment>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT d.id, a.start_ms, a.end_ms FROM device_assignment a
                 JOIN device d ON d.key = a.device_key JOIN patient p ON p.key = a.patient_key
                 WHERE p.id = $1 ORDER BY a.start_ms, d.id",
            )
            .await?;
        client
            .query(&statement, &[&patient.0])
            .await?
            .iter()
            .map(|row| {
                Ok(DeviceAssignment {
                    device_id: parse_device_id(row.try_get(0)?)?,
                    patient_id: patient,
                    start: from_ms(row.try_get(1)?)?,
                    end: row.try_get::<_, Option<i64>>(2)?.map(from_ms).transpose()?,
                })
            })
            .collect()
    }

    async fn device_assignments(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<DeviceAssignment>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT p.id, a.start_ms, a.end_ms FROM device_assignment a
                 JOIN device d ON d.key = a.device_key JOIN patient p ON p.key = a.patient_key
                 WHERE d.id = $1 ORDER BY a.start_ms",
            )
            .await?;
        client
            .query(&statement, &[&device.as_str()])
            .await?
            .iter()
            .map(|row| {
                Ok(DeviceAssignment {
                    device_id: device.clone(),
                    patient_id: PatientId(row.try_get::<_, Uuid>(0)?),
                    start: from_ms(row.try_get(1)?)?,
                    end: row.try_get::<_, Option<i64>>(2)?.map(from_ms).transpose()?,
                })
            })
            .collect()
    }

    async fn devices_of_patient(&self, patient: PatientId) -> Result<Vec<Device>, StoreError> {
        self.read_all(
            &format!(
                "SELECT DISTINCT {DEVICE_COLUMNS} FROM device d
                 JOIN device_assignment a ON a.device_key = d.key
                 JOIN patient p ON p.key = a.patient_key
                 WHERE p.id = $1 AND a.end_ms IS NULL ORDER BY d.id"
            ),
            &[&patient.0],
            device_from_row,
        )
        .await
    }

    async fn record_device_report(&self, report: DeviceReport) -> Result<(), StoreError> {
        if let Some(battery) = report.battery_percent
            && !(battery.is_finite() && (0.0..=100.0).contains(&battery))
        {
            return Err(StoreError::Invalid(format!(
                "battery {battery} % is not between 0 and 100"
            )));
        }
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        // The event lock first, as in every transaction that adds event rows: ingest takes
        // it before the device rows, and the other order would deadlock with it.
        lock_events(&transaction).await?;
        // The device's row is held until the commit, as ingest holds it, so a revocation
        // or a new assignment made meanwhile waits, and the report is kept for the patient
        // the device measured when it reported, not one it has just left.
        let device = look_up_devices(&transaction, vec![report.device_id.as_str()])
            .await?
            .remove(report.device_id.as_str())
            .ok_or_else(|| StoreError::NotFound {
                what: format!("device {}", report.device_id),
            })?;
        if !device.active {
            return Err(report.refused(false));
        }
        let at_ms = to_ms(report.at);
        let assignment = device
            .patient_at(at_ms)
            .filter(|assignment| assignment.patient_id == report.patient_id)
            .ok_or_else(|| report.refused(true))?;
        insert_device_report(
            &transaction,
            device.key,
            assignment.patient_key,
            at_ms,
            report.battery_percent,
            report.fault.as_deref(),
        )
        .await?;
        transaction.commit().await?;
        self.announce_commit();
        Ok(())
    }
}
