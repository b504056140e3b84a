//! Streaming detection throughput over the shared MIT-BIH records (MLII).
//! Run: WARDLINE_SHARED_DATA=$PWD/../shared/data (from the repository root) cargo bench -p wardline-ecg

use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wardline_ecg::wfdb::{Header, decode_format_212_signal};
use wardline_ecg::{DetectorConfig, QrsDetector};

const RECORDS: [&str; 15] = [
    "100", "101", "103", "105", "106", "108", "114", "119", "200", "201", "202", "203", "208",
    "219", "232",
];

fn load() -> Vec<Vec<i32>> {
    let dir = std::env::var_os("WARDLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("ecg/mitdb");
    RECORDS
        .iter()
        .map(|r| {
            let hea = std::fs::read_to_string(dir.join(format!("{r}.hea")))
                .unwrap_or_else(|e| panic!("{}: {e}; set WARDLINE_SHARED_DATA", dir.display()));
            let h = Header::parse(&hea).expect("header");
            let idx = h.find_signal("MLII").expect("MLII");
            let dat = std::fs::read(dir.join(format!("{r}.dat"))).expect("dat");
            decode_format_212_signal(&dat, h.signals.len(), idx).expect("decode")
        })
        .collect()
}

fn run(records: &[Vec<i32>], chunk: usize) -> usize {
    let cfg = DetectorConfig::new(360.0);
    let mut out = Vec::with_capacity(4096);
    let mut n = 0;
    for s in records {
        let mut det = QrsDetector::new(&cfg).expect("config");
        for c in s.chunks(chunk) {
            det.push_into(c, &mut out);
        }
        n += out.len();
        out.clear();
    }
    n
}

fn bench(c: &mut Criterion) {
    let records = load();
    let total: usize = records.iter().map(Vec::len).sum();
    // One plain timing so the figure is printed even with criterion's output off.
    let t = Instant::now();
    let beats = run(&records, 360);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "streaming QRS detection: {total} samples, {beats} beats, {:.1} M samples/s (one core, 1 s chunks)",
        total as f64 / secs / 1e6
    );
    let mut g = c.benchmark_group("qrs_detect_mitdb15");
    g.throughput(Throughput::Elements(total as u64));
    g.sample_size(10);
    g.bench_function("chunk_1s", |b| b.iter(|| run(&records, 360)));
    g.bench_function("chunk_32", |b| b.iter(|| run(&records, 32)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
