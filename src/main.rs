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
use ferrocri::cli::{Cli, Command, ConfigAction};
use ferrocri::config::DEFAULT_CONFIG_TOML;

fn main() -> ExitCode {
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
    match runtime.block_on(ferrocri::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ferrocri: {e:#}");
            ExitCode::FAILURE
        }
    }
}
