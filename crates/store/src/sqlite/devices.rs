//! [`DeviceStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use wardline_domain::{DeviceId, PatientId};

use super::audit::append;
use super::events::log_event;
use super::ingest::{look_up_device, patient_at};
use super::rows::*;
use super::{SqliteStore, from_ms, to_ms};
use crate::audit::AuditEvent;
use crate::devices::{DeviceStore, InitialAssignment};
use crate::error::StoreError;
use crate::model::*;

/// Inserts a new, active device.
pub(super) fn insert_device(
    connection: &Connection,
    device: NewDevice,
) -> Result<Device, StoreError> {
    let created = from_ms(to_ms(device.created))?;
    connection
        .execute(
            "INSERT INTO device (id, kind, model, serial, secret_hash, status, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6)",
            params![device.id.as_str(), device.kind.as_str(), device.model, device.serial, device.secret_hash.as_slice(), to_ms(created)],
        )
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
pub(super) fn assign(
    connection: &Connection,
    device: &DeviceId,
    patient: PatientId,
    from: DateTime<Utc>,
) -> Result<(), StoreError> {
    let device_key = key_of(connection, "device", device.as_str(), "device")?;
    let patient_key = key_of(connection, "patient", &patient.to_string(), "patient")?;
    let from_ms = to_ms(from);
    let later: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM device_assignment WHERE device_key = ?1 AND start_ms >= ?2)",
        params![device_key, from_ms],
        |row| row.get(0),
    )?;
    if later {
        return Err(StoreError::Invalid(format!(
            "device {device} already has an assignment starting at or after {from}"
        )));
    }
    // Readings already stored stay with the patient they were stored for; an assignment
    // starting before the newest of them would end that patient's assignment early and
    // give the device's late readings of that time to the other patient.
    let last_reading: Option<i64> = connection.query_row(
        "SELECT last_reading_ms FROM device WHERE key = ?1",
        [device_key],
        |row| row.get(0),
    )?;
    if let Some(last_reading) = last_reading.filter(|last| from_ms <= *last) {
        return Err(StoreError::Invalid(format!(
            "{from} is not after the newest reading device {device} has stored ({}); an assignment starts after it",
            from_ms_text(last_reading)
        )));
    }
    connection.execute(
        "UPDATE device_assignment SET end_ms = ?2 WHERE device_key = ?1 AND (end_ms IS NULL OR end_ms > ?2)",
        params![device_key, from_ms],
    )?;
    connection.execute(
        "INSERT INTO device_assignment (device_key, patient_key, start_ms) VALUES (?1, ?2, ?3)",
        params![device_key, patient_key, from_ms],
    )?;
    Ok(())
}

/// Stores what a device said about itself and lists it in the event log, for the rules.
pub(super) fn insert_device_report(
    connection: &Connection,
    device_key: i64,
    patient_key: i64,
    at_ms: i64,
    battery_percent: Option<f64>,
    fault: Option<&str>,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO device_report (device_key, patient_key, at_ms, battery_percent, fault)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            device_key,
            patient_key,
            at_ms,
            battery_percent,
            fault
        ])?;
    log_event(connection, "device_report", connection.last_insert_rowid())
}

/// A stored time as RFC 3339, for messages.
fn from_ms_text(ms: i64) -> String {
    from_ms(ms).map_or_else(|_| format!("{ms} ms"), |at| at.to_rfc3339())
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn enrol_device(
        &self,
        device: NewDevice,
        assignment: Option<InitialAssignment>,
        audit: AuditEvent,
    ) -> Result<Device, StoreError> {
        self.write(move |connection| {
            let device = insert_device(connection, device)?;
            // Inside the job's savepoint: an unknown patient undoes the device too.
            if let Some(assignment) = assignment {
                assign(
                    connection,
                    &device.id,
                    assignment.patient_id,
                    assignment.from,
                )?;
            }
            append(connection, &[audit])?;
            Ok(device)
        })
        .await
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        let id = id.clone();
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM device d WHERE d.id = ?1"
                ))?
                .query_row([id.as_str()], |row| Ok(device_from_row(row)))
                .optional()?
                .transpose()
        })
        .await
    }

    async fn device_credentials(
        &self,
        id: &DeviceId,
    ) -> Result<Option<DeviceCredentials>, StoreError> {
        let id = id.clone();
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS}, d.secret_hash FROM device d WHERE d.id = ?1"
                ))?
                .query_row([id.as_str()], |row| {
                    Ok(device_from_row(row).and_then(|device| {
                        let hash: Vec<u8> = row.get(7)?;
                        let secret_hash: [u8; 32] = hash.try_into().map_err(|_| {
                            StoreError::Corrupt("device secret hash is not 32 bytes".into())
                        })?;
                        Ok(DeviceCredentials {
                            device,
                            secret_hash,
                        })
                    }))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn add_device_certificate(
        &self,
        id: &DeviceId,
        certificate: DeviceCertificate,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |connection| {
            let device_key = key_of(connection, "device", id.as_str(), "device")?;
            connection
                .execute(
                    "INSERT INTO device_certificate (fingerprint, device_key, serial, issued_ms, not_after_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        certificate.fingerprint.as_slice(),
                        device_key,
                        certificate.serial,
                        to_ms(certificate.issued),
                        to_ms(certificate.not_after)
                    ],
                )
                .map_err(|error| unique_violation(error, "a certificate with this fingerprint"))?;
            append(connection, &[audit])
        })
        .await
    }

    async fn device_by_certificate(
        &self,
        fingerprint: [u8; 32],
    ) -> Result<Option<CertifiedDevice>, StoreError> {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS}, c.serial, c.issued_ms, c.not_after_ms
                     FROM device_certificate c JOIN device d ON d.key = c.device_key
                     WHERE c.fingerprint = ?1"
                ))?
                .query_row([fingerprint.as_slice()], |row| {
                    Ok(device_from_row(row).and_then(|device| {
                        Ok(CertifiedDevice {
                            device,
                            certificate: DeviceCertificate {
                                fingerprint,
                                serial: row.get(7)?,
                                issued: from_ms(row.get(8)?)?,
                                not_after: from_ms(row.get(9)?)?,
                            },
                        })
                    }))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM device d ORDER BY d.id"
            ))?;
            let rows = statement.query_map([], |row| Ok(device_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn set_device_status(
        &self,
        id: &DeviceId,
        status: DeviceStatus,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |connection| {
            let changed = connection.execute(
                "UPDATE device SET status = ?2 WHERE id = ?1",
                params![id.as_str(), status.as_str()],
            )?;
            if changed == 0 {
                return Err(StoreError::not_found(format!("device {id}")));
            }
            append(connection, &[audit])
        })
        .await
    }

    async fn assign_device(
        &self,
        device: &DeviceId,
        patient: PatientId,
        from: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let device = device.clone();
        self.write(move |connection| {
            assign(connection, &device, patient, from)?;
            append(connection, &[audit])
        })
        .await
    }

    async fn assignments_of_patient(
        &self,
        patient: PatientId,
    ) -> Result<Vec<DeviceAssignment>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT d.id, a.start_ms, a.end_ms FROM device_assignment a
                 JOIN device d ON d.key = a.device_key JOIN patient p ON p.key = a.patient_key
                 WHERE p.id = ?1 ORDER BY a.start_ms, d.id",
            )?;
            let rows = statement.query_map([patient.to_string()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (device, start, end) = row?;
                Ok(DeviceAssignment {
                    device_id: parse_device_id(&device)?,
                    patient_id: patient,
                    start: from_ms(start)?,
                    end: end.map(from_ms).transpose()?,
                })
            })
            .collect()
        })
        .await
    }

    async fn device_assignments(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<DeviceAssignment>, StoreError> {
        let device = device.clone();
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT p.id, a.start_ms, a.end_ms FROM device_assignment a
                 JOIN device d ON d.key = a.device_key JOIN patient p ON p.key = a.patient_key
                 WHERE d.id = ?1 ORDER BY a.start_ms",
            )?;
            let rows = statement.query_map([device.as_str()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (patient, start, end) = row?;
                Ok(DeviceAssignment {
                    device_id: device.clone(),
                    patient_id: parse_uuid(&patient, "patient")?,
                    start: from_ms(start)?,
                    end: end.map(from_ms).transpose()?,
                })
            })
            .collect()
        })
        .await
    }

    async fn devices_of_patient(&self, patient: PatientId) -> Result<Vec<Device>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT DISTINCT {DEVICE_COLUMNS} FROM device d
                 JOIN device_assignment a ON a.device_key = d.key JOIN patient p ON p.key = a.patient_key
                 WHERE p.id = ?1 AND a.end_ms IS NULL ORDER BY d.id"
            ))?;
            let rows = statement.query_map([patient.to_string()], |row| Ok(device_from_row(row)))?;
            rows.map(|row| row?).collect()
        })
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
        self.write(move |connection| {
            // Checked in the writing transaction, so a revocation or a new assignment
            // committed just before is seen: the report is kept for the patient the
            // device measured when it reported, not one it has just left.
            let mut device =
                look_up_device(connection, report.device_id.as_str())?.ok_or_else(|| {
                    StoreError::NotFound {
                        what: format!("device {}", report.device_id),
                    }
                })?;
            if !device.active {
                return Err(report.refused(false));
            }
            let at_ms = to_ms(report.at);
            let assignment = patient_at(connection, &mut device, at_ms)?
                .filter(|assignment| assignment.patient_id == report.patient_id)
                .ok_or_else(|| report.refused(true))?;
            insert_device_report(
                connection,
                device.key,
                assignment.patient_key,
                at_ms,
                report.battery_percent,
                report.fault.as_deref(),
            )
        })
        .await
    }
}
