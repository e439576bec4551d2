//! A container's output to its attach sessions. The log pumps publish every chunk here after
//! writing it to the CRI log; each session has its own queue, bounded by bytes. While a
//! session's queue is full (its client reads slower than the container writes), the output
//! it cannot take is dropped for that session only: the container and the log never wait,
//! the session stays usable (an interactive shell survives a burst such as `cat bigfile`),
//! and the complete output is in the log. When the container has exited and its streams have
//! ended, every session gets the exit.

use std::cell::Cell;
use std::rc::Rc;

use tokio::sync::mpsc;

use super::logs::Stream;

/// Output one session may have waiting; beyond it, output is dropped for that session.
pub const MAX_QUEUED: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    Output(Stream, Vec<u8>),
    Exit(i32),
}

pub(super) struct Fanout {
    subscribers: Vec<Subscriber>,
    open_streams: usize,
    exit: Option<i32>,
    /// The exit went out: nobody can attach any more.
    finished: bool,
}

struct Subscriber {
    events: mpsc::UnboundedSender<Event>,
    queued: Rc<Cell<usize>>,
    stdout: bool,
    stderr: bool,
    /// Dropping output at the moment (logged once per episode).
    dropping: bool,
}

/// One session's end of the fan-out: its output, in order, then the exit.
pub(super) struct Subscription {
    events: mpsc::UnboundedReceiver<Event>,
    queued: Rc<Cell<usize>>,
}

impl Subscription {
    /// The next event; None if the container was forgotten.
    pub(super) async fn next(&mut self) -> Option<Event> {
        let event = self.events.recv().await?;
        if let Event::Output(_, bytes) = &event {
            self.queued
                .set(self.queued.get().saturating_sub(bytes.len()));
        }
        Some(event)
    }
}

impl Fanout {
    /// A container with this many output streams (2 pipes, or 1 pty).
    pub(super) fn new(streams: usize) -> Fanout {
        Fanout {
            subscribers: Vec::new(),
            open_streams: streams,
            exit: None,
            finished: false,
        }
    }

    /// A new session for the streams it asked for; None once the container is over.
    pub(super) fn subscribe(&mut self, stdout: bool, stderr: bool) -> Option<Subscription> {
        if self.finished {
            return None;
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let queued = Rc::new(Cell::new(0));
        self.subscribers.push(Subscriber {
            events,
            queued: queued.clone(),
            stdout,
            stderr,
            dropping: false,
        });
        Some(Subscription {
            events: receiver,
            queued,
        })
    }

    pub(super) fn publish(&mut self, stream: Stream, bytes: &[u8]) {
        // Sessions that ended are forgotten here.
        self.subscribers.retain_mut(|s| {
            let wanted = match stream {
                Stream::Stdout => s.stdout,
                Stream::Stderr => s.stderr,
            };
            if !wanted {
                return !s.events.is_closed();
            }
            let queued = s.queued.get() + bytes.len();
            if queued > MAX_QUEUED {
                if !s.dropping {
                    eprintln!("monitor: an attach session is too slow; dropping its output");
                }
                s.dropping = true;
                return !s.events.is_closed();
            }
            s.dropping = false;
            s.queued.set(queued);
            s.events.send(Event::Output(stream, bytes.to_vec())).is_ok()
        });
    }

    /// One output stream reached end of file.
    pub(super) fn stream_ended(&mut self) {
        self.open_streams = self.open_streams.saturating_sub(1);
        if self.open_streams == 0 && self.exit.is_some() {
            self.finish();
        }
    }

    /// The container exited; true when the sessions got the exit, false while output is
    /// still open (the caller calls [`Fanout::finish`] after a grace period).
    pub(super) fn exited(&mut self, code: i32) -> bool {
        self.exit = Some(code);
        if self.open_streams == 0 {
            self.finish();
        }
        self.finished
    }

    /// The exit went out (or the container was forgotten).
    pub(super) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Lets every session go without an exit (the container was forgotten).
    pub(super) fn close(&mut self) {
        self.finished = true;
        self.subscribers.clear();
    }

    /// Sends the exit to every session and lets them go (idempotent).
    pub(super) fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let code = self.exit.unwrap_or(-1);
        for s in self.subscribers.drain(..) {
            let _ = s.events.send(Event::Exit(code));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(sub: &mut Subscription) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = sub.next().await {
            out.push(e);
        }
        out
    }

    #[tokio::test]
    async fn every_session_gets_its_streams_then_the_exit_after_the_output_ended() {
        let mut fanout = Fanout::new(2);
        let mut both = fanout.subscribe(true, true).unwrap();
        let mut out_only = fanout.subscribe(true, false).unwrap();
        fanout.publish(Stream::Stdout, b"a");
        fanout.publish(Stream::Stderr, b"b");
        assert!(!fanout.exited(3), "output is still open");
        fanout.stream_ended();
        fanout.publish(Stream::Stdout, b"c");
        fanout.stream_ended();
        assert!(fanout.subscribe(true, true).is_none(), "over");
        let (out, err) = (Stream::Stdout, Stream::Stderr);
        assert_eq!(
            drain(&mut both).await,
            vec![
                Event::Output(out, b"a".to_vec()),
                Event::Output(err, b"b".to_vec()),
                Event::Output(out, b"c".to_vec()),
                Event::Exit(3)
            ]
        );
        assert_eq!(
            drain(&mut out_only).await,
            vec![
                Event::Output(out, b"a".to_vec()),
                Event::Output(out, b"c".to_vec()),
                Event::Exit(3)
            ]
        );
    }

    #[tokio::test]
    async fn a_session_that_falls_behind_loses_output_and_the_others_do_not() {
        let mut fanout = Fanout::new(1);
        let mut slow = fanout.subscribe(true, true).unwrap();
        let mut fast = fanout.subscribe(true, true).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let fits = MAX_QUEUED / chunk.len();
        for _ in 0..fits + 3 {
            fanout.publish(Stream::Stdout, &chunk);
            assert!(matches!(fast.next().await, Some(Event::Output(..))));
        }
        // The slow session catches up: it gets what fitted, and later output again.
        for _ in 0..fits {
            assert!(matches!(slow.next().await, Some(Event::Output(..))));
        }
        fanout.publish(Stream::Stdout, b"later");
        fanout.stream_ended();
        assert!(fanout.exited(0));
        assert!(fanout.exited(0), "finishing twice is harmless");
        let out = Stream::Stdout;
        assert_eq!(
            drain(&mut slow).await,
            vec![Event::Output(out, b"later".to_vec()), Event::Exit(0)]
        );
        assert_eq!(
            fast.next().await,
            Some(Event::Output(out, b"later".to_vec()))
        );
        assert_eq!(fast.next().await, Some(Event::Exit(0)));
    }

    #[tokio::test]
    async fn closing_ends_sessions_without_an_exit() {
        let mut fanout = Fanout::new(1);
        let mut sub = fanout.subscribe(true, true).unwrap();
        fanout.publish(Stream::Stdout, b"x");
        fanout.close();
        fanout.stream_ended();
        assert!(fanout.exited(0));
        assert_eq!(
            drain(&mut sub).await,
            vec![Event::Output(Stream::Stdout, b"x".to_vec())]
        );
    }

    #[tokio::test]
    async fn a_session_that_went_away_is_dropped() {
        let mut fanout = Fanout::new(1);
        drop(fanout.subscribe(true, true).unwrap());
        fanout.publish(Stream::Stdout, b"x");
        assert!(fanout.subscribers.is_empty());
    }
}
