use std::process::ExitCode;

/// jemalloc, not glibc's malloc, for the daemon (built unprefixed, so SQLite's C allocations use
/// it too): under large requests (multi-MiB CreateContainer bodies on many threads) glibc kept
/// hundreds of MiB of freed memory in its per-thread arenas; jemalloc hands freed pages back
/// from a background thread after a short decay (see ARCHITECTURE.md, "Memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start: purge freed pages from a background thread,
/// dirty pages after 1 s, without a second (muzzy) stage.
// SAFETY: jemalloc reads this NUL-terminated string at initialisation and never writes it;
// `malloc_conf` is the symbol an unprefixed jemalloc looks up.
#[unsafe(export_name = "malloc_conf")]
pub static JEMALLOC_CONF: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

use clap::Parser;
use ferrocri::cli::{Cli, Command, ConfigAction, ImportFrom};
use ferrocri::config::DEFAULT_CONFIG_TOML;

fn main() -> ExitCode {
    // SAFETY: no other thread exists yet (the async runtime starts below).
    let notifier = unsafe { ferrocri::systemd::Notifier::from_env() };
    let cli = Cli::parse();
    if let Some(Command::Config {
        action: ConfigAction::Default,
    }) = &cli.command
    {
        print!("{DEFAULT_CONFIG_TOML}");
        return ExitCode::SUCCESS;
    }
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferrocri: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Config {
        action: ConfigAction::Show,
    }) = &cli.command
    {
        print!("{}", toml::to_string(&config).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Check) = &cli.command {
        let findings = ferrocri::preflight::run(&config);
        for finding in &findings {
            println!("{finding}");
        }
        return if ferrocri::preflight::failed(&findings) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    ferrocri::telemetry::init(config.log.level, config.log.format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrocri")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrocri: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Import {
        from:
            ImportFrom::Containerd {
                address,
                namespace,
                images,
            },
    }) = cli.command
    {
        let request = ferrocri::import::ContainerdRequest {
            address,
            namespace,
            images,
        };
        return match runtime.block_on(ferrocri::import::from_containerd(&config, &request)) {
            Ok(summary) => report_import(&summary),
            Err(e) => {
                eprintln!("ferrocri: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(ferrocri::daemon::run(config, notifier)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ferrocri: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One line per image, then the totals; failure when any image failed.
fn report_import(summary: &ferrocri::import::Summary) -> ExitCode {
    for (name, id) in &summary.imported {
        println!("imported {name} ({id})");
    }
    for name in &summary.skipped {
        println!("skipped {name} (an image ID, not a name)");
    }
    for (name, why) in &summary.failed {
        eprintln!("ferrocri: cannot import {name}: {why}");
    }
    println!(
        "{} imported, {} failed; {} blobs copied ({} bytes), {} layers unpacked",
        summary.imported.len(),
        summary.failed.len(),
        summary.blobs_copied,
        summary.bytes_copied,
        summary.layers_unpacked
    );
    if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
