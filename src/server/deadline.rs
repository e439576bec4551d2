//! Client deadlines (`grpc-timeout`) answered with DEADLINE_EXCEEDED, as the gRPC spec says.
//! tonic enforces the header itself but answers CANCELLED ("Timeout expired"), which a client
//! cannot tell from its own cancellation. This layer runs inside tonic's timeout and starts its
//! clock first, so it answers first; either way the RPC's future is dropped at the deadline.

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Copy, Default)]
pub struct DeadlineExceededLayer;

impl<S> tower::Layer<S> for DeadlineExceededLayer {
    type Service = DeadlineExceeded<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineExceeded { inner }
    }
}

#[derive(Clone)]
pub struct DeadlineExceeded<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for DeadlineExceeded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let timeout = grpc_timeout(req.headers());
        let mut future = Box::pin(self.inner.call(req));
        let Some(timeout) = timeout else {
            return future;
        };
        let deadline = Instant::now() + timeout;
        let mut sleep = Box::pin(tokio::time::sleep_until(deadline));
        Box::pin(futures::future::poll_fn(move |cx| {
            if let Poll::Ready(result) = future.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            // Compare clocks rather than trust timer order: when tonic's later timer fires,
            // this deadline has passed too.
            if Instant::now() >= deadline || sleep.as_mut().poll(cx).is_ready() {
                let status = super::errors::deadline_passed(timeout);
                return Poll::Ready(Ok(status.into_http()));
            }
            Poll::Pending
        }))
    }
}

/// The `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (value, unit) = text.split_at_checked(text.len().checked_sub(1)?)?;
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    let value: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_header() {
        let parse = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(parse("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("3H"), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(parse("123456789S"), None, "at most 8 digits");
        assert_eq!(parse("m"), None);
        assert_eq!(parse("5x"), None);
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }
}
