//! A CDI spec file (YAML and JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrocri::fuzz_entries::cdi_spec(data);
});
