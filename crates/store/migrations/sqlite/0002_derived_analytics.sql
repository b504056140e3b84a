-- Wardline schema, version 2: what Wardline derives from the devices' data.

-- Derived observations (heart rate computed from an ECG waveform, ...) are stored beside
-- the device's own readings, flagged, with their own `seq` namespace: the device numbers
-- its readings, Wardline numbers what it derives (by effective time), and the two never
-- collide. Retrying either side stays a no-op because `derived` is part of the unique key.
ALTER TABLE observation ADD COLUMN derived INTEGER NOT NULL DEFAULT 0 CHECK (derived IN (0, 1));
DROP INDEX observation_by_device_seq;
CREATE UNIQUE INDEX observation_by_device_derived_seq ON observation (device_key, derived, seq);

-- Rhythm events found by the streaming ECG analysis. An ongoing event is re-stored with a
-- later end as more signal arrives, so (device, signal, kind, onset) identifies an event.
CREATE TABLE rhythm_event (
    key         INTEGER PRIMARY KEY,
    patient_key INTEGER NOT NULL REFERENCES patient (key),
    device_key  INTEGER NOT NULL REFERENCES device (key),
    signal      TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN
                    ('bradycardia', 'tachycardia', 'pause', 'atrial_fibrillation', 'poor_signal')),
    onset_ms    INTEGER NOT NULL,
    end_ms      INTEGER NOT NULL,
    -- JSON with what the analysis measured (e.g. median heart rate); no identifiers.
    detail      TEXT,
    recorded_ms INTEGER NOT NULL,
    CHECK (end_ms >= onset_ms)
);
CREATE UNIQUE INDEX rhythm_event_by_device_signal_kind_onset
    ON rhythm_event (device_key, signal, kind, onset_ms);
CREATE INDEX rhythm_event_by_patient_time ON rhythm_event (patient_key, onset_ms);

-- NEWS2 recomputed from the latest vitals. A partial score (a parameter missing, e.g.
-- consciousness, which no device measures) stores the minimum total and minimum risk and
-- names what is missing; it is never presented as a total.
CREATE TABLE news2_score (
    key             INTEGER PRIMARY KEY,
    patient_key     INTEGER NOT NULL REFERENCES patient (key),
    time_ms         INTEGER NOT NULL,
    complete        INTEGER NOT NULL CHECK (complete IN (0, 1)),
    -- The total when complete, otherwise the minimum total.
    total           INTEGER NOT NULL CHECK (total BETWEEN 0 AND 20),
    -- The risk band when complete, otherwise the minimum band.
    risk            TEXT    NOT NULL CHECK (risk IN ('low', 'low-medium', 'medium', 'high')),
    any_parameter_3 INTEGER NOT NULL CHECK (any_parameter_3 IN (0, 1)),
    missing         TEXT    NOT NULL, -- JSON array of parameter names
    sub_scores      TEXT    NOT NULL, -- JSON object, null where missing
    inputs          TEXT    NOT NULL, -- JSON object: the values scored and their times
    computed_ms     INTEGER NOT NULL
);
-- One score per patient and time: recomputing for the same time replaces it.
CREATE UNIQUE INDEX news2_score_by_patient_time ON news2_score (patient_key, time_ms);
