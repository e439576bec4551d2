//! A CRI request of one of 24 types (first byte), decoded and checked at the door as the
//! gRPC handlers do.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrocri::fuzz_entries::cri_request(data);
});
