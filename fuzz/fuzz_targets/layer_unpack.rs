//! A layer blob (gzip, zstd or plain tar) unpacked into a fresh directory under small caps.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a scratch directory");
    ferrocri::fuzz_entries::layer(data, dir.path());
});
