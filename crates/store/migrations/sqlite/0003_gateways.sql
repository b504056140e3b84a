-- Wardline schema, version 3: home gateways.
-- A gateway is a device of kind `gateway`. It forwards the messages of the devices
-- assigned to the same patient (see docs/gateway.md); this table keeps what it last
-- reported about itself, so operators see each gateway's last contact and backlog.

CREATE TABLE gateway_status (
    device_key            INTEGER PRIMARY KEY REFERENCES device (key),
    last_contact_ms       INTEGER NOT NULL,
    remote_addr           TEXT,
    backlog_messages      INTEGER NOT NULL,
    backlog_bytes         INTEGER NOT NULL,
    oldest_queued_ms      INTEGER,
    disk_limit_bytes      INTEGER NOT NULL,
    near_disk_limit       INTEGER NOT NULL,
    clock_offset_ms       INTEGER,
    corrected_timestamps  INTEGER NOT NULL,
    forwarded_messages    INTEGER NOT NULL DEFAULT 0
);
