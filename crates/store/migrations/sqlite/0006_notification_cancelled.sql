-- Wardline schema, version 6: a notification can be cancelled, when its channel is
-- removed while the notification waits for delivery. SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt with the same rows and keys.
CREATE TABLE notification_v6 (
    key             INTEGER PRIMARY KEY,
    idempotency_key TEXT    NOT NULL UNIQUE,
    channel_key     INTEGER NOT NULL REFERENCES notification_channel (key),
    alarm_key       INTEGER NOT NULL REFERENCES alarm (key),
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL
                    CHECK (status IN ('pending', 'delivered', 'dead', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_attempt_ms INTEGER,
    delivered_ms    INTEGER,
    last_error      TEXT
);
INSERT INTO notification_v6 (key, idempotency_key, channel_key, alarm_key, payload, status,
                             attempts, created_ms, next_attempt_ms, last_attempt_ms,
                             delivered_ms, last_error)
    SELECT key, idempotency_key, channel_key, alarm_key, payload, status, attempts,
           created_ms, next_attempt_ms, last_attempt_ms, delivered_ms, last_error
    FROM notification;
DROP TABLE notification;
ALTER TABLE notification_v6 RENAME TO notification;
CREATE INDEX notification_pending ON notification (status, next_attempt_ms);
CREATE INDEX notification_by_alarm ON notification (alarm_key);

-- Deliveries still pending for channels removed before this version would have been
-- retried for up to a day: they are cancelled now.
UPDATE notification SET status = 'cancelled', last_error = 'channel removed'
WHERE status = 'pending'
  AND channel_key IN (SELECT key FROM notification_channel WHERE removed_ms IS NOT NULL);
