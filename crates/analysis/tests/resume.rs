//! The analysis over the event log: a restart resumes ECG streams and NEWS2 where they
//! were, so an interrupted run stores what an uninterrupted one does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use wardline_analysis::{Analyser, AnalysisSettings};
use wardline_domain::{
    DeviceId, DeviceKind, DeviceMessage, ObservationCode, PatientId, PayloadLimits, Reading,
    RhythmKind, WaveformChunk, parse_device_message,
};
use wardline_sim::{AfEpisodes, CardiacScenario, Scenario, SyntheticEcgConfig};
use wardline_store::prelude::*;
use wardline_store::sqlite::{SqliteOptions, SqliteStore};
use wardline_store::{
    AuditEvent, AuditOutcome, EncodedWaveform, IngestItem, IngestPayload, InitialAssignment,
    NewDevice, NewPatient, News2Query, ObservationQuery, RhythmEventQuery,
};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0).unwrap()
}

fn audit() -> AuditEvent {
    AuditEvent {
        time: start(),
        actor: None,
        actor_label: "test".into(),
        action: "setup".into(),
        patient_id: None,
        outcome: AuditOutcome::Allowed,
        remote_addr: None,
        detail: None,
    }
}

/// Ten minutes of a synthetic patch with an AF episode from minute 2 to minute 6.
fn chunks() -> Vec<WaveformChunk> {
    let config = SyntheticEcgConfig {
        af_episodes: Some(AfEpisodes {
            first_onset_min: (2.0, 2.0),
            sinus_min: (60.0, 60.0),
            af_min: (4.0, 4.0),
        }),
        ..SyntheticEcgConfig::default()
    };
    let patient = CardiacScenario::standard_patient("ben", "Ben");
    let mut scenario = CardiacScenario::synthetic(patient, "ecg-ben", config, 7, start());
    scenario
        .advance_to(start() + Duration::minutes(10))
        .into_iter()
        .filter_map(|emission| {
            match parse_device_message(
                &emission.payload_bytes,
                emission.sim_time,
                &PayloadLimits::default(),
            )
            .unwrap()
            {
                DeviceMessage::Waveform(chunk) => Some(chunk),
                DeviceMessage::Readings(_) => None,
            }
        })
        .collect()
}

struct Patch {
    store: Arc<SqliteStore>,
    patient: PatientId,
    device: DeviceId,
    _folder: tempfile::TempDir,
}

async fn patch() -> Patch {
    wearer(DeviceKind::Ecg, "ecg-ben").await
}

/// A patient wearing one device of this kind, in a fresh store.
async fn wearer(kind: DeviceKind, device: &str) -> Patch {
    let folder = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(SqliteOptions::new(
            folder.path().join("w.db"),
            wardline_store::AuditKey::generate().unwrap(),
        ))
        .await
        .unwrap(),
    );
    let patient = PatientId::random();
    store
        .create_patient(
            NewPatient {
                id: patient,
                display_name: "Ben".into(),
                birth_date: None,
                mrn: None,
                created: start(),
            },
            audit(),
        )
        .await
        .unwrap();
    let device = DeviceId::parse(device).unwrap();
    store
        .enrol_device(
            NewDevice {
                id: device.clone(),
                kind,
                model: "patch".into(),
                serial: "1".into(),
                secret_hash: [0; 32],
                created: start(),
            },
            Some(InitialAssignment {
                patient_id: patient,
                from: start() - Duration::hours(1),
            }),
            audit(),
        )
        .await
        .unwrap();
    Patch {
        store,
        patient,
        device,
        _folder: folder,
    }
}

impl Patch {
    async fn send(&self, chunk: &WaveformChunk) {
        let header = wardline_waveform::ChunkHeader::with_gain(
            chunk.sampling_rate_hz,
            chunk.start.timestamp_millis(),
            chunk.gain,
            chunk.baseline,
        );
        self.store
            .ingest(vec![IngestItem {
                device_id: self.device.clone(),
                received: chunk.end(),
                payload: IngestPayload::Waveform(EncodedWaveform {
                    seq: chunk.seq,
                    signal: chunk.signal,
                    sampling_rate_hz: chunk.sampling_rate_hz,
                    start: chunk.start,
                    end: chunk.end(),
                    sample_count: chunk.samples.len() as u32,
                    encoded: wardline_waveform::encode(&header, &chunk.samples).unwrap(),
                }),
            }])
            .await
            .unwrap();
    }

    async fn analyser(&self) -> Analyser {
        let mut analyser = Analyser::new(self.store.clone(), AnalysisSettings::default());
        analyser.load().await.unwrap();
        analyser
    }

    /// What was stored: rhythm events `(kind, onset, end)` and derived heart rates.
    async fn findings(
        &self,
    ) -> (
        Vec<(RhythmKind, DateTime<Utc>, DateTime<Utc>)>,
        Vec<(DateTime<Utc>, f64)>,
    ) {
        let events = self
            .store
            .rhythm_events(RhythmEventQuery {
                patient_id: self.patient,
                from: start() - Duration::hours(1),
                to: start() + Duration::hours(1),
                limit: 1000,
            })
            .await
            .unwrap()
            .into_iter()
            .map(|event| (event.kind, event.onset, event.end))
            .collect();
        let rates = self
            .store
            .observations(ObservationQuery {
                patient_id: self.patient,
                code: ObservationCode::HeartRate,
                from: start() - Duration::hours(1),
                to: start() + Duration::hours(1),
                after: None,
                limit: 10_000,
                newest_first: false,
            })
            .await
            .unwrap()
            .observations
            .into_iter()
            .map(|observation| (observation.effective, observation.value))
            .collect();
        (events, rates)
    }
}

async fn drain(analyser: &mut Analyser) {
    while analyser.analyse_next_batch().await.unwrap() > 0 {}
}

#[tokio::test]
async fn a_restart_in_the_middle_of_an_episode_changes_nothing_stored() {
    let chunks = chunks();
    assert_eq!(chunks.len(), 60, "ten minutes of 10-s chunks");

    let uninterrupted = patch().await;
    let mut analyser = uninterrupted.analyser().await;
    for chunk in &chunks {
        uninterrupted.send(chunk).await;
        drain(&mut analyser).await;
    }
    let (events, rates) = uninterrupted.findings().await;
    let af: Vec<_> = events
        .iter()
        .filter(|(kind, _, _)| *kind == RhythmKind::AtrialFibrillation)
        .collect();
    assert_eq!(
        af.len(),
        1,
        "one AF episode, stored once as it grew: {events:?}"
    );
    assert!(
        !events.iter().any(|(kind, _, _)| *kind == RhythmKind::Pause),
        "{events:?}"
    );
    assert!(rates.len() >= 55, "a rate per 10 s: {}", rates.len());

    // The same chunks, with the analysis killed twice: at minute 4 (in the episode) after
    // its last commit, and at minute 7 with two chunks sent but not yet analysed.
    let restarted = patch().await;
    let mut analyser = restarted.analyser().await;
    for (index, chunk) in chunks.iter().enumerate() {
        restarted.send(chunk).await;
        if index == 24 {
            drop(analyser);
            analyser = restarted.analyser().await;
        }
        if index == 42 || index == 43 {
            continue;
        }
        if index == 44 {
            drop(analyser);
            analyser = restarted.analyser().await;
        }
        drain(&mut analyser).await;
    }
    let (resumed_events, resumed_rates) = restarted.findings().await;
    assert_eq!(
        resumed_events, events,
        "the same events, no spurious pause or AF"
    );
    assert_eq!(resumed_rates.len(), rates.len());
    for ((at, bpm), (resumed_at, resumed_bpm)) in rates.iter().zip(&resumed_rates) {
        assert_eq!(at, resumed_at);
        assert!(
            (bpm - resumed_bpm).abs() < 1.0,
            "{at}: {bpm} against {resumed_bpm}"
        );
    }
}

/// NEWS2 is computed for every vital sign committed, in order, from the newest value of
/// each input before it; a restart resumes from the stored vitals.
#[tokio::test]
async fn every_vital_sign_gets_its_news2_across_a_restart() {
    let patch = patch().await;
    let mut analyser = patch.analyser().await;
    let vital = |seq: i64, minute: i64, code: ObservationCode, value: f64| IngestItem {
        device_id: patch.device.clone(),
        received: start() + Duration::minutes(minute),
        payload: IngestPayload::Readings(vec![Reading {
            seq,
            code,
            value,
            original: None,
            effective: start() + Duration::minutes(minute),
        }]),
    };
    patch
        .store
        .ingest(vec![
            vital(1, 1, ObservationCode::RespiratoryRate, 26.0),
            vital(2, 2, ObservationCode::HeartRate, 80.0),
        ])
        .await
        .unwrap();
    drain(&mut analyser).await;
    drop(analyser);
    patch
        .store
        .ingest(vec![vital(3, 3, ObservationCode::HeartRate, 135.0)])
        .await
        .unwrap();
    let mut analyser = patch.analyser().await;
    drain(&mut analyser).await;
    let scores = patch
        .store
        .news2_scores(News2Query {
            patient_id: patch.patient,
            from: start(),
            to: start() + Duration::hours(1),
            limit: 10,
            newest_first: false,
        })
        .await
        .unwrap();
    let totals: Vec<(i64, u8)> = scores
        .iter()
        .map(|score| ((score.time - start()).num_minutes(), score.total))
        .collect();
    // RR 26 scores 3; HR 80 scores 0 and HR 135 scores 3.
    assert_eq!(totals, [(1, 3), (2, 3), (3, 6)]);
    assert!(scores.iter().all(|score| !score.complete));
}

/// The analysis started as the server starts it (its own thread and runtime) analyses
/// what is committed, and stops when told to: the handle finishes, and nothing is
/// analysed after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawned_analysis_works_and_stops_when_told() {
    let wearer = wearer(DeviceKind::PulseOximeter, "spo2-001").await;
    let store: Arc<dyn Store> = wearer.store.clone();
    let (patient, oximeter) = (wearer.patient, wearer.device.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = wardline_analysis::spawn_analysis(
        Arc::clone(&store),
        AnalysisSettings::default(),
        stop.clone(),
    )
    .await
    .unwrap();
    let spo2 = |seq: i64, minute: i64| IngestItem {
        device_id: oximeter.clone(),
        received: start() + Duration::minutes(minute),
        payload: IngestPayload::Readings(vec![Reading {
            seq,
            code: ObservationCode::OxygenSaturationPulseOximetry,
            value: 91.0,
            original: None,
            effective: start() + Duration::minutes(minute),
        }]),
    };
    let news2 = |store: Arc<dyn Store>| async move {
        store
            .news2_scores(News2Query {
                patient_id: patient,
                from: start() - Duration::hours(1),
                to: start() + Duration::hours(1),
                limit: 100,
                newest_first: false,
            })
            .await
            .unwrap()
            .len()
    };
    store.ingest(vec![spo2(1, 1)]).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while news2(Arc::clone(&store)).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no NEWS2 result in 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), handle)
        .await
        .expect("the analysis stops within 10 s")
        .unwrap();
    store.ingest(vec![spo2(2, 2)]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        news2(Arc::clone(&store)).await,
        1,
        "nothing analysed after the stop"
    );
}
