//! What Wardline derives from committed data, off the acknowledgement path: heart rate
//! and rhythm events from ECG chunks, NEWS2 from vital signs.
//!
//! [`IngestService::store`](crate::IngestService::store) hands newly committed ECG chunks
//! and vital signs to one analysis task through a bounded queue with `try_send`, after
//! the verdicts exist, so a device's acknowledgement never waits for analysis. When the
//! queue is full the work is dropped and counted
//! (`wardline_analysis_dropped_total{work}`); for ECG the next chunk then no longer
//! continues the stream, which restarts (`wardline_ecg_stream_restarts_total`), and for
//! NEWS2 the next vital sign recomputes from the latest values anyway.
//!
//! ECG state is kept per (patient, device, lead) in memory, at most
//! [`AnalysisSettings::max_streams`] streams; the stream fed longest ago is evicted
//! beyond that, and a stream idle for [`AnalysisSettings::stream_idle`] is dropped. After
//! a restart of the server a stream starts over from its next chunk.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wardline_analytics::news2::{News2, News2Observations, SpO2Scale, score_news2};
use wardline_domain::{DeviceId, Observation, ObservationCode, PatientId, Signal, WaveformChunk};
use wardline_store::{NewDerivedObservation, News2Record, RhythmEventRecord, Store};

use crate::ecg_stream::{Continuity, EcgStream, StreamFindings};
use crate::live::LiveFeed;

/// Settings of the analysis task.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// Work items waiting at most; beyond, new work is dropped and counted.
    pub queue_capacity: usize,
    /// NEWS2 scores the latest value of each vital sign within this window before the
    /// newest one (`analytics.news2_window_minutes`).
    pub news2_window: Duration,
    /// ECG streams analysed at once.
    pub max_streams: usize,
    /// An ECG stream not fed for this long is forgotten.
    pub stream_idle: Duration,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        Self {
            queue_capacity: 128,
            news2_window: Duration::minutes(60),
            max_streams: 256,
            stream_idle: Duration::minutes(10),
        }
    }
}

/// The codes whose arrival recomputes NEWS2.
pub const NEWS2_INPUTS: [ObservationCode; 6] = [
    ObservationCode::RespiratoryRate,
    ObservationCode::OxygenSaturationPulseOximetry,
    ObservationCode::OxygenSaturation,
    ObservationCode::SystolicBloodPressure,
    ObservationCode::HeartRate,
    ObservationCode::BodyTemperature,
];

#[derive(Debug)]
enum Work {
    EcgChunk {
        patient_id: PatientId,
        device_id: DeviceId,
        chunk: WaveformChunk,
    },
    Vitals {
        patient_id: PatientId,
        at: DateTime<Utc>,
    },
}

impl Work {
    fn label(&self) -> &'static str {
        match self {
            Work::EcgChunk { .. } => "ecg_chunk",
            Work::Vitals { .. } => "news2",
        }
    }
}

/// Where ingest hands over committed data for analysis.
#[derive(Debug, Clone)]
pub struct AnalysisHandle {
    queue: mpsc::Sender<Work>,
}

impl AnalysisHandle {
    fn submit(&self, work: Work) {
        let label = work.label();
        if self.queue.try_send(work).is_err() {
            metrics::counter!("wardline_analysis_dropped_total", "work" => label).increment(1);
        }
    }

    /// A newly stored ECG chunk (not a duplicate).
    pub fn ecg_chunk(&self, patient_id: PatientId, device_id: DeviceId, chunk: WaveformChunk) {
        self.submit(Work::EcgChunk {
            patient_id,
            device_id,
            chunk,
        });
    }

    /// Newly stored vital signs of a patient, the newest taken at `at`.
    pub fn vitals(&self, patient_id: PatientId, at: DateTime<Utc>) {
        self.submit(Work::Vitals { patient_id, at });
    }
}

/// Starts the analysis task; it ends when every handle is dropped.
pub fn spawn_analysis(
    store: Arc<dyn Store>,
    live: LiveFeed,
    settings: AnalysisSettings,
) -> (AnalysisHandle, JoinHandle<()>) {
    let (queue, work) = mpsc::channel(settings.queue_capacity.max(1));
    let analyser = Analyser {
        store,
        live,
        settings,
        streams: HashMap::new(),
    };
    let task = tokio::spawn(analyser.run(work));
    (AnalysisHandle { queue }, task)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StreamKey {
    patient_id: PatientId,
    device_id: DeviceId,
    signal: Signal,
}

struct Analyser {
    store: Arc<dyn Store>,
    live: LiveFeed,
    settings: AnalysisSettings,
    streams: HashMap<StreamKey, (EcgStream, DateTime<Utc>)>,
}

impl Analyser {
    async fn run(mut self, mut work: mpsc::Receiver<Work>) {
        while let Some(item) = work.recv().await {
            match item {
                Work::EcgChunk {
                    patient_id,
                    device_id,
                    chunk,
                } => self.ecg_chunk(patient_id, device_id, chunk).await,
                Work::Vitals { patient_id, at } => self.news2(patient_id, at).await,
            }
        }
    }

    fn evict(&mut self, now: DateTime<Utc>) {
        let idle = self.settings.stream_idle;
        let before = self.streams.len();
        self.streams.retain(|_, (_, fed)| now - *fed < idle);
        while self.streams.len() >= self.settings.max_streams.max(1) {
            let Some(oldest) = self
                .streams
                .iter()
                .min_by_key(|(_, (_, fed))| *fed)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            self.streams.remove(&oldest);
        }
        let evicted = before.saturating_sub(self.streams.len());
        if evicted > 0 {
            metrics::counter!("wardline_ecg_streams_evicted_total").increment(evicted as u64);
        }
    }

    async fn ecg_chunk(
        &mut self,
        patient_id: PatientId,
        device_id: DeviceId,
        chunk: WaveformChunk,
    ) {
        let now = Utc::now();
        let key = StreamKey {
            patient_id,
            device_id: device_id.clone(),
            signal: chunk.signal,
        };
        let existing = self.streams.remove(&key).map(|(stream, _)| stream);
        let stream = match existing {
            Some(stream) => {
                match stream.continuity(chunk.start, chunk.sampling_rate_hz, chunk.gain) {
                    Continuity::Continues => Some(stream),
                    Continuity::Late => {
                        metrics::counter!("wardline_ecg_chunks_late_total").increment(1);
                        self.streams.insert(key, (stream, now));
                        return;
                    }
                    Continuity::Restarts => {
                        metrics::counter!("wardline_ecg_stream_restarts_total").increment(1);
                        None
                    }
                }
            }
            None => None,
        };
        let stream = match stream {
            Some(stream) => stream,
            None => {
                self.evict(now);
                match EcgStream::new(chunk.sampling_rate_hz, chunk.gain, chunk.start) {
                    Ok(stream) => stream,
                    Err(_) => {
                        metrics::counter!("wardline_ecg_chunks_unanalysable_total").increment(1);
                        return;
                    }
                }
            }
        };
        // The analysis is CPU work (tens of milliseconds for a long chunk): keep it off
        // the runtime's reactor threads.
        let analysed = tokio::task::spawn_blocking(move || {
            let mut stream = stream;
            let findings = stream.push(&chunk.samples);
            (stream, findings, chunk.signal)
        })
        .await;
        let Ok((stream, findings, signal)) = analysed else {
            metrics::counter!("wardline_analysis_failed_total", "work" => "ecg_chunk").increment(1);
            return;
        };
        self.streams.insert(key, (stream, now));
        metrics::gauge!("wardline_ecg_streams").set(self.streams.len() as f64);
        self.store_findings(patient_id, device_id, signal, findings, now)
            .await;
    }

    async fn store_findings(
        &self,
        patient_id: PatientId,
        device_id: DeviceId,
        signal: Signal,
        findings: StreamFindings,
        now: DateTime<Utc>,
    ) {
        let (min_rate, max_rate) = ObservationCode::HeartRate.spec().possible_range;
        let heart_rates: Vec<NewDerivedObservation> = findings
            .heart_rates
            .into_iter()
            .filter(|(_, bpm)| bpm.is_finite() && (min_rate..=max_rate).contains(bpm))
            .map(|(at, bpm)| NewDerivedObservation {
                patient_id,
                device_id: device_id.clone(),
                // Wardline's own numbering: one derived rate per device and instant.
                seq: at.timestamp_millis(),
                code: ObservationCode::HeartRate,
                value: (bpm * 10.0).round() / 10.0,
                effective: at,
                received: now,
            })
            .collect();
        if !heart_rates.is_empty() {
            match self.store.store_derived_observations(heart_rates).await {
                Ok(stored) => {
                    metrics::counter!("wardline_derived_observations_stored_total")
                        .increment(stored.len() as u64);
                    for observation in stored {
                        self.live.publish(observation);
                    }
                }
                Err(error) => {
                    metrics::counter!("wardline_analysis_failed_total", "work" => "ecg_chunk")
                        .increment(1);
                    tracing::warn!(%error, "could not store derived heart rates");
                }
            }
        }
        if findings.events.is_empty() {
            return;
        }
        let events: Vec<RhythmEventRecord> = findings
            .events
            .into_iter()
            .map(|event| {
                metrics::counter!("wardline_rhythm_events_found_total", "kind" => event.kind.as_str())
                    .increment(1);
                let duration_s = (event.end - event.onset).num_milliseconds() as f64 / 1000.0;
                let mut detail = json!({"duration_s": duration_s});
                if let Some(bpm) = event.median_bpm {
                    detail["median_bpm"] = json!((bpm * 10.0).round() / 10.0);
                }
                RhythmEventRecord {
                    patient_id,
                    device_id: device_id.clone(),
                    signal,
                    kind: event.kind,
                    onset: event.onset,
                    end: event.end,
                    detail: Some(detail),
                }
            })
            .collect();
        match self.store.record_rhythm_events(events.clone()).await {
            Ok(()) => {
                for event in events {
                    self.live.publish_rhythm(event);
                }
            }
            Err(error) => {
                metrics::counter!("wardline_analysis_failed_total", "work" => "ecg_chunk")
                    .increment(1);
                tracing::warn!(%error, "could not store rhythm events");
            }
        }
    }

    async fn news2(&self, patient_id: PatientId, at: DateTime<Utc>) {
        let latest = match self
            .store
            .latest_observations_between(patient_id, at - self.settings.news2_window, at)
            .await
        {
            Ok(latest) => latest,
            Err(error) => {
                metrics::counter!("wardline_analysis_failed_total", "work" => "news2").increment(1);
                tracing::warn!(%error, "could not read vital signs for NEWS2");
                return;
            }
        };
        let Some(record) = news2_from_latest(patient_id, at, &latest) else {
            return;
        };
        let status = if record.complete {
            "complete"
        } else {
            "partial"
        };
        match self.store.record_news2(record.clone()).await {
            Ok(()) => {
                metrics::counter!("wardline_news2_computed_total", "status" => status).increment(1);
                self.live.publish_news2(record);
            }
            Err(error) => {
                metrics::counter!("wardline_analysis_failed_total", "work" => "news2").increment(1);
                tracing::warn!(%error, "could not store a NEWS2 result");
            }
        }
    }
}

/// A measured value as a whole number for NEWS2's integer bands; `None` if it cannot
/// be one (the domain's ranges make that impossible for stored values).
fn whole(value: f64) -> Option<u16> {
    let rounded = value.round();
    (rounded >= 0.0 && rounded <= f64::from(u16::MAX)).then_some(rounded as u16)
}

/// Scores NEWS2 from the latest observations (newest per code), at `at`.
///
/// Consciousness and supplemental oxygen are not measured by any device, so they are
/// missing and the result is partial: a minimum total and risk, naming what is missing,
/// never a total that could be wrong. SpO2 is scored on Scale 1: Scale 2 must be
/// prescribed by a clinician, and Wardline has no such prescription yet. `None` when no
/// NEWS2 parameter is present or a value is outside NEWS2's accepted ranges (counted,
/// not logged: the value is health data).
pub fn news2_from_latest(
    patient_id: PatientId,
    at: DateTime<Utc>,
    latest: &[Observation],
) -> Option<News2Record> {
    let find = |code: ObservationCode| latest.iter().find(|observation| observation.code == code);
    let spo2 = [
        find(ObservationCode::OxygenSaturationPulseOximetry),
        find(ObservationCode::OxygenSaturation),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|observation| observation.effective);
    let used: Vec<(&str, &Observation)> = [
        ("respiration_rate", find(ObservationCode::RespiratoryRate)),
        ("spo2", spo2),
        ("systolic_bp", find(ObservationCode::SystolicBloodPressure)),
        ("pulse", find(ObservationCode::HeartRate)),
        ("temperature", find(ObservationCode::BodyTemperature)),
    ]
    .into_iter()
    .filter_map(|(name, observation)| observation.map(|observation| (name, observation)))
    .collect();
    if used.is_empty() {
        return None;
    }
    let value = |name: &str| {
        used.iter()
            .find(|(used_name, _)| *used_name == name)
            .map(|(_, observation)| observation.value)
    };
    let observations = News2Observations {
        respiration_rate: value("respiration_rate").and_then(whole),
        spo2_percent: value("spo2").and_then(whole),
        spo2_scale: SpO2Scale::Scale1,
        inspired_air: None,
        systolic_bp_mmhg: value("systolic_bp").and_then(whole),
        pulse_per_min: value("pulse").and_then(whole),
        consciousness: None,
        temperature_c: value("temperature").map(|celsius| (celsius * 10.0).round() / 10.0),
    };
    let score = match score_news2(&observations) {
        Ok(score) => score,
        Err(_) => {
            metrics::counter!("wardline_news2_skipped_total", "reason" => "out_of_range")
                .increment(1);
            return None;
        }
    };
    let mut inputs = serde_json::Map::new();
    for (name, observation) in &used {
        inputs.insert(
            (*name).to_owned(),
            json!({
                "loinc": observation.loinc,
                "value": observation.value,
                "unit": observation.unit,
                "effective": observation.effective,
                "derived": observation.derived,
            }),
        );
    }
    let as_name = |parameter: &wardline_analytics::news2::News2Parameter| {
        serde_json::to_value(parameter)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let risk_name = |risk: wardline_analytics::news2::ClinicalRisk| {
        serde_json::to_value(risk)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    Some(match score {
        News2::Complete(score) => News2Record {
            patient_id,
            time: at,
            complete: true,
            total: score.total,
            risk: risk_name(score.risk),
            any_parameter_3: score.any_parameter_3,
            missing: Vec::new(),
            sub_scores: serde_json::to_value(score.sub_scores).unwrap_or(Value::Null),
            inputs: Value::Object(inputs),
        },
        News2::Partial(partial) => News2Record {
            patient_id,
            time: at,
            complete: false,
            total: partial.minimum_total,
            risk: risk_name(partial.minimum_risk),
            any_parameter_3: partial.any_parameter_3,
            missing: partial.missing.iter().map(as_name).collect(),
            sub_scores: serde_json::to_value(partial.sub_scores).unwrap_or(Value::Null),
            inputs: Value::Object(inputs),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn observation(code: ObservationCode, value: f64, minute: i64) -> Observation {
        let spec = code.spec();
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap() + Duration::minutes(minute);
        Observation {
            patient_id: PatientId::random(),
            device_id: DeviceId::parse("dev-001").unwrap(),
            seq: minute,
            code,
            loinc: spec.loinc,
            value,
            unit: spec.canonical_unit,
            original_value: None,
            original_unit: None,
            effective: at,
            received: at,
            derived: false,
        }
    }

    #[test]
    fn device_vitals_give_a_partial_score_naming_what_is_missing() {
        let latest = vec![
            observation(ObservationCode::RespiratoryRate, 22.0, 1),
            observation(ObservationCode::OxygenSaturationPulseOximetry, 95.0, 2),
            observation(ObservationCode::OxygenSaturation, 91.0, 0),
            observation(ObservationCode::SystolicBloodPressure, 105.0, 1),
            observation(ObservationCode::HeartRate, 112.0, 1),
            observation(ObservationCode::BodyTemperature, 38.04, 1),
        ];
        let at = latest[1].effective;
        let record = news2_from_latest(PatientId::random(), at, &latest).unwrap();
        assert!(!record.complete);
        assert_eq!(record.missing, vec!["air_or_oxygen", "consciousness"]);
        // RR 22 -> 2, SpO2 95 (the newer of the two) -> 1, SBP 105 -> 1, HR 112 -> 2,
        // 38.0 C -> 0: at least 6, so at least medium.
        assert_eq!(record.total, 6);
        assert_eq!(record.risk, "medium");
        assert_eq!(record.sub_scores["consciousness"], Value::Null);
        assert_eq!(record.inputs["spo2"]["loinc"], json!("59408-5"));
    }

    #[test]
    fn nothing_to_score_and_impossible_scores_give_nothing() {
        let at = Utc::now();
        assert!(news2_from_latest(PatientId::random(), at, &[]).is_none());
        let glucose = vec![observation(ObservationCode::GlucoseCgm, 100.0, 0)];
        assert!(news2_from_latest(PatientId::random(), at, &glucose).is_none());
        // 0 breaths/min is a possible device value but outside NEWS2's accepted range.
        let apnoea = vec![observation(ObservationCode::RespiratoryRate, 0.0, 0)];
        assert!(news2_from_latest(PatientId::random(), at, &apnoea).is_none());
    }
}
