-- Wardline schema, version 7: the time of each device's newest stored reading or waveform
-- chunk, kept by ingest, so that a device's assignment is never backdated over readings
-- already stored for a patient (which would end that patient's assignment early and send
-- the device's late readings of that time to the other patient).
ALTER TABLE device ADD COLUMN last_reading_ms INTEGER;
UPDATE device SET last_reading_ms = (
    SELECT max(t) FROM (
        SELECT max(effective_ms) AS t FROM observation
        WHERE device_key = device.key AND derived = 0
        UNION ALL
        SELECT max(end_ms) FROM waveform_chunk WHERE device_key = device.key
    )
);
