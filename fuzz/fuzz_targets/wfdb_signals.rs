//! WFDB signal data (`.dat`), for one to four interleaved signals: format 212 read
//! whole and one signal alone, and every format through the header-driven reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&first, data)) = bytes.split_first() else {
        return;
    };
    let signals = usize::from(first % 4) + 1;
    let all = wardline_ecg::wfdb::decode_format_212(data, signals);
    let one = wardline_ecg::wfdb::decode_format_212_signal(
        data,
        signals,
        usize::from(first >> 2) % signals,
    );
    // Reading one signal alone and all of them together must agree.
    if let (Ok(all), Ok(one)) = (all, one) {
        let index = usize::from(first >> 2) % signals;
        assert_eq!(
            all[index], one,
            "signal {index} of {signals} differs when read alone"
        );
    }
    // The formats read, two that are refused, and a byte offset that may pass the end.
    const FORMATS: [u16; 7] = [212, 16, 61, 80, 160, 8, 311];
    let format = FORMATS[usize::from(first) % FORMATS.len()];
    let offset = usize::from(first >> 3);
    let mut text = format!("r {signals} 250\n");
    for _ in 0..signals {
        text.push_str(&format!("r.dat {format}+{offset}\n"));
    }
    if let Ok(header) = wardline_ecg::wfdb::Header::parse(&text) {
        let index = usize::from(first >> 2) % signals;
        if let Ok(samples) = wardline_ecg::wfdb::decode_signal(&header, data, index) {
            assert!(
                wardline_ecg::wfdb::READABLE_FORMATS.contains(&format),
                "format {format} is refused, not decoded"
            );
            assert!(samples.len() <= data.len(), "no more samples than bytes");
        }
    }
});
