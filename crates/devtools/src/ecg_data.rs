//! The ECG databases of a data folder, as the validator and the AF model's training
//! find them: every folder under `ecg/` that lists its records (a `RECORDS` file, or
//! else its `.hea` headers), each record read as its header says.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wardline_ecg::validate::merge_spans;
use wardline_ecg::wfdb::{Annotation, Header, decode_signal, parse_annotations, rhythm_spans};

/// Beat labels whose QRS is not of the dominant (supraventricular) shape: what the
/// morphology check finds in a signal, read from the reference labels where there is
/// no signal. Ventricular, fusion, paced, escape and unclassifiable beats.
const NOT_DOMINANT: [&str; 7] = ["V", "F", "E", "!", "Q", "f", "/"];

/// Annotation files that may hold a record's beats, in order of preference: the
/// reference (`atr`), then the databases' own beat files (`ecg` in the NSR R-R
/// database, the unaudited detector output `qrs` where a database has nothing better).
const BEAT_FILES: [&str; 3] = ["atr", "ecg", "qrs"];

/// One database folder.
#[derive(Debug)]
pub(crate) struct Database {
    pub(crate) name: String,
    pub(crate) folder: PathBuf,
    pub(crate) records: Vec<String>,
    /// Record-level labels (`REFERENCE.csv`, as the CinC challenges publish them).
    pub(crate) labels: Vec<(String, String)>,
}

/// The signal analysed, when a record has one.
#[derive(Debug)]
pub(crate) struct Lead {
    pub(crate) name: String,
    pub(crate) samples: Vec<i32>,
    pub(crate) units_per_mv: f64,
}

/// One record, loaded.
#[derive(Debug)]
pub(crate) struct EcgRecord {
    pub(crate) sampling_rate: f64,
    pub(crate) n_samples: u64,
    pub(crate) lead: Option<Lead>,
    /// Reference beats (sample, label), if any file holds them, and which file.
    pub(crate) beats: Vec<(u64, &'static str)>,
    pub(crate) beat_file: Option<&'static str>,
    /// Reference rhythm spans `[start, end)` in samples with their labels.
    pub(crate) rhythms: Vec<(String, u64, u64)>,
}

impl EcgRecord {
    /// Reference AF episodes in seconds: `(AFIB` and `(AFL` (flutter carries the same
    /// stroke risk and alarms as AF), merged where they touch.
    pub(crate) fn reference_af(&self) -> Vec<(f64, f64)> {
        let fs = self.sampling_rate;
        merge_spans(
            self.rhythms
                .iter()
                .filter(|(label, _, _)| label == "(AFIB" || label == "(AFL")
                .map(|&(_, a, b)| (a as f64 / fs, b as f64 / fs))
                .collect(),
        )
    }

    /// Reference ventricular flutter and fibrillation spans `[start, end)` in samples.
    pub(crate) fn ventricular_fibrillation(&self) -> Vec<(u64, u64)> {
        self.rhythms
            .iter()
            .filter(|(label, _, _)| matches!(label.as_str(), "(VFL" | "(VF" | "(VFIB"))
            .map(|&(_, a, b)| (a, b))
            .collect()
    }

    /// Reference beat positions and whether each is of the dominant shape.
    pub(crate) fn reference_beats(&self) -> (Vec<u64>, Vec<bool>) {
        self.beats
            .iter()
            .map(|&(sample, label)| (sample, !NOT_DOMINANT.contains(&label)))
            .unzip()
    }
}

/// The database folders under `data/ecg`, sorted by name; a folder that lists no
/// records is not a database.
pub(crate) fn discover(data: &Path) -> anyhow::Result<Vec<Database>> {
    let root = data.join("ecg");
    let mut databases = Vec::new();
    for entry in std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))? {
        let folder = entry?.path();
        if !folder.is_dir() {
            continue;
        }
        let name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .context("database folder name is not UTF-8")?
            .to_owned();
        let records = match std::fs::read_to_string(folder.join("RECORDS")) {
            Ok(list) => list.split_whitespace().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => headers_in(&folder)?,
            Err(e) => return Err(e).with_context(|| format!("reading {name}/RECORDS")),
        };
        if records.is_empty() {
            continue;
        }
        let labels = match std::fs::read_to_string(folder.join("REFERENCE.csv")) {
            Ok(text) => text
                .lines()
                .filter_map(|line| line.split_once(','))
                .map(|(record, label)| (record.trim().to_owned(), label.trim().to_owned()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {name}/REFERENCE.csv")),
        };
        databases.push(Database {
            name,
            folder,
            records,
            labels,
        });
    }
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(databases)
}

fn headers_in(folder: &Path) -> anyhow::Result<Vec<String>> {
    let mut records: Vec<String> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_suffix(".hea"))
                .map(str::to_owned)
        })
        .collect();
    records.sort();
    Ok(records)
}

/// Reads a file that may be absent.
fn read_optional(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Loads one record. `Ok(None)` when the record's header is not in the folder (some
/// databases list records whose files they do not carry); an error when what is
/// there cannot be read, naming the record, the file and why.
pub(crate) fn load(
    db: &Database,
    record: &str,
    with_signal: bool,
) -> anyhow::Result<Option<EcgRecord>> {
    if record.contains(['/', '\\']) || record.starts_with('.') {
        bail!("{}: record name {record:?} is not a file name", db.name);
    }
    let Some(header_bytes) = read_optional(&db.folder.join(format!("{record}.hea")))? else {
        return Ok(None);
    };
    let header = Header::parse(&String::from_utf8_lossy(&header_bytes))
        .with_context(|| format!("{}/{record}.hea", db.name))?;
    let lead = if with_signal {
        read_lead(db, record, &header)?
    } else {
        None
    };
    let reference = match read_optional(&db.folder.join(format!("{record}.atr")))? {
        Some(bytes) => {
            Some(parse_annotations(&bytes).with_context(|| format!("{}/{record}.atr", db.name))?)
        }
        None => None,
    };
    let mut beats = Vec::new();
    let mut beat_file = None;
    for ext in BEAT_FILES {
        let annotations: Vec<Annotation> = if ext == "atr" {
            reference.clone().unwrap_or_default()
        } else {
            match read_optional(&db.folder.join(format!("{record}.{ext}")))? {
                Some(bytes) => parse_annotations(&bytes)
                    .with_context(|| format!("{}/{record}.{ext}", db.name))?,
                None => continue,
            }
        };
        beats = annotations
            .iter()
            .filter(|a| a.is_beat())
            .filter_map(|a| u64::try_from(a.sample).ok().map(|s| (s, a.symbol())))
            .collect();
        if !beats.is_empty() {
            beat_file = Some(ext);
            break;
        }
    }
    let last_beat = beats.last().map_or(0, |&(s, _)| s + 1);
    let n_samples = lead
        .as_ref()
        .map(|l| l.samples.len() as u64)
        .or(header.samples_per_signal.filter(|&n| n > 0))
        .unwrap_or(last_beat)
        .max(if lead.is_some() { 0 } else { last_beat });
    let rhythms = reference
        .as_deref()
        .map(|a| {
            rhythm_spans(a, n_samples as i64)
                .into_iter()
                .filter_map(|s| {
                    let start = u64::try_from(s.start).ok()?.min(n_samples);
                    let end = u64::try_from(s.end).ok()?.min(n_samples);
                    (end > start).then_some((s.label, start, end))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(EcgRecord {
        sampling_rate: header.sampling_rate,
        n_samples,
        lead,
        beats,
        beat_file,
        rhythms,
    }))
}

/// The lead analysed: MLII where the record has it (the lead the detector was
/// developed on), else the first signal. `None` when the header lists no signal or
/// its file is not in the folder (annotation-only databases); a format the reader
/// does not know is an error, never decoded as another.
fn read_lead(db: &Database, record: &str, header: &Header) -> anyhow::Result<Option<Lead>> {
    if header.signals.is_empty() {
        return Ok(None);
    }
    let index = header.find_signal("MLII").unwrap_or(0);
    let spec = &header.signals[index];
    let file = &spec.file;
    if file.contains(['/', '\\']) || file.starts_with('.') {
        bail!(
            "{}/{record}: signal file {file:?} is not a file name",
            db.name
        );
    }
    let Some(bytes) = read_optional(&db.folder.join(file))? else {
        return Ok(None);
    };
    let samples = decode_signal(header, &bytes, index).with_context(|| {
        format!(
            "{}/{record}: signal {} in {file}",
            db.name, spec.description
        )
    })?;
    Ok(Some(Lead {
        name: spec.description.clone(),
        samples,
        units_per_mv: spec.gain,
    }))
}
