-- Wardline schema, version 18: the outbox also carries reminders of video visits, mailed
-- to the patient's contact address (not through a care team's channel, and about no
-- alarm). SQLite cannot make a column nullable in place, so the table is rebuilt with
-- the same rows and keys.
CREATE TABLE notification_v18 (
    key             INTEGER PRIMARY KEY,
    idempotency_key TEXT    NOT NULL UNIQUE,
    channel_key     INTEGER REFERENCES notification_channel (key),
    alarm_key       INTEGER REFERENCES alarm (key),
    -- A visit's reminder: the visit, and the address it is mailed to.
    visit_key       INTEGER REFERENCES visit (key),
    email_to        TEXT,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL
                    CHECK (status IN ('pending', 'delivered', 'dead', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_attempt_ms INTEGER,
    delivered_ms    INTEGER,
    last_error      TEXT,
    -- Either an alarm's notification through a channel, or a visit's reminder to an address.
    CHECK ((channel_key IS NOT NULL AND alarm_key IS NOT NULL AND visit_key IS NULL AND email_to IS NULL)
        OR (channel_key IS NULL AND alarm_key IS NULL AND visit_key IS NOT NULL AND email_to IS NOT NULL))
);
INSERT INTO notification_v18 (key, idempotency_key, channel_key, alarm_key, payload, status,
                              attempts, created_ms, next_attempt_ms, last_attempt_ms,
                              delivered_ms, last_error)
    SELECT key, idempotency_key, channel_key, alarm_key, payload, status, attempts,
           created_ms, next_attempt_ms, last_attempt_ms, delivered_ms, last_error
    FROM notification;
DROP TABLE notification;
ALTER TABLE notification_v18 RENAME TO notification;
CREATE INDEX notification_pending ON notification (status, next_attempt_ms);
CREATE INDEX notification_by_alarm ON notification (alarm_key);
CREATE INDEX notification_by_visit ON notification (visit_key);

-- Where a person wants mail from Wardline about themselves (a patient's visit
-- reminders). Kept apart from the account: it is contact data, set by its person.
CREATE TABLE contact_email (
    user_key   INTEGER PRIMARY KEY REFERENCES app_user (key),
    email      TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL
);
