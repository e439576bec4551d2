//! Logging: the tracing subscriber, and one span per RPC that ends with its duration and code.

use std::io::IsTerminal;
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::{Instrument, Span, field};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel};

/// Installs the global subscriber, writing to stderr. `RUST_LOG`, when set, overrides `level`
/// so one module can be turned up without a restart of the whole config.
pub fn init(level: LogLevel, format: LogFormat) {
    let default = match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests, re-exec) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Records the IDs an RPC works on into the current RPC span, e.g.
/// `telemetry::record_ids("pod", &request.pod_sandbox_id)`.
pub fn record_ids(kind: &'static str, id: &str) {
    let span = Span::current();
    match kind {
        "pod" => span.record("pod", id),
        "container" => span.record("container", id),
        _ => span.record("image", id),
    };
}

/// A tower layer that wraps each gRPC call in an `rpc` span and logs its outcome.
#[derive(Clone, Copy, Default)]
pub struct RpcSpanLayer;

impl<S> tower::Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;
    fn layer(&self, inner: S) -> RpcSpan<S> {
        RpcSpan { inner }
    }
}

#[derive(Clone)]
pub struct RpcSpan<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcSpan<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // "/runtime.v1.RuntimeService/Version" → "Version".
        let rpc = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
        let span = tracing::info_span!(
            "rpc",
            rpc = %rpc,
            pod = field::Empty,
            container = field::Empty,
            image = field::Empty
        );
        let started = Instant::now();
        let future = self.inner.call(req);
        Box::pin(
            async move {
                let result = future.await;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                match &result {
                    Ok(resp) => {
                        // Unary errors travel as a trailers-only response: the status is in the
                        // headers, its message percent-encoded for the wire; log it decoded.
                        match tonic::Status::from_header_map(resp.headers()) {
                            Some(status) if status.code() != tonic::Code::Ok => {
                                let code = format!("{:?}", status.code());
                                tracing::info!(ms, code, message = status.message(), "rpc failed");
                            }
                            _ => tracing::debug!(ms, "rpc done"),
                        }
                    }
                    Err(e) => tracing::warn!(ms, error = %e, "rpc transport error"),
                }
                result
            }
            .instrument(span),
        )
    }
}
