//! Compression and speed comparison on the shared MIT-BIH records.
//!
//! `cargo bench -p wardline-waveform --bench compression`
//! (data from `WARDLINE_SHARED_DATA`, default `<crate>/../../../shared/data`).
//!
//! Every method works on the same per-channel chunks, so headers and model
//! warm-up are paid the same way; bits/sample counts every stored byte.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "../tests/support/mitdb.rs"]
mod mitdb;

use std::time::{Duration, Instant};
use wardline_waveform::{ChunkHeader, Codec, decode, encode_with};

const ZSTD_LEVEL: i32 = 19;
const PCO_LEVEL: usize = 12;
const MAIN_CHUNK_SECONDS: f64 = 30.0;

#[derive(Default, Clone, Copy)]
struct Tally {
    bytes: usize,
    samples: usize,
    enc: Duration,
    dec: Duration,
}

impl Tally {
    fn bps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.samples as f64
    }
    fn add(&mut self, o: &Tally) {
        self.bytes += o.bytes;
        self.samples += o.samples;
        self.enc += o.enc;
        self.dec += o.dec;
    }
    fn msps(samples: usize, d: Duration) -> f64 {
        samples as f64 / d.as_secs_f64() / 1e6
    }
}

type Method = (&'static str, fn(&[i32], &ChunkHeader) -> Tally);

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn ours(chunk: &[i32], h: &ChunkHeader) -> Tally {
    let (bytes, enc) = timed(|| encode_with(h, chunk, Codec::LmsRange).unwrap());
    let (back, dec) = timed(|| decode(&bytes).unwrap());
    assert_eq!(back.samples, chunk, "lossless round trip");
    Tally {
        bytes: bytes.len(),
        samples: chunk.len(),
        enc,
        dec,
    }
}

fn zstd_of(buf: &[u8], n: usize) -> Tally {
    let (z, enc) = timed(|| zstd::bulk::compress(buf, ZSTD_LEVEL).unwrap());
    let (back, dec) = timed(|| zstd::bulk::decompress(&z, buf.len()).unwrap());
    assert_eq!(back, buf);
    Tally {
        bytes: z.len(),
        samples: n,
        enc,
        dec,
    }
}

fn zstd_raw(chunk: &[i32], _: &ChunkHeader) -> Tally {
    let buf: Vec<u8> = chunk
        .iter()
        .flat_map(|&s| (s as i16).to_le_bytes())
        .collect();
    zstd_of(&buf, chunk.len())
}

fn zstd_diff(chunk: &[i32], _: &ChunkHeader) -> Tally {
    let mut prev = 0i32;
    let buf: Vec<u8> = chunk
        .iter()
        .flat_map(|&s| {
            let d = (s - prev) as i16;
            prev = s;
            d.to_le_bytes()
        })
        .collect();
    zstd_of(&buf, chunk.len())
}

fn pco(chunk: &[i32], _: &ChunkHeader) -> Tally {
    let cfg = pco::ChunkConfig::default().with_compression_level(PCO_LEVEL);
    let (z, enc) = timed(|| pco::standalone::simple_compress(chunk, &cfg).unwrap());
    let (back, dec) = timed(|| pco::standalone::simple_decompress::<i32>(&z).unwrap());
    assert_eq!(back, chunk);
    Tally {
        bytes: z.len(),
        samples: chunk.len(),
        enc,
        dec,
    }
}

fn mit212(chunk: &[i32], _: &ChunkHeader) -> Tally {
    Tally {
        bytes: (chunk.len() * 3).div_ceil(2),
        samples: chunk.len(),
        ..Tally::default()
    }
}

fn run(
    records: &[mitdb::Record],
    seconds: f64,
    method: fn(&[i32], &ChunkHeader) -> Tally,
) -> Vec<Tally> {
    records
        .iter()
        .map(|r| {
            let len = (seconds * r.sampling_rate_hz).round() as usize;
            let mut t = Tally::default();
            for (sig, gain, baseline) in &r.channels {
                let h = ChunkHeader::with_gain(r.sampling_rate_hz, 0, *gain, *baseline);
                for chunk in sig.chunks(len) {
                    t.add(&method(chunk, &h));
                }
            }
            t
        })
        .collect()
}

fn main() {
    let dir = mitdb::mitdb_dir();
    let records = match mitdb::load_all(&dir) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => {
            println!(
                "no MIT-BIH records in {}; set WARDLINE_SHARED_DATA",
                dir.display()
            );
            return;
        }
        Err(e) => {
            println!(
                "MIT-BIH data not readable at {} ({e}); set WARDLINE_SHARED_DATA",
                dir.display()
            );
            return;
        }
    };
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let methods: [Method; 5] = [
        ("mit212", mit212),
        ("zstd19-raw16", zstd_raw),
        ("zstd19-diff16", zstd_diff),
        ("pco12", pco),
        ("wardline-v1", ours),
    ];
    println!(
        "MIT-BIH, {} records x 2 channels, {MAIN_CHUNK_SECONDS} s chunks per channel; bits/sample (all stored bytes)",
        records.len()
    );
    let results: Vec<Vec<Tally>> = methods
        .iter()
        .map(|(_, m)| run(&records, MAIN_CHUNK_SECONDS, *m))
        .collect();
    print!("{:>8}", "record");
    for (name, _) in &methods {
        print!(" {name:>14}");
    }
    println!();
    for (i, r) in records.iter().enumerate() {
        print!("{:>8}", r.name);
        for res in &results {
            print!(" {:>14.3}", res[i].bps());
        }
        println!();
    }
    let totals: Vec<Tally> = results
        .iter()
        .map(|res| {
            res.iter().fold(Tally::default(), |mut a, t| {
                a.add(t);
                a
            })
        })
        .collect();
    print!("{:>8}", "ALL");
    for t in &totals {
        print!(" {:>14.3}", t.bps());
    }
    println!();
    print!("{:>8}", "enc MS/s");
    for t in &totals {
        if t.enc.is_zero() {
            print!(" {:>14}", "-")
        } else {
            print!(" {:>14.1}", Tally::msps(t.samples, t.enc))
        }
    }
    println!();
    print!("{:>8}", "dec MS/s");
    for t in &totals {
        if t.dec.is_zero() {
            print!(" {:>14}", "-")
        } else {
            print!(" {:>14.1}", Tally::msps(t.samples, t.dec))
        }
    }
    println!();

    println!("\nwardline-v1 by chunk size:");
    for seconds in [5.0, 10.0, 30.0, 60.0, 300.0] {
        let t = run(&records, seconds, ours)
            .iter()
            .fold(Tally::default(), |mut a, t| {
                a.add(t);
                a
            });
        println!(
            "  {seconds:>5} s  {:.3} bits/sample  enc {:.1} MS/s  dec {:.1} MS/s",
            t.bps(),
            Tally::msps(t.samples, t.enc),
            Tally::msps(t.samples, t.dec)
        );
    }
}
