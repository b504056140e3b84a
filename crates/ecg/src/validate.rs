//! Scoring detected beats and AF against reference annotations, and the text
//! table `wardline validate ecg` prints.

use std::fmt::Write as _;

use crate::Result;
use crate::rhythm::RhythmKind;
use crate::wfdb::{Annotation, rhythm_spans};

/// EC57 match window.
pub const MATCH_WINDOW_S: f64 = 0.150;

/// Reference beat positions (beat annotations only, as EC57 scores).
pub fn reference_beats(annotations: &[Annotation]) -> Vec<u64> {
    annotations
        .iter()
        .filter(|a| a.is_beat() && a.sample >= 0)
        .map(|a| a.sample as u64)
        .collect()
}

/// Reference AF spans in seconds: rhythm annotations labelled `(AFIB` (atrial
/// flutter, `(AFL`, is not AF here).
pub fn reference_af_spans(
    annotations: &[Annotation],
    n_samples: u64,
    sampling_rate: f64,
) -> Vec<(f64, f64)> {
    rhythm_spans(annotations, n_samples as i64)
        .into_iter()
        .filter(|s| s.label == "(AFIB")
        .map(|s| (s.start as f64 / sampling_rate, s.end as f64 / sampling_rate))
        .collect()
}

/// Scores one record end to end: runs [`crate::analyze`] on the lead and
/// compares with the annotations.
pub fn validate_record(
    record: &str,
    lead: &str,
    samples: &[i32],
    sampling_rate: f64,
    units_per_mv: f64,
    annotations: &[Annotation],
) -> Result<RecordResult> {
    let a = crate::analyze(samples, sampling_rate, units_per_mv)?;
    let det: Vec<u64> = a.beats.iter().map(|b| b.sample).collect();
    let window = (MATCH_WINDOW_S * sampling_rate).round() as u64;
    let beats = score_beats(&reference_beats(annotations), &det, window);
    let af_det: Vec<(f64, f64)> = a
        .events
        .iter()
        .filter(|e| e.kind == RhythmKind::AtrialFibrillation)
        .map(|e| (e.onset as f64 / sampling_rate, e.end as f64 / sampling_rate))
        .collect();
    let n = samples.len() as u64;
    let af = score_af(
        &reference_af_spans(annotations, n, sampling_rate),
        &af_det,
        n as f64 / sampling_rate,
    );
    Ok(RecordResult {
        record: record.to_string(),
        lead: lead.to_string(),
        beats,
        af,
    })
}

/// Beat-by-beat comparison of one record (ANSI/AAMI EC57 style: reference
/// beat annotations only, a detection matches a reference beat within the
/// match window, each used at most once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BeatScore {
    pub tp: u64,
    pub fn_: u64,
    pub fp: u64,
}

impl BeatScore {
    /// Sensitivity TP / (TP + FN), in percent (100 when there is nothing to find).
    pub fn sensitivity(&self) -> f64 {
        pct(self.tp, self.tp + self.fn_)
    }

    /// Positive predictivity TP / (TP + FP), in percent.
    pub fn positive_predictivity(&self) -> f64 {
        pct(self.tp, self.tp + self.fp)
    }

    /// Sums two scores (gross statistics).
    pub fn add(&self, o: &Self) -> Self {
        Self {
            tp: self.tp + o.tp,
            fn_: self.fn_ + o.fn_,
            fp: self.fp + o.fp,
        }
    }
}

fn pct(num: u64, den: u64) -> f64 {
    if den == 0 {
        100.0
    } else {
        100.0 * num as f64 / den as f64
    }
}

/// Matches detections to reference beats (both sorted sample indices).
///
/// Pairs are formed closest-first, so a detection between two reference beats
/// goes to the nearer one; `window` is the largest allowed distance in samples
/// (150 ms under EC57: 54 samples at 360 Hz).
pub fn score_beats(reference: &[u64], detected: &[u64], window: u64) -> BeatScore {
    let mut pairs: Vec<(u64, usize, usize)> = Vec::new();
    let mut start = 0usize;
    for (i, &r) in reference.iter().enumerate() {
        while start < detected.len() && detected[start] + window < r {
            start += 1;
        }
        let mut j = start;
        while j < detected.len() && detected[j] <= r + window {
            pairs.push((detected[j].abs_diff(r), i, j));
            j += 1;
        }
    }
    pairs.sort_unstable();
    let mut ref_used = vec![false; reference.len()];
    let mut det_used = vec![false; detected.len()];
    let mut tp = 0u64;
    for (_, i, j) in pairs {
        if !ref_used[i] && !det_used[j] {
            ref_used[i] = true;
            det_used[j] = true;
            tp += 1;
        }
    }
    BeatScore {
        tp,
        fn_: reference.len() as u64 - tp,
        fp: detected.len() as u64 - tp,
    }
}

/// Unmatched reference beats and detections, for diagnosing a record.
pub fn beat_errors(reference: &[u64], detected: &[u64], window: u64) -> (Vec<u64>, Vec<u64>) {
    let mut fns = Vec::new();
    let mut fps = Vec::new();
    let (mut i, mut j) = (0usize, 0usize);
    while i < reference.len() || j < detected.len() {
        match (reference.get(i), detected.get(j)) {
            (Some(&r), Some(&d)) if r.abs_diff(d) <= window => {
                i += 1;
                j += 1;
            }
            (Some(&r), Some(&d)) if r < d => {
                fns.push(r);
                i += 1;
            }
            (Some(_), Some(&d)) => {
                fps.push(d);
                j += 1;
            }
            (Some(&r), None) => {
                fns.push(r);
                i += 1;
            }
            (None, Some(&d)) => {
                fps.push(d);
                j += 1;
            }
            (None, None) => break,
        }
    }
    (fns, fps)
}

/// AF agreement for one record, over fixed windows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AfScore {
    /// Seconds inside detected AF episodes.
    pub detected_seconds: f64,
    /// Seconds inside reference `(AFIB` spans.
    pub reference_seconds: f64,
    /// Seconds that are both.
    pub overlap_seconds: f64,
    /// Windows AF in both / reference only / detection only / neither.
    pub tp_windows: u64,
    pub fn_windows: u64,
    pub fp_windows: u64,
    pub tn_windows: u64,
}

impl AfScore {
    /// Window sensitivity, percent.
    pub fn sensitivity(&self) -> f64 {
        pct(self.tp_windows, self.tp_windows + self.fn_windows)
    }

    /// Window specificity, percent.
    pub fn specificity(&self) -> f64 {
        pct(self.tn_windows, self.tn_windows + self.fp_windows)
    }

    /// Sums two scores.
    pub fn add(&self, o: &Self) -> Self {
        Self {
            detected_seconds: self.detected_seconds + o.detected_seconds,
            reference_seconds: self.reference_seconds + o.reference_seconds,
            overlap_seconds: self.overlap_seconds + o.overlap_seconds,
            tp_windows: self.tp_windows + o.tp_windows,
            fn_windows: self.fn_windows + o.fn_windows,
            fp_windows: self.fp_windows + o.fp_windows,
            tn_windows: self.tn_windows + o.tn_windows,
        }
    }
}

/// Length of the windows AF is scored over.
pub const AF_WINDOW_SECONDS: f64 = 30.0;

fn covered(spans: &[(f64, f64)], lo: f64, hi: f64) -> f64 {
    spans
        .iter()
        .map(|&(a, b)| (b.min(hi) - a.max(lo)).max(0.0))
        .sum()
}

/// Scores detected AF episodes against reference AF spans (seconds, `[start,
/// end)`, non-overlapping within each list) over a record of `duration` s.
///
/// The record is cut into consecutive 30 s windows (a last partial window is
/// dropped). A window is AF in the reference when at least half of it lies in
/// `(AFIB` spans, and AF in the detection when at least half of it lies in
/// detected AF episodes; the same rule on both sides keeps the comparison
/// symmetric.
pub fn score_af(reference: &[(f64, f64)], detected: &[(f64, f64)], duration: f64) -> AfScore {
    let mut s = AfScore {
        detected_seconds: covered(detected, 0.0, duration),
        reference_seconds: covered(reference, 0.0, duration),
        ..AfScore::default()
    };
    s.overlap_seconds = reference
        .iter()
        .map(|&(a, b)| covered(detected, a.max(0.0), b.min(duration)))
        .sum();
    let n = (duration / AF_WINDOW_SECONDS).floor().max(0.0) as u64;
    for w in 0..n {
        let lo = w as f64 * AF_WINDOW_SECONDS;
        let hi = lo + AF_WINDOW_SECONDS;
        let r = covered(reference, lo, hi) >= AF_WINDOW_SECONDS / 2.0;
        let d = covered(detected, lo, hi) >= AF_WINDOW_SECONDS / 2.0;
        match (r, d) {
            (true, true) => s.tp_windows += 1,
            (true, false) => s.fn_windows += 1,
            (false, true) => s.fp_windows += 1,
            (false, false) => s.tn_windows += 1,
        }
    }
    s
}

/// AF episode and duration statistics of one record or a sum of records, as
/// ANSI/AAMI EC57 defines them (and `epicmp` computes them): a reference episode is
/// detected when any detected episode overlaps it, a detected episode is true when
/// it overlaps any reference episode; durations are the overlap over the reference's
/// and over the detection's AF time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AfEpisodeScore {
    pub reference_episodes: u64,
    /// Reference episodes overlapped by a detection.
    pub reference_episodes_detected: u64,
    pub detected_episodes: u64,
    /// Detected episodes overlapping a reference episode.
    pub detected_episodes_true: u64,
    pub reference_seconds: f64,
    pub detected_seconds: f64,
    pub overlap_seconds: f64,
    /// Seconds of the record outside reference AF, the exposure false AF is counted over.
    pub non_af_seconds: f64,
    /// Detected seconds outside reference AF.
    pub false_seconds: f64,
}

impl AfEpisodeScore {
    /// Episode sensitivity, percent (100 when there is nothing to find).
    pub fn episode_sensitivity(&self) -> f64 {
        pct(self.reference_episodes_detected, self.reference_episodes)
    }

    /// Episode positive predictivity, percent (100 when nothing was detected).
    pub fn episode_positive_predictivity(&self) -> f64 {
        pct(self.detected_episodes_true, self.detected_episodes)
    }

    /// Duration sensitivity, percent.
    pub fn duration_sensitivity(&self) -> f64 {
        ratio_pct(self.overlap_seconds, self.reference_seconds)
    }

    /// Duration positive predictivity, percent.
    pub fn duration_positive_predictivity(&self) -> f64 {
        ratio_pct(self.overlap_seconds, self.detected_seconds)
    }

    /// False AF episodes (detections overlapping no reference AF) per 24 h of
    /// non-AF recording.
    pub fn false_episodes_per_day(&self) -> f64 {
        if self.non_af_seconds <= 0.0 {
            return 0.0;
        }
        (self.detected_episodes - self.detected_episodes_true) as f64 * 86_400.0
            / self.non_af_seconds
    }

    /// Detected AF time outside reference AF, percent of the non-AF time.
    pub fn false_duration_percent(&self) -> f64 {
        if self.non_af_seconds <= 0.0 {
            return 0.0;
        }
        100.0 * self.false_seconds / self.non_af_seconds
    }

    /// Sums two scores (gross statistics).
    pub fn add(&self, o: &Self) -> Self {
        Self {
            reference_episodes: self.reference_episodes + o.reference_episodes,
            reference_episodes_detected: self.reference_episodes_detected
                + o.reference_episodes_detected,
            detected_episodes: self.detected_episodes + o.detected_episodes,
            detected_episodes_true: self.detected_episodes_true + o.detected_episodes_true,
            reference_seconds: self.reference_seconds + o.reference_seconds,
            detected_seconds: self.detected_seconds + o.detected_seconds,
            overlap_seconds: self.overlap_seconds + o.overlap_seconds,
            non_af_seconds: self.non_af_seconds + o.non_af_seconds,
            false_seconds: self.false_seconds + o.false_seconds,
        }
    }
}

fn ratio_pct(num: f64, den: f64) -> f64 {
    if den <= 0.0 { 100.0 } else { 100.0 * num / den }
}

/// Scores detected AF episodes against reference AF episodes (seconds, `[start,
/// end)`, each list sorted and non-overlapping) over a record of `duration` s, EC57
/// style (see [`AfEpisodeScore`]). Episodes are clipped to the record.
pub fn score_af_episodes(
    reference: &[(f64, f64)],
    detected: &[(f64, f64)],
    duration: f64,
) -> AfEpisodeScore {
    let clip = |spans: &[(f64, f64)]| -> Vec<(f64, f64)> {
        spans
            .iter()
            .map(|&(a, b)| (a.max(0.0), b.min(duration)))
            .filter(|&(a, b)| b > a)
            .collect()
    };
    let reference = clip(reference);
    let detected = clip(detected);
    let overlaps =
        |a: (f64, f64), spans: &[(f64, f64)]| spans.iter().any(|&(c, d)| c < a.1 && a.0 < d);
    let reference_seconds = covered(&reference, 0.0, duration);
    let detected_seconds = covered(&detected, 0.0, duration);
    let overlap_seconds: f64 = reference
        .iter()
        .map(|&(a, b)| covered(&detected, a, b))
        .sum();
    AfEpisodeScore {
        reference_episodes: reference.len() as u64,
        reference_episodes_detected: reference
            .iter()
            .filter(|&&r| overlaps(r, &detected))
            .count() as u64,
        detected_episodes: detected.len() as u64,
        detected_episodes_true: detected
            .iter()
            .filter(|&&d| overlaps(d, &reference))
            .count() as u64,
        reference_seconds,
        detected_seconds,
        overlap_seconds,
        non_af_seconds: (duration - reference_seconds).max(0.0),
        false_seconds: (detected_seconds - overlap_seconds).max(0.0),
    }
}

/// Merges `[start, end)` spans that overlap or touch, sorting them.
pub fn merge_spans(mut spans: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Reference rhythm classes of the AHA performance goals for rhythm analysis
/// (Kerber et al., Circulation 95:1677-1682, 1997), as far as annotations tell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RhythmClass {
    /// Ventricular fibrillation and ventricular flutter (`(VF`, `(VFIB`, `(VFL`).
    VentricularFibrillation,
    /// Ventricular tachycardia (`(VT`).
    VentricularTachycardia,
    /// Normal sinus rhythm (`(N`, `(NSR`).
    NormalSinus,
    /// Every other annotated rhythm (AF, flutter, heart block, nodal, paced, ...).
    Other,
}

impl RhythmClass {
    /// The class of a rhythm label; `None` for noise, which is scored as neither.
    pub fn of_label(label: &str) -> Option<Self> {
        match label {
            "(VF" | "(VFIB" | "(VFL" => Some(Self::VentricularFibrillation),
            "(VT" => Some(Self::VentricularTachycardia),
            "(N" | "(NSR" => Some(Self::NormalSinus),
            "(NOISE" => None,
            _ => Some(Self::Other),
        }
    }
}

/// Seconds of each reference class and how many of them the detector called
/// ventricular, on a 1-s grid (an annotated rhythm is scored second by second, so a
/// long episode weighs by its length as the AHA goals weigh segments).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VentricularScore {
    /// `[class][called]`: seconds, for VF, VT, normal sinus, other.
    pub seconds: [[u64; 2]; 4],
    /// Reference VT/VF episodes, those called within 10 s of onset, and the delays
    /// (s) of those called at all.
    pub episodes: u64,
    pub within_10_s: u64,
    pub delays: [f64; 2],
    pub delay_count: u64,
}

impl VentricularScore {
    fn index(class: RhythmClass) -> usize {
        match class {
            RhythmClass::VentricularFibrillation => 0,
            RhythmClass::VentricularTachycardia => 1,
            RhythmClass::NormalSinus => 2,
            RhythmClass::Other => 3,
        }
    }

    /// Percent of the class's seconds called ventricular (sensitivity for VF and VT).
    pub fn called_percent(&self, class: RhythmClass) -> f64 {
        let [not, called] = self.seconds[Self::index(class)];
        pct(called, not + called)
    }

    /// Percent of the class's seconds not called (specificity for the others).
    pub fn not_called_percent(&self, class: RhythmClass) -> f64 {
        let [not, called] = self.seconds[Self::index(class)];
        pct(not, not + called)
    }

    /// Seconds of reference in a class.
    pub fn class_seconds(&self, class: RhythmClass) -> u64 {
        let [not, called] = self.seconds[Self::index(class)];
        not + called
    }

    /// Mean delay from onset to the first call, over the episodes called (s).
    pub fn mean_delay(&self) -> f64 {
        if self.delay_count == 0 {
            0.0
        } else {
            self.delays[0] / self.delay_count as f64
        }
    }

    /// Longest delay from onset to the first call (s).
    pub fn max_delay(&self) -> f64 {
        self.delays[1]
    }

    pub fn add(&self, o: &Self) -> Self {
        let mut seconds = self.seconds;
        for (row, other) in seconds.iter_mut().zip(o.seconds) {
            row[0] += other[0];
            row[1] += other[1];
        }
        Self {
            seconds,
            episodes: self.episodes + o.episodes,
            within_10_s: self.within_10_s + o.within_10_s,
            delays: [
                self.delays[0] + o.delays[0],
                self.delays[1].max(o.delays[1]),
            ],
            delay_count: self.delay_count + o.delay_count,
        }
    }
}

/// Reference episodes shorter than this (s) do not count for detection delay: a
/// run of a few ventricular beats is not the sustained rhythm the alarm is for.
pub const MIN_VENTRICULAR_EPISODE_S: f64 = 10.0;

/// Scores ventricular calls against reference rhythm spans (`(class, start, end)`
/// seconds; time in no span is not scored). Each call is `(start, end, known)`: the
/// span it covers and the time it was made (a detector looks ahead of a span's
/// start, a stream reports it when a chunk arrives); delays are measured to `known`.
pub fn score_ventricular(
    reference: &[(RhythmClass, f64, f64)],
    detected: &[(f64, f64, f64)],
) -> VentricularScore {
    let mut score = VentricularScore::default();
    for &(class, start, end) in reference {
        let mut t = start.ceil();
        while t + 1.0 <= end {
            let called = detected
                .iter()
                .any(|&(a, b, _)| a <= t + 0.5 && t + 0.5 < b);
            score.seconds[VentricularScore::index(class)][usize::from(called)] += 1;
            t += 1.0;
        }
    }
    let ventricular: Vec<(f64, f64)> = merge_spans(
        reference
            .iter()
            .filter(|(class, _, _)| {
                matches!(
                    class,
                    RhythmClass::VentricularFibrillation | RhythmClass::VentricularTachycardia
                )
            })
            .map(|&(_, a, b)| (a, b))
            .collect(),
    );
    for (onset, end) in ventricular {
        if end - onset < MIN_VENTRICULAR_EPISODE_S {
            continue;
        }
        score.episodes += 1;
        let first = detected
            .iter()
            .filter(|&&(a, b, _)| a < end && onset < b)
            .map(|&(_, _, known)| known)
            .min_by(f64::total_cmp);
        if let Some(first) = first {
            let delay = (first - onset).max(0.0);
            score.delays[0] += delay;
            score.delays[1] = score.delays[1].max(delay);
            score.delay_count += 1;
            if delay <= 10.0 {
                score.within_10_s += 1;
            }
        }
    }
    score
}

/// Results for one record, as shown in the validation table.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordResult {
    pub record: String,
    pub lead: String,
    pub beats: BeatScore,
    pub af: AfScore,
}

/// Formats per-record results and gross totals as a plain-text table.
pub fn format_table(results: &[RecordResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:<5} {:>6} {:>5} {:>5} {:>7} {:>7} | {:>7} {:>7} {:>7} {:>4} {:>4} {:>4} {:>4}",
        "record",
        "lead",
        "TP",
        "FN",
        "FP",
        "Se%",
        "+P%",
        "AFref_s",
        "AFdet_s",
        "AFboth",
        "wTP",
        "wFN",
        "wFP",
        "wTN"
    );
    let mut gross_b = BeatScore::default();
    let mut gross_a = AfScore::default();
    for r in results {
        gross_b = gross_b.add(&r.beats);
        gross_a = gross_a.add(&r.af);
        write_row(&mut s, &r.record, &r.lead, &r.beats, &r.af);
    }
    let _ = writeln!(s, "{}", "-".repeat(104));
    write_row(&mut s, "gross", "", &gross_b, &gross_a);
    let _ = writeln!(
        s,
        "beats: Se {:.2} %  +P {:.2} %  (match window 150 ms, reference beat annotations only)",
        gross_b.sensitivity(),
        gross_b.positive_predictivity()
    );
    let _ = writeln!(
        s,
        "AF ({:.0} s windows, AF when >= half the window is AF): Se {:.2} %  Sp {:.2} %",
        AF_WINDOW_SECONDS,
        gross_a.sensitivity(),
        gross_a.specificity()
    );
    s
}

fn write_row(s: &mut String, rec: &str, lead: &str, b: &BeatScore, a: &AfScore) {
    let _ = writeln!(
        s,
        "{:<8} {:<5} {:>6} {:>5} {:>5} {:>7.2} {:>7.2} | {:>7.0} {:>7.0} {:>7.0} {:>4} {:>4} {:>4} {:>4}",
        rec,
        lead,
        b.tp,
        b.fn_,
        b.fp,
        b.sensitivity(),
        b.positive_predictivity(),
        // `+ 0.0` turns an empty sum's -0 into 0 for display.
        a.reference_seconds + 0.0,
        a.detected_seconds + 0.0,
        a.overlap_seconds + 0.0,
        a.tp_windows,
        a.fn_windows,
        a.fp_windows,
        a.tn_windows
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matching_closest_first() {
        let s = score_beats(&[100, 200, 300], &[105, 190, 195, 500], 54);
        // 195 is nearer 200 than 190 is; 300 has nothing within 54 samples.
        assert_eq!(
            s,
            BeatScore {
                tp: 2,
                fn_: 1,
                fp: 2
            }
        );
        let s = score_beats(&[100], &[], 54);
        assert_eq!(s.fn_, 1);
    }

    #[test]
    fn af_episodes_as_ec57_counts_them() {
        // Reference: two episodes; detected: one overlapping the first, one false.
        let s = score_af_episodes(
            &[(100.0, 200.0), (400.0, 450.0)],
            &[(150.0, 250.0), (600.0, 700.0)],
            1000.0,
        );
        assert_eq!(
            (
                s.reference_episodes,
                s.reference_episodes_detected,
                s.detected_episodes,
                s.detected_episodes_true
            ),
            (2, 1, 2, 1)
        );
        assert!((s.episode_sensitivity() - 50.0).abs() < 1e-9);
        assert!((s.duration_sensitivity() - 100.0 * 50.0 / 150.0).abs() < 1e-9);
        assert!((s.duration_positive_predictivity() - 25.0).abs() < 1e-9);
        // One false episode over 850 s of non-AF.
        assert!((s.false_episodes_per_day() - 86_400.0 / 850.0).abs() < 1e-9);
        assert!((s.false_duration_percent() - 100.0 * 150.0 / 850.0).abs() < 1e-9);
        // Spans beyond the record are clipped, not counted.
        let s = score_af_episodes(&[], &[(990.0, 1200.0)], 1000.0);
        assert!((s.detected_seconds - 10.0).abs() < 1e-9);
        assert_eq!(
            merge_spans(vec![(5.0, 6.0), (0.0, 2.0), (2.0, 3.0), (2.5, 4.0)]),
            vec![(0.0, 4.0), (5.0, 6.0)]
        );
    }

    #[test]
    fn ventricular_calls_are_scored_per_second_and_timed_from_when_they_were_made() {
        use RhythmClass::*;
        let reference = [
            (NormalSinus, 0.0, 100.0),
            (VentricularTachycardia, 100.0, 130.0),
            (VentricularFibrillation, 130.0, 135.0),
            (Other, 135.0, 200.0),
        ];
        // Called from 104 s (known at 109 s) to 135 s, and falsely for 10 s of sinus.
        let calls = [(104.0, 135.0, 109.0), (20.0, 30.0, 25.0)];
        let s = score_ventricular(&reference, &calls);
        assert_eq!(s.class_seconds(VentricularTachycardia), 30);
        assert!((s.called_percent(VentricularTachycardia) - 100.0 * 26.0 / 30.0).abs() < 1e-9);
        assert!((s.called_percent(VentricularFibrillation) - 100.0).abs() < 1e-9);
        assert!((s.not_called_percent(NormalSinus) - 90.0).abs() < 1e-9);
        assert!((s.not_called_percent(Other) - 100.0).abs() < 1e-9);
        // VT then VF is one 35-s episode, called 9 s after its onset.
        assert_eq!((s.episodes, s.within_10_s), (1, 1));
        assert!((s.max_delay() - 9.0).abs() < 1e-9);
        let late = score_ventricular(&reference, &[(104.0, 135.0, 111.0)]);
        assert_eq!((late.episodes, late.within_10_s), (1, 0));
        assert_eq!(RhythmClass::of_label("(VFL"), Some(VentricularFibrillation));
        assert_eq!(RhythmClass::of_label("(NOISE"), None);
        assert_eq!(RhythmClass::of_label("(AFIB"), Some(Other));
    }

    #[test]
    fn af_windows() {
        let s = score_af(&[(0.0, 45.0)], &[(10.0, 60.0)], 90.0);
        assert_eq!(
            (s.tp_windows, s.fn_windows, s.fp_windows, s.tn_windows),
            (2, 0, 0, 1)
        );
        assert!((s.overlap_seconds - 35.0).abs() < 1e-9);
    }
}
