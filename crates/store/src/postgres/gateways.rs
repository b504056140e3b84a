//! [`GatewayStore`] on PostgreSQL: a gateway's last report is one row, replaced on each
//! contact by one upsert, so concurrent contacts add up their forwarded messages.

use async_trait::async_trait;
use uuid::Uuid;
use wardline_domain::{DeviceId, PatientId};

use super::PostgresStore;
use super::rows::*;
use crate::error::StoreError;
use crate::gateways::{GatewayReport, GatewayStatus, GatewayStore};

fn clamp_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn count(value: Option<i64>) -> u64 {
    u64::try_from(value.unwrap_or(0)).unwrap_or(0)
}

#[async_trait]
impl GatewayStore for PostgresStore {
    async fn gateway_devices(&self, gateway: &DeviceId) -> Result<Vec<DeviceId>, StoreError> {
        self.read_all(
            "SELECT DISTINCT d.id FROM device g
                 JOIN device_assignment ga ON ga.device_key = g.key AND ga.end_ms IS NULL
                 JOIN device_assignment da ON da.patient_key = ga.patient_key AND da.end_ms IS NULL
                 JOIN device d ON d.key = da.device_key
                 WHERE g.id = $1 AND g.kind = 'gateway' AND d.key <> g.key
                 ORDER BY d.id",
            &[&gateway.as_str()],
            |row| parse_device_id(row.try_get(0)?),
        )
        .await
    }

    async fn record_gateway_contact(&self, report: GatewayReport) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO gateway_status (device_key, last_contact_ms, remote_addr,
                    backlog_messages, backlog_bytes, oldest_queued_ms, disk_limit_bytes,
                    near_disk_limit, clock_offset_ms, corrected_timestamps, forwarded_messages)
                 SELECT key, $2::bigint, $3::text, $4::bigint, $5::bigint, $6::bigint, $7::bigint,
                        $8::boolean, $9::bigint, $10::bigint, $11::bigint
                 FROM device WHERE id = $1
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
            )
            .await?;
        let changed = client
            .execute(
                &statement,
                &[
                    &report.gateway_id.as_str(),
                    &to_ms(report.contact),
                    &report.remote_addr,
                    &clamp_u64(report.backlog_messages),
                    &clamp_u64(report.backlog_bytes),
                    &report.oldest_queued.map(to_ms),
                    &clamp_u64(report.disk_limit_bytes),
                    &report.near_disk_limit,
                    &report.clock_offset_ms,
                    &clamp_u64(report.corrected_timestamps),
                    &clamp_u64(report.forwarded_messages),
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::not_found(format!(
                "gateway {}",
                report.gateway_id
            )));
        }
        Ok(())
    }

    async fn gateway_statuses(&self) -> Result<Vec<GatewayStatus>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT g.id,
                        (SELECT p.id FROM device_assignment a JOIN patient p ON p.key = a.patient_key
                          WHERE a.device_key = g.key AND a.end_ms IS NULL
                          ORDER BY a.start_ms DESC LIMIT 1),
                        s.last_contact_ms, s.remote_addr, s.backlog_messages, s.backlog_bytes,
                        s.oldest_queued_ms, s.disk_limit_bytes, s.near_disk_limit,
                        s.clock_offset_ms, s.corrected_timestamps, s.forwarded_messages
                 FROM device g LEFT JOIN gateway_status s ON s.device_key = g.key
                 WHERE g.kind = 'gateway' ORDER BY g.id",
            )
            .await?;
        client
            .query(&statement, &[])
            .await?
            .iter()
            .map(|row| {
                Ok(GatewayStatus {
                    gateway_id: parse_device_id(row.try_get(0)?)?,
                    patient_id: row.try_get::<_, Option<Uuid>>(1)?.map(PatientId),
                    last_contact: row.try_get::<_, Option<i64>>(2)?.map(from_ms).transpose()?,
                    remote_addr: row.try_get(3)?,
                    backlog_messages: count(row.try_get(4)?),
                    backlog_bytes: count(row.try_get(5)?),
                    oldest_queued: row.try_get::<_, Option<i64>>(6)?.map(from_ms).transpose()?,
                    disk_limit_bytes: count(row.try_get(7)?),
                    near_disk_limit: row.try_get::<_, Option<bool>>(8)?.unwrap_or(false),
                    clock_offset_ms: row.try_get(9)?,
                    corrected_timestamps: count(row.try_get(10)?),
                    forwarded_messages: count(row.try_get(11)?),
                })
            })
            .collect()
    }
}
