//! Nightscout sites: uploads and reads as the diabetes apps make them, replayed from the
//! payload shapes of Nightscout's own tests (`shared/data/nightscout/fixtures`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::common::{Hospital, hospital};

/// A site enabled for `patient` as `who`: `(url path, secret)`.
async fn enable(h: &Hospital, who: &str, patient: wardline_domain::PatientId) -> (String, String) {
    let (status, site) = h
        .as_(
            who,
            Method::POST,
            &format!("/api/v1/patients/{patient}/nightscout-sites"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{site}");
    let url = site["url"].as_str().unwrap();
    let path = url[url.find("/ns/").unwrap()..].to_owned();
    (path, site["api_secret"].as_str().unwrap().to_owned())
}

fn sha1_hex(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn sha512_hex(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA512, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// One request to a site, with `api-secret` when given.
async fn ns(
    h: &Hospital,
    method: Method,
    path: &str,
    api_secret: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(secret) = api_secret {
        request = request.header("api-secret", secret);
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    h.send(request).await
}

/// The shared data folder's Nightscout fixtures, as JSON: the `.js` modules are read
/// with Node (which the web app's tests need anyway), their objects only. They stamp
/// their documents from `Date.now()`, many ahead of it (Loop's largest batch reaches
/// three and a half days ahead); Wardline refuses readings more than 5 minutes ahead of
/// its clock, so the modules are read with Node's clock set a week back: the same shapes,
/// uploaded a week late.
fn fixture(file: &str) -> Value {
    let dir = std::env::var_os("WARDLINE_SHARED_DATA").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        std::path::PathBuf::from,
    );
    let path = dir.join("nightscout/fixtures").join(file);
    assert!(
        path.is_file(),
        "the shared data folder was not found: looked for {}. Set WARDLINE_SHARED_DATA to the \
         folder that holds nightscout/fixtures (e.g. $PWD/../shared/data from the repository root).",
        path.display()
    );
    let output = std::process::Command::new("node")
        .arg("-e")
        .arg(
            "const Real = Date; const week = 7 * 86400000; \
             class Late extends Real { constructor(...a) { if (a.length === 0) super(Real.now() - week); else super(...a); } \
               static now() { return Real.now() - week; } } \
             globalThis.Date = Late; \
             process.stdout.write(JSON.stringify(require(process.argv[1])))",
        )
        .arg(&path)
        .output()
        .expect("Node.js reads the Nightscout fixtures (the web app's tests need it too)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Readings of Ada's CGM glucose (99504-3) in the last `hours`, as her clinician sees them.
async fn ada_cgm_readings(h: &Hospital) -> Vec<Value> {
    let from = (chrono::Utc::now() - chrono::Duration::days(3650))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, page) = h
        .as_(
            "clinician",
            Method::GET,
            &format!(
                "/api/v1/patients/{}/observations?code=99504-3&limit=10000&from={from}&to={to}",
                h.ada
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["observations"].as_array().unwrap().clone()
}

/// An xDrip+ back-fill of 120 sensor readings (10 hours), sent twice: kept once, each
/// with its `_id` in the request's order, stored as CGM readings once, and read back.
#[tokio::test]
async fn a_backfill_is_kept_once_and_read_back() {
    let h = hospital().await;
    let (site, secret) = enable(&h, "ada", h.ada).await;
    let now = chrono::Utc::now().timestamp_millis() / 1000 * 1000;
    let entries: Vec<Value> = (0..120)
        .map(|i| {
            json!({"type": "sgv", "sgv": 100 + (i % 40), "date": now - (119 - i) * 300_000,
                   "direction": "Flat", "noise": 1, "device": "xDrip-DexcomG6", "delta": 1.5})
        })
        .collect();
    let body = Value::Array(entries);
    let hash = sha1_hex(&secret);
    let (status, first) = ns(
        &h,
        Method::POST,
        &format!("{site}/api/v1/entries"),
        Some(&hash),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let first = first.as_array().unwrap().clone();
    assert_eq!(first.len(), 120);
    assert!(
        first
            .iter()
            .all(|entry| entry["_id"].as_str().is_some_and(|id| id.len() == 24))
    );
    assert_eq!(first[5]["sgv"], 105);
    assert_eq!(ada_cgm_readings(&h).await.len(), 120);
    let (status, again) = ns(
        &h,
        Method::POST,
        &format!("{site}/api/v1/entries.json"),
        Some(&hash),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again.as_array().unwrap(),
        &first,
        "a re-sent back-fill is answered as kept"
    );
    assert_eq!(ada_cgm_readings(&h).await.len(), 120, "and stored once");

    let (status, latest) = ns(
        &h,
        Method::GET,
        &format!("{site}/api/v1/entries/sgv.json?count=200"),
        Some(&hash),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let latest = latest.as_array().unwrap();
    assert_eq!(latest.len(), 120);
    assert_eq!(latest[0]["date"], now, "newest first");
    assert_eq!(latest[0]["direction"], "Flat");
    let since = now - 3 * 300_000;
    let (_, recent) = ns(
        &h,
        Method::GET,
        &format!("{site}/api/v1/entries.json?find[date][$gte]={since}&find[sgv][$gte]=100"),
        Some(&hash),
        None,
    )
    .await;
    assert_eq!(recent.as_array().unwrap().len(), 4);
    let (_, current) = ns(
        &h,
        Method::GET,
        &format!("{site}/api/v1/entries/current.json"),
        Some(&hash),
        None,
    )
    .await;
    assert_eq!(current.as_array().unwrap().len(), 1);
    assert_eq!(current[0]["_id"], latest[0]["_id"]);
    let id = latest[7]["_id"].as_str().unwrap();
    let (_, by_id) = ns(
        &h,
        Method::GET,
        &format!("{site}/api/v1/entries/{id}"),
        Some(&hash),
        None,
    )
    .await;
    assert_eq!(by_id[0]["date"], latest[7]["date"]);
}

/// Every credential form Nightscout's clients use works; a wrong secret, another site's
/// secret, and a revoked site's are refused and audited; one patient's secret neither
/// writes to nor reads another's data.
#[tokio::test]
async fn secrets_are_checked_audited_and_keep_patients_apart() {
    let h = hospital().await;
    let (ada_site, ada_secret) = enable(&h, "clinician", h.ada).await;
    let (bob_site, bob_secret) = enable(&h, "bob", h.bob).await;
    let entry = json!({"type": "sgv", "sgv": 140, "date": chrono::Utc::now().timestamp_millis()});
    let entries = format!("{ada_site}/api/v1/entries");
    for secret in [
        sha1_hex(&ada_secret),
        sha512_hex(&ada_secret),
        sha1_hex(&ada_secret).to_uppercase(),
    ] {
        let (status, _) = ns(&h, Method::GET, &entries, Some(&secret), None).await;
        assert_eq!(status, StatusCode::OK);
    }
    for query in ["token", "secret"] {
        let (status, _) = ns(
            &h,
            Method::GET,
            &format!("{entries}?{query}={}", sha1_hex(&ada_secret)),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "?{query}=");
    }
    // The secret itself, unhashed, is not a credential: uploaders never send it.
    for wrong in [
        ada_secret.clone(),
        sha1_hex("guess"),
        sha1_hex(&bob_secret),
        String::new(),
    ] {
        let (status, _) = ns(&h, Method::POST, &entries, Some(&wrong), Some(&entry)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = ns(&h, Method::GET, &entries, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A site that does not exist: refused, counted, and not written to the audit trail.
    for made_up in ["ffffffffffffffff", "not-a-site", "0000000000000000"] {
        let (status, _) = ns(
            &h,
            Method::GET,
            &format!("/ns/{made_up}/api/v1/entries"),
            Some(&sha1_hex(&ada_secret)),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, verify) = ns(
        &h,
        Method::GET,
        &format!("{ada_site}/api/v1/verifyauth"),
        Some(&sha1_hex("guess")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify["message"]["message"], "UNAUTHORIZED");
    let (status, audit) = h
        .as_(
            "admin",
            Method::GET,
            "/api/v1/audit?action=nightscout.authenticate&limit=100",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let refusals: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["outcome"] == "denied" && event["patient_id"] == json!(h.ada))
        .collect();
    assert!(refusals.len() >= 6, "{audit}");
    assert!(
        refusals
            .iter()
            .any(|event| event["detail"] == "wrong API secret")
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["patient_id"] == json!(h.ada)),
        "refusals for made-up sites are not audited: {audit}"
    );

    // Bob's uploader writes to Bob's record only, and reads nothing of Ada's.
    let bob = sha1_hex(&bob_secret);
    let (status, _) = ns(
        &h,
        Method::POST,
        &format!("{bob_site}/api/v1/entries"),
        Some(&bob),
        Some(&entry),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, bobs) = ns(
        &h,
        Method::GET,
        &format!("{bob_site}/api/v1/entries"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(bobs.as_array().unwrap().len(), 1);
    let (_, adas) = ns(
        &h,
        Method::GET,
        &entries,
        Some(&sha1_hex(&ada_secret)),
        None,
    )
    .await;
    assert_eq!(adas.as_array().unwrap().len(), 0);
    assert!(ada_cgm_readings(&h).await.is_empty());
    // Bob may not enable or list a site for Ada.
    let (status, _) = h
        .as_(
            "bob",
            Method::POST,
            &format!("/api/v1/patients/{}/nightscout-sites", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Revoked, the site's secret stops working at once.
    let site_name = ada_site.trim_start_matches("/ns/");
    let (status, _) = h
        .as_(
            "ada",
            Method::POST,
            &format!(
                "/api/v1/patients/{}/nightscout-sites/{site_name}/revoke",
                h.ada
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = ns(
        &h,
        Method::GET,
        &entries,
        Some(&sha1_hex(&ada_secret)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, sites) = h
        .as_(
            "nurse",
            Method::GET,
            &format!("/api/v1/patients/{}/nightscout-sites", h.ada),
            None,
        )
        .await;
    assert_eq!(sites[0]["revoked"], true);
    assert!(sites[0].get("api_secret").is_none());
}

/// The uploads each fixture's app sends: `(file, collection, groups)`, all accepted. A
/// group is a path into the file's object (`""` for a file that is one upload).
const ACCEPTED: &[(&str, &str, &[&str])] = &[
    (
        "aaps-patterns.json",
        "entries",
        &[
            "SGV_ENTRIES/HIGH_FREQUENCY_BATCH",
            "SGV_ENTRIES/SINGLE_READING",
        ],
    ),
    (
        "aaps-patterns.json",
        "treatments",
        &[
            "SMB_BURSTS/CORRECTION_SEQUENCE",
            "MEAL_SCENARIO/CARB_ENTRY",
            "MEAL_SCENARIO/MEAL_BOLUS",
            "MEAL_SCENARIO/BOLUS_WIZARD",
            "DEDUPLICATION_TESTS/ORIGINAL",
            "TEMP_BASAL/SAMPLE",
        ],
    ),
    (
        "aaps-patterns.json",
        "devicestatus",
        &["DEVICESTATUS/SAMPLE"],
    ),
    ("aaps-single-doc.js", "entries", &["sgvEntry"]),
    (
        "aaps-single-doc.js",
        "treatments",
        &[
            "smbBolus",
            "mealBolus",
            "tempBasal",
            "carbCorrection",
            "temporaryTarget",
            "profileSwitch",
        ],
    ),
    ("aaps-single-doc.js", "devicestatus", &["deviceStatus"]),
    (
        "edge-cases.js",
        "entries",
        &[
            "singleItemArray",
            "nullAndUndefinedFields",
            "mixedValidityBatch",
        ],
    ),
    (
        "edge-cases.js",
        "treatments",
        &[
            "extendedEmulatedTempBasal",
            "largeProfileJson",
            "bolusWizardWithResult",
            "unicodeContent",
            "veryLongNotes",
            "timestampFormats",
            "decimalPrecision",
            "specialCharactersInStrings",
            "zeroValues",
            "booleanEdgeCases",
        ],
    ),
    ("edge-cases.js", "devicestatus", &["arrayInNestedObject"]),
    (
        "loop-batch.js",
        "entries",
        &["glucoseBatch", "largeBatch", "maxBatch"],
    ),
    (
        "loop-batch.js",
        "treatments",
        &["carbsBatch", "doseBatch", "overrideBatch", "cgmEventBatch"],
    ),
    ("loop-batch.js", "devicestatus", &["deviceStatusBatch"]),
    (
        "loop-override.js",
        "treatments",
        &[
            "standardOverride",
            "indefiniteOverride",
            "remoteOverride",
            "presetOverride",
            "batchOverrides",
            "mixedBatch",
        ],
    ),
    (
        "nightscoutkit-devicestatus.js",
        "devicestatus",
        &[
            "minimal",
            "loopWithIOBCOB",
            "fullLoop",
            "withEnacted",
            "withFailure",
            "withAutoBolus",
            "withMultiplePredictions",
            "batchArray",
            "twoStatusBatch",
        ],
    ),
    (
        "nightscoutkit-treatments.js",
        "treatments",
        &[
            "correctionBolus",
            "carbEntry",
            "tempBasal",
            "zeroTempBasal",
            "exerciseOverride",
            "indefiniteOverride",
            "bgCheck",
            "note",
            "siteChange",
            "sensorStart",
            "mixedBatchArray",
            "tempBasalHistoryArray",
        ],
    ),
    ("trio-pipeline.js", "entries", &["glucosePipeline"]),
    (
        "trio-pipeline.js",
        "treatments",
        &[
            "treatmentPipeline",
            "tempTargetPipeline",
            "overridePipeline",
            "carbsPipeline",
            "pumpHistoryPipeline",
            "manualGlucosePipeline",
        ],
    ),
    ("trio-pipeline.js", "devicestatus", &["deviceStatus"]),
    ("example.json", "entries", &[""]),
];

/// Each fixture upload is answered with every document, in order, with an `_id`; sent
/// again, with the same `_id`s and nothing more kept; and what was kept reads back as
/// sent (text byte for byte, numbers to the last digit).
#[tokio::test]
async fn the_apps_uploads_replay_as_the_requirements_say() {
    let h = hospital().await;
    let (site, secret) = enable(&h, "ada", h.ada).await;
    let hash = sha1_hex(&secret);
    let mut files = std::collections::HashMap::new();
    let mut kept = std::collections::HashMap::<&str, std::collections::BTreeSet<String>>::new();
    let uploads = ACCEPTED.iter().flat_map(|(file, collection, groups)| {
        groups.iter().map(move |group| (file, group, collection))
    });
    for (file, group, collection) in uploads {
        let module = files.entry(*file).or_insert_with(|| fixture(file));
        let body = module
            .pointer(&if group.is_empty() {
                String::new()
            } else {
                format!("/{group}")
            })
            .unwrap_or_else(|| panic!("{file} has no {group}"))
            .clone();
        let sent = if body.is_array() {
            body.as_array().unwrap().len()
        } else {
            1
        };
        let path = format!("{site}/api/v1/{collection}");
        let (status, answer) = ns(&h, Method::POST, &path, Some(&hash), Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{file} {group}: {answer}");
        let answer = answer.as_array().unwrap().clone();
        assert_eq!(
            answer.len(),
            sent,
            "{file} {group}: one answer per document"
        );
        for document in &answer {
            let id = document["_id"].as_str();
            assert!(
                id.is_some_and(|id| id.len() == 24),
                "{file} {group}: {document}"
            );
            kept.entry(collection)
                .or_default()
                .insert(id.unwrap().to_owned());
        }
        let (_, again) = ns(&h, Method::POST, &path, Some(&hash), Some(&body)).await;
        assert_eq!(
            again.as_array().unwrap(),
            &answer,
            "{file} {group}: re-sent"
        );
    }
    for (collection, ids) in &kept {
        let (_, all) = ns(
            &h,
            Method::GET,
            &format!("{site}/api/v1/{collection}.json?count=0"),
            Some(&hash),
            None,
        )
        .await;
        assert_eq!(
            all.as_array().unwrap().len(),
            ids.len(),
            "{collection}: each kept once"
        );
    }
    let edge = &files["edge-cases.js"];
    let (_, notes) = ns(
        &h,
        Method::GET,
        &format!("{site}/api/v1/treatments?find[eventType]=Note&count=0"),
        Some(&hash),
        None,
    )
    .await;
    for group in [
        "unicodeContent",
        "specialCharactersInStrings",
        "veryLongNotes",
    ] {
        let text = &edge[group]["notes"];
        assert!(
            notes
                .as_array()
                .unwrap()
                .iter()
                .any(|note| &note["notes"] == text),
            "{group} reads back as sent"
        );
    }
    let (_, precise) = ns(
        &h,
        Method::GET,
        &format!("{site}/api/v1/treatments?find[insulin]=0.123456789"),
        Some(&hash),
        None,
    )
    .await;
    assert_eq!(precise[0]["rate"], edge["decimalPrecision"]["rate"]);
    // The care team reads what the apps uploaded; nobody else does.
    let treatments = format!("/api/v1/patients/{}/nightscout/treatments?count=5", h.ada);
    let (status, recent) = h.as_("clinician", Method::GET, &treatments, None).await;
    assert_eq!(status, StatusCode::OK, "{recent}");
    assert_eq!(recent.as_array().unwrap().len(), 5);
    let (status, statuses) = h
        .as_(
            "nurse",
            Method::GET,
            &format!("/api/v1/patients/{}/nightscout/devicestatus", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!statuses.as_array().unwrap().is_empty());
    let (status, _) = h.as_("bob", Method::GET, &treatments, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, error) = h
        .as_(
            "clinician",
            Method::GET,
            &format!("/api/v1/patients/{}/nightscout/food", h.ada),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    // Nightscout's example entries (2014, Dexcom): "5" is Dexcom's code for "no
    // antenna", kept as an entry but never a glucose reading.
    let example = &files["example.json"];
    let special = example
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| {
            entry["type"] == "sgv"
                && entry["sgv"]
                    .as_str()
                    .is_some_and(|sgv| sgv.parse::<f64>().is_ok_and(|sgv| sgv <= 12.0))
        })
        .count();
    assert!(special > 0);
    let readings = ada_cgm_readings(&h).await;
    assert!(
        !readings
            .iter()
            .any(|reading| reading["value"].as_f64() <= Some(12.0))
    );
}

/// The shapes Nightscout's tests expect refused or merged: duplicates within and across
/// uploads, partial failures, a whole upload of nothing valid, and readings from the
/// future.
#[tokio::test]
async fn duplicates_and_partial_failures_are_answered_in_place() {
    let h = hospital().await;
    let (site, secret) = enable(&h, "ada", h.ada).await;
    let hash = sha1_hex(&secret);
    let dedup = fixture("deduplication.js");
    let treatments = format!("{site}/api/v1/treatments");
    let entries = format!("{site}/api/v1/entries");
    for (group, path) in [
        ("aapsDuplicatePumpId", &treatments),
        ("aapsDuplicateEntry", &entries),
        ("loopDuplicateSyncId", &treatments),
        ("loopDuplicateDose", &treatments),
        ("trioDuplicateId", &treatments),
        ("trioDuplicateTempTarget", &treatments),
    ] {
        let (_, first) = ns(
            &h,
            Method::POST,
            path,
            Some(&hash),
            Some(&dedup[group]["first"]),
        )
        .await;
        let (_, second) = ns(
            &h,
            Method::POST,
            path,
            Some(&hash),
            Some(&dedup[group]["duplicate"]),
        )
        .await;
        assert_eq!(first[0]["_id"], second[0]["_id"], "{group}");
    }
    let aaps = fixture("aaps-patterns.json");
    let mut pump_ids = Vec::new();
    for case in [
        "ORIGINAL",
        "DUPLICATE_SAME_PUMP_KEY",
        "DIFFERENT_PUMP_ID",
        "DIFFERENT_PUMP_SERIAL",
    ] {
        let (_, kept) = ns(
            &h,
            Method::POST,
            &treatments,
            Some(&hash),
            Some(&aaps["DEDUPLICATION_TESTS"][case]),
        )
        .await;
        pump_ids.push(kept[0]["_id"].clone());
    }
    assert_eq!(
        pump_ids[0], pump_ids[1],
        "the same pump event is one treatment"
    );
    assert_ne!(pump_ids[0], pump_ids[2]);
    assert_ne!(pump_ids[0], pump_ids[3]);
    assert_ne!(pump_ids[2], pump_ids[3]);
    let (_, batch) = ns(
        &h,
        Method::POST,
        &treatments,
        Some(&hash),
        Some(&dedup["batchWithDuplicates"]),
    )
    .await;
    assert_eq!(batch[0]["_id"], batch[2]["_id"]);
    assert_ne!(batch[0]["_id"], batch[1]["_id"]);

    let partial = fixture("partial-failures.js");
    let (status, answer) = ns(
        &h,
        Method::POST,
        &treatments,
        Some(&hash),
        Some(&partial["batchWithDuplicateKeyInMiddle"]["input"]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer[1]["_id"], answer[2]["_id"],
        "the same id is one treatment"
    );
    let (status, answer) = ns(
        &h,
        Method::POST,
        &entries,
        Some(&hash),
        Some(&partial["batchWithValidationErrorInMiddle"]["input"]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer[0]["_id"].is_string() && answer[2]["_id"].is_string());
    assert_eq!(answer[1]["ok"], 0);
    assert_eq!(answer[1]["field"], "sgv");
    let (_, ordered) = ns(
        &h,
        Method::POST,
        &treatments,
        Some(&hash),
        Some(&partial["loopResponseOrderingScenario"]["input"]),
    )
    .await;
    let carbs: Vec<&Value> = ordered
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["carbs"])
        .collect();
    assert_eq!(
        carbs,
        [&json!(15), &json!(20), &json!(25)],
        "answered in the request's order"
    );
    let scenario = &partial["loopBatchWithSomeDeduplicated"];
    let (_, before) = ns(
        &h,
        Method::POST,
        &treatments,
        Some(&hash),
        Some(&scenario["preExisting"]),
    )
    .await;
    let (_, after) = ns(
        &h,
        Method::POST,
        &treatments,
        Some(&hash),
        Some(&scenario["input"]),
    )
    .await;
    assert_eq!(
        after.as_array().unwrap().len(),
        3,
        "three ids back though one was kept before"
    );
    assert_eq!(after[1]["_id"], before[0]["_id"]);
    let (status, answer) = ns(
        &h,
        Method::POST,
        &entries,
        Some(&hash),
        Some(&partial["connectionFailureMidBatch"]["input"]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        answer
            .as_array()
            .unwrap()
            .iter()
            .all(|entry| entry["_id"].is_string())
    );
    // The same batch as a phone whose clock is four hours fast sends it: the readings
    // ahead of the server's clock are refused in place, the others kept.
    let now = chrono::Utc::now().timestamp_millis();
    let fast: Vec<Value> = (0..50)
        .map(|i| json!({"type": "sgv", "sgv": 100 + i, "date": now + i * 300_000}))
        .collect();
    let (status, answer) = ns(
        &h,
        Method::POST,
        &entries,
        Some(&hash),
        Some(&Value::Array(fast)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer = answer.as_array().unwrap();
    assert!(answer[0]["_id"].is_string() && answer[1]["_id"].is_string());
    let refused: Vec<&Value> = answer.iter().filter(|entry| entry["ok"] == 0).collect();
    assert_eq!(
        refused.len(),
        48,
        "readings more than 5 minutes ahead are refused"
    );
    assert!(
        refused.iter().all(|entry| entry["field"] == "date"
            && entry["message"].as_str().unwrap().contains("future"))
    );
    let (status, answer) = ns(
        &h,
        Method::POST,
        &format!("{site}/api/v1/devicestatus"),
        Some(&hash),
        Some(&partial["largeBsonDocumentEdgeCase"]["deviceStatusWithLargePredictions"]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer[0]["openaps"]["suggested"]["predBGs"]["IOB"]
            .as_array()
            .unwrap()
            .len(),
        350
    );

    let edge = fixture("edge-cases.js");
    let (status, empty) = ns(
        &h,
        Method::POST,
        &entries,
        Some(&hash),
        Some(&edge["emptyArray"]),
    )
    .await;
    assert_eq!((status, empty), (StatusCode::OK, json!([])));
    let (status, empty) = ns(&h, Method::POST, &entries, Some(&hash), Some(&json!({}))).await;
    assert_eq!((status, empty), (StatusCode::OK, json!([])));
    for (group, path, field) in [
        ("negativeValues", &treatments, "duration"),
        ("largeNumbers", &entries, "date"),
    ] {
        let (status, error) = ns(&h, Method::POST, path, Some(&hash), Some(&edge[group])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{group}: {error}");
        assert_eq!(
            error["error"]["field"],
            format!("[0].{field}"),
            "{group}: {error}"
        );
    }
    for body in ["[1", "42", "\"sgv\""] {
        let request = Request::builder()
            .method(Method::POST)
            .uri(&entries)
            .header("api-secret", &hash)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, error) = h.send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
    }
}
