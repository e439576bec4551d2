//! Writes ferrocri's man pages and shell completions, generated from the clap command line, for
//! `hack/package.sh`: `cargo run --example gen_docs -- <out dir>` produces `ferrocri.8` and a
//! page per subcommand (`ferrocri-check.8`, …), `ferrocri-monitor.8` and its two, and
//! `ferrocri.bash`, `_ferrocri` (zsh) and `ferrocri.fish`.
//!
//! An example, not a subcommand: the daemon binary stays free of the generators, and the
//! packaged binary is the one `cargo build --release` makes anyway.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use ferrocri::cli::Cli;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: gen_docs <out dir>");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_docs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One page per command and subcommand (`ferrocri.8`, `ferrocri-check.8`, …), in section 8: a
/// system administration command (a daemon run by root). `help` gets none: `-h` covers it.
fn man_pages(cmd: clap::Command, out: &Path) -> std::io::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    // Names subcommands `ferrocri-check` etc., as the pages refer to them.
    cmd.build();
    write_pages(cmd, out)
}

fn write_pages(cmd: clap::Command, out: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), out)?;
    }
    let man = clap_mangen::Man::new(cmd).section("8");
    let mut page = Vec::new();
    man.render(&mut page)?;
    fs::write(out.join(man.get_filename()), page)
}

fn write_all(out: &Path) -> std::io::Result<()> {
    fs::create_dir_all(out)?;
    man_pages(Cli::command(), out)?;
    man_pages(monitor_command(), out)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "ferrocri", out)?;
    }
    Ok(())
}

/// `ferrocri-monitor` reads its two fixed command lines by hand (it carries no clap); this
/// describes them for its man page only.
fn monitor_command() -> clap::Command {
    use clap::{Arg, Command};
    Command::new("ferrocri-monitor")
        .version(env!("CARGO_PKG_VERSION"))
        .about(
            "ferrocri's per-pod monitor and container executor (started by ferrocri, not by hand)",
        )
        .long_about(
            "ferrocri-monitor is started by the ferrocri daemon, from beside its own executable, \
             once per pod: it holds the pod's namespaces and pause process, starts and reaps the \
             pod's containers and exec processes, writes their CRI logs and serves their streams. \
             It runs each container as `ferrocri-monitor executor`. In ps it shows as \
             `ferrocri-monitor <namespace>/<name> <pod id prefix>`.",
        )
        .disable_help_flag(true)
        .disable_version_flag(true)
        .subcommand(
            Command::new("monitor")
                .about("Run the monitor of the pod whose folder is given")
                .arg(
                    Arg::new("dir")
                        .long("dir")
                        .value_name("POD_DIR")
                        .required(true),
                ),
        )
        .subcommand(
            Command::new("executor")
                .about("Set up and exec one container process from its resolved spec")
                .arg(
                    Arg::new("spec")
                        .long("spec")
                        .value_name("FILE")
                        .required(true),
                ),
        )
}
