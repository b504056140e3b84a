-- Wardline schema, version 4: care plans, alarms and notifications.
-- Care plans and alarms are stored as the JSON of wardline-alerting's types, with the
-- columns queries need beside them. Versions and alarm events are append-only.

-- Every version of every patient's care plan: who changed what, when and why.
CREATE TABLE care_plan_version (
    patient_key  INTEGER NOT NULL REFERENCES patient (key),
    version      INTEGER NOT NULL,
    effective_ms INTEGER NOT NULL,
    author_key   INTEGER REFERENCES app_user (key),
    author_label TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    plan         TEXT    NOT NULL,
    old_rule     TEXT,
    new_rule     TEXT,
    PRIMARY KEY (patient_key, version)
) WITHOUT ROWID;

CREATE TRIGGER care_plan_version_no_update BEFORE UPDATE ON care_plan_version
BEGIN
    SELECT RAISE(ABORT, 'care plan versions cannot be changed');
END;
CREATE TRIGGER care_plan_version_no_delete BEFORE DELETE ON care_plan_version
BEGIN
    SELECT RAISE(ABORT, 'care plan versions cannot be deleted');
END;

-- The evaluator's state per patient, so rules resume after a restart.
CREATE TABLE monitor_state (
    patient_key INTEGER PRIMARY KEY REFERENCES patient (key),
    saved_ms    INTEGER NOT NULL,
    state       TEXT    NOT NULL
);

-- Alarms: the current state as JSON plus indexed columns.
CREATE TABLE alarm (
    key              INTEGER PRIMARY KEY,
    public_id        TEXT    NOT NULL UNIQUE,
    alarm_id         TEXT    NOT NULL UNIQUE,
    patient_key      INTEGER NOT NULL REFERENCES patient (key),
    rule_id          TEXT    NOT NULL,
    priority         TEXT    NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
    kind             TEXT    NOT NULL CHECK (kind IN ('physiological', 'technical')),
    state            TEXT    NOT NULL CHECK (state IN ('open', 'acknowledged', 'snoozed', 'resolved')),
    raised_ms        INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    next_deadline_ms INTEGER,
    alarm            TEXT    NOT NULL
);
CREATE INDEX alarm_by_patient_time ON alarm (patient_key, raised_ms);
CREATE INDEX alarm_by_state ON alarm (state, raised_ms);
-- One unresolved alarm per patient and condition.
CREATE UNIQUE INDEX alarm_unresolved_per_condition ON alarm (patient_key, rule_id)
    WHERE state <> 'resolved';

CREATE TABLE alarm_event (
    key         INTEGER PRIMARY KEY,
    alarm_key   INTEGER NOT NULL REFERENCES alarm (key),
    time_ms     INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    actor_key   INTEGER REFERENCES app_user (key),
    detail      TEXT
);
CREATE INDEX alarm_event_by_alarm ON alarm_event (alarm_key, key);

CREATE TRIGGER alarm_event_no_update BEFORE UPDATE ON alarm_event
BEGIN
    SELECT RAISE(ABORT, 'alarm events cannot be changed');
END;
CREATE TRIGGER alarm_event_no_delete BEFORE DELETE ON alarm_event
BEGIN
    SELECT RAISE(ABORT, 'alarm events cannot be deleted');
END;

CREATE TABLE escalation_policy (
    team_key   INTEGER PRIMARY KEY REFERENCES care_team (key),
    policy     TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL
);

-- Webhook and e-mail channels of a care team. A webhook's signing secret is stored
-- sealed (AES-256-GCM under a key in the data folder) and never returned after creation.
CREATE TABLE notification_channel (
    key           INTEGER PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,
    team_key      INTEGER NOT NULL REFERENCES care_team (key),
    kind          TEXT    NOT NULL CHECK (kind IN ('webhook', 'email')),
    target        TEXT    NOT NULL,
    sealed_secret BLOB,
    minimal       INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL,
    removed_ms    INTEGER
);
CREATE INDEX notification_channel_by_team ON notification_channel (team_key);

-- The durable outbox: a notification is written in the same commit as the alarm change
-- that causes it, and delivered at least once afterwards.
CREATE TABLE notification (
    key             INTEGER PRIMARY KEY,
    idempotency_key TEXT    NOT NULL UNIQUE,
    channel_key     INTEGER NOT NULL REFERENCES notification_channel (key),
    alarm_key       INTEGER NOT NULL REFERENCES alarm (key),
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_attempt_ms INTEGER,
    delivered_ms    INTEGER,
    last_error      TEXT
);
CREATE INDEX notification_pending ON notification (status, next_attempt_ms);
CREATE INDEX notification_by_alarm ON notification (alarm_key);
