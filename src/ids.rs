//! Shared leaves of every layer: new object IDs and the wall clock as CRI wants it.

use std::time::{SystemTime, UNIX_EPOCH};

/// A new sandbox or container ID: 64 random hex digits, like containerd's and CRI-O's.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Nanoseconds since the Unix epoch (CRI timestamps); 0 for a clock before 1970.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}
