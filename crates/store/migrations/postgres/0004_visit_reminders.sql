-- The outbox also carries reminders of video visits, mailed to the patient's contact
-- address (not through a care team's channel, and about no alarm).
ALTER TABLE notification ALTER COLUMN channel_key DROP NOT NULL;
ALTER TABLE notification ALTER COLUMN alarm_key DROP NOT NULL;
ALTER TABLE notification ADD COLUMN visit_key bigint REFERENCES visit (key);
ALTER TABLE notification ADD COLUMN email_to text;
-- Either an alarm's notification through a channel, or a visit's reminder to an address.
ALTER TABLE notification ADD CONSTRAINT notification_alarm_or_reminder CHECK (
    (channel_key IS NOT NULL AND alarm_key IS NOT NULL AND visit_key IS NULL AND email_to IS NULL)
    OR (channel_key IS NULL AND alarm_key IS NULL AND visit_key IS NOT NULL AND email_to IS NOT NULL));
CREATE INDEX notification_by_visit ON notification (visit_key);

-- Where a person wants mail from Wardline about themselves (a patient's visit
-- reminders). Kept apart from the account: it is contact data, set by its person.
CREATE TABLE contact_email (
    user_key   bigint PRIMARY KEY REFERENCES app_user (key),
    email      text   NOT NULL,
    updated_ms bigint NOT NULL
);
