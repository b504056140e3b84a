-- Mapping templates: per device model, versions of a pair of iomt-fhir templates kept as
-- sent. At most one version of a model is in force (the partial unique index).
CREATE TABLE mapping_template (
    key             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    model           TEXT    NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    device_template TEXT    NOT NULL,
    fhir_template   TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('draft', 'in_force', 'retired')),
    created_ms      INTEGER NOT NULL,
    created_by      TEXT,
    in_force_ms     INTEGER,
    retired_ms      INTEGER,
    UNIQUE (model, version)
);
CREATE UNIQUE INDEX mapping_template_in_force ON mapping_template (model) WHERE status = 'in_force';
