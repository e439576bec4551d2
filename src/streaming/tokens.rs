//! Single-use tokens for streaming URLs: the Exec, Attach and PortForward RPCs park their
//! (already validated) request under a random token; the HTTP request on the URL takes it
//! back out. Tokens expire, and the number waiting is bounded so a client that asks for URLs
//! and never uses them cannot grow the daemon's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a URL stays usable, as in kubelet's and containerd's streaming servers.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// At most this many URLs wait to be used at a time.
pub const MAX_PENDING: usize = 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("too many streaming requests are waiting ({MAX_PENDING}); try again shortly")]
pub struct TooManyPending;

pub struct TokenCache<T> {
    ttl: Duration,
    capacity: usize,
    pending: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T> TokenCache<T> {
    pub fn new() -> TokenCache<T> {
        TokenCache::with_limits(TOKEN_TTL, MAX_PENDING)
    }

    pub fn with_limits(ttl: Duration, capacity: usize) -> TokenCache<T> {
        TokenCache {
            ttl,
            capacity,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Parks `request` and returns its token: 32 random bytes, URL-safe base64.
    pub fn insert(&self, request: T) -> Result<String, TooManyPending> {
        use base64::Engine;
        let token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut pending = self.lock();
        if pending.len() >= self.capacity {
            pending.retain(|_, (expires, _)| *expires > now);
            if pending.len() >= self.capacity {
                return Err(TooManyPending);
            }
        }
        pending.insert(token.clone(), (now + self.ttl, request));
        Ok(token)
    }

    /// Takes the request of `token` out: a token works once, and not after it expired.
    pub fn take(&self, token: &str) -> Option<T> {
        let (expires, request) = self.lock().remove(token)?;
        (expires > Instant::now()).then_some(request)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, T)>> {
        // A panic while holding the lock cannot leave the map half-changed: every change is
        // one HashMap call.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Default for TokenCache<T> {
    fn default() -> Self {
        TokenCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once() {
        let cache = TokenCache::new();
        let token = cache.insert("exec").unwrap();
        assert_eq!(token.len(), 43);
        assert_eq!(cache.take(&token), Some("exec"));
        assert_eq!(cache.take(&token), None);
        assert_eq!(cache.take("made-up"), None);
    }

    #[test]
    fn tokens_are_unique() {
        let cache = TokenCache::new();
        let a = cache.insert(1).unwrap();
        let b = cache.insert(2).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn expired_tokens_do_not_work_and_make_room() {
        let cache = TokenCache::with_limits(Duration::from_millis(20), 2);
        let old = cache.insert(1).unwrap();
        cache.insert(2).unwrap();
        assert_eq!(cache.insert(3), Err(TooManyPending));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.take(&old), None);
        let fresh = cache.insert(4).unwrap();
        assert_eq!(cache.take(&fresh), Some(4));
    }
}
