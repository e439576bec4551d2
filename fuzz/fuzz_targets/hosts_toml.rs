//! A registry's hosts.toml.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrocri::fuzz_entries::hosts_toml(data);
});
