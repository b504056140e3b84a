//! What operators read: Prometheus metrics, valid by `promtool`, on the API for admins and
//! on a listener of their own for a scraper.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::*;

fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            format!(
                "promtool is needed for this test ({error}); scripts/test.sh installs Debian's \
                 prometheus package, which has it"
            )
        })?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(text.as_bytes())
        .map_err(|error| error.to_string())?;
    let output = child
        .wait_with_output()
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_a_scraper_reads_them_on_their_own_listener() {
    let server = TestServer::start_with_env(&[("WARDLINE_METRICS_LISTEN", "127.0.0.1:0")]).await;
    let ward = server.ward().await;
    // Some of everything: stored, duplicate and refused readings, denied access.
    let reading = json!({"v": 1, "seq": 1, "code": "99504-3", "value": 101, "unit": "mg/dL", "time": chrono::Utc::now().to_rfc3339()});
    server.device_post(&ward.device, reading.clone()).await;
    // The same message again, as after a lost answer: a duplicate.
    server.device_post(&ward.device, reading).await;
    let refused = server
        .send_readings(&ward.device, b"{\"v\":1}".to_vec())
        .await;
    assert_eq!(refused.status(), 400);
    let outsider = server
        .get(
            &ward.admin,
            &format!("/api/v1/patients/{}/observations/latest", ward.patient_id),
        )
        .await;
    assert_eq!(outsider.status(), 403);
    server
        .evaluated_everything(std::time::Duration::from_secs(30))
        .await;

    let for_admin = server.metrics().await;
    promtool_check(&for_admin).unwrap_or_else(|problems| panic!("promtool: {problems}"));
    for name in [
        "wardline_ingest_readings_stored_total",
        "wardline_ingest_readings_duplicate_total",
        "wardline_ingest_messages_rejected_total",
        "wardline_access_denied_total",
        "wardline_alarm_readings_evaluated_total",
        "wardline_http_request_duration_seconds_bucket",
    ] {
        assert!(for_admin.contains(name), "{name} in the metrics");
        let base = name.trim_end_matches("_bucket");
        assert!(
            for_admin.contains(&format!("# HELP {base} ")),
            "{base} has help text"
        );
    }
    assert!(
        for_admin.contains("route=\"/api/v1/patients/{patient_id}/observations/latest\""),
        "latency is by route template"
    );
    assert!(
        !for_admin.contains(&ward.patient_id),
        "no patient id in metrics"
    );
    assert!(
        !for_admin.contains(&ward.device.id),
        "no device id in metrics"
    );

    let address = server.report.metrics.expect("a metrics listener");
    let scraped = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(scraped.contains("wardline_ingest_readings_stored_total"));
    promtool_check(&scraped).unwrap_or_else(|problems| panic!("promtool: {problems}"));
}
