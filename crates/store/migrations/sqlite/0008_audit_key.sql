-- From chain version 3 the audit chain is linked with a key kept outside the data folder.
-- The database remembers which key by its fingerprint (an HMAC of a fixed text, which
-- does not reveal the key), so that a missing or different key is refused when the
-- store opens instead of splitting the chain in two.
CREATE TABLE audit_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint BLOB NOT NULL
);
