//! A device's message body, as MQTT and HTTPS ingest both parse it.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use wardline_domain::payload::{PayloadLimits, parse_device_message};

fuzz_target!(|bytes: &[u8]| {
    // A fixed clock, so that a failing input fails again when it is replayed.
    let now = Utc
        .with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
        .single()
        .expect("a valid time");
    let _ = parse_device_message(bytes, now, &PayloadLimits::default());
});
