-- Wardline schema, version 5: the committed event log, device reports, and an audit
-- chain that every backend computes alike.

-- NEWS2 results, rhythm events and device reports in commit order, written by the
-- transaction that stores them, for the readers of the event log (rule evaluation). Device
-- readings and waveform chunks are read from their own tables by key.
CREATE TABLE event_log (
    seq     INTEGER PRIMARY KEY,
    kind    TEXT    NOT NULL CHECK (kind IN ('news2', 'rhythm', 'device_report')),
    ref_key INTEGER NOT NULL
);

-- What a device said about itself (battery, fault); before version 5 these went to the
-- alarm engine in memory and were lost when it was busy or restarting.
CREATE TABLE device_report (
    key             INTEGER PRIMARY KEY,
    device_key      INTEGER NOT NULL REFERENCES device (key),
    patient_key     INTEGER NOT NULL REFERENCES patient (key),
    at_ms           INTEGER NOT NULL,
    battery_percent REAL CHECK (battery_percent BETWEEN 0 AND 100),
    fault           TEXT
);
CREATE INDEX device_report_by_device_time ON device_report (device_key, at_ms);

-- How far each reader of the event log has got, written in the same commit as what it
-- produced from the events before that point.
CREATE TABLE consumer_checkpoint (
    consumer TEXT    PRIMARY KEY,
    cursor   TEXT    NOT NULL,
    saved_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- From this version on an audit entry is hashed over the public identifiers of its actor
-- and patient (chain version 2), which every backend has; earlier entries keep the
-- version-1 hash over SQLite's internal keys and are verified as such.
ALTER TABLE audit_event ADD COLUMN chain_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit_event ADD COLUMN actor_id TEXT;
ALTER TABLE audit_event ADD COLUMN patient_id TEXT;
