//! Logging: the tracing subscriber, and one span per RPC that ends with its duration and code;
//! the same layer counts and times each RPC for the Prometheus metrics.

use std::io::IsTerminal;
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::{Instrument, Span, field};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

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
    // At debug and trace, each step span logs its duration when it closes: the breakdown of
    // an RPC (see `step`).
    let span_events = if matches!(level, LogLevel::Debug | LogLevel::Trace) {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(span_events)
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

/// A tower layer that wraps each gRPC call in an `rpc` span, logs its outcome and records it
/// in the metrics.
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
                let elapsed = started.elapsed();
                let ms = elapsed.as_secs_f64() * 1000.0;
                // (code, whether the status came with a message)
                let (code, said) = match &result {
                    Ok(resp) => {
                        // Unary errors travel as a trailers-only response: the status is in the
                        // headers, its message percent-encoded for the wire; log it decoded.
                        match tonic::Status::from_header_map(resp.headers()) {
                            Some(status) if status.code() != tonic::Code::Ok => {
                                let code = format!("{:?}", status.code());
                                tracing::info!(ms, code, message = status.message(), "rpc failed");
                                (status.code(), !status.message().is_empty())
                            }
                            _ => {
                                tracing::debug!(ms, "rpc done");
                                (tonic::Code::Ok, false)
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(ms, error = %e, "rpc transport error");
                        (tonic::Code::Unknown, false)
                    }
                };
                crate::prometheus::metrics().record_rpc(
                    metric_rpc_name(&rpc, code, said),
                    &code_name(code),
                    elapsed,
                );
                result
            }
            .instrument(span),
        )
    }
}

/// The RPC's name as a metric label. A path that names no RPC gets tonic's bare Unimplemented
/// (ours always say which RPC); those share one label, so clients cannot grow the label set.
fn metric_rpc_name(rpc: &str, code: tonic::Code, with_message: bool) -> &str {
    if code == tonic::Code::Unimplemented && !with_message {
        "unknown"
    } else {
        rpc
    }
}

/// A gRPC code as Prometheus exporters of gRPC name it: "OK", "InvalidArgument", ….
fn code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::Ok => "OK".to_owned(),
        other => format!("{other:?}"),
    }
}
