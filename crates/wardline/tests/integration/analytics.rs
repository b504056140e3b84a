//! What Wardline derives, end to end: real ECG records posted as waveform chunks become
//! heart-rate observations and rhythm events, vital signs become a NEWS2 result, and
//! CGM readings become a report that only the care team can read.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};
use wardline_ecg::wfdb::{Header, decode_format_212_signal};

use crate::support::*;

/// `$WARDLINE_SHARED_DATA`, else `<crate>/../../../shared/data`.
fn shared_data() -> PathBuf {
    let dir = std::env::var_os("WARDLINE_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    assert!(
        dir.join("ecg/mitdb").is_dir(),
        "the shared data folder was not found: looked for {}. Set WARDLINE_SHARED_DATA to \
         the folder that holds ecg/mitdb (e.g. $PWD/../shared/data from the repository root).",
        dir.join("ecg/mitdb").display()
    );
    dir
}

/// Lead MLII of a MIT-BIH record: samples, rate, gain and baseline.
fn mlii(record: &str) -> (Vec<i32>, f64, f64, i32) {
    let folder = shared_data().join("ecg/mitdb");
    let header = Header::parse(
        &std::fs::read_to_string(folder.join(format!("{record}.hea"))).expect("header"),
    )
    .expect("parse header");
    let lead = header.find_signal("MLII").expect("MLII lead");
    let bytes = std::fs::read(folder.join(format!("{record}.dat"))).expect("signal file");
    let samples =
        decode_format_212_signal(&bytes, header.signals.len(), lead).expect("decode signal");
    let spec = &header.signals[lead];
    (samples, header.sampling_rate, spec.gain, spec.baseline)
}

/// A device enrolled for the ward's patient, assigned from a day ago so that it may send
/// readings from the past hours.
async fn backdated_device(server: &TestServer, ward: &Ward, kind: &str) -> EnrolledDevice {
    let device = server.enrol(&ward.admin, kind, None).await;
    server
        .post_ok(
            &ward.admin,
            &format!("/api/v1/devices/{}/assignments", device.id),
            json!({"patient_id": ward.patient_id, "from": Utc::now() - TimeDelta::days(1)}),
        )
        .await;
    device
}

/// Posts `seconds` of a record, from `offset_s` into it, as 10-s chunks starting at `start`.
async fn post_ecg(
    server: &TestServer,
    device: &EnrolledDevice,
    record: &str,
    offset_s: usize,
    seconds: usize,
    start: DateTime<Utc>,
) {
    let (samples, rate, gain, baseline) = mlii(record);
    let per_chunk = (rate as usize) * 10;
    let first = offset_s * rate as usize;
    let segment = &samples[first..first + seconds * rate as usize];
    for (index, chunk) in segment.chunks(per_chunk).enumerate() {
        let chunk_start = start + TimeDelta::seconds(10 * index as i64);
        server
            .device_post(
                device,
                json!({"v": 1, "waveform": {
                "seq": index, "signal": "ecg-lead-ii", "rate_hz": rate,
                "start": chunk_start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "gain": gain, "baseline": baseline, "samples": chunk}}),
            )
            .await;
    }
}

/// Polls `check` until it gives a value or 30 s pass; analysis runs after the commit.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not appear in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecg_chunks_become_heart_rates_and_rhythm_events() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let sinus = backdated_device(&server, &ward, "ecg").await;
    let fibrillating = backdated_device(&server, &ward, "ecg").await;
    let start = Utc::now() - TimeDelta::hours(2);
    // Record 100: sinus rhythm at about 75/min. Record 201 opens with 6 min of AF.
    post_ecg(&server, &sinus, "100", 0, 70, start).await;
    post_ecg(
        &server,
        &fibrillating,
        "201",
        0,
        150,
        start + TimeDelta::minutes(10),
    )
    .await;

    let from = (start - TimeDelta::minutes(1)).to_rfc3339();
    let heart_rates = eventually("derived heart rates", || async {
        let rates: Vec<Value> = server
            .observations(&ward.clinician, &ward.patient_id, "8867-4")
            .await
            .into_iter()
            .filter(|observation| observation["device_id"] == json!(sinus.id))
            .collect();
        (rates.len() >= 5).then_some(rates)
    })
    .await;
    for rate in &heart_rates {
        assert_eq!(rate["derived"], json!(true));
        let bpm = rate["value"].as_f64().expect("value");
        assert!(
            (65.0..=85.0).contains(&bpm),
            "record 100 is about 75/min: {rate}"
        );
    }

    let events_path = format!(
        "/api/v1/patients/{}/rhythm-events?from={}",
        ward.patient_id,
        urlencode(&from)
    );
    let af = eventually("an AF rhythm event", || async {
        let response = server.get(&ward.clinician, &events_path).await;
        assert_eq!(response.status(), 200);
        let events: Vec<Value> = response.json().await.expect("json");
        events.into_iter().find(|event| {
            event["kind"] == json!("atrial_fibrillation")
                && event["device_id"] == json!(fibrillating.id)
        })
    })
    .await;
    let onset: DateTime<Utc> = af["onset"].as_str().expect("onset").parse().expect("time");
    let end: DateTime<Utc> = af["end"].as_str().expect("end").parse().expect("time");
    assert!(end - onset >= TimeDelta::seconds(30), "{af}");
    let response = server.get(&ward.clinician, &events_path).await;
    let events: Vec<Value> = response.json().await.expect("json");
    assert!(
        !events
            .iter()
            .any(|event| event["device_id"] == json!(sinus.id)
                && event["kind"] == json!("atrial_fibrillation")),
        "no AF on sinus rhythm: {events:?}"
    );
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vital_signs_give_a_partial_news2_naming_what_is_missing() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let monitor = server
        .enrol(&ward.admin, "vital_signs_monitor", Some(&ward.patient_id))
        .await;
    let time = Utc::now().to_rfc3339();
    server
        .device_post(
            &monitor,
            json!({"v": 1, "readings": [
                {"seq": 1, "code": "9279-1", "value": 22, "unit": "/min", "time": time},
                {"seq": 2, "code": "59408-5", "value": 95, "unit": "%", "time": time},
                {"seq": 3, "code": "8480-6", "value": 125, "unit": "mm[Hg]", "time": time},
                {"seq": 4, "code": "8867-4", "value": 72, "unit": "/min", "time": time},
                {"seq": 5, "code": "8310-5", "value": 98.6, "unit": "[degF]", "time": time}
            ]}),
        )
        .await;
    let latest_path = format!("/api/v1/patients/{}/news2/latest", ward.patient_id);
    let latest: Value = eventually("a NEWS2 result", || async {
        let response = server.get(&ward.clinician, &latest_path).await;
        (response.status() == 200).then_some(())?;
        response.json().await.ok()
    })
    .await;
    assert_eq!(latest["complete"], json!(false), "{latest}");
    assert_eq!(latest["missing"], json!(["air_or_oxygen", "consciousness"]));
    // RR 22 scores 2, SpO2 95 % 1, the rest 0: at least 3, with no total claimed.
    assert_eq!(latest["total"], json!(3));
    assert_eq!(latest["risk"], json!("low"));
    assert_eq!(latest["sub_scores"]["respiration_rate"], json!(2));
    assert_eq!(latest["sub_scores"]["consciousness"], Value::Null);
    let listed = server
        .get(
            &ward.clinician,
            &format!("/api/v1/patients/{}/news2", ward.patient_id),
        )
        .await;
    assert_eq!(listed.status(), 200);
    let listed: Vec<Value> = listed.json().await.expect("json");
    assert_eq!(listed.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cgm_report_is_for_the_care_team_only() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let cgm = backdated_device(&server, &ward, "cgm").await;
    let start = Utc::now() - TimeDelta::hours(20);
    // 20 hours every 5 minutes: a daily swing from 60 to 220 mg/dL.
    let readings: Vec<Value> = (0..240)
        .map(|i| {
            let phase = f64::from(i) / 240.0 * std::f64::consts::TAU;
            json!({"seq": i, "code": "99504-3", "value": (140.0 + 80.0 * phase.sin()).round(),
                   "unit": "mg/dL", "time": (start + TimeDelta::minutes(5 * i64::from(i))).to_rfc3339()})
        })
        .collect();
    server
        .device_post(&cgm, json!({"v": 1, "readings": readings}))
        .await;
    let path = format!(
        "/api/v1/patients/{}/reports/cgm?from={}&utc_offset=%2B01:00",
        ward.patient_id,
        urlencode(&(start - TimeDelta::hours(1)).to_rfc3339())
    );
    let response = server.get(&ward.clinician, &path).await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.expect("json");
    assert_eq!(report["readings"], json!(240));
    assert_eq!(report["sensor_interval_s"], json!(300));
    let metrics = &report["metrics"];
    assert_eq!(metrics["n_valid"], json!(240));
    let tir = metrics["tir_70_180_pct"].as_f64().expect("TIR");
    let tbr = metrics["tbr_lt70_pct"].as_f64().expect("TBR");
    let tar = metrics["tar_gt180_pct"].as_f64().expect("TAR");
    assert!((tir + tbr + tar - 100.0).abs() < 1e-6, "{metrics}");
    assert!(tbr > 0.0 && tar > 0.0, "{metrics}");
    assert!(
        !report["episodes"]["hypo_level1"]
            .as_array()
            .expect("episodes")
            .is_empty()
    );
    assert_eq!(report["agp"]["bins"].as_array().expect("bins").len(), 96);

    // A clinician outside the care team is refused, and the refusal is audited.
    let outsider = server
        .post_ok(
            &ward.admin,
            "/api/v1/users",
            json!({"username": "dr-elsewhere", "display_name": "Dr Elsewhere",
                   "role": "clinician", "password": CLINICIAN_PASSWORD,
                   "password_change_required": false}),
        )
        .await;
    let outsider_id = outsider["user"]["id"].as_str().expect("id").to_owned();
    let outsider = server.login("dr-elsewhere", CLINICIAN_PASSWORD).await;
    let refused = server.get(&outsider, &path).await;
    assert_eq!(refused.status(), 403);
    let audit: Vec<Value> = server
        .get(
            &ward.admin,
            &format!("/api/v1/audit?user_id={outsider_id}&action=cgm_report.read"),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["outcome"], json!("denied"));
    assert_eq!(audit[0]["patient_id"], json!(ward.patient_id));
    // Too long a period is refused before anything is read.
    let too_long = server
        .get(
            &ward.clinician,
            &format!(
                "/api/v1/patients/{}/reports/cgm?from=2020-01-01T00:00:00Z",
                ward.patient_id
            ),
        )
        .await;
    assert_eq!(too_long.status(), 400);
}

/// A recomputed NEWS2 is pushed on the patient's live stream, so screens never show a
/// score older than the vitals beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recomputed_news2_is_pushed_on_the_live_stream() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let mut stream = server
        .events(
            &ward.clinician,
            &format!("/api/v1/patients/{}/observations/stream", ward.patient_id),
        )
        .await;
    let oximeter = server
        .enrol(&ward.admin, "pulse_oximeter", Some(&ward.patient_id))
        .await;
    let time = Utc::now().to_rfc3339();
    server
        .device_post(
            &oximeter,
            json!({"v": 1, "readings": [
                {"seq": 1, "code": "59408-5", "value": 91, "unit": "%", "time": time},
                {"seq": 2, "code": "8867-4", "value": 72, "unit": "/min", "time": time}
            ]}),
        )
        .await;
    let score = stream.next("news2", Duration::from_secs(15)).await;
    // SpO2 91 % on scale 1 scores 3 on its own.
    assert_eq!(score["complete"], json!(false), "{score}");
    assert_eq!(score["total"], json!(3), "{score}");
    assert_eq!(score["any_parameter_3"], json!(true), "{score}");
}

/// A long chart's summary: per bucket the count, lowest, highest and mean, for the care
/// team only, with precise errors for windows and buckets out of bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_are_summarised_per_bucket_for_long_charts() {
    let server = TestServer::start().await;
    let ward = server.ward().await;
    let oximeter = backdated_device(&server, &ward, "pulse_oximeter").await;
    // Whole hours, so that buckets line up with the readings: two hours, a reading a minute.
    let start = Utc::now()
        .duration_trunc(TimeDelta::hours(1))
        .expect("truncate")
        - TimeDelta::hours(3);
    let readings: Vec<Value> = (0..120)
        .map(|i| {
            let value = if i == 30 { 85 } else { 94 + i % 4 };
            json!({"seq": i, "code": "59408-5", "value": value, "unit": "%",
                   "time": (start + TimeDelta::minutes(i)).to_rfc3339()})
        })
        .collect();
    server
        .device_post(&oximeter, json!({"v": 1, "readings": readings}))
        .await;
    let path = |bucket_secs: i64, to: DateTime<Utc>| {
        format!(
            "/api/v1/patients/{}/observations/summary?code=59408-5&from={}&to={}&bucket_secs={bucket_secs}",
            ward.patient_id,
            urlencode(&start.to_rfc3339()),
            urlencode(&to.to_rfc3339())
        )
    };
    let response = server
        .get(&ward.clinician, &path(3600, start + TimeDelta::hours(3)))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["unit"], json!("%"));
    let buckets = body["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 2, "{body}");
    assert_eq!(buckets[0]["count"], json!(60));
    assert_eq!(buckets[0]["min"], json!(85.0), "the dip is kept");
    assert_eq!(buckets[0]["max"], json!(97.0));
    assert_eq!(buckets[1]["min"], json!(94.0));
    // 60 readings cycling 94..=97 (15 of each): mean 95.5.
    assert_eq!(buckets[1]["mean"], json!(95.5));
    let first_start: DateTime<Utc> = buckets[0]["start"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .expect("start");
    assert_eq!(first_start, start);

    for (bad, field) in [
        (path(0, start + TimeDelta::hours(3)), "bucket_secs"),
        (path(60, start + TimeDelta::days(30)), "bucket_secs"),
        (path(86_400, start + TimeDelta::days(400)), "from"),
    ] {
        let response = server.get(&ward.clinician, &bad).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["field"], json!(field), "{body}");
    }
    let outsider = server
        .post_ok(&ward.admin, "/api/v1/users", json!({"username": "outsider", "display_name": "Dr O", "role": "clinician", "password": CLINICIAN_PASSWORD, "password_change_required": false}))
        .await;
    assert!(outsider["user"]["id"].is_string());
    let outsider = server.login("outsider", CLINICIAN_PASSWORD).await;
    let refused = server
        .get(&outsider, &path(3600, start + TimeDelta::hours(3)))
        .await;
    assert_eq!(refused.status(), 403);
}
