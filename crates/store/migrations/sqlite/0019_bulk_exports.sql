-- Wardline schema, version 19: bulk exports (FHIR Bulk Data Access). A job is kept from
-- its request until its files expire; a worker claims it under a lease numbered by
-- `attempt`, so a claim that ran out can record nothing more.
CREATE TABLE bulk_export (
    key         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    -- Who asked (`user:<id>`, `client:<id>`): only they follow, cancel and download it.
    requester   TEXT    NOT NULL,
    request     TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    -- JSON arrays: the resource types to write, and whose records.
    types       TEXT    NOT NULL,
    since_ms    INTEGER,
    patients    TEXT    NOT NULL,
    status      TEXT    NOT NULL
                CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    attempt     INTEGER NOT NULL DEFAULT 0,
    progress    TEXT,
    lease_ms    INTEGER,
    -- JSON array of the files written: resource type, name, lines.
    outputs     TEXT    NOT NULL DEFAULT '[]',
    error       TEXT,
    finished_ms INTEGER,
    expires_ms  INTEGER
);
CREATE INDEX bulk_export_by_status ON bulk_export (status, created_ms);
CREATE INDEX bulk_export_by_requester ON bulk_export (requester, status);
