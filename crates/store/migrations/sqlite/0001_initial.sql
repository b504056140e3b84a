-- Wardline schema, version 1.
-- Internal integer keys keep the hot tables (observation, waveform_chunk, audit_event)
-- narrow; the random public identifiers live only in the entity tables.

CREATE TABLE patient (
    key          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    display_name TEXT    NOT NULL,
    birth_date   TEXT,
    mrn          TEXT    UNIQUE,
    created_ms   INTEGER NOT NULL
);

CREATE TABLE app_user (
    key           INTEGER PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'clinician', 'nurse', 'patient')),
    password_hash TEXT    NOT NULL,
    patient_key   INTEGER REFERENCES patient (key),
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    -- A patient account is always linked to its own record, and only a patient account is.
    CHECK ((role = 'patient') = (patient_key IS NOT NULL))
);

-- Only the SHA-256 of a session token is kept: a copy of the database opens no session.
CREATE TABLE session (
    token_hash BLOB    PRIMARY KEY,
    user_key   INTEGER NOT NULL REFERENCES app_user (key),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX session_by_user ON session (user_key);

CREATE TABLE care_team (
    key        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);

CREATE TABLE care_team_member (
    team_key INTEGER NOT NULL REFERENCES care_team (key),
    user_key INTEGER NOT NULL REFERENCES app_user (key),
    PRIMARY KEY (team_key, user_key)
) WITHOUT ROWID;
CREATE INDEX care_team_member_by_user ON care_team_member (user_key);

CREATE TABLE care_team_patient (
    team_key    INTEGER NOT NULL REFERENCES care_team (key),
    patient_key INTEGER NOT NULL REFERENCES patient (key),
    PRIMARY KEY (team_key, patient_key)
) WITHOUT ROWID;
CREATE INDEX care_team_patient_by_patient ON care_team_patient (patient_key);

CREATE TABLE device (
    key          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    serial       TEXT    NOT NULL,
    secret_hash  BLOB    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    created_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER
);

-- Which patient a device measured, over which span; a device moved to another patient
-- gets a new row, so readings never mix patients.
CREATE TABLE device_assignment (
    device_key  INTEGER NOT NULL REFERENCES device (key),
    patient_key INTEGER NOT NULL REFERENCES patient (key),
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER,
    PRIMARY KEY (device_key, start_ms)
) WITHOUT ROWID;
CREATE INDEX device_assignment_by_patient ON device_assignment (patient_key);

CREATE TABLE observation (
    key            INTEGER PRIMARY KEY,
    patient_key    INTEGER NOT NULL,
    device_key     INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    code           TEXT    NOT NULL,
    value          REAL    NOT NULL,
    original_value REAL,
    original_unit  TEXT,
    effective_ms   INTEGER NOT NULL,
    received_ms    INTEGER NOT NULL
);
-- The device's sequence number makes a retried publish a no-op.
CREATE UNIQUE INDEX observation_by_device_seq ON observation (device_key, seq);
CREATE INDEX observation_by_patient_code_time ON observation (patient_key, code, effective_ms);

CREATE TABLE waveform_chunk (
    key              INTEGER PRIMARY KEY,
    patient_key      INTEGER NOT NULL,
    device_key       INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    signal           TEXT    NOT NULL,
    sampling_rate_hz REAL    NOT NULL,
    start_ms         INTEGER NOT NULL,
    end_ms           INTEGER NOT NULL,
    sample_count     INTEGER NOT NULL,
    encoded          BLOB    NOT NULL,
    received_ms      INTEGER NOT NULL
);
CREATE UNIQUE INDEX waveform_chunk_by_device_seq ON waveform_chunk (device_key, seq);
CREATE INDEX waveform_chunk_by_patient_signal_time ON waveform_chunk (patient_key, signal, start_ms);

-- Append-only; each row's chain_hash covers the previous row's hash, so removing or
-- editing a row breaks every hash after it.
CREATE TABLE audit_event (
    key         INTEGER PRIMARY KEY,
    time_ms     INTEGER NOT NULL,
    actor_key   INTEGER,
    actor_label TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    patient_key INTEGER,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('allowed', 'denied', 'failed')),
    remote_addr TEXT,
    detail      TEXT,
    chain_hash  BLOB    NOT NULL
);
CREATE INDEX audit_event_by_patient ON audit_event (patient_key, key);
CREATE INDEX audit_event_by_actor ON audit_event (actor_key, key);

CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
BEGIN
    SELECT RAISE(ABORT, 'audit events cannot be changed');
END;
CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
BEGIN
    SELECT RAISE(ABORT, 'audit events cannot be deleted');
END;
