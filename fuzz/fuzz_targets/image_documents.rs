//! A registry's manifest, index or image config, and the platform choice.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrocri::fuzz_entries::image_documents(data);
});
