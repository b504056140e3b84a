-- Specialists: clinicians outside a patient's care teams who see only what the patient
-- shares with them. SQLite cannot change a CHECK in place, so the account table is
-- rebuilt with the new role (the migration runs with foreign keys off and checks them
-- before it commits).
CREATE TABLE app_user_v13 (
    key                      INTEGER PRIMARY KEY,
    id                       TEXT    NOT NULL UNIQUE,
    username                 TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    display_name             TEXT    NOT NULL,
    role                     TEXT    NOT NULL CHECK (role IN ('admin', 'clinician', 'nurse', 'patient', 'specialist')),
    password_hash            TEXT    NOT NULL,
    patient_key              INTEGER REFERENCES patient (key),
    disabled                 INTEGER NOT NULL DEFAULT 0,
    created_ms               INTEGER NOT NULL,
    password_change_required INTEGER NOT NULL DEFAULT 0,
    totp_sealed              BLOB,
    totp_confirmed           INTEGER NOT NULL DEFAULT 0,
    totp_last_step           INTEGER,
    -- A patient account is always linked to its own record, and only a patient account is.
    CHECK ((role = 'patient') = (patient_key IS NOT NULL))
);
INSERT INTO app_user_v13 (key, id, username, display_name, role, password_hash, patient_key,
                          disabled, created_ms, password_change_required, totp_sealed,
                          totp_confirmed, totp_last_step)
SELECT key, id, username, display_name, role, password_hash, patient_key, disabled,
       created_ms, password_change_required, totp_sealed, totp_confirmed, totp_last_step
FROM app_user;
DROP TABLE app_user;
ALTER TABLE app_user_v13 RENAME TO app_user;

-- A patient's share of part of their record with someone outside their care teams: a
-- specialist's account, or a link with a passcode for someone without one. Consent
-- recorded as data (who consented, when, to what and for how long). Never deleted;
-- revoking sets revoked_ms.
CREATE TABLE share (
    key            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    patient_key    INTEGER NOT NULL REFERENCES patient (key),
    grantee_key    INTEGER REFERENCES app_user (key),
    -- A link: the SHA-256 of its token (256 random bits), the Argon2id hash of its
    -- passcode, wrong passcodes so far, whether it opens once, how often it opened, and
    -- when it was disabled for too many wrong passcodes.
    link_token_hash   BLOB UNIQUE,
    passcode_hash     TEXT,
    passcode_failures INTEGER NOT NULL DEFAULT 0,
    single_use        INTEGER NOT NULL DEFAULT 0,
    opened_count      INTEGER NOT NULL DEFAULT 0,
    disabled_ms       INTEGER,
    -- Who consented (the patient's own account) and when; none yet for a referral the
    -- care team proposed and the patient has not accepted, which opens nothing.
    consented_by   INTEGER REFERENCES app_user (key),
    accepted_ms    INTEGER,
    -- The care team member who proposed it (a referral), if the patient did not.
    proposed_by    INTEGER REFERENCES app_user (key),
    created_ms     INTEGER NOT NULL,
    -- Comma-separated categories: glucose, ecg, vital_signs, alarms, care_plan.
    categories     TEXT    NOT NULL,
    data_from_ms   INTEGER NOT NULL,
    data_to_ms     INTEGER NOT NULL,
    expires_ms     INTEGER NOT NULL,
    message        TEXT,
    revoked_ms     INTEGER,
    -- When the share's end by expiry was written to the audit trail.
    expiry_audited_ms INTEGER,
    CHECK (data_from_ms < data_to_ms),
    -- A share is for a person or by a link, never both.
    CHECK ((grantee_key IS NULL) = (link_token_hash IS NOT NULL)),
    CHECK ((link_token_hash IS NULL) = (passcode_hash IS NULL)),
    CHECK ((consented_by IS NULL) = (accepted_ms IS NULL))
);
CREATE INDEX share_grantee ON share (grantee_key, patient_key);

-- An invitation for a specialist to make their account: the SHA-256 of its link's token
-- (256 random bits), to whom it was sent, who sent it, until when it works, and the
-- account it made (it works once).
CREATE TABLE specialist_invitation (
    key          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    token_hash   BLOB    NOT NULL UNIQUE,
    email        TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    invited_by   INTEGER NOT NULL REFERENCES app_user (key),
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    accepted_ms  INTEGER,
    user_key     INTEGER REFERENCES app_user (key),
    CHECK ((accepted_ms IS NULL) = (user_key IS NULL))
);
CREATE INDEX share_patient ON share (patient_key);
