//! `ferrocri-monitor`: the per-pod monitor and the container executor, a binary of their own.
//!
//! The daemon starts `ferrocri-monitor monitor --dir <pod dir>` from beside its own executable;
//! the monitor runs containers as `/proc/self/exe executor --spec <file>`, i.e. this binary
//! again. It holds none of the daemon's gRPC, HTTP, TLS, registry or SQLite code, so the
//! pages that relocating a position-independent executable makes private in every process
//! (its GOT and `.data.rel.ro`) are few: they are paid once per pod.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.as_slice() {
        [command, flag, dir] if command == "monitor" && flag == "--dir" => {
            ferrocri::monitor::run(Path::new(dir))
        }
        [command, flag, spec] if command == "executor" && flag == "--spec" => {
            ferrocri::executor::run(Path::new(spec))
        }
        [command] if command == "userns" => ferrocri::userns::helper_main(),
        _ => {
            eprintln!(
                "usage: ferrocri-monitor monitor --dir <pod dir> | executor --spec <file>\n\
                 (started by the ferrocri daemon and its pod monitors, not by hand)"
            );
            ExitCode::from(2)
        }
    }
}
