-- Certificates Wardline's device CA issued, each identifying one device over mutual TLS
-- beside (or instead of) its secret. A certificate is known by the SHA-256 of its DER
-- encoding; the device's status still decides, so revoking the device refuses every
-- certificate it holds at once.
CREATE TABLE device_certificate (
    fingerprint  BLOB    PRIMARY KEY,
    device_key   INTEGER NOT NULL REFERENCES device (key),
    serial       TEXT    NOT NULL,
    issued_ms    INTEGER NOT NULL,
    not_after_ms INTEGER NOT NULL
);
CREATE INDEX device_certificate_device ON device_certificate (device_key);
