//! Sharing one piece of work between concurrent callers: the first caller for a key starts
//! it, later callers wait for the same result. The work stops when every caller has gone
//! (for example all their RPCs hit their deadlines), and the next caller starts it afresh.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};

type Job<T, E> = BoxFuture<'static, Result<T, Arc<E>>>;
type Work<T, E> = Shared<Job<T, E>>;

pub struct Inflight<K, T, E> {
    running: Mutex<HashMap<K, WeakShared<Job<T, E>>>>,
}

impl<K, T, E> Default for Inflight<K, T, E> {
    fn default() -> Self {
        Inflight {
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, T, E> Inflight<K, T, E>
where
    K: Hash + Eq + Clone,
    T: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// Joins the work running for `key`, or starts it with `start`.
    pub async fn run<F>(&self, key: K, start: F) -> Result<T, Arc<E>>
    where
        F: FnOnce() -> BoxFuture<'static, Result<T, E>>,
    {
        let work: Work<T, E> = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get(&key).and_then(WeakShared::upgrade) {
                Some(work) => work,
                None => {
                    let work = start().map(|r| r.map_err(Arc::new)).boxed().shared();
                    if let Some(weak) = work.downgrade() {
                        running.insert(key.clone(), weak);
                    }
                    work
                }
            }
        };
        let result = work.await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, w| w.upgrade().is_some_and(|w| w.peek().is_none()));
        result
    }

    /// As [`run`](Self::run), but the work runs in a task of its own: callers that give up do
    /// not stop it (a half-built pod or container is finished or undone, never left half
    /// done), and a caller that comes while it still runs joins it. `panicked` turns the
    /// message of a task that panicked into the error every caller gets.
    pub async fn run_detached<W, Fut, P>(&self, key: K, work: W, panicked: P) -> Result<T, Arc<E>>
    where
        W: FnOnce() -> Fut,
        P: FnOnce(String) -> E + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.run(key, move || {
            let task = tokio::spawn(work());
            async move { task.await.unwrap_or_else(|e| Err(panicked(e.to_string()))) }.boxed()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let inflight: Arc<Inflight<&str, u32, String>> = Arc::default();
        let starts = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (inflight, starts) = (inflight.clone(), starts.clone());
            tasks.push(tokio::spawn(async move {
                inflight
                    .run("blob", || {
                        starts.fetch_add(1, Ordering::SeqCst);
                        async {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(7)
                        }
                        .boxed()
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        // Finished work is forgotten: the next caller runs it again.
        inflight
            .run("blob", || async { Ok(8) }.boxed())
            .await
            .unwrap();
        assert_eq!(inflight.running.lock().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn abandoned_work_is_dropped_and_restarted() {
        let inflight: Inflight<u8, u8, ()> = Inflight::default();
        let slow = inflight.run(1, || {
            async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(1)
            }
            .boxed()
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(20), slow)
                .await
                .is_err()
        );
        let again = inflight.run(1, || async { Ok(2) }.boxed()).await.unwrap();
        assert_eq!(again, 2, "the abandoned run was not joined");
    }

    #[tokio::test]
    async fn detached_work_finishes_when_its_caller_gives_up() {
        let inflight: Inflight<u8, u8, String> = Inflight::default();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let abandoned = inflight.run_detached(
            1,
            || async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = done_tx.send(());
                Ok(1)
            },
            |e| e,
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(5), abandoned)
                .await
                .is_err()
        );
        tokio::time::timeout(Duration::from_secs(5), done_rx)
            .await
            .expect("the detached work was stopped with its caller")
            .unwrap();
    }

    #[tokio::test]
    async fn a_panicking_detached_task_is_an_error_for_its_caller() {
        let inflight: Inflight<u8, u8, String> = Inflight::default();
        let err = inflight
            .run_detached(1, || async { panic!("boom") }, |e| format!("lost: {e}"))
            .await
            .unwrap_err();
        assert!(err.starts_with("lost: "), "{err}");
    }

    #[tokio::test]
    async fn errors_reach_every_waiter() {
        let inflight: Inflight<u8, u8, String> = Inflight::default();
        let err = inflight
            .run(1, || async { Err("boom".to_owned()) }.boxed())
            .await
            .unwrap_err();
        assert_eq!(*err, "boom");
    }
}
