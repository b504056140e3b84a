-- A password that its holder did not choose (generated at creation or bootstrap, reset by
-- an administrator, or typed by one for someone else) must be changed at the first login
-- before the account may do anything else.
ALTER TABLE app_user ADD COLUMN password_change_required INTEGER NOT NULL DEFAULT 0;

-- When the session's person last acted. The idle timeout counts from here; it is
-- written at most about once a minute per session, not on every request.
ALTER TABLE session ADD COLUMN active_ms INTEGER;
UPDATE session SET active_ms = created_ms;
