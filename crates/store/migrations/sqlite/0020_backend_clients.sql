-- Wardline schema, version 20: backend clients (SMART Backend Services). A hospital's
-- system is registered with its public keys (a JSON Web Key Set) and the care teams it
-- serves; the assertions it signs are kept until they expire, so that none is taken
-- twice; its access tokens live minutes and are kept as their SHA-256 only.
CREATE TABLE backend_client (
    key        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    jwks       TEXT    NOT NULL,
    -- JSON array of care team ids: whose patients it may read.
    care_teams TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT,
    revoked_ms INTEGER
);
CREATE TABLE client_assertion (
    client_key INTEGER NOT NULL REFERENCES backend_client (key),
    jti        TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (client_key, jti)
) WITHOUT ROWID;
CREATE INDEX client_assertion_by_expiry ON client_assertion (expires_ms);
CREATE TABLE client_token (
    token_hash BLOB    PRIMARY KEY,
    client_key INTEGER NOT NULL REFERENCES backend_client (key),
    scopes     TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX client_token_by_expiry ON client_token (expires_ms);
