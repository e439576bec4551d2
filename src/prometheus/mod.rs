//! Prometheus metrics of the daemon: what is counted and measured (`mod.rs`), and the HTTP
//! endpoint that serves them with the gauges read at scrape time (`endpoint.rs`).
//!
//! The metrics are one process-wide set, like the tracing subscriber: recording is an atomic
//! add, so the code that pulls images, runs CNI or commits transactions records always, and
//! only serving depends on `metrics.address`.

pub mod endpoint;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub rpc: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcCodeLabels {
    pub rpc: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CniLabels {
    /// ADD or DEL.
    pub operation: &'static str,
    /// The network (plugin chain) name from its configuration.
    pub network: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the daemon. Names get the `ferrocri_` prefix, counters `_total` and
/// measured values their unit, when registered.
pub struct Metrics {
    registry: Registry,
    pub rpc_requests: Family<RpcCodeLabels, Counter>,
    pub rpc_duration: HistogramFamily<RpcLabels>,
    pub pods: Family<StateLabels, Gauge>,
    pub containers: Family<StateLabels, Gauge>,
    pub image_pulls: Counter,
    pub image_pull_failures: Family<ReasonLabels, Counter>,
    pub image_pull_bytes: Counter,
    pub image_pull_duration: Histogram,
    pub layer_unpack_duration: Histogram,
    pub cni_duration: HistogramFamily<CniLabels>,
    pub monitors: Gauge,
    pub monitor_rss: Gauge,
    pub streaming_sessions: Gauge,
    pub store_transaction_duration: Histogram,
}

/// The daemon's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn histogram_family<L>(buckets: fn() -> Histogram) -> HistogramFamily<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(buckets)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ferrocri");
        let rpc_requests = Family::<RpcCodeLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "CRI RPCs answered, by RPC and gRPC status code",
            rpc_requests.clone(),
        );
        // 0.5 ms … 16 s.
        let rpc_duration =
            histogram_family::<RpcLabels>(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        registry.register_with_unit(
            "grpc_request_duration",
            "Time from a CRI RPC's arrival to its response headers",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        let pods = Family::<StateLabels, Gauge>::default();
        registry.register("pods", "Pod sandboxes by CRI state", pods.clone());
        let containers = Family::<StateLabels, Gauge>::default();
        registry.register("containers", "Containers by CRI state", containers.clone());
        let image_pulls = Counter::default();
        registry.register(
            "image_pulls",
            "Image pulls that finished (failed ones included)",
            image_pulls.clone(),
        );
        let image_pull_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "image_pull_failures",
            "Image pulls that failed, by reason",
            image_pull_failures.clone(),
        );
        let image_pull_bytes = Counter::default();
        registry.register_with_unit(
            "image_pull",
            "Blob bytes downloaded from registries",
            Unit::Bytes,
            image_pull_bytes.clone(),
        );
        // 0.1 s … 205 s.
        let image_pull_duration = Histogram::new(exponential_buckets(0.1, 2.0, 12));
        registry.register_with_unit(
            "image_pull_duration",
            "Duration of image pulls (failed ones included)",
            Unit::Seconds,
            image_pull_duration.clone(),
        );
        // 10 ms … 82 s.
        let layer_unpack_duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register_with_unit(
            "layer_unpack_duration",
            "Time to decompress, unpack and verify one layer",
            Unit::Seconds,
            layer_unpack_duration.clone(),
        );
        // 5 ms … 10 s.
        let cni_duration =
            histogram_family::<CniLabels>(|| Histogram::new(exponential_buckets(0.005, 2.0, 12)));
        registry.register_with_unit(
            "cni_operation_duration",
            "Duration of CNI ADD and DEL of a network's plugin chain",
            Unit::Seconds,
            cni_duration.clone(),
        );
        let monitors = Gauge::default();
        registry.register("monitors", "Pod monitor processes alive", monitors.clone());
        let monitor_rss = Gauge::default();
        registry.register_with_unit(
            "monitor_resident_memory",
            "Resident memory of all pod monitors together",
            Unit::Bytes,
            monitor_rss.clone(),
        );
        let streaming_sessions = Gauge::default();
        registry.register(
            "streaming_sessions",
            "Exec, attach and port-forward sessions open on the streaming server",
            streaming_sessions.clone(),
        );
        // 0.1 ms … 0.8 s.
        let store_transaction_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 14));
        registry.register_with_unit(
            "store_transaction_duration",
            "Duration of metadata store (SQLite) transactions, commit included",
            Unit::Seconds,
            store_transaction_duration.clone(),
        );
        Metrics {
            registry,
            rpc_requests,
            rpc_duration,
            pods,
            containers,
            image_pulls,
            image_pull_failures,
            image_pull_bytes,
            image_pull_duration,
            layer_unpack_duration,
            cni_duration,
            monitors,
            monitor_rss,
            streaming_sessions,
            store_transaction_duration,
        }
    }

    /// One finished RPC. `code` is the gRPC code's name ("OK", "NotFound", …).
    pub fn record_rpc(&self, rpc: &str, code: &str, elapsed: Duration) {
        self.rpc_requests
            .get_or_create(&RpcCodeLabels {
                rpc: rpc.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.rpc_duration
            .get_or_create(&RpcLabels {
                rpc: rpc.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One finished CNI ADD or DEL of `network`.
    pub fn record_cni(&self, operation: &'static str, network: &str, elapsed: Duration) {
        self.cni_duration
            .get_or_create(&CniLabels {
                operation,
                network: network.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Observes the seconds from its creation to its drop into a histogram: a timer that also
/// measures early returns.
pub struct Timer<'a> {
    histogram: &'a Histogram,
    started: Instant,
}

impl<'a> Timer<'a> {
    pub fn start(histogram: &'a Histogram) -> Timer<'a> {
        Timer {
            histogram,
            started: Instant::now(),
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// Counts one open streaming session while it lives.
pub struct SessionGauge(());

impl SessionGauge {
    pub fn open() -> SessionGauge {
        metrics().streaming_sessions.inc();
        SessionGauge(())
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        metrics().streaming_sessions.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let m = Metrics::new();
        m.record_rpc("Version", "OK", Duration::from_millis(2));
        m.image_pull_bytes.inc_by(10);
        m.record_cni("ADD", "net", Duration::from_millis(30));
        let text = m.encode();
        for name in [
            "ferrocri_grpc_requests_total{rpc=\"Version\",code=\"OK\"} 1",
            "ferrocri_grpc_request_duration_seconds_count{rpc=\"Version\"} 1",
            "ferrocri_image_pull_bytes_total 10",
            "ferrocri_cni_operation_duration_seconds_bucket{le=",
            "ferrocri_store_transaction_duration_seconds_sum",
            "# EOF",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
