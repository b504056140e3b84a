-- Emergency ("break-the-glass") access: a clinician or nurse not on a patient's care team
-- opens time-limited read access with a mandatory reason; every such access waits for an
-- administrator's review. Rows are never deleted or rewritten but for the review.
CREATE TABLE emergency_access (
    key          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    user_key     INTEGER NOT NULL REFERENCES app_user (key),
    patient_key  INTEGER NOT NULL REFERENCES patient (key),
    reason       TEXT    NOT NULL,
    opened_ms    INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    reviewed_ms  INTEGER,
    reviewer_key INTEGER REFERENCES app_user (key),
    review_note  TEXT,
    CHECK (expires_ms > opened_ms),
    CHECK ((reviewed_ms IS NULL) = (reviewer_key IS NULL))
);
CREATE INDEX emergency_access_by_user_patient ON emergency_access (user_key, patient_key, expires_ms);
CREATE INDEX emergency_access_unreviewed ON emergency_access (opened_ms) WHERE reviewed_ms IS NULL;

-- Only the review may change a row, once.
CREATE TRIGGER emergency_access_kept BEFORE UPDATE ON emergency_access
WHEN OLD.reviewed_ms IS NOT NULL
  OR NEW.id IS NOT OLD.id OR NEW.user_key IS NOT OLD.user_key
  OR NEW.patient_key IS NOT OLD.patient_key OR NEW.reason IS NOT OLD.reason
  OR NEW.opened_ms IS NOT OLD.opened_ms OR NEW.expires_ms IS NOT OLD.expires_ms
BEGIN
    SELECT RAISE(ABORT, 'emergency access is append-only but for its one review');
END;
CREATE TRIGGER emergency_access_not_deleted BEFORE DELETE ON emergency_access
BEGIN
    SELECT RAISE(ABORT, 'emergency access is never deleted');
END;
