//! Streaming ECG analysis for one lead of one device: beats, heart rate every 10 s of
//! signal, and rhythm events, fed chunk by chunk as chunks are committed.
//!
//! `wardline_ecg`'s beat detector and quality monitor are streaming already; its rhythm
//! analysis (brady/tachycardia, pauses, AF, poor signal) works on a whole record. Here it
//! runs on a sliding window: the last [`ANALYSIS_WINDOW_S`] seconds of signal, up to the
//! point where every beat has been detected (`samples seen − detector latency`), after
//! every chunk. An event seen in successive windows is merged into one, whose end grows
//! while it goes on.
//!
//! Latency, from the moment a sample is taken to when an event covering it can be
//! stored: the chunk's own length, plus the detector's latency (under about 4 s at any
//! rate), plus what the rule itself needs: 10 s of sustained rate for brady- and
//! tachycardia, 3 s for a pause, and at least 30 s of irregular rhythm (with the
//! 48-interval AF window, about a minute in practice) for AF. Heart rate is stored for
//! each 10 s of signal once the detector has passed its end.
//!
//! Memory is bounded: the detector's fixed ring buffers (about 100 KiB) and at most
//! [`ANALYSIS_WINDOW_S`] seconds of samples and beats (about 170 KiB at 360 Hz).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use wardline_domain::RhythmKind;
use wardline_ecg::{
    DetectorConfig, QrsDetector, QualityConfig, QualityMonitor, RhythmConfig, SignalQuality,
    analyze_rhythm_with_signal, morphology::dominant_morphology,
};

/// Seconds of recent signal the rhythm analysis looks at.
pub const ANALYSIS_WINDOW_S: f64 = 120.0;
/// One derived heart rate per this many seconds of signal.
pub const HEART_RATE_INTERVAL_S: f64 =
    wardline_domain::DERIVED_HEART_RATE_WINDOW_MS as f64 / 1000.0;
/// Rhythm analysis waits for this much settled signal before its first call; less
/// cannot hold the shortest AF episode the analysis reports.
const MIN_ANALYSIS_S: f64 = 20.0;
/// Once the window slides, an event lying wholly in its first seconds was seen (with
/// more context before it) by earlier windows; re-reading it at the cut edge could only
/// add artefacts of the cut.
const LEADING_EDGE_S: f64 = 30.0;
/// Events of one kind closer than this are one event seen by two windows.
const MERGE_GAP_S: f64 = 2.0;
/// A chunk starting this far from where the stream left off is not its continuation.
const CONTINUITY_TOLERANCE_MS: i64 = 100;

/// Why a chunk cannot be analysed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EcgStreamError {
    #[error("the ECG analysis cannot read this signal: {0}")]
    Unanalysable(String),
}

/// What one chunk produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamFindings {
    /// `(end of the 10-s window, beats per minute)`.
    pub heart_rates: Vec<(DateTime<Utc>, f64)>,
    /// New events, and events seen before whose end has grown (same onset).
    pub events: Vec<FoundEvent>,
}

/// A rhythm event in wall-clock time.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundEvent {
    pub kind: RhythmKind,
    pub onset: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Median heart rate over the event, when it holds beats.
    pub median_bpm: Option<f64>,
}

/// How a chunk relates to the stream so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// It carries on where the stream left off.
    Continues,
    /// It starts later (a gap, a dropped chunk) or has another rate or gain: the stream
    /// starts over from it.
    Restarts,
    /// It starts before where the stream left off (a late or out-of-order chunk): the
    /// detector cannot go back in time, so it is skipped.
    Late,
}

/// The analysis state of one ECG lead of one device.
#[derive(Debug)]
pub struct EcgStream {
    rate: f64,
    gain: f64,
    /// When sample 0 of this stream was taken.
    start: DateTime<Utc>,
    detector: QrsDetector,
    quality: QualityMonitor,
    latency: u64,
    recent: VecDeque<i32>,
    /// Stream index of `recent[0]`.
    recent_start: u64,
    beats: VecDeque<u64>,
    /// Poor-signal intervals `[start, end)` in stream indices.
    poor: VecDeque<(u64, u64)>,
    /// The end of the next 10-s heart-rate window: a multiple of 10 s of wall-clock
    /// time, so that a stream resumed from stored chunks after a restart derives its
    /// rates at the very instants the first one did.
    next_heart_rate_at: DateTime<Utc>,
    /// The last event reported per kind: `(onset, end)` in stream indices, and the onset
    /// as reported (kept exactly, so that an event resumed after a restart goes on
    /// growing the stored one).
    open: HashMap<RhythmKind, OpenEvent>,
}

#[derive(Debug, Clone, Copy)]
struct OpenEvent {
    onset: u64,
    end: u64,
    onset_time: DateTime<Utc>,
}

/// The first multiple of `interval_s` seconds since the epoch at or after `time`.
fn ceil_to(time: DateTime<Utc>, interval_s: f64) -> DateTime<Utc> {
    let interval_ms = (interval_s * 1000.0).round().max(1.0) as i64;
    let ms = time.timestamp_millis();
    let ceiling = ms.div_euclid(interval_ms) * interval_ms
        + if ms.rem_euclid(interval_ms) == 0 {
            0
        } else {
            interval_ms
        };
    DateTime::from_timestamp_millis(ceiling).unwrap_or(time)
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

impl EcgStream {
    /// A stream whose first sample was taken at `start`.
    pub fn new(rate: f64, gain: f64, start: DateTime<Utc>) -> Result<Self, EcgStreamError> {
        let unanalysable =
            |error: wardline_ecg::EcgError| EcgStreamError::Unanalysable(error.to_string());
        let detector = QrsDetector::new(&DetectorConfig::new(rate)).map_err(unanalysable)?;
        let quality = QualityMonitor::new(&QualityConfig::new(rate, gain)).map_err(unanalysable)?;
        let latency = detector.max_latency_samples();
        let window = (ANALYSIS_WINDOW_S * rate).ceil() as usize;
        Ok(Self {
            rate,
            gain,
            start,
            detector,
            quality,
            latency,
            recent: VecDeque::with_capacity(window),
            recent_start: 0,
            beats: VecDeque::new(),
            poor: VecDeque::new(),
            next_heart_rate_at: ceil_to(
                start + TimeDelta::milliseconds((HEART_RATE_INTERVAL_S * 1000.0) as i64),
                HEART_RATE_INTERVAL_S,
            ),
            open: HashMap::new(),
        })
    }

    fn samples(&self, seconds: f64) -> u64 {
        (seconds * self.rate).round().max(0.0) as u64
    }

    /// Wall-clock time of a stream index.
    pub fn time_of(&self, index: u64) -> DateTime<Utc> {
        let micros = (index as f64 / self.rate * 1e6).round() as i64;
        self.start + TimeDelta::microseconds(micros)
    }

    /// The stream index of a wall-clock time (0 before the stream began).
    pub fn index_of(&self, time: DateTime<Utc>) -> u64 {
        let seconds = (time - self.start).num_microseconds().unwrap_or(0) as f64 / 1e6;
        (seconds * self.rate).round().max(0.0) as u64
    }

    /// Takes up an event already reported (and stored) before this stream existed, so
    /// that a stream resumed after a restart extends it instead of reporting it anew.
    pub fn resume_event(&mut self, kind: RhythmKind, onset: DateTime<Utc>, end: DateTime<Utc>) {
        let event = OpenEvent {
            onset: self.index_of(onset),
            end: self.index_of(end),
            onset_time: onset,
        };
        if self
            .open
            .get(&kind)
            .is_none_or(|open| open.end <= event.end)
        {
            self.open.insert(kind, event);
        }
    }

    /// Forgets events found while catching up on signal analysed before.
    pub fn forget_events(&mut self) {
        self.open.clear();
    }

    /// Where the next chunk should start.
    pub fn expected_next(&self) -> DateTime<Utc> {
        self.time_of(self.detector.samples_seen())
    }

    /// Whether a chunk with this start, rate and gain carries on this stream.
    pub fn continuity(&self, start: DateTime<Utc>, rate: f64, gain: f64) -> Continuity {
        if rate != self.rate || gain != self.gain {
            return Continuity::Restarts;
        }
        let offset = (start - self.expected_next()).num_milliseconds();
        if offset > CONTINUITY_TOLERANCE_MS {
            Continuity::Restarts
        } else if offset < -CONTINUITY_TOLERANCE_MS {
            Continuity::Late
        } else {
            Continuity::Continues
        }
    }

    /// Feeds the chunk's samples (which must continue the stream) and returns what can
    /// now be said.
    pub fn push(&mut self, samples: &[i32]) -> StreamFindings {
        let mut new_beats = Vec::new();
        self.detector.push_into(samples, &mut new_beats);
        self.beats.extend(new_beats.iter().map(|beat| beat.sample));
        for segment in self.quality.push(samples) {
            if segment.quality == SignalQuality::Good {
                continue;
            }
            match self.poor.back_mut() {
                Some(last) if last.1 >= segment.start => last.1 = last.1.max(segment.end),
                _ => self.poor.push_back((segment.start, segment.end)),
            }
        }
        self.recent.extend(samples.iter().copied());
        let window = self.samples(ANALYSIS_WINDOW_S) as usize;
        while self.recent.len() > window {
            self.recent.pop_front();
            self.recent_start += 1;
        }
        while self
            .beats
            .front()
            .is_some_and(|&beat| beat < self.recent_start)
        {
            self.beats.pop_front();
        }
        while self
            .poor
            .front()
            .is_some_and(|&(_, end)| end <= self.recent_start)
        {
            self.poor.pop_front();
        }
        // Every beat before `settled` has been detected: the detector's decisions lag
        // the signal by at most its latency.
        let settled = self.detector.samples_seen().saturating_sub(self.latency);
        StreamFindings {
            heart_rates: self.heart_rates(settled),
            events: self.rhythm_events(settled),
        }
    }

    fn in_poor_signal(&self, from: u64, to: u64) -> bool {
        self.poor
            .iter()
            .any(|&(start, end)| start < to && from < end)
    }

    /// One rate per 10-s window of settled signal: 60 / median RR of the intervals ending
    /// in the window. No rate for a window with fewer than two clean intervals: a pause
    /// or poor signal is reported as an event, not as a rate.
    fn heart_rates(&mut self, settled: u64) -> Vec<(DateTime<Utc>, f64)> {
        let step = self.samples(HEART_RATE_INTERVAL_S).max(1);
        let mut rates = Vec::new();
        while self.index_of(self.next_heart_rate_at) <= settled {
            let at = self.next_heart_rate_at;
            let end = self.index_of(at);
            let start = end.saturating_sub(step);
            self.next_heart_rate_at =
                at + TimeDelta::milliseconds((HEART_RATE_INTERVAL_S * 1000.0) as i64);
            if start < self.recent_start {
                continue;
            }
            let mut intervals: Vec<f64> = self
                .beats
                .iter()
                .zip(self.beats.iter().skip(1))
                .filter(|&(_, &later)| later >= start && later < end)
                .filter(|&(&earlier, &later)| !self.in_poor_signal(earlier, later + 1))
                .map(|(&earlier, &later)| (later - earlier) as f64 / self.rate)
                .collect();
            if intervals.len() < 2 {
                continue;
            }
            if let Some(rr) = median(&mut intervals)
                && rr > 0.0
            {
                rates.push((at, 60.0 / rr));
            }
        }
        rates
    }

    fn median_bpm(&self, onset: u64, end: u64) -> Option<f64> {
        let mut intervals: Vec<f64> = self
            .beats
            .iter()
            .zip(self.beats.iter().skip(1))
            .filter(|&(&earlier, &later)| earlier >= onset && later <= end)
            .map(|(&earlier, &later)| (later - earlier) as f64 / self.rate)
            .collect();
        median(&mut intervals)
            .filter(|rr| *rr > 0.0)
            .map(|rr| 60.0 / rr)
    }

    fn rhythm_events(&mut self, settled: u64) -> Vec<FoundEvent> {
        if settled <= self.recent_start
            || settled - self.recent_start < self.samples(MIN_ANALYSIS_S)
        {
            return Vec::new();
        }
        let length = settled - self.recent_start;
        let Ok(length_usize) = usize::try_from(length) else {
            return Vec::new();
        };
        let origin = self.recent_start;
        let relative_beats: Vec<u64> = self
            .beats
            .iter()
            .filter(|&&beat| beat < settled)
            .map(|&beat| beat - origin)
            .collect();
        let relative_poor: Vec<(u64, u64)> = self
            .poor
            .iter()
            .filter(|&&(start, _)| start < settled)
            .map(|&(start, end)| (start.max(origin) - origin, end.min(settled) - origin))
            .collect();
        let rate = self.rate;
        let samples = self.recent.make_contiguous();
        let Some(window) = samples.get(..length_usize) else {
            return Vec::new();
        };
        let dominant = dominant_morphology(window, &relative_beats, rate);
        let Ok(mut events) = analyze_rhythm_with_signal(
            window,
            &relative_beats,
            &dominant,
            &relative_poor,
            &RhythmConfig::new(rate),
        ) else {
            return Vec::new();
        };
        events.sort_by_key(|event| (event.onset, event.end));
        let leading_edge = if origin > 0 {
            origin + self.samples(LEADING_EDGE_S)
        } else {
            0
        };
        let merge_gap = self.samples(MERGE_GAP_S);
        let mut found = Vec::new();
        for event in events {
            let kind = event.kind;
            let (onset, end) = (event.onset + origin, event.end + origin);
            if end <= leading_edge {
                continue;
            }
            let reported = match self.open.get(&kind).copied() {
                Some(open) if end < open.onset => None,
                Some(open) if onset <= open.end + merge_gap => {
                    // The same event, seen again: it may have grown.
                    (end > open.end).then_some(OpenEvent { end, ..open })
                }
                _ => Some(OpenEvent {
                    onset,
                    end,
                    onset_time: self.time_of(onset),
                }),
            };
            if let Some(event) = reported {
                self.open.insert(kind, event);
                let (onset, end) = (event.onset, event.end);
                found.push(FoundEvent {
                    kind,
                    onset: event.onset_time,
                    end: self.time_of(end),
                    median_bpm: match kind {
                        RhythmKind::PoorSignal | RhythmKind::Pause => None,
                        _ => self.median_bpm(onset, end),
                    },
                });
            }
        }
        found
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
    }

    /// A clean synthetic ECG: narrow spikes every `rr` seconds.
    fn spikes(rate: f64, seconds: f64, rr: f64) -> Vec<i32> {
        let n = (rate * seconds) as usize;
        let mut signal = vec![1024i32; n];
        let mut t = 0.5;
        while t < seconds {
            let centre = (t * rate) as i64;
            for d in -8i64..=8 {
                let x = d as f64 / (0.01 * rate);
                if let Some(sample) = usize::try_from(centre + d)
                    .ok()
                    .and_then(|i| signal.get_mut(i))
                {
                    *sample += (300.0 * (-x * x).exp()) as i32;
                }
            }
            t += rr;
        }
        signal
    }

    #[test]
    fn a_regular_rhythm_gives_its_rate_every_ten_seconds() {
        let rate = 360.0;
        let signal = spikes(rate, 65.0, 0.8);
        let mut stream = EcgStream::new(rate, 200.0, start()).unwrap();
        let mut rates = Vec::new();
        for chunk in signal.chunks(1800) {
            rates.extend(stream.push(chunk).heart_rates);
        }
        assert!(rates.len() >= 5, "{rates:?}");
        for (at, bpm) in &rates {
            assert!((bpm - 75.0).abs() < 1.5, "{bpm} at {at}");
        }
        assert_eq!(rates[0].0, start() + TimeDelta::seconds(10));
    }

    #[test]
    fn a_flat_line_is_poor_signal_not_a_rate() {
        let rate = 250.0;
        let mut stream = EcgStream::new(rate, 200.0, start()).unwrap();
        let mut findings = StreamFindings::default();
        for _ in 0..20 {
            let found = stream.push(&[1024; 500]);
            findings.heart_rates.extend(found.heart_rates);
            findings.events.extend(found.events);
        }
        assert!(findings.heart_rates.is_empty());
        let poor: Vec<_> = findings
            .events
            .iter()
            .filter(|event| event.kind == RhythmKind::PoorSignal)
            .collect();
        assert!(!poor.is_empty());
        // Seen by many windows, stored as one event that grows.
        assert!(poor.iter().all(|event| event.onset == poor[0].onset));
        assert!(
            findings
                .events
                .iter()
                .all(|event| event.kind == RhythmKind::PoorSignal),
            "no rhythm call on a flat line: {:?}",
            findings.events
        );
    }

    #[test]
    fn continuity_is_judged_on_time_rate_and_gain() {
        let mut stream = EcgStream::new(360.0, 200.0, start()).unwrap();
        stream.push(&[1024; 3600]);
        let next = start() + TimeDelta::seconds(10);
        assert_eq!(stream.continuity(next, 360.0, 200.0), Continuity::Continues);
        assert_eq!(
            stream.continuity(next + TimeDelta::seconds(5), 360.0, 200.0),
            Continuity::Restarts
        );
        assert_eq!(
            stream.continuity(next - TimeDelta::seconds(5), 360.0, 200.0),
            Continuity::Late
        );
        assert_eq!(stream.continuity(next, 250.0, 200.0), Continuity::Restarts);
        assert!(EcgStream::new(10.0, 200.0, start()).is_err());
    }
}
