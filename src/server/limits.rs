//! Request size limit. tonic refuses a message over the limit with OutOfRange before any
//! handler runs; to the caller that is a bad request, so it is answered as InvalidArgument.
//! No handler of ours returns OutOfRange, so the rewrite cannot hide a real one.

use std::task::{Context, Poll};

use http::HeaderValue;

/// The largest request accepted: far above any real CRI request (kubelet's largest, a
/// CreateContainer with many env vars and mounts, is kilobytes), small enough to bound memory.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

const OUT_OF_RANGE: &str = "11";
const INVALID_ARGUMENT: HeaderValue = HeaderValue::from_static("3");

#[derive(Clone, Copy, Default)]
pub struct InvalidArgumentForOversizeLayer;

impl<S> tower::Layer<S> for InvalidArgumentForOversizeLayer {
    type Service = InvalidArgumentForOversize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InvalidArgumentForOversize { inner }
    }
}

#[derive(Clone)]
pub struct InvalidArgumentForOversize<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for InvalidArgumentForOversize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let future = self.inner.call(req);
        Box::pin(async move {
            let mut resp = future.await?;
            let headers = resp.headers_mut();
            if headers
                .get("grpc-status")
                .is_some_and(|v| v == OUT_OF_RANGE)
            {
                headers.insert("grpc-status", INVALID_ARGUMENT);
            }
            Ok(resp)
        })
    }
}
