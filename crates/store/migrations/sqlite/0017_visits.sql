-- Telehealth: video visits, what came of them, and the clinician time spent on a
-- patient's remote monitoring. Nothing here is deleted: a cancelled visit keeps its row,
-- a signed note is changed only by addenda, a wrong stretch of time by a correction.
CREATE TABLE visit (
    key               INTEGER PRIMARY KEY,
    id                TEXT    NOT NULL UNIQUE,
    patient_key       INTEGER NOT NULL REFERENCES patient (key),
    scheduled_by      INTEGER NOT NULL REFERENCES app_user (key),
    created_ms        INTEGER NOT NULL,
    start_ms          INTEGER NOT NULL,
    duration_minutes  INTEGER NOT NULL CHECK (duration_minutes > 0),
    reason            TEXT    NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'scheduled'
                      CHECK (status IN ('scheduled', 'cancelled', 'no_show', 'completed')),
    status_changed_ms INTEGER,
    status_reason     TEXT,
    reminded_ms       INTEGER
);
CREATE INDEX visit_by_patient_start ON visit (patient_key, start_ms);
CREATE INDEX visit_by_start ON visit (start_ms);

-- The care team members who attend; the patient always does.
CREATE TABLE visit_attendee (
    visit_key INTEGER NOT NULL REFERENCES visit (key),
    user_key  INTEGER NOT NULL REFERENCES app_user (key),
    PRIMARY KEY (visit_key, user_key)
);
CREATE INDEX visit_attendee_by_user ON visit_attendee (user_key);

-- Each stay of each person in the visit's room; left_ms is NULL while they are in it.
CREATE TABLE visit_presence (
    key        INTEGER PRIMARY KEY,
    visit_key  INTEGER NOT NULL REFERENCES visit (key),
    user_key   INTEGER NOT NULL REFERENCES app_user (key),
    joined_ms  INTEGER NOT NULL,
    left_ms    INTEGER
);
CREATE INDEX visit_presence_by_visit ON visit_presence (visit_key, joined_ms);

-- The text chat beside the video.
CREATE TABLE visit_message (
    key        INTEGER PRIMARY KEY,
    visit_key  INTEGER NOT NULL REFERENCES visit (key),
    author_key INTEGER NOT NULL REFERENCES app_user (key),
    sent_ms    INTEGER NOT NULL,
    text       TEXT    NOT NULL
);
CREATE INDEX visit_message_by_visit ON visit_message (visit_key, key);

-- The visit's note: a draft until signed_ms is set, read-only after.
CREATE TABLE visit_note (
    visit_key  INTEGER PRIMARY KEY REFERENCES visit (key),
    author_key INTEGER NOT NULL REFERENCES app_user (key),
    reason     TEXT    NOT NULL,
    findings   TEXT    NOT NULL,
    plan       TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    signed_ms  INTEGER
);

CREATE TABLE visit_addendum (
    key        INTEGER PRIMARY KEY,
    visit_key  INTEGER NOT NULL REFERENCES visit_note (visit_key),
    author_key INTEGER NOT NULL REFERENCES app_user (key),
    written_ms INTEGER NOT NULL,
    text       TEXT    NOT NULL
);

-- Care plan versions made in a visit (the version's reason names the visit too).
CREATE TABLE visit_care_plan (
    visit_key INTEGER NOT NULL REFERENCES visit (key),
    version   INTEGER NOT NULL,
    PRIMARY KEY (visit_key, version)
);

-- A medication order, shaped as FHIR's MedicationRequest.
CREATE TABLE treatment_order (
    key          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    patient_key  INTEGER NOT NULL REFERENCES patient (key),
    visit_key    INTEGER REFERENCES visit (key),
    ordered_by   INTEGER NOT NULL REFERENCES app_user (key),
    created_ms   INTEGER NOT NULL,
    medication   TEXT    NOT NULL,
    dose         TEXT    NOT NULL,
    frequency    TEXT    NOT NULL,
    start_date   TEXT    NOT NULL,
    stop_date    TEXT,
    instructions TEXT    NOT NULL
);
CREATE INDEX treatment_order_by_patient ON treatment_order (patient_key, created_ms);

-- Clinician time on a patient's remote monitoring: visit stays, the page timer, and
-- corrections (which may be negative and always carry a reason).
CREATE TABLE monitoring_time (
    key         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    patient_key INTEGER NOT NULL REFERENCES patient (key),
    user_key    INTEGER NOT NULL REFERENCES app_user (key),
    started_ms  INTEGER NOT NULL,
    seconds     INTEGER NOT NULL,
    source      TEXT    NOT NULL CHECK (source IN ('visit', 'timer', 'correction')),
    visit_key   INTEGER REFERENCES visit (key),
    reason      TEXT,
    CHECK (source <> 'correction' OR reason IS NOT NULL)
);
CREATE INDEX monitoring_time_by_patient ON monitoring_time (patient_key, started_ms);
