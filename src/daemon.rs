//! The daemon's life: prepare the directories and store, serve the CRI socket, shut down
//! cleanly on SIGTERM/SIGINT. Containers are never stopped by a daemon shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::container::service::Containers;
use crate::image::service::Images;
use crate::sandbox::service::Sandboxes;
use crate::server::CriServer;
use crate::socket::{self, LockFile};
use crate::store::Store;
use crate::streaming::Streaming;
use crate::systemd::Notifier;

/// Runs the daemon until a shutdown signal; returns when it may exit with 0. `notifier` tells
/// systemd when the socket serves and when shutdown begins.
pub async fn run(config: Config, notifier: Notifier) -> Result<()> {
    // What `ferrocri check` would say, so a host problem is in the log before a pod fails.
    crate::preflight::log(&crate::preflight::run(&config));
    check_monitor_binary()?;
    for dir in [&config.root_dir, &config.state_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // One daemon per root dir: two would corrupt each other's state.
    let _root_lock = LockFile::acquire(&config.root_dir.join("ferrocri.lock"))?;
    let store = Store::open(&config.database_path())
        .with_context(|| format!("cannot open {}", config.database_path().display()))?;
    let images = Images::open(&config, store.clone()).context("cannot open the image store")?;
    spawn_image_gc(&images);
    write_default_network(&config);
    let sandboxes = Arc::new(Sandboxes::new(
        &config,
        store.clone(),
        crate::sandbox::edges::Edges::real(&config),
    ));
    sandboxes
        .recover()
        .await
        .context("cannot recover the pod sandboxes of the previous run")?;
    let containers = Arc::new(Containers::new(
        &config.root_dir,
        store.clone(),
        images.clone(),
        sandboxes.clone(),
        config.cri.event_buffer,
        config.cdi.spec_dirs.clone(),
    ));
    containers
        .recover()
        .await
        .context("cannot recover the containers of the previous run")?;
    tokio::spawn(containers.clone().watch_exits());
    let streaming = Streaming::start(&config.streaming, containers.clone(), sandboxes.clone())
        .await
        .context("cannot start the streaming server")?;
    let metrics = start_metrics(&config, &sandboxes, &containers).await?;
    let listener = socket::bind(&config.socket)?;
    let socket_path = config.socket.clone();
    let shutdown_timeout = config.shutdown_timeout;
    tracing::info!(
        socket = %socket_path.display(),
        root = %config.root_dir.display(),
        state = %config.state_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        metrics = ?metrics,
        "ferrocri serving"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let events = containers.clone();
    let server = tokio::spawn(
        CriServer::new(config, store, images, sandboxes, containers, streaming).serve(
            listener,
            async {
                let _ = stop_rx.await;
            },
        ),
    );

    // The socket listens and the server accepts on it: clients started after us may connect.
    notifier.ready(&format!("serving on {}", socket_path.display()));
    spawn_watchdog(&notifier);
    let signal_name = wait_for_shutdown_signal().await?;
    notifier.stopping();
    tracing::info!(
        signal = signal_name,
        "shutting down: no new RPCs, finishing in-flight ones"
    );
    // Remove the socket first so clients see at once that nobody serves here any more.
    let _ = std::fs::remove_file(&socket_path);
    // Event streams never end by themselves: end them so that they hold no connection open.
    events.close_events();
    let _ = stop_tx.send(());
    finish(server, shutdown_timeout).await;
    Ok(())
}

/// Every pod needs the monitor binary: without it, refuse to start rather than fail pods.
fn check_monitor_binary() -> Result<()> {
    let monitor =
        crate::monitor::client::program().context("cannot find the daemon's executable")?;
    if !monitor.is_file() {
        anyhow::bail!(
            "{} is missing: ferrocri runs each pod's monitor from it (install it beside ferrocri)",
            monitor.display()
        );
    }
    Ok(())
}

/// Whatever a crash or a removal left unreferenced goes now, without delaying start-up.
fn spawn_image_gc(images: &Arc<Images>) {
    let gc = images.clone();
    tokio::spawn(async move {
        if let Err(e) = gc.collect_garbage().await {
            tracing::warn!(error = %e, "image garbage collection failed");
        }
    });
}

/// A node without any pod network gets ferrocri's default bridge network.
fn write_default_network(config: &Config) {
    match crate::cni::default::write_default_network(&config.cni.conf_dir, &config.cni.pod_subnet) {
        Ok(file) => tracing::info!(file = %file.display(), "CNI network configuration"),
        Err(e) => tracing::warn!(
            error = %e,
            dir = %config.cni.conf_dir.display(),
            "cannot write the default CNI network; pods wait until one is configured"
        ),
    }
}

/// Serves /metrics when the configuration asks for it; the address it listens on.
async fn start_metrics(
    config: &Config,
    sandboxes: &Arc<Sandboxes>,
    containers: &Arc<Containers>,
) -> Result<Option<std::net::SocketAddr>> {
    let Some(address) = config.metrics.socket_address() else {
        return Ok(None);
    };
    let sources = crate::gauges::Sources {
        sandboxes: sandboxes.clone(),
        containers: containers.clone(),
    };
    let bound = crate::prometheus::endpoint::start(address, sources.into_refresh()).await?;
    tracing::info!(address = %bound, "serving Prometheus metrics at /metrics");
    Ok(Some(bound))
}

/// Pings systemd's watchdog at the interval it asked for, if it asked.
fn spawn_watchdog(notifier: &Notifier) {
    if let Some(every) = notifier.watchdog_interval() {
        let notifier = notifier.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notifier.watchdog();
            }
        });
    }
}

async fn wait_for_shutdown_signal() -> Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

async fn finish(
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    limit: Duration,
) {
    match tokio::time::timeout(limit, server).await {
        Ok(Ok(Ok(()))) => tracing::info!("stopped"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!(
            limit = ?limit,
            "in-flight RPCs did not finish in time; exiting anyway"
        ),
    }
}
