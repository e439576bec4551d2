use std::process::ExitCode;

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
