//! What an uploader app sends to a Nightscout site: an upload body, read as each
//! collection's documents, and a read's query string.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use wardline_domain::nightscout::query::parse_query;
use wardline_domain::nightscout::{Collection, UploadLimits, parse_upload};

fuzz_target!(|bytes: &[u8]| {
    // A fixed clock, so that a failing input fails again when it is replayed.
    let now = Utc
        .with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
        .single()
        .expect("a valid time");
    for collection in Collection::ALL {
        if let Ok(documents) = parse_upload(collection, bytes, "0011223344556677", now, &UploadLimits::default()) {
            for document in documents.into_iter().flatten() {
                let _ = document.reading();
            }
        }
        let text = String::from_utf8_lossy(bytes);
        let pairs: Vec<(String, String)> = text
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (pair.to_owned(), String::new()),
            })
            .collect();
        if let Ok(query) = parse_query(collection, &pairs, None)
            && let Ok(serde_json::Value::Object(document)) = serde_json::from_slice(bytes)
        {
            let _ = query.matches(&document);
        }
    }
});
