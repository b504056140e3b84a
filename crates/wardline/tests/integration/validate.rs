//! `wardline validate ecg` on data folders built here: it finds every database folder
//! it is given, evaluates records without a signal from their beat annotations, says
//! which listed records are missing, and refuses a storage format it cannot read.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// One MIT-format annotation: `(sample delta, code, aux)`.
type Note<'a> = (u16, u8, Option<&'a str>);

/// Encodes annotations in the MIT format: a 16-bit word of code (6 bits) and time
/// since the previous annotation (10 bits), an AUX word and string after a rhythm
/// change, and a zero word at the end.
fn annotation_file(notes: &[Note<'_>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &(delta, code, aux) in notes {
        assert!(delta < 1024);
        bytes.extend_from_slice(&((u16::from(code) << 10) | delta).to_le_bytes());
        if let Some(text) = aux {
            let len = u16::try_from(text.len()).unwrap();
            bytes.extend_from_slice(&((63u16 << 10) | len).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
            if text.len() % 2 == 1 {
                bytes.push(0);
            }
        }
    }
    bytes.extend_from_slice(&[0, 0]);
    bytes
}

/// Ten minutes at 250 Hz of beats with irregularly irregular intervals (0.4 to 1.2 s,
/// a fixed pseudo-random sequence), all of it annotated AF.
fn af_record(folder: &Path, name: &str) {
    let mut notes: Vec<Note<'_>> = vec![(0, 28, Some("(AFIB"))];
    let mut x = 2024u64;
    let mut t = 0u32;
    while t < 250 * 600 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delta = 100 + ((x >> 33) % 200) as u16;
        notes.push((delta, 1, None));
        t += u32::from(delta);
    }
    std::fs::write(
        folder.join(format!("{name}.hea")),
        format!("{name} 0 250 {t}\n"),
    )
    .unwrap();
    std::fs::write(folder.join(format!("{name}.atr")), annotation_file(&notes)).unwrap();
}

fn validate(data: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wardline"))
        .args(["validate", "ecg", "--data"])
        .arg(data)
        .output()
        .expect("run wardline validate ecg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_database_folder_is_found_and_a_format_it_cannot_read_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let ecg = data.path().join("ecg");
    // Two databases of any name: one listing its records (one of them not carried),
    // one found by its headers alone.
    for db in ["somedb", "otherdb"] {
        std::fs::create_dir_all(ecg.join(db)).unwrap();
    }
    std::fs::write(ecg.join("somedb/RECORDS"), "a1\nmissing\n").unwrap();
    af_record(&ecg.join("somedb"), "a1");
    af_record(&ecg.join("otherdb"), "b1");
    af_record(&ecg.join("otherdb"), "b2");
    let (ok, stdout, stderr) = validate(data.path());
    assert!(ok, "{stdout}\n{stderr}");
    let row = |db: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(db))
            .unwrap_or_else(|| panic!("no row for {db} in\n{stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // records, from signal, from annotations; then the AF columns, episode Se first.
    let some = row("somedb ");
    assert_eq!(&some[1..4], ["1", "0", "1"], "{stdout}");
    let other = row("otherdb ");
    assert_eq!(&other[1..4], ["2", "0", "2"], "{stdout}");
    let episode_se: f64 = other[10].parse().unwrap();
    assert!((episode_se - 100.0).abs() < 1e-9, "{stdout}");
    assert!(
        stdout.contains("somedb: 1 listed records not in the folder (missing)"),
        "{stdout}"
    );
    assert!(stdout.contains("reference beats in .atr"), "{stdout}");

    // A record whose header names a storage format the reader does not know is an
    // error naming the record and the format, not bytes decoded as another format.
    let odd = ecg.join("otherdb");
    std::fs::write(
        odd.join("c1.hea"),
        "c1 1 250 1000\nc1.dat 310 200 12 0 0 0 0 ECG\n",
    )
    .unwrap();
    std::fs::write(odd.join("c1.dat"), vec![0u8; 4000]).unwrap();
    let (ok, stdout, stderr) = validate(data.path());
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("otherdb/c1") && stderr.contains("format 310"),
        "{stderr}"
    );
}
