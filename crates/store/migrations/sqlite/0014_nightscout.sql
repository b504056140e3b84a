-- Nightscout sites: a patient's uploader apps write to a site URL with an API secret.
-- The credential is a device of kind nightscout_uploader assigned to the patient;
-- revoking the device ends the site. Uploaders send the SHA-1 or SHA-512 of the secret in
-- hexadecimal, so the SHA-256 of each of those two texts is kept (the secret has 256
-- random bits: a fast hash is enough) and never the secret.
CREATE TABLE nightscout_site (
    key          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    patient_key  INTEGER NOT NULL REFERENCES patient (key),
    device_key   INTEGER NOT NULL UNIQUE REFERENCES device (key),
    sha1_check   BLOB    NOT NULL,
    sha512_check BLOB    NOT NULL,
    created_ms   INTEGER NOT NULL
);
CREATE INDEX nightscout_site_by_patient ON nightscout_site (patient_key);

-- The documents uploaders sent (entries, treatments, device status, profiles),
-- normalised, one per de-duplication key and patient. Glucose entries are also stored
-- as observations; the document keeps what an observation does not (trend arrow, noise,
-- the uploader's own fields) so that the apps read back what they wrote.
CREATE TABLE nightscout_document (
    key          INTEGER PRIMARY KEY,
    patient_key  INTEGER NOT NULL REFERENCES patient (key),
    site_key     INTEGER NOT NULL REFERENCES nightscout_site (key),
    collection   TEXT    NOT NULL CHECK (collection IN ('entries', 'treatments', 'devicestatus', 'profile')),
    id           TEXT    NOT NULL,
    dedup_key    TEXT    NOT NULL,
    time_ms      INTEGER NOT NULL,
    kind         TEXT,
    body         TEXT    NOT NULL,
    received_ms  INTEGER NOT NULL,
    UNIQUE (patient_key, collection, dedup_key),
    UNIQUE (patient_key, collection, id)
);
CREATE INDEX nightscout_document_by_time ON nightscout_document (patient_key, collection, time_ms, key);
