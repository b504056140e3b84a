//! Readers checked against the shared data: header checksums, the CSV exports
//! of the annotations, and HeartPy's excerpts.

#![allow(clippy::unwrap_used)]

use crate::common;

use wardline_ecg::validate::score_beats;
use wardline_ecg::wfdb::{
    Header, checksum_16, decode_format_212, decode_signal, parse_annotations,
    parse_single_column_csv, rhythm_spans,
};
use wardline_ecg::{DetectorConfig, detect_all};

#[test]
fn signals_match_header_checksums_and_mlii_is_found() {
    let dir = common::data_dir().join("ecg/mitdb");
    for r in common::RECORDS {
        let h =
            Header::parse(&std::fs::read_to_string(dir.join(format!("{r}.hea"))).unwrap()).unwrap();
        let sig =
            decode_format_212(&std::fs::read(dir.join(format!("{r}.dat"))).unwrap(), 2).unwrap();
        for (spec, s) in h.signals.iter().zip(&sig) {
            assert_eq!(s.len(), 650_000, "{r}");
            assert_eq!(Some(s[0]), spec.initial_value, "{r}");
            assert_eq!(
                Some(checksum_16(s)),
                spec.checksum,
                "{r} {}",
                spec.description
            );
        }
        let expected = if r == "114" { 1 } else { 0 };
        assert_eq!(h.find_signal("MLII").unwrap(), expected, "{r}");
    }
    let other = common::data_dir().join("ecg/other");
    let h = Header::parse(&std::fs::read_to_string(other.join("v102s.hea")).unwrap()).unwrap();
    let sig = decode_format_212(&std::fs::read(other.join("v102s.dat")).unwrap(), 4).unwrap();
    for (spec, s) in h.signals.iter().zip(&sig) {
        assert_eq!(
            Some(checksum_16(s)),
            spec.checksum,
            "v102s {}",
            spec.description
        );
    }
}

#[test]
fn annotations_match_csv_exports() {
    let dir = common::data_dir().join("ecg/mitdb");
    for r in common::RECORDS {
        let ann = parse_annotations(&std::fs::read(dir.join(format!("{r}.atr"))).unwrap()).unwrap();
        let beats: Vec<(i64, &str)> = ann
            .iter()
            .filter(|a| a.is_beat())
            .map(|a| (a.sample, a.symbol()))
            .collect();
        let csv = std::fs::read_to_string(dir.join(format!("{r}.beats.csv"))).unwrap();
        let want: Vec<(i64, String)> = csv
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].parse().unwrap(), f[2].to_string())
            })
            .collect();
        assert_eq!(beats.len(), want.len(), "{r}");
        for (a, b) in beats.iter().zip(&want) {
            assert_eq!((a.0, a.1), (b.0, b.1.as_str()), "{r}");
        }
        let rcsv = std::fs::read_to_string(dir.join(format!("{r}.rhythm.csv"))).unwrap();
        let spans = rhythm_spans(&ann, 650_000);
        let want: Vec<(i64, String)> = rcsv
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].parse().unwrap(), f[2].to_string())
            })
            .collect();
        let got: Vec<(i64, String)> = spans.iter().map(|s| (s.start, s.label.clone())).collect();
        assert_eq!(got, want, "{r}");
    }
}

#[test]
fn heartpy_excerpts() {
    let dir = common::data_dir().join("ecg/heartpy_examples");
    let to_adu = |v: &[f64]| {
        v.iter()
            .map(|x| (x * 1000.0).round() as i32)
            .collect::<Vec<_>>()
    };
    // NSTDB 118 with 24 dB SNR noise: should still be detected well.
    let sig =
        parse_single_column_csv(&std::fs::read_to_string(dir.join("nstdb_118e24.csv")).unwrap())
            .unwrap();
    let refs: Vec<u64> = parse_single_column_csv(
        &std::fs::read_to_string(dir.join("nstdb_118e24_ann.csv")).unwrap(),
    )
    .unwrap()
    .iter()
    .map(|&x| x as u64)
    .collect();
    let det: Vec<u64> = detect_all(&to_adu(&sig), &DetectorConfig::new(360.0))
        .unwrap()
        .iter()
        .map(|b| b.sample)
        .collect();
    let s = score_beats(&refs, &det, 54);
    println!("nstdb_118e24: TP {} FN {} FP {}", s.tp, s.fn_, s.fp);
    assert!(
        s.sensitivity() > 97.0 && s.positive_predictivity() > 97.0,
        "{s:?}"
    );
    // European ST-T at 250 Hz, e0110 with tall T waves: rate must stay plausible.
    for f in ["edb_e0103.csv", "edb_e0110.csv", "edb_e0124.csv"] {
        let sig = parse_single_column_csv(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
        let n = detect_all(&to_adu(&sig), &DetectorConfig::new(250.0))
            .unwrap()
            .len();
        let bpm = n as f64 / 2.0;
        println!("{f}: {n} beats in 120 s");
        assert!((40.0..=120.0).contains(&bpm), "{f}: {bpm} bpm");
    }
}

/// Every record with a signal file in the shared ECG folders, whatever its storage
/// format (212, 16, the CinC `.mat` files' 16 after a 24-byte header), reads back with
/// the length, first sample and checksum (where written) its header gives. Records are discovered, not
/// listed; a folder of annotations only is passed over.
#[test]
fn every_signal_file_reads_back_as_its_header_describes() {
    let ecg = common::data_dir().join("ecg");
    let mut checked = std::collections::BTreeMap::<String, usize>::new();
    for folder in std::fs::read_dir(&ecg).unwrap() {
        let folder = folder.unwrap().path();
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut headers: Vec<_> = entries
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "hea"))
            .collect();
        headers.sort();
        for path in headers {
            let header = Header::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let Some(first) = header.signals.first() else {
                continue;
            };
            let Ok(bytes) = std::fs::read(folder.join(&first.file)) else {
                continue;
            };
            for (index, spec) in header.signals.iter().enumerate() {
                let what = format!("{} signal {index}", path.display());
                let samples = decode_signal(&header, &bytes, index).expect(&what);
                if let Some(length) = header.samples_per_signal {
                    assert_eq!(samples.len() as u64, length, "{what}");
                }
                // Headers that write 0 where the checksum goes did not compute it (the
                // CinC 2017 ones), and their initial values are not reliable either (8 of
                // those 150 give a value that is not the file's first sample, which the
                // signal's smooth start shows): only the length is checked there.
                if spec.checksum != Some(0) {
                    assert_eq!(samples.first().copied(), spec.initial_value, "{what}");
                    assert_eq!(Some(checksum_16(&samples)), spec.checksum, "{what}");
                }
            }
            let name = folder.file_name().unwrap().to_string_lossy().into_owned();
            *checked
                .entry(format!("{name} (format {})", first.format))
                .or_default() += 1;
        }
    }
    println!("records read back: {checked:?}");
    for expected in [
        "cinc2017 (format 16)",
        "cpsc2021 (format 16)",
        "mitdb (format 212)",
    ] {
        assert!(checked.contains_key(expected), "{expected}: {checked:?}");
    }
}
