//! Minimal reader for the shared MIT-BIH records (WFDB format 212, two
//! interleaved 12-bit signals). Test and bench support only: the library does
//! no I/O.

use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) name: String,
    pub(crate) sampling_rate_hz: f64,
    /// (signal samples, gain adu/mV, baseline adu) per channel.
    pub(crate) channels: Vec<(Vec<i32>, f64, i32)>,
}

/// `WARDLINE_SHARED_DATA`, else `<crate>/../../../shared/data`.
pub(crate) fn data_dir() -> PathBuf {
    std::env::var_os("WARDLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

pub(crate) fn mitdb_dir() -> PathBuf {
    data_dir().join("ecg/mitdb")
}

/// Loads every `*.hea`/`*.dat` pair in the MIT-BIH folder, sorted by name.
pub(crate) fn load_all(dir: &Path) -> Result<Vec<Record>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "hea").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names.iter().map(|n| load(dir, n)).collect()
}

fn load(dir: &Path, name: &str) -> Result<Record, String> {
    let hea = std::fs::read_to_string(dir.join(format!("{name}.hea")))
        .map_err(|e| format!("{name}.hea: {e}"))?;
    let mut lines = hea
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let head: Vec<&str> = lines
        .next()
        .ok_or("empty header")?
        .split_whitespace()
        .collect();
    let nsig: usize = head
        .get(1)
        .and_then(|v| v.parse().ok())
        .ok_or("bad signal count")?;
    let fs: f64 = head
        .get(2)
        .and_then(|v| v.parse().ok())
        .ok_or("bad sampling rate")?;
    if nsig != 2 {
        return Err(format!("{name}: expected 2 signals, found {nsig}"));
    }
    let mut meta = Vec::new();
    for _ in 0..nsig {
        let f: Vec<&str> = lines
            .next()
            .ok_or("missing signal line")?
            .split_whitespace()
            .collect();
        if f.get(1) != Some(&"212") {
            return Err(format!("{name}: only format 212 is supported"));
        }
        // Gain may carry a baseline "(b)" and units "/mV"; ADC zero is the default baseline.
        let gain_field = f.get(2).ok_or("missing gain")?;
        let gain: f64 = gain_field
            .split(['(', '/'])
            .next()
            .and_then(|g| g.parse().ok())
            .ok_or("bad gain")?;
        let adc_zero: i32 = f.get(4).and_then(|v| v.parse().ok()).unwrap_or(0);
        let baseline = gain_field
            .split_once('(')
            .and_then(|(_, b)| b.split(')').next()?.parse().ok())
            .unwrap_or(adc_zero);
        let checksum: Option<i16> = f.get(6).and_then(|v| v.parse().ok());
        meta.push((gain, baseline, checksum));
    }
    let dat =
        std::fs::read(dir.join(format!("{name}.dat"))).map_err(|e| format!("{name}.dat: {e}"))?;
    let mut s0 = Vec::with_capacity(dat.len() / 3);
    let mut s1 = Vec::with_capacity(dat.len() / 3);
    for f in dat.chunks_exact(3) {
        let a = i32::from(f[0]) | (i32::from(f[1] & 0x0F) << 8);
        let b = i32::from(f[2]) | (i32::from(f[1] >> 4) << 8);
        // Sign-extend the 12-bit two's complement values.
        s0.push((a << 20) >> 20);
        s1.push((b << 20) >> 20);
    }
    // The header's 16-bit checksum proves the 212 unpacking is right.
    for (i, sig) in [&s0, &s1].into_iter().enumerate() {
        let sum = sig.iter().fold(0i16, |acc, &v| acc.wrapping_add(v as i16));
        if let Some(expected) = meta[i].2
            && expected != sum
        {
            return Err(format!(
                "{name}: signal {i} checksum {sum} != header {expected}"
            ));
        }
    }
    Ok(Record {
        name: name.to_owned(),
        sampling_rate_hz: fs,
        channels: vec![(s0, meta[0].0, meta[0].1), (s1, meta[1].0, meta[1].1)],
    })
}
