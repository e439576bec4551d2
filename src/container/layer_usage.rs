//! The disk usage of containers' writable layers, kept between stats calls. Measuring walks
//! the layer's upper folder, at a cost that grows with what the container wrote, and kubelet
//! asks for the stats of every container every ~10 s: a walk per container per call would put
//! the whole node's file count on every call. Instead a figure younger than [`REFRESH_AFTER`]
//! is served as is; an older one is served and measured again in the background (one walk at
//! a time per container); one older than [`MAX_AGE`], or none, is measured in the call. So
//! a figure served is never older than `MAX_AGE`, and under kubelet's steady polling it is the
//! one measured at the previous poll. Each figure carries the time it was measured.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ids::now_nanos;

/// Served as is below this age.
pub const REFRESH_AFTER: Duration = Duration::from_secs(2);
/// Never served above this age: measured in the call instead.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// What a writable layer holds, and when that was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
    /// Nanoseconds since the epoch.
    pub measured_at: i64,
}

impl Usage {
    /// Walks the writable layer's upper folder now.
    pub fn measure(upper: &Path) -> Usage {
        let (bytes, inodes) = crate::rootfs::usage::disk_usage(upper);
        Usage {
            bytes,
            inodes,
            measured_at: now_nanos(),
        }
    }
}

struct Entry {
    usage: Usage,
    measured: Instant,
    refreshing: bool,
}

/// What the cache knows of one container.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Serve this.
    Fresh(Usage),
    /// Serve this, and measure again: this caller is the one to (see [`LayerUsage::refreshed`]).
    Refresh(Usage),
    /// Nothing to serve: measure now (then [`LayerUsage::measured`]).
    Missing,
}

/// Per container ID, its last figure. Shared by the stats calls; a removed container's
/// entry goes with it ([`LayerUsage::forget`]), and entries nobody asked for within
/// [`MAX_AGE`] are dropped by the next measurement.
#[derive(Default)]
pub struct LayerUsage {
    entries: Mutex<HashMap<String, Entry>>,
}

impl LayerUsage {
    pub fn lookup(&self, id: &str, now: Instant) -> Lookup {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(id) else {
            return Lookup::Missing;
        };
        let age = now.saturating_duration_since(entry.measured);
        if age > MAX_AGE {
            Lookup::Missing
        } else if age > REFRESH_AFTER && !entry.refreshing {
            entry.refreshing = true;
            Lookup::Refresh(entry.usage)
        } else {
            Lookup::Fresh(entry.usage)
        }
    }

    /// Keeps a figure measured in a call (after [`Lookup::Missing`]).
    pub fn measured(&self, id: &str, usage: Usage, now: Instant) {
        let mut entries = self.lock();
        entries.retain(|_, e| now.saturating_duration_since(e.measured) <= MAX_AGE);
        entries.insert(
            id.to_owned(),
            Entry {
                usage,
                measured: now,
                refreshing: false,
            },
        );
    }

    /// Keeps a figure measured in the background (after [`Lookup::Refresh`]), unless the
    /// container was removed meanwhile.
    pub fn refreshed(&self, id: &str, usage: Usage, now: Instant) {
        if let Some(entry) = self.lock().get_mut(id) {
            *entry = Entry {
                usage,
                measured: now,
                refreshing: false,
            };
        }
    }

    /// Drops the container's figure (it was removed).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The container's figure, measured in the call when there is none to serve; with true
    /// when the caller should have it measured again ([`LayerUsage::refresh_in_background`]).
    pub fn get(&self, id: &str, upper: &Path) -> (Usage, bool) {
        match self.lookup(id, Instant::now()) {
            Lookup::Fresh(usage) => (usage, false),
            Lookup::Refresh(usage) => (usage, true),
            Lookup::Missing => {
                let usage = Usage::measure(upper);
                self.measured(id, usage, Instant::now());
                (usage, false)
            }
        }
    }

    /// Measures these layers (container ID, upper folder) again on a blocking thread (call
    /// within the tokio runtime).
    pub fn refresh_in_background(self: &Arc<Self>, stale: Vec<(String, PathBuf)>) {
        if stale.is_empty() {
            return;
        }
        let cache = self.clone();
        tokio::task::spawn_blocking(move || {
            for (id, upper) in stale {
                cache.refreshed(&id, Usage::measure(&upper), Instant::now());
            }
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Every change is one insert, assignment or removal: a panic cannot leave half of one.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(bytes: u64) -> Usage {
        Usage {
            bytes,
            inodes: 1,
            measured_at: 0,
        }
    }

    #[test]
    fn fresh_figures_are_served_stale_ones_refreshed_once_and_old_ones_measured_again() {
        let cache = LayerUsage::default();
        let t0 = Instant::now();
        assert_eq!(cache.lookup("a", t0), Lookup::Missing);
        cache.measured("a", usage(10), t0);
        assert_eq!(
            cache.lookup("a", t0 + REFRESH_AFTER),
            Lookup::Fresh(usage(10))
        );

        // Past REFRESH_AFTER: served, and one caller (only) is told to measure again.
        let later = t0 + REFRESH_AFTER + Duration::from_millis(1);
        assert_eq!(cache.lookup("a", later), Lookup::Refresh(usage(10)));
        assert_eq!(cache.lookup("a", later), Lookup::Fresh(usage(10)));
        cache.refreshed("a", usage(20), later);
        assert_eq!(cache.lookup("a", later), Lookup::Fresh(usage(20)));

        // Never served past MAX_AGE, even while a refresh is under way.
        let stale = later + REFRESH_AFTER + Duration::from_millis(1);
        assert_eq!(cache.lookup("a", stale), Lookup::Refresh(usage(20)));
        assert_eq!(cache.lookup("a", later + MAX_AGE), Lookup::Fresh(usage(20)));
        let too_old = later + MAX_AGE + Duration::from_millis(1);
        assert_eq!(cache.lookup("a", too_old), Lookup::Missing);
    }

    #[test]
    fn a_removed_container_leaves_nothing_and_old_entries_are_dropped() {
        let cache = LayerUsage::default();
        let t0 = Instant::now();
        cache.measured("a", usage(1), t0);
        cache.measured("b", usage(2), t0);
        cache.forget("a");
        assert_eq!(cache.lookup("a", t0), Lookup::Missing);
        // A background measurement finishing after the removal does not bring it back.
        cache.refreshed("a", usage(3), t0);
        assert_eq!(cache.lookup("a", t0), Lookup::Missing);
        assert_eq!(cache.len(), 1);
        // An entry nobody asked for within MAX_AGE goes at the next measurement.
        cache.measured("c", usage(4), t0 + MAX_AGE + Duration::from_millis(1));
        assert_eq!(cache.len(), 1, "b is gone");
    }

    #[test]
    fn figures_follow_what_the_layer_holds() {
        let upper = tempfile::tempdir().unwrap();
        let cache = LayerUsage::default();
        let (first, refresh) = cache.get("a", upper.path());
        assert_eq!((first.bytes, first.inodes, refresh), (0, 0, false));
        assert!(first.measured_at > 0);
        std::fs::write(upper.path().join("f"), vec![0u8; 4096]).unwrap();
        // Fresh: the cached figure.
        assert_eq!(cache.get("a", upper.path()), (first, false));
        // Forgotten (as on removal): measured again in the call.
        cache.forget("a");
        let (second, _) = cache.get("a", upper.path());
        assert_eq!((second.bytes, second.inodes), (4096, 1));
    }
}
