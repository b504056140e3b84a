//! WFDB format-212 signal data (`.dat`), for one to four interleaved signals.
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
});
