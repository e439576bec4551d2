//! Learning of exits as they happen: one inotify watch per pod folder. A pod's monitor records
//! each container exit in `containers/<id>/exit.json`, then renames a new count into
//! `<pod dir>/exits`; when the pause dies it writes `pause.exit`. The rename and that write are
//! what the watch reports, so the daemon reads a pod's exit files right after they are in place,
//! without polling and without a connection from the monitor (which keeps running, and keeps
//! recording, while the daemon is down or restarting).
//!
//! Lists lean on the watch: once a pod's exits from before its watch are read (`caught_up`),
//! a list does not read that pod's exit files; it handles the changes still queued in the
//! kernel first (`pending`), so an exit recorded before the list began is in it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::monitor::layout::{EXITS_FILE, PAUSE_EXIT_FILE};

/// Something that happened in a watched pod folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The pod's exit count changed: one of its containers exited.
    Exits { pod: String, dir: PathBuf },
    /// The pod's pause exited.
    PauseExit { pod: String },
    /// The kernel's queue overflowed and events were lost: look at every pod.
    Overflow,
}

pub struct ExitWatch {
    inotify: AsyncFd<OwnedFd>,
    watches: Mutex<Watches>,
    /// Held from reading changes until they are handled, by the watch loop or a list: a list
    /// that gets it has every change queued before it handled.
    handling: tokio::sync::Mutex<()>,
    /// Reading the kernel's queue failed: the watch covers no pod any more.
    broken: AtomicBool,
}

/// Proof that changes are being handled; drop it once they are.
pub type Handling<'a> = tokio::sync::MutexGuard<'a, ()>;

#[derive(Default)]
struct Watches {
    /// Watch descriptor → (pod ID, pod folder).
    by_wd: HashMap<i32, (String, PathBuf)>,
    by_pod: HashMap<String, i32>,
    /// Watched pods whose exits from before the watch have been read.
    caught_up: HashSet<String>,
}

impl ExitWatch {
    /// An inotify instance with no watch yet (call within the tokio runtime).
    pub fn new() -> io::Result<ExitWatch> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        // SAFETY: an OwnedFd is an open descriptor; the AsyncFd owns it from here until it
        // is dropped, and its as_raw_fd always returns that same descriptor.
        let inotify = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(ExitWatch {
            inotify,
            watches: Mutex::default(),
            handling: tokio::sync::Mutex::default(),
            broken: AtomicBool::new(false),
        })
    }

    /// Watches the pod folder `dir`; false when the pod is watched already. The watch goes by
    /// itself when the folder is removed.
    pub fn watch(&self, pod: &str, dir: &Path) -> io::Result<bool> {
        let mut watches = self.lock();
        if watches.by_pod.contains_key(pod) {
            return Ok(false);
        }
        let flags = WatchFlags::MOVED_TO | WatchFlags::CLOSE_WRITE | WatchFlags::ONLYDIR;
        let wd = inotify::add_watch(self.inotify.get_ref(), dir, flags)?;
        watches.by_wd.insert(wd, (pod.to_owned(), dir.to_owned()));
        watches.by_pod.insert(pod.to_owned(), wd);
        Ok(true)
    }

    /// The pod's exits recorded before its watch began have been read: its later exits come
    /// through the watch.
    pub fn caught_up(&self, pod: &str) {
        let mut watches = self.lock();
        if watches.by_pod.contains_key(pod) {
            watches.caught_up.insert(pod.to_owned());
        }
    }

    /// Whether every exit of the pod reaches the daemon through the watch.
    pub fn covers(&self, pod: &str) -> bool {
        !self.broken.load(Ordering::Acquire) && self.lock().caught_up.contains(pod)
    }

    /// Every watched pod and its folder.
    pub fn watched(&self) -> Vec<(String, PathBuf)> {
        self.lock().by_wd.values().cloned().collect()
    }

    /// Waits for the next changes (at least one); handle them before dropping the guard.
    pub async fn next(&self) -> io::Result<(Handling<'_>, Vec<Change>)> {
        loop {
            let mut ready = self.inotify.readable().await?;
            let handling = self.handling.lock().await;
            let changes = self.read_queued()?;
            // The queue is empty now; a change queued since is a new readiness, kept.
            ready.clear_ready();
            if !changes.is_empty() {
                return Ok((handling, changes));
            }
        }
    }

    /// The changes queued now (maybe none), once changes read earlier are handled; handle
    /// them before dropping the guard.
    pub async fn pending(&self) -> io::Result<(Handling<'_>, Vec<Change>)> {
        let handling = self.handling.lock().await;
        let changes = self.read_queued()?;
        Ok((handling, changes))
    }

    /// Reads the kernel's queue until it is empty.
    fn read_queued(&self) -> io::Result<Vec<Change>> {
        let mut changes = Vec::new();
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(self.inotify.get_ref(), &mut buf);
        loop {
            match reader.next() {
                Ok(event) => self.interpret(&event, &mut changes),
                Err(rustix::io::Errno::AGAIN) => return Ok(changes),
                Err(e) => {
                    self.broken.store(true, Ordering::Release);
                    return Err(e.into());
                }
            }
        }
    }

    fn interpret(&self, event: &inotify::Event<'_>, changes: &mut Vec<Change>) {
        let flags = event.events();
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            changes.push(Change::Overflow);
            return;
        }
        let mut watches = self.lock();
        if flags.contains(ReadFlags::IGNORED) {
            // The folder is gone (the pod was removed), and with it the watch.
            if let Some((pod, _)) = watches.by_wd.remove(&event.wd()) {
                watches.by_pod.remove(&pod);
                watches.caught_up.remove(&pod);
            }
            return;
        }
        let Some((pod, dir)) = watches.by_wd.get(&event.wd()) else {
            return;
        };
        let name = event.file_name().map(|n| n.to_bytes());
        let change = if name == Some(EXITS_FILE.as_bytes()) && flags.contains(ReadFlags::MOVED_TO) {
            Change::Exits {
                pod: pod.clone(),
                dir: dir.clone(),
            }
        } else if name == Some(PAUSE_EXIT_FILE.as_bytes()) && flags.contains(ReadFlags::CLOSE_WRITE)
        {
            Change::PauseExit { pod: pod.clone() }
        } else {
            return;
        };
        if !changes.contains(&change) {
            changes.push(change);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Watches> {
        // Each change is one insert or remove pair: a panic cannot leave half of one.
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Writes a file the way the monitor does: a temporary file renamed into place.
    fn rename_into(dir: &Path, name: &str, text: &str) {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }

    async fn next(watch: &ExitWatch) -> Vec<Change> {
        tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("a change within 5 s")
            .unwrap()
            .1
    }

    #[tokio::test]
    async fn reports_exit_counts_and_pause_exits_of_watched_pods_only() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
        }
        let watch = ExitWatch::new().unwrap();
        assert!(watch.watch("pod-a", &a).unwrap());
        assert!(!watch.watch("pod-a", &a).unwrap());
        assert_eq!(watch.watched(), vec![("pod-a".to_owned(), a.clone())]);

        // Other files and other pods' folders are not reported.
        std::fs::write(a.join("hosts"), "x").unwrap();
        rename_into(&b, EXITS_FILE, "1");
        rename_into(&a, EXITS_FILE, "1");
        let exits = Change::Exits {
            pod: "pod-a".into(),
            dir: a.clone(),
        };
        assert_eq!(next(&watch).await, vec![exits.clone()]);

        std::fs::write(a.join(PAUSE_EXIT_FILE), "137").unwrap();
        assert_eq!(
            next(&watch).await,
            vec![Change::PauseExit {
                pod: "pod-a".into()
            }]
        );

        // Several renames before a read come as one change.
        for n in 2..5 {
            rename_into(&a, EXITS_FILE, &n.to_string());
        }
        assert_eq!(next(&watch).await, vec![exits]);

        // A removed folder takes its watch along.
        std::fs::remove_dir_all(&a).unwrap();
        let more = tokio::time::timeout(Duration::from_millis(300), watch.next()).await;
        assert!(more.is_err(), "nothing to report");
        assert!(watch.watched().is_empty());
        // A pod folder made again under the same ID is watched again.
        std::fs::create_dir(&a).unwrap();
        watch.watch("pod-a", &a).unwrap();
        rename_into(&a, EXITS_FILE, "1");
        assert_eq!(next(&watch).await.len(), 1);
    }

    #[tokio::test]
    async fn a_pod_is_covered_once_caught_up_and_pending_changes_are_read_at_once() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let watch = ExitWatch::new().unwrap();
        assert!(!watch.covers("pod-a"));
        watch.caught_up("pod-a");
        assert!(!watch.covers("pod-a"), "not watched: not covered");
        watch.watch("pod-a", &a).unwrap();
        assert!(
            !watch.covers("pod-a"),
            "exits from before the watch not read yet"
        );
        watch.caught_up("pod-a");
        assert!(watch.covers("pod-a"));

        let (_, nothing) = watch.pending().await.unwrap();
        assert!(nothing.is_empty());
        rename_into(&a, EXITS_FILE, "1");
        // No waiting: the rename is queued as soon as it is done.
        let (handling, changes) = watch.pending().await.unwrap();
        assert_eq!(
            changes,
            vec![Change::Exits {
                pod: "pod-a".into(),
                dir: a.clone()
            }]
        );
        // While changes are handled, a list waits.
        let waiting = tokio::time::timeout(Duration::from_millis(100), watch.pending()).await;
        assert!(waiting.is_err(), "pending must wait for the handling");
        drop(handling);
        assert!(watch.pending().await.unwrap().1.is_empty());

        std::fs::remove_dir_all(&a).unwrap();
        let more = tokio::time::timeout(Duration::from_millis(300), watch.next()).await;
        assert!(more.is_err(), "nothing to report");
        assert!(!watch.covers("pod-a"), "a removed folder covers nothing");
    }
}
