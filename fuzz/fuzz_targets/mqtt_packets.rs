//! What an unauthenticated peer's bytes reach on the MQTT port: the CONNECT reader, then
//! the packet decoder of the protocol version the CONNECT chose.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
});

fuzz_target!(|bytes: &[u8]| {
    // 4 KiB: small enough that the fuzzer reaches the limit checks too.
    RUNTIME.block_on(wardline_mqtt::read_as_peer(bytes, 4096));
});
