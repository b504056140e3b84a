//! Every metric Wardline exports, with its help text, described once at start so that
//! the exposition carries `# HELP` and `# TYPE` for each (Prometheus' `promtool check
//! metrics` asks for them). No label holds a patient or device identifier; a test checks
//! that every metric the code records is described here.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// `(name, kind, help)` of every metric.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "wardline_access_denied_total",
        "counter",
        "Requests for a patient's data or an admin action refused by the access check, by action.",
    ),
    (
        "wardline_alarm_evaluation_lag_seconds",
        "gauge",
        "How far behind the newest evaluated reading's arrival the alarm engine is.",
    ),
    (
        "wardline_alarm_events_evaluated_total",
        "counter",
        "Committed events (readings, NEWS2 results, rhythm events, device reports and contact) the alarm engine evaluated.",
    ),
    (
        "wardline_alarm_load_failed_total",
        "counter",
        "Stored care plans or alarms the alarm engine could not load, by what.",
    ),
    (
        "wardline_alarm_readings_evaluated_total",
        "counter",
        "Committed observations (device readings and derived) the alarm engine evaluated, those of patients without a care plan (no rule to meet) included.",
    ),
    (
        "wardline_alarm_readings_replayed_total",
        "counter",
        "Committed observations the alarm engine replayed into its evaluators after a start, without acting on them again: their alarm changes were stored before the restart.",
    ),
    (
        "wardline_alarm_store_failed_total",
        "counter",
        "Alarm changes the store could not commit (the engine then resumes from its last checkpoint).",
    ),
    ("wardline_alarms_opened_total", "counter", "Alarms raised."),
    (
        "wardline_analysis_failed_total",
        "counter",
        "Analysis work that failed, by work.",
    ),
    (
        "wardline_analysis_lag_seconds",
        "gauge",
        "How far behind the newest analysed reading's or ECG chunk's arrival the analysis is.",
    ),
    (
        "wardline_audit_checkpoint_failed_total",
        "counter",
        "Audit checkpoints that could not be written to the checkpoint file (retried at the next interval).",
    ),
    (
        "wardline_audit_checkpoints_exported_total",
        "counter",
        "Signed checkpoints of the audit chain's head appended to the checkpoint file.",
    ),
    (
        "wardline_bus_alarm_events_missed_total",
        "counter",
        "Alarm stream events this worker's engine announced that were not passed to the bus because the relay fell behind (the stored alarms are unaffected).",
    ),
    (
        "wardline_bus_commands_forwarded_total",
        "counter",
        "Care plan changes and alarm actions forwarded to the worker running the alarm engine, by outcome (answered or failed).",
    ),
    (
        "wardline_bus_messages_refused_total",
        "counter",
        "Messages from the bus not acted on, by why: a signature that does not verify (not from a worker of this installation), stale (older than it may be, or a replay), or unreadable.",
    ),
    (
        "wardline_bus_publish_failed_total",
        "counter",
        "Messages to the other workers (alarm events, revoked devices) that could not be handed to NATS.",
    ),
    (
        "wardline_bus_room_events_dropped_total",
        "counter",
        "Video visit room events (signalling, chat, presence) not passed to the other workers because NATS could not take them.",
    ),
    (
        "wardline_derived_observations_stored_total",
        "counter",
        "Observations Wardline derived (heart rate from ECG) and stored.",
    ),
    (
        "wardline_ecg_chunks_late_total",
        "counter",
        "ECG chunks that arrived after later ones of their stream and were not analysed.",
    ),
    (
        "wardline_ecg_chunks_unanalysable_total",
        "counter",
        "ECG chunks the analysis could not read (rate or gain out of its range).",
    ),
    (
        "wardline_ecg_stream_restarts_total",
        "counter",
        "ECG streams started over because a chunk did not continue them (a gap, another rate or gain).",
    ),
    (
        "wardline_ecg_stream_resumes_total",
        "counter",
        "ECG streams resumed from stored signal (after a restart or an eviction).",
    ),
    (
        "wardline_ecg_streams",
        "gauge",
        "ECG streams being analysed.",
    ),
    (
        "wardline_ecg_streams_evicted_total",
        "counter",
        "ECG streams dropped for being idle or the least recently fed.",
    ),
    (
        "wardline_emergency_access_opened_total",
        "counter",
        "Emergency (break-the-glass) accesses opened; each waits for an administrator's review.",
    ),
    (
        "wardline_evaluation_lease_held",
        "gauge",
        "1 while this worker holds the evaluation lease and runs rule evaluation, analysis and notification delivery for every patient; 0 while it stands by.",
    ),
    (
        "wardline_fhir_export_resources_total",
        "counter",
        "FHIR resources written to bulk export files, by resource type.",
    ),
    (
        "wardline_fhir_exports_total",
        "counter",
        "FHIR bulk exports ended by a worker, by outcome (completed, failed, lost: cancelled or taken over).",
    ),
    (
        "wardline_gateway_queue_bytes",
        "gauge",
        "Bytes queued on this home gateway.",
    ),
    (
        "wardline_http_connections_idle_closed_total",
        "counter",
        "HTTP connections closed after moving no byte for http.idle_timeout_seconds.",
    ),
    (
        "wardline_http_connections_refused_total",
        "counter",
        "HTTP connections closed unread because a cap was reached, by cap (total, address).",
    ),
    (
        "wardline_http_device_auth_failed_total",
        "counter",
        "HTTP requests from devices refused for their credential.",
    ),
    (
        "wardline_http_proxy_headers_refused_total",
        "counter",
        "Connections from a trusted balancer closed because they did not start with a valid PROXY protocol header in time (http.proxy_protocol).",
    ),
    (
        "wardline_mapping_values_not_kept_total",
        "counter",
        "Values of templated device messages that give no reading (no FHIR mapping for their type, a code Wardline does not store, not a number); the message's other readings are stored.",
    ),
    (
        "wardline_nightscout_auth_failed_total",
        "counter",
        "Nightscout requests refused for their site or API secret (each audited).",
    ),
    (
        "wardline_nightscout_documents_stored_total",
        "counter",
        "Nightscout documents newly kept, by collection (re-sent ones are not counted).",
    ),
    (
        "wardline_nightscout_documents_refused_total",
        "counter",
        "Nightscout documents refused for their content, by collection.",
    ),
    (
        "wardline_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by method, route template and status class.",
    ),
    (
        "wardline_ingest_messages_rejected_total",
        "counter",
        "Device messages refused, by transport and reason.",
    ),
    (
        "wardline_ingest_readings_duplicate_total",
        "counter",
        "Readings received again (retries), acknowledged and not stored twice, by transport.",
    ),
    (
        "wardline_ingest_readings_stored_total",
        "counter",
        "Readings durably stored, by transport.",
    ),
    ("wardline_logins_failed_total", "counter", "Failed logins."),
    (
        "wardline_logins_throttled_total",
        "counter",
        "Logins refused because a username and address pair was locked out.",
    ),
    (
        "wardline_mqtt_connections",
        "gauge",
        "Open MQTT device connections.",
    ),
    (
        "wardline_mqtt_connects_refused_total",
        "counter",
        "MQTT connections refused, by reason.",
    ),
    (
        "wardline_mqtt_foreign_topic_total",
        "counter",
        "MQTT publishes to a topic the device may not use.",
    ),
    (
        "wardline_news2_computed_total",
        "counter",
        "NEWS2 results stored, complete or partial.",
    ),
    (
        "wardline_news2_inputs_read_total",
        "counter",
        "NEWS2 computations whose inputs were read from the store (a reading older than the values remembered).",
    ),
    (
        "wardline_news2_skipped_total",
        "counter",
        "NEWS2 computations skipped, by reason.",
    ),
    (
        "wardline_notification_attempts_failed_total",
        "counter",
        "Failed notification delivery attempts, by channel kind.",
    ),
    (
        "wardline_notifications_dead_total",
        "counter",
        "Notifications given up after the retry horizon, by channel kind.",
    ),
    (
        "wardline_notifications_delivered_total",
        "counter",
        "Notifications delivered, by channel kind.",
    ),
    (
        "wardline_password_hashing_refused_total",
        "counter",
        "Logins and password changes answered `unavailable` because every password-hashing slot stayed busy for 2 s (a login flood).",
    ),
    (
        "wardline_rhythm_events_found_total",
        "counter",
        "Rhythm events found by the ECG analysis, by kind.",
    ),
    (
        "wardline_rhythm_events_stored_total",
        "counter",
        "Rhythm events stored (new or grown).",
    ),
    (
        "wardline_sessions_ended_idle_total",
        "counter",
        "Sessions ended because their person did nothing for the idle timeout.",
    ),
    (
        "wardline_store_commits_total",
        "counter",
        "Commits of the storage writer.",
    ),
    (
        "wardline_streams_ended_by_access_total",
        "counter",
        "Live streams ended because their session or their access to a patient ended (logout, expiry, disabled account, removal from the care team).",
    ),
    (
        "wardline_visits_scheduled_total",
        "counter",
        "Telehealth visits scheduled.",
    ),
];

/// Describes every metric to the installed recorder.
pub fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            "counter" => describe_counter!(name, help),
            "gauge" => describe_gauge!(name, help),
            _ => describe_histogram!(name, Unit::Seconds, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn sources(folder: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(folder) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("target") && !path.ends_with("node_modules") {
                    sources(&path, found);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                found.push(text);
            }
        }
    }

    /// Every metric recorded anywhere in the workspace is described, and nothing
    /// described is recorded nowhere.
    #[test]
    fn every_recorded_metric_is_described() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut texts = Vec::new();
        sources(&crates, &mut texts);
        let mut recorded = std::collections::BTreeSet::new();
        for text in &texts {
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (index, _) in text.match_indices(macro_name) {
                    let rest = text[index + macro_name.len()..].trim_start();
                    if let Some(quoted) = rest.strip_prefix('"')
                        && let Some(end) = quoted.find('"')
                        && quoted[..end].starts_with("wardline_")
                    {
                        recorded.insert(quoted[..end].to_owned());
                    }
                }
            }
        }
        let described: std::collections::BTreeSet<String> = METRICS
            .iter()
            .map(|(name, _, _)| (*name).to_owned())
            .collect();
        let undescribed: Vec<_> = recorded.difference(&described).collect();
        assert!(
            undescribed.is_empty(),
            "recorded without help text: {undescribed:?}"
        );
        let unused: Vec<_> = described.difference(&recorded).collect();
        assert!(
            unused.is_empty(),
            "described but never recorded: {unused:?}"
        );
    }
}
