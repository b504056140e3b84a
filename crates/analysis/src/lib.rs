//! What Wardline derives from committed data, off the acknowledgement path: heart rate
//! and rhythm events from ECG chunks, NEWS2 from vital signs.
//!
//! The analysis reads the committed event log (ECG chunks with their samples, and
//! observations) from its own stored cursor, in batches, and stores what it finds in one
//! commit per batch together with its new cursor ([`AnalysisResults`]). A device's
//! acknowledgement therefore never waits for analysis; an analysis that falls behind
//! catches up instead of dropping work; and after `kill -9` it resumes at its last
//! commit, so every committed chunk and vital sign is analysed once in effect.
//!
//! ECG state is kept per (patient, device, lead) in memory, at most
//! [`AnalysisSettings::max_streams`] streams; the stream fed longest ago is evicted beyond
//! that, and a stream idle for [`AnalysisSettings::stream_idle`] is dropped. A chunk for
//! which no stream is held (after a restart, an eviction, or on a new worker) **resumes**
//! the stream: the stored chunks that lead up to it without a gap (the last
//! [`ecg_stream::ANALYSIS_WINDOW_S`] seconds and the detector's settling time) are fed to
//! a new stream first, their findings discarded, and the rhythm events already stored are
//! taken up again; so a restart causes neither a cold-start artefact (a spurious pause or
//! AF call) nor a second copy of an event going on.

pub mod ecg_stream;
pub mod news2;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wardline_domain::{DeviceId, Observation, ObservationCode, PatientId, Signal};
use wardline_store::prelude::*;
use wardline_store::{
    AnalysisResults, CommittedEvent, CommittedWaveform, EventCursor, EventFilter,
    NewDerivedObservation, News2Record, RhythmEventQuery, RhythmEventRecord, StoreError,
    WaveformQuery,
};

use crate::ecg_stream::{ANALYSIS_WINDOW_S, Continuity, EcgStream, StreamFindings};
pub use crate::news2::{NEWS2_INPUTS, news2_from_latest};

/// The analysis' name as a reader of the event log.
pub const CONSUMER: &str = "analysis";

/// Seconds of stored signal before a chunk that a resumed stream is fed: the analysis
/// window and the detector's settling time (under 4 s) with room to spare.
const RESUME_S: i64 = ANALYSIS_WINDOW_S as i64 + 10;

/// Settings of the analysis.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// NEWS2 scores the latest value of each vital sign within this window before the
    /// newest one (`analytics.news2_window_minutes`).
    pub news2_window: Duration,
    /// ECG streams analysed at once.
    pub max_streams: usize,
    /// An ECG stream not fed for this long is forgotten.
    pub stream_idle: Duration,
    /// Events read from the log at once.
    pub batch_size: u32,
    /// After reaching the end of the log, how long the analysis lets commits gather
    /// before it reads again: one read and one commit of results for many small commits.
    /// NEWS2 results and rhythm events come this much later; readings' own rules are
    /// evaluated by the alarm engine without it.
    pub linger: std::time::Duration,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        Self {
            news2_window: Duration::minutes(60),
            max_streams: 256,
            stream_idle: Duration::minutes(10),
            batch_size: 4096,
            linger: std::time::Duration::from_millis(200),
        }
    }
}

const INPUTS: EventFilter = EventFilter {
    observations: true,
    waveforms: true,
    waveform_samples: true,
    news2: false,
    rhythm_events: false,
    device_reports: false,
    patients: None,
};

/// How much lower than the rest of the server the analysis runs, as a Unix nice value.
///
/// When the machine is saturated, acknowledging readings and evaluating their rules come
/// first; the analysis (NEWS2 and ECG findings) takes what CPU is left and catches up
/// from its cursor when the load eases, instead of slowing ingest and alarms. It is
/// never starved outright: a nice value, unlike an idle scheduling class, still gets a
/// share under sustained load.
pub const ANALYSIS_NICE: u8 = 10;

/// Starts the analysis at its stored cursor; it runs until `stop` is cancelled (or the
/// store closes), and the returned handle finishes when it has stopped.
///
/// The analysis runs on a thread of its own, with its own runtime and blocking threads
/// (for its reads of the log), all at [`ANALYSIS_NICE`]. A panic in it is counted
/// (`wardline_analysis_failed_total{work="panic"}`), logged, and the analysis starts
/// again from its last checkpoint, as after a failed batch.
pub async fn spawn_analysis(
    store: Arc<dyn Store>,
    settings: AnalysisSettings,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, StoreError> {
    let mut analyser = Analyser::new(Arc::clone(&store), settings.clone());
    analyser.load().await?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("wardline-analysis-io")
        .on_thread_start(lower_priority)
        .build()
        .map_err(|error| StoreError::Corrupt(format!("starting the analysis' runtime: {error}")))?;
    let (finished, done) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("wardline-analysis".into())
        .spawn(move || {
            lower_priority();
            let mut analyser = Some(analyser);
            loop {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runtime.block_on(async {
                        let analyser = match analyser.take() {
                            Some(analyser) => analyser,
                            None => restarted(&store, &settings, &stop).await?,
                        };
                        analyser.run(&stop).await;
                        Some(())
                    })
                }));
                match run {
                    Ok(_) => break,
                    Err(_) => {
                        metrics::counter!("wardline_analysis_failed_total", "work" => "panic")
                            .increment(1);
                        tracing::error!(
                            "the analysis panicked; restarting from its last checkpoint"
                        );
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
            }
            let _ = finished.send(());
        })
        .map_err(|error| StoreError::Corrupt(format!("starting the analysis: {error}")))?;
    Ok(tokio::spawn(async move {
        let _ = done.await;
    }))
}

/// A new analyser loaded from the last checkpoint, retried until it loads; `None` when
/// stopped first.
async fn restarted(
    store: &Arc<dyn Store>,
    settings: &AnalysisSettings,
    stop: &CancellationToken,
) -> Option<Analyser> {
    loop {
        let mut analyser = Analyser::new(Arc::clone(store), settings.clone());
        match analyser.load().await {
            Ok(()) => return Some(analyser),
            Err(error) => tracing::error!(%error, "could not reload the analysis"),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// Lowers the calling thread to [`ANALYSIS_NICE`] (Linux keeps a nice value per thread).
/// A failure leaves it at the server's priority, which is only slower under load.
fn lower_priority() {
    #[cfg(unix)]
    if let Err(error) = rustix::process::setpriority_process(
        Some(rustix::thread::gettid()),
        i32::from(ANALYSIS_NICE),
    ) {
        tracing::warn!(%error, "could not lower the analysis' priority");
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StreamKey {
    patient_id: PatientId,
    device_id: DeviceId,
    signal: Signal,
}

/// How many recent values of each NEWS2 input are remembered per patient: enough for
/// readings of several devices arriving slightly out of time order to be scored from
/// memory.
const REMEMBERED_VALUES: usize = 64;

/// One patient's recent NEWS2 inputs as the log brought them.
#[derive(Debug)]
struct Vitals {
    /// Values before this time are known only through the snapshot read from the store
    /// when the patient was first seen (the newest of each input before it).
    since: DateTime<Utc>,
    /// The newest [`REMEMBERED_VALUES`] values of each input, by effective time: every
    /// value newer than the oldest kept one is kept, so the newest value at or before a
    /// time is here whenever any kept value is at or before it.
    values: HashMap<ObservationCode, BTreeMap<DateTime<Utc>, Observation>>,
    /// Inputs whose older values were let go, for which "none kept before t" no longer
    /// means "none".
    truncated: HashSet<ObservationCode>,
    /// The newest time remembered.
    seen: DateTime<Utc>,
}

impl Vitals {
    fn new(since: DateTime<Utc>, snapshot: Vec<Observation>) -> Self {
        let mut vitals = Self {
            since,
            values: HashMap::new(),
            truncated: HashSet::new(),
            seen: since,
        };
        for value in snapshot
            .into_iter()
            .filter(|value| NEWS2_INPUTS.contains(&value.code))
        {
            vitals.remember(value);
        }
        vitals
    }

    fn remember(&mut self, observation: Observation) {
        self.seen = self.seen.max(observation.effective);
        let code = observation.code;
        let values = self.values.entry(code).or_default();
        values.insert(observation.effective, observation);
        if values.len() > REMEMBERED_VALUES {
            values.pop_first();
            self.truncated.insert(code);
        }
    }

    /// The newest value of each input within `window` before `at`, from memory; `None`
    /// when memory cannot say (a time before the patient was first seen, or before the
    /// values kept of an input).
    fn latest_at(&self, at: DateTime<Utc>, window: Duration) -> Option<Vec<Observation>> {
        if at < self.since {
            return None;
        }
        let mut latest = Vec::new();
        for code in NEWS2_INPUTS {
            let newest = self
                .values
                .get(&code)
                .and_then(|values| values.range(..=at).next_back());
            match newest {
                Some((effective, value)) if *effective >= at - window => {
                    latest.push(value.clone());
                }
                Some(_) => {}
                None if self.truncated.contains(&code) => return None,
                None => {}
            }
        }
        Some(latest)
    }
}

/// The analysis task's state.
pub struct Analyser {
    store: Arc<dyn Store>,
    settings: AnalysisSettings,
    cursor: EventCursor,
    streams: HashMap<StreamKey, (EcgStream, DateTime<Utc>)>,
    vitals: HashMap<PatientId, Vitals>,
}

impl std::fmt::Debug for Analyser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyser")
            .field("cursor", &self.cursor)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl Analyser {
    pub fn new(store: Arc<dyn Store>, settings: AnalysisSettings) -> Self {
        Self {
            store,
            settings,
            cursor: EventCursor(String::new()),
            streams: HashMap::new(),
            vitals: HashMap::new(),
        }
    }

    /// Reads the stored cursor; a first start begins at the log's tail and stores that
    /// position at once, so nothing committed after it can be missed.
    pub async fn load(&mut self) -> Result<(), StoreError> {
        self.streams.clear();
        self.vitals.clear();
        match self.store.checkpoint(CONSUMER).await? {
            Some(cursor) => self.cursor = cursor,
            None => {
                self.cursor = self.store.event_tail().await?;
                self.store
                    .record_analysis(AnalysisResults {
                        checkpoint: Some((CONSUMER.into(), self.cursor.clone())),
                        recorded: Utc::now(),
                        ..AnalysisResults::default()
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn run(mut self, stop: &CancellationToken) {
        let mut commits = self.store.commits();
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            match self.analyse_next_batch().await {
                // A batch shorter than asked for reached the end of the log: wait for
                // the next commit instead of reading again to find nothing.
                Ok(count) if count < self.settings.batch_size as usize => failures = 0,
                Ok(_) => {
                    failures = 0;
                    continue;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    metrics::counter!("wardline_analysis_failed_total", "work" => "batch")
                        .increment(1);
                    tracing::error!(%error, "analysis failed; resuming from its last checkpoint");
                    tokio::time::sleep(std::time::Duration::from_millis(
                        100 * u64::from(failures.min(50)),
                    ))
                    .await;
                    if let Err(error) = self.load().await {
                        tracing::error!(%error, "could not reload the analysis");
                    }
                    continue;
                }
            }
            let idle = Instant::now() + std::time::Duration::from_secs(1);
            tokio::select! {
                () = stop.cancelled() => return,
                changed = commits.changed() => if changed.is_err() {
                    return;
                },
                () = tokio::time::sleep_until(idle) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.settings.linger) => {}
            }
        }
    }

    /// Reads one batch of the log, analyses it and stores the results with the new
    /// cursor in one commit. Returns how many events there were.
    pub async fn analyse_next_batch(&mut self) -> Result<usize, StoreError> {
        let batch = self
            .store
            .events_after(&self.cursor, INPUTS, self.settings.batch_size)
            .await?;
        let count = batch.events.len();
        if count == 0 {
            return Ok(0);
        }
        let now = Utc::now();
        let newest_received = batch
            .events
            .iter()
            .filter_map(|event| match event {
                CommittedEvent::Observation(observation) => Some(observation.received),
                CommittedEvent::Waveform(waveform) => Some(waveform.received),
                _ => None,
            })
            .max();
        let mut results = AnalysisResults {
            recorded: now,
            ..AnalysisResults::default()
        };
        // A NEWS2 result is stored under (patient, time), and a later one for the same
        // time replaces it; so of the vital signs in this batch that share a patient and
        // a time, only the last is scored (from the values of all of them), the earlier
        // ones only remembered.
        let mut last_of_time: HashMap<(PatientId, DateTime<Utc>), usize> = HashMap::new();
        for (index, event) in batch.events.iter().enumerate() {
            if let CommittedEvent::Observation(observation) = event
                && NEWS2_INPUTS.contains(&observation.code)
            {
                last_of_time.insert((observation.patient_id, observation.effective), index);
            }
        }
        for (index, event) in batch.events.into_iter().enumerate() {
            match event {
                CommittedEvent::Waveform(waveform) if waveform.chunk.signal.is_ecg() => {
                    self.ecg_chunk(waveform, now, &mut results).await?;
                }
                CommittedEvent::Observation(observation)
                    if NEWS2_INPUTS.contains(&observation.code) =>
                {
                    let key = (observation.patient_id, observation.effective);
                    if last_of_time.get(&key) != Some(&index) {
                        self.remember(observation);
                    } else if let Some(score) = self.news2(observation).await? {
                        results.news2.push(score);
                    }
                }
                _ => {}
            }
        }
        results.checkpoint = Some((CONSUMER.into(), batch.next.clone()));
        let rhythm_events = results.rhythm_events.len();
        let news2: Vec<&'static str> = results
            .news2
            .iter()
            .map(|score| {
                if score.complete {
                    "complete"
                } else {
                    "partial"
                }
            })
            .collect();
        let stored = self.store.record_analysis(results).await?;
        self.cursor = batch.next;
        metrics::counter!("wardline_derived_observations_stored_total")
            .increment(stored.len() as u64);
        for status in news2 {
            metrics::counter!("wardline_news2_computed_total", "status" => status).increment(1);
        }
        metrics::counter!("wardline_rhythm_events_stored_total").increment(rhythm_events as u64);
        metrics::gauge!("wardline_ecg_streams").set(self.streams.len() as f64);
        // How far behind the data the analysis is: under saturation it yields the CPU to
        // ingest and the alarm engine, and this shows by how much.
        if let Some(received) = newest_received {
            let lag = (now - received).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::gauge!("wardline_analysis_lag_seconds").set(lag);
        }
        Ok(count)
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
        waveform: CommittedWaveform,
        now: DateTime<Utc>,
        results: &mut AnalysisResults,
    ) -> Result<(), StoreError> {
        let Ok(decoded) = wardline_waveform::decode(&waveform.chunk.encoded) else {
            metrics::counter!("wardline_ecg_chunks_unanalysable_total").increment(1);
            return Ok(());
        };
        // The detector filters out what is constant, so an origin (a FHIR upload's)
        // changes nothing it finds: the gain is all it needs.
        let gain = decoded.header.gain();
        let rate = waveform.chunk.sampling_rate_hz;
        let start = waveform.chunk.start;
        let key = StreamKey {
            patient_id: waveform.patient_id,
            device_id: waveform.chunk.device_id.clone(),
            signal: waveform.chunk.signal,
        };
        let stream = match self.streams.remove(&key).map(|(stream, _)| stream) {
            Some(stream) => match stream.continuity(start, rate, gain) {
                Continuity::Continues => stream,
                Continuity::Late => {
                    metrics::counter!("wardline_ecg_chunks_late_total").increment(1);
                    self.streams.insert(key, (stream, now));
                    return Ok(());
                }
                Continuity::Restarts => {
                    metrics::counter!("wardline_ecg_stream_restarts_total").increment(1);
                    self.evict(now);
                    match EcgStream::new(rate, gain, start) {
                        Ok(stream) => stream,
                        Err(_) => {
                            metrics::counter!("wardline_ecg_chunks_unanalysable_total")
                                .increment(1);
                            return Ok(());
                        }
                    }
                }
            },
            None => {
                self.evict(now);
                match self.resume(&key, rate, gain, start).await? {
                    Some(stream) => stream,
                    None => return Ok(()),
                }
            }
        };
        // The analysis is CPU work (tens of milliseconds for a long chunk): keep it off
        // the runtime's reactor threads.
        let samples = decoded.samples;
        let analysed = tokio::task::spawn_blocking(move || {
            let mut stream = stream;
            let findings = stream.push(&samples);
            (stream, findings)
        })
        .await;
        let Ok((stream, findings)) = analysed else {
            metrics::counter!("wardline_analysis_failed_total", "work" => "ecg_chunk").increment(1);
            return Ok(());
        };
        self.streams.insert(key.clone(), (stream, now));
        collect_findings(&key, findings, now, results);
        Ok(())
    }

    /// A stream for a chunk when none is held: fed the stored chunks that lead up to the
    /// chunk without a gap (their findings were stored when they were first analysed),
    /// taking up the rhythm events already stored. A fresh stream when there are none.
    async fn resume(
        &self,
        key: &StreamKey,
        rate: f64,
        gain: f64,
        start: DateTime<Utc>,
    ) -> Result<Option<EcgStream>, StoreError> {
        let stored = self
            .store
            .waveforms(WaveformQuery {
                patient_id: key.patient_id,
                signal: Some(key.signal),
                from: start - Duration::seconds(RESUME_S),
                to: start,
                limit: 1000,
            })
            .await?;
        let mut earlier: Vec<(DateTime<Utc>, Vec<i32>)> = Vec::new();
        let mut expected_end = start;
        let mut candidates: Vec<_> = stored
            .into_iter()
            .filter(|chunk| chunk.device_id == key.device_id && chunk.start < start)
            .collect();
        candidates.sort_by_key(|chunk| std::cmp::Reverse(chunk.start));
        for chunk in candidates {
            let Ok(decoded) = wardline_waveform::decode(&chunk.encoded) else {
                break;
            };
            let samples_end = chunk.start
                + Duration::microseconds((decoded.samples.len() as f64 / rate * 1e6).round() as i64);
            let gap = (expected_end - samples_end).num_milliseconds().abs();
            if chunk.sampling_rate_hz != rate || decoded.header.gain() != gain || gap > 100 {
                break;
            }
            expected_end = chunk.start;
            earlier.push((chunk.start, decoded.samples));
        }
        earlier.reverse();
        let stream_start = earlier.first().map_or(start, |(first, _)| *first);
        let Ok(mut stream) = EcgStream::new(rate, gain, stream_start) else {
            metrics::counter!("wardline_ecg_chunks_unanalysable_total").increment(1);
            return Ok(None);
        };
        if earlier.is_empty() {
            return Ok(Some(stream));
        }
        metrics::counter!("wardline_ecg_stream_resumes_total").increment(1);
        let events = self
            .store
            .rhythm_events(RhythmEventQuery {
                patient_id: key.patient_id,
                from: stream_start,
                to: start + Duration::seconds(1),
                limit: 1000,
            })
            .await?;
        let resumed = tokio::task::spawn_blocking(move || {
            for (_, samples) in &earlier {
                stream.push(samples);
            }
            stream.forget_events();
            stream
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        let mut stream = resumed;
        for event in events
            .into_iter()
            .filter(|event| event.device_id == key.device_id && event.signal == key.signal)
        {
            stream.resume_event(event.kind, event.onset, event.end);
        }
        Ok(Some(stream))
    }

    /// Remembers a vital sign that is not scored itself (a later one of the same patient
    /// and time is). A patient not yet remembered is left to that later one, which reads
    /// what the store holds up to its time, this value included.
    fn remember(&mut self, observation: Observation) {
        if let Some(vitals) = self.vitals.get_mut(&observation.patient_id) {
            vitals.remember(observation);
        }
    }

    /// NEWS2 at a vital sign's time from the newest value of each input within the
    /// window before it, from the patient's remembered vitals (read from the store when
    /// the patient is first seen, or for a reading older than what memory covers).
    /// `None` when the patient has no NEWS2 input in the window.
    async fn news2(&mut self, observation: Observation) -> Result<Option<News2Record>, StoreError> {
        let patient = observation.patient_id;
        let at = observation.effective;
        let window = self.settings.news2_window;
        if !self.vitals.contains_key(&patient) {
            let snapshot = self
                .store
                .latest_observations_between(patient, at - window, at)
                .await?;
            self.vitals.insert(patient, Vitals::new(at, snapshot));
        }
        let remembered = self.vitals.get_mut(&patient).and_then(|vitals| {
            vitals.remember(observation);
            vitals.latest_at(at, window)
        });
        let latest = match remembered {
            Some(latest) => latest,
            None => {
                metrics::counter!("wardline_news2_inputs_read_total").increment(1);
                self.store
                    .latest_observations_between(patient, at - window, at)
                    .await?
            }
        };
        // Patients not heard from for two windows are forgotten (and read again).
        if self.vitals.len() > 10_000 {
            self.vitals
                .retain(|_, vitals| at - vitals.seen < window * 2);
        }
        Ok(news2_from_latest(patient, at, &latest))
    }
}

/// Heart rates and rhythm events of one chunk, as results to store.
fn collect_findings(
    key: &StreamKey,
    findings: StreamFindings,
    now: DateTime<Utc>,
    results: &mut AnalysisResults,
) {
    let (min_rate, max_rate) = ObservationCode::HeartRate.spec().possible_range;
    results.derived.extend(
        findings
            .heart_rates
            .into_iter()
            .filter(|(_, bpm)| bpm.is_finite() && (min_rate..=max_rate).contains(bpm))
            .map(|(at, bpm)| NewDerivedObservation {
                patient_id: key.patient_id,
                device_id: key.device_id.clone(),
                // Wardline's own numbering: one derived rate per device and instant.
                seq: at.timestamp_millis(),
                code: ObservationCode::HeartRate,
                value: (bpm * 10.0).round() / 10.0,
                effective: at,
                received: now,
            }),
    );
    results
        .rhythm_events
        .extend(findings.events.into_iter().map(|event| {
            metrics::counter!("wardline_rhythm_events_found_total", "kind" => event.kind.as_str())
                .increment(1);
            let duration_s = (event.end - event.onset).num_milliseconds() as f64 / 1000.0;
            let mut detail = json!({"duration_s": duration_s});
            if let Some(bpm) = event.median_bpm {
                detail["median_bpm"] = json!((bpm * 10.0).round() / 10.0);
            }
            RhythmEventRecord {
                patient_id: key.patient_id,
                device_id: key.device_id.clone(),
                signal: key.signal,
                kind: event.kind,
                onset: event.onset,
                end: event.end,
                detail: Some(detail),
            }
        }));
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use wardline_domain::{DeviceId, ObservationCode, Reading};

    use super::*;

    fn value(code: ObservationCode, second: i64, value: f64) -> Observation {
        let at = time(second);
        Observation::from_reading(
            PatientId::random(),
            DeviceId::parse("ox-1").expect("device id"),
            &Reading {
                seq: second,
                code,
                value,
                original: None,
                effective: at,
            },
            at,
        )
    }

    fn time(second: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + second, 0).unwrap()
    }

    #[test]
    fn remembered_vitals_answer_for_times_they_cover_and_refuse_others() {
        let snapshot = vec![value(ObservationCode::HeartRate, 0, 80.0)];
        let mut vitals = Vitals::new(time(10), snapshot);
        vitals.remember(value(ObservationCode::OxygenSaturation, 12, 97.0));
        vitals.remember(value(ObservationCode::OxygenSaturation, 20, 91.0));
        let window = Duration::minutes(60);

        let at_15 = vitals.latest_at(time(15), window).expect("covered");
        let values: Vec<f64> = at_15.iter().map(|o| o.value).collect();
        assert!(values.contains(&80.0) && values.contains(&97.0) && !values.contains(&91.0));

        // Out of the window, a value is not used.
        let late = vitals.latest_at(time(12 + 3_700), window).expect("covered");
        assert!(late.iter().all(|o| o.value != 80.0));

        // Before the patient was first seen, only the store can say.
        assert!(vitals.latest_at(time(5), window).is_none());
    }

    #[test]
    fn an_input_whose_older_values_were_let_go_sends_older_times_to_the_store() {
        let mut vitals = Vitals::new(time(0), Vec::new());
        for second in 1..=(REMEMBERED_VALUES as i64 + 5) {
            vitals.remember(value(ObservationCode::OxygenSaturation, second, 95.0));
        }
        let window = Duration::minutes(60);
        assert!(vitals.latest_at(time(2), window).is_none(), "let go");
        assert!(
            vitals
                .latest_at(time(REMEMBERED_VALUES as i64), window)
                .is_some()
        );
    }
}
