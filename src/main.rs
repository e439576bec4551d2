use std::process::ExitCode;

use clap::Parser;
use ferrocri::cli::{Cli, Command, ConfigAction};
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
    match runtime.block_on(ferrocri::daemon::run(config, notifier)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ferrocri: {e:#}");
            ExitCode::FAILURE
        }
    }
}
