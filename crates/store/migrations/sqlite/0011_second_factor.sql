-- A second factor: an authenticator app's TOTP secret, sealed by the service with a key
-- kept outside the data folder (the database never holds it in the clear). A secret being
-- set up is not asked for at login until its first code is confirmed. The step of the
-- last code accepted is kept so that a code is good once (RFC 6238, section 5.2).
ALTER TABLE app_user ADD COLUMN totp_sealed BLOB;
ALTER TABLE app_user ADD COLUMN totp_confirmed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE app_user ADD COLUMN totp_last_step INTEGER;
