-- Failed logins, for the throttle: in the database so that every worker throttles the
-- same account and address together. Usernames are kept lower-cased; records older
-- than the throttle looks back are deleted as new ones come.
CREATE TABLE login_failure (
    username           text    NOT NULL,
    address            text    NOT NULL,
    at_ms              bigint  NOT NULL,
    counts_for_account boolean NOT NULL DEFAULT true
);
CREATE INDEX login_failure_account ON login_failure (username, at_ms);
CREATE INDEX login_failure_age ON login_failure (at_ms);
