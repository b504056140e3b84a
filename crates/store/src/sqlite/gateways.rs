//! [`GatewayStore`] on SQLite (schema version 3, `gateway_status`).

use async_trait::async_trait;
use rusqlite::params;
use wardline_domain::DeviceId;

use super::{SqliteStore, from_ms, to_ms};
use crate::error::StoreError;
use crate::gateways::{GatewayReport, GatewayStatus, GatewayStore};

fn clamp_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn parse_device(text: &str) -> Result<DeviceId, StoreError> {
    DeviceId::parse(text).map_err(|_| StoreError::Corrupt(format!("device id {text:?}")))
}

#[async_trait]
impl GatewayStore for SqliteStore {
    async fn gateway_devices(&self, gateway: &DeviceId) -> Result<Vec<DeviceId>, StoreError> {
        let gateway = gateway.clone();
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT DISTINCT d.id FROM device g
                 JOIN device_assignment ga ON ga.device_key = g.key AND ga.end_ms IS NULL
                 JOIN device_assignment da ON da.patient_key = ga.patient_key AND da.end_ms IS NULL
                 JOIN device d ON d.key = da.device_key
                 WHERE g.id = ?1 AND g.kind = 'gateway' AND d.key <> g.key
                 ORDER BY d.id",
            )?;
            let rows = statement.query_map([gateway.as_str()], |row| row.get::<_, String>(0))?;
            rows.map(|row| parse_device(&row?)).collect()
        })
        .await
    }

    async fn record_gateway_contact(&self, report: GatewayReport) -> Result<(), StoreError> {
        self.write(move |connection| {
            let changed = connection
                .prepare_cached(
                    "INSERT INTO gateway_status (device_key, last_contact_ms, remote_addr,
                        backlog_messages, backlog_bytes, oldest_queued_ms, disk_limit_bytes,
                        near_disk_limit, clock_offset_ms, corrected_timestamps, forwarded_messages)
                     SELECT key, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 FROM device WHERE id = ?1
                     ON CONFLICT (device_key) DO UPDATE SET
                        last_contact_ms = excluded.last_contact_ms,
                        remote_addr = excluded.remote_addr,
                        backlog_messages = excluded.backlog_messages,
                        backlog_bytes = excluded.backlog_bytes,
                        oldest_queued_ms = excluded.oldest_queued_ms,
                        disk_limit_bytes = excluded.disk_limit_bytes,
                        near_disk_limit = excluded.near_disk_limit,
                        clock_offset_ms = excluded.clock_offset_ms,
                        corrected_timestamps = excluded.corrected_timestamps,
                        forwarded_messages = gateway_status.forwarded_messages + excluded.forwarded_messages",
                )?
                .execute(params![
                    report.gateway_id.as_str(),
                    to_ms(report.contact),
                    report.remote_addr,
                    clamp_u64(report.backlog_messages),
                    clamp_u64(report.backlog_bytes),
                    report.oldest_queued.map(to_ms),
                    clamp_u64(report.disk_limit_bytes),
                    report.near_disk_limit,
                    report.clock_offset_ms,
                    clamp_u64(report.corrected_timestamps),
                    clamp_u64(report.forwarded_messages),
                ])?;
            if changed == 0 {
                return Err(StoreError::not_found(format!(
                    "gateway {}",
                    report.gateway_id
                )));
            }
            Ok(())
        })
        .await
    }

    async fn gateway_statuses(&self) -> Result<Vec<GatewayStatus>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT g.id,
                        (SELECT p.id FROM device_assignment a JOIN patient p ON p.key = a.patient_key
                          WHERE a.device_key = g.key AND a.end_ms IS NULL
                          ORDER BY a.start_ms DESC LIMIT 1),
                        s.last_contact_ms, s.remote_addr, s.backlog_messages, s.backlog_bytes,
                        s.oldest_queued_ms, s.disk_limit_bytes, s.near_disk_limit,
                        s.clock_offset_ms, s.corrected_timestamps, s.forwarded_messages
                 FROM device g LEFT JOIN gateway_status s ON s.device_key = g.key
                 WHERE g.kind = 'gateway' ORDER BY g.id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    [
                        row.get::<_, Option<i64>>(4)?,
                        row.get::<_, Option<i64>>(5)?,
                        row.get::<_, Option<i64>>(7)?,
                        row.get::<_, Option<i64>>(10)?,
                        row.get::<_, Option<i64>>(11)?,
                    ],
                    row.get::<_, Option<i64>>(6)?,
                    row.get::<_, Option<bool>>(8)?,
                    row.get::<_, Option<i64>>(9)?,
                ))
            })?;
            rows.map(|row| {
                let (id, patient, contact, remote_addr, counts, oldest, near, offset) = row?;
                let [backlog, bytes, limit, corrected, forwarded] =
                    counts.map(|count| u64::try_from(count.unwrap_or(0)).unwrap_or(0));
                Ok(GatewayStatus {
                    gateway_id: parse_device(&id)?,
                    patient_id: patient
                        .map(|text| {
                            text.parse()
                                .map_err(|_| StoreError::Corrupt(format!("patient id {text:?}")))
                        })
                        .transpose()?,
                    last_contact: contact.map(from_ms).transpose()?,
                    remote_addr,
                    backlog_messages: backlog,
                    backlog_bytes: bytes,
                    oldest_queued: oldest.map(from_ms).transpose()?,
                    disk_limit_bytes: limit,
                    near_disk_limit: near.unwrap_or(false),
                    clock_offset_ms: offset,
                    corrected_timestamps: corrected,
                    forwarded_messages: forwarded,
                })
            })
            .collect()
        })
        .await
    }
}
