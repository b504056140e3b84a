//! A Nightscout site over real sockets: an uploader posts as xDrip+ does, a real
//! Nightscout client (Python's `py-nightscout`) reads it back over TLS, and the running
//! alarm engine raises a care plan's alarm from a Nightscout-sent glucose exactly as from
//! a native CGM's.

use std::time::Duration;

use serde_json::{Value, json};

use crate::alarms::{add_rule, assign_program, glucose_above};
use crate::support::TestServer;

fn sha1_hex(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What py-nightscout reads from the site: SGVs, treatments, profiles and status.
const CLIENT: &str = r#"
import asyncio, json, sys
from py_nightscout import Api

async def main(url, secret):
    api = Api(url, api_secret=secret)
    sgvs = await api.get_sgvs()
    treatments = await api.get_treatments()
    profiles = await api.get_profiles()
    status = await api.get_server_status()
    print(json.dumps({
        "sgvs": [{"sgv": s.sgv, "direction": s.direction, "delta": s.delta,
                  "date": s.date.isoformat()} for s in sgvs],
        "treatments": [{"eventType": t.eventType, "insulin": t.insulin, "carbs": t.carbs}
                       for t in treatments],
        "profiles": [getattr(d, "defaultProfile", None) for d in profiles.profile_definitions],
        "status": {"status": status.status, "name": status.name,
                   "units": (status.settings or {}).get("units")},
    }))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nightscout_client_reads_what_an_uploader_sent_and_the_rules_see_it() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let site = server
        .post_ok(
            &ward.clinician,
            &format!("/api/v1/patients/{}/nightscout-sites", ward.patient_id),
            json!({}),
        )
        .await;
    let url = site["url"].as_str().expect("url").to_owned();
    let secret = site["api_secret"].as_str().expect("secret").to_owned();
    assert!(url.starts_with("https://"), "{url}");
    let hash = sha1_hex(&secret);

    // An xDrip+ back-fill of the hour up to five minutes ago, then a treatment and a
    // profile as Loop sends them. (The live reading below comes five minutes after the
    // last: entries within one second are one reading, as they are one on a Nightscout
    // site, so a live reading in the back-fill's last second would be its duplicate.)
    let now = chrono::Utc::now().timestamp_millis() / 1000 * 1000;
    let entries: Vec<Value> = (0..12)
        .map(|i| {
            json!({"type": "sgv", "sgv": 110 + i * 2, "date": now - (12 - i) * 300_000,
                   "direction": "FortyFiveUp", "delta": 2, "device": "xDrip-DexcomG7"})
        })
        .collect();
    for (path, body) in [
        ("entries", Value::Array(entries)),
        (
            "treatments",
            json!({"eventType": "Meal Bolus", "insulin": 4.5, "carbs": 40,
                   "created_at": chrono::Utc::now().to_rfc3339(), "syncIdentifier": "loop-1"}),
        ),
        (
            "profile",
            json!({"defaultProfile": "Default", "startDate": "2026-01-01T00:00:00.000Z",
                   "store": {"Default": {"dia": 5, "timezone": "UTC", "units": "mg/dl",
                   "carbratio": [{"time": "00:00", "value": 10, "timeAsSeconds": 0}],
                   "sens": [{"time": "00:00", "value": 40, "timeAsSeconds": 0}],
                   "basal": [{"time": "00:00", "value": 0.8, "timeAsSeconds": 0}],
                   "target_low": [{"time": "00:00", "value": 90, "timeAsSeconds": 0}],
                   "target_high": [{"time": "00:00", "value": 140, "timeAsSeconds": 0}]}}}),
        ),
    ] {
        let response = server
            .client
            .post(format!("{url}/api/v1/{path}"))
            .header("api-secret", &hash)
            .json(&body)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), 200, "{path}");
    }

    let ca = server.data.path().join("nightscout-client-ca.pem");
    std::fs::write(&ca, server.ca_pem()).expect("CA file");
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(&url)
        .arg(&secret)
        .env("SSL_CERT_FILE", &ca)
        .output()
        .await
        .expect("python3 with py-nightscout (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "py-nightscout failed (is it installed? python3 -m pip install py-nightscout): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&output.stdout).expect("JSON from the client");
    let sgvs = read["sgvs"].as_array().expect("sgvs");
    assert_eq!(sgvs.len(), 10, "Nightscout's default count: {read}");
    assert_eq!(sgvs[0]["sgv"], 132, "newest first: {read}");
    assert_eq!(sgvs[0]["direction"], "FortyFiveUp");
    assert_eq!(read["treatments"][0]["insulin"], 4.5);
    assert_eq!(read["treatments"][0]["carbs"], 40);
    assert_eq!(read["status"]["status"], "ok");
    assert_eq!(read["status"]["units"], "mg/dl");
    assert_eq!(read["profiles"], json!(["Default"]));

    // The wrong secret gets nothing.
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(&url)
        .arg("not the secret at all")
        .env("SSL_CERT_FILE", &ca)
        .output()
        .await
        .expect("python3");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A care plan's rule raises its alarm from the uploader's reading, and not from a
    // back-fill of readings two days old (an excursion that is over).
    assign_program(&server, &ward.clinician, &ward.patient_id, "diabetes").await;
    add_rule(&server, &ward, glucose_above("ns-high", 300.0)).await;
    let two_days_ago = chrono::Utc::now().timestamp_millis() - 2 * 86_400 * 1000;
    let backfill: Vec<Value> = (0..6)
        .map(|i| json!({"type": "sgv", "sgv": 351, "date": two_days_ago + i * 300_000}))
        .collect();
    let response = server
        .client
        .post(format!("{url}/api/v1/entries"))
        .header("api-secret", &hash)
        .json(&backfill)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 200);
    let response = server
        .client
        .post(format!("{url}/api/v1/entries"))
        .header("api-secret", &hash)
        .json(
            &json!({"type": "sgv", "sgv": 350, "date": chrono::Utc::now().timestamp_millis(),
                      "direction": "DoubleUp"}),
        )
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 200);
    let alarms_path = format!("/api/v1/patients/{}/alarms", ward.patient_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let alarms: Value = server
            .get(&ward.clinician, &alarms_path)
            .await
            .json()
            .await
            .expect("alarms");
        let raised = alarms["alarms"].as_array().is_some_and(|alarms| {
            alarms
                .iter()
                .any(|alarm| alarm.to_string().contains("ns-high"))
        });
        if raised {
            let text = alarms.to_string();
            assert!(
                text.contains("350 mg/dL"),
                "raised by the live reading: {text}"
            );
            assert!(!text.contains("351 mg/dL"), "not by the back-fill: {text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alarm from the uploaded reading: {alarms}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
