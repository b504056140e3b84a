//! Versioned schema migrations, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use crate::error::StoreError;

/// Migrations in order; the index + 1 is the schema version each one produces.
/// A migration, once released, never changes: fixes go into a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_derived_analytics.sql"),
    include_str!("../../migrations/sqlite/0003_gateways.sql"),
    include_str!("../../migrations/sqlite/0004_alarms.sql"),
    include_str!("../../migrations/sqlite/0005_event_log.sql"),
    include_str!("../../migrations/sqlite/0006_notification_cancelled.sql"),
    include_str!("../../migrations/sqlite/0007_device_last_reading.sql"),
    include_str!("../../migrations/sqlite/0008_audit_key.sql"),
    include_str!("../../migrations/sqlite/0009_password_change_and_idle_sessions.sql"),
    include_str!("../../migrations/sqlite/0010_emergency_access.sql"),
    include_str!("../../migrations/sqlite/0011_second_factor.sql"),
    include_str!("../../migrations/sqlite/0012_device_certificates.sql"),
    include_str!("../../migrations/sqlite/0013_specialists_and_shares.sql"),
    include_str!("../../migrations/sqlite/0014_nightscout.sql"),
    include_str!("../../migrations/sqlite/0015_mapping_templates.sql"),
    include_str!("../../migrations/sqlite/0016_login_failures.sql"),
    include_str!("../../migrations/sqlite/0017_visits.sql"),
    include_str!("../../migrations/sqlite/0018_visit_reminders.sql"),
    include_str!("../../migrations/sqlite/0019_bulk_exports.sql"),
    include_str!("../../migrations/sqlite/0020_backend_clients.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    // A migration that rebuilds a table (SQLite cannot change a constraint in place)
    // drops the old one while other tables still refer to it: foreign keys are off while
    // migrating, and every migration checks them all before it commits.
    connection.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = apply(connection, current);
    connection.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}

fn apply(connection: &mut Connection, current: i64) -> Result<(), StoreError> {
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let transaction = connection.transaction()?;
        transaction
            .execute_batch(sql)
            .map_err(|error| StoreError::Migration(format!("to version {version}: {error}")))?;
        let broken: i64 =
            transaction.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })?;
        if broken > 0 {
            return Err(StoreError::Migration(format!(
                "to version {version}: {broken} rows would refer to rows that are not there"
            )));
        }
        transaction.pragma_update(None, "user_version", version)?;
        transaction.commit()?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}
