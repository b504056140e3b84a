-- Failed logins, for the throttle: in the database so that every process throttles the
-- same account and address together. Usernames are kept lower-cased; records older
-- than the throttle looks back are deleted as new ones come.
CREATE TABLE login_failure (
    username           TEXT    NOT NULL,
    address            TEXT    NOT NULL,
    at_ms              INTEGER NOT NULL,
    counts_for_account INTEGER NOT NULL DEFAULT 1 CHECK (counts_for_account IN (0, 1))
);
CREATE INDEX login_failure_account ON login_failure (username, at_ms);
CREATE INDEX login_failure_age ON login_failure (at_ms);
