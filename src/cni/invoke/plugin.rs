//! One plugin process: the configuration and environment it gets, running it under a
//! timeout, and turning its exit into output or a `CniError`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Attachment, CniError, Command};
use crate::cni::config::NetworkList;

/// PATH for plugins when the daemon has none (plugins such as portmap run iptables).
const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A plugin of the list and the binary that runs it.
pub(super) struct Binary {
    pub(super) plugin: String,
    pub(super) path: PathBuf,
}

pub(super) fn bad_result(
    net: &NetworkList,
    binary: &Binary,
    command: Command,
    reason: String,
) -> CniError {
    CniError::BadResult {
        network: net.name.clone(),
        plugin: binary.plugin.clone(),
        command,
        reason,
    }
}

/// The environment of every plugin of one operation (`CNI_COMMAND` is added per run).
pub(super) fn env(
    bin_dirs: &[PathBuf],
    att: &Attachment,
    netns: &str,
) -> Vec<(&'static str, String)> {
    let ignore_unknown = att
        .args
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("IgnoreUnknown"));
    let args = (!ignore_unknown)
        .then(|| "IgnoreUnknown=1".to_owned())
        .into_iter()
        .chain(att.args.iter().map(|(k, v)| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(";");
    let cni_path = std::env::join_paths(bin_dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = std::env::var("PATH")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| FALLBACK_PATH.into());
    vec![
        ("CNI_CONTAINERID", att.container_id.clone()),
        ("CNI_NETNS", netns.to_owned()),
        ("CNI_IFNAME", att.ifname.clone()),
        ("CNI_ARGS", args),
        ("CNI_PATH", cni_path),
        ("PATH", path),
    ]
}

/// What a finished plugin left: its exit status, stdout and stderr.
struct Finished {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs one plugin for `network`; its stdout when it succeeds.
pub(super) async fn run(
    network: &str,
    binary: &Binary,
    command: Command,
    env: &[(&'static str, String)],
    stdin: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    let started = Instant::now();
    let spawn_error = |source| CniError::Spawn {
        plugin: binary.plugin.clone(),
        path: binary.path.clone(),
        command,
        source,
    };
    let mut cmd = tokio::process::Command::new(&binary.path);
    cmd.env_clear()
        .env("CNI_COMMAND", command.as_str())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout also kills what it started (iptables, ...).
        .process_group(0);
    let child = cmd.spawn().map_err(spawn_error)?;
    let finished = match wait_or_kill(child, stdin, timeout).await {
        Some(finished) => finished.map_err(spawn_error)?,
        None => {
            return Err(CniError::Timeout {
                network: network.to_owned(),
                plugin: binary.plugin.clone(),
                command,
                timeout,
            });
        }
    };
    tracing::debug!(network, plugin = %binary.plugin, %command, status = ?finished.status,
        elapsed = ?started.elapsed(), stderr = %String::from_utf8_lossy(&finished.stderr).trim(),
        "CNI plugin ran");
    outcome(network, binary, command, finished)
}

/// Feeds the plugin its input and collects its output until it exits; `None` when it ran
/// past `timeout`, after its whole process group was killed.
async fn wait_or_kill(
    mut child: tokio::process::Child,
    stdin: Vec<u8>,
    timeout: Duration,
) -> Option<std::io::Result<Finished>> {
    let pid = child.id();
    let mut input = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let run = async {
        let feed = async move {
            // A plugin may exit without reading its input; its exit status tells.
            let _ = input.write_all(&stdin).await;
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (_, _, _, status) = tokio::join!(
            feed,
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err),
            child.wait(),
        );
        status.map(|status| Finished {
            status,
            stdout: out,
            stderr: err,
        })
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(done) => Some(done),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill().await;
            None
        }
    }
}

/// Success is stdout; a failure is the CNI error the plugin printed, or else its exit status
/// with whatever it wrote.
fn outcome(
    network: &str,
    binary: &Binary,
    command: Command,
    finished: Finished,
) -> Result<Vec<u8>, CniError> {
    let Finished {
        status,
        stdout: out,
        stderr: err,
    } = finished;
    if status.success() {
        return Ok(out);
    }
    if let Some((code, msg, details)) = parse_plugin_error(&out) {
        return Err(CniError::Plugin {
            network: network.to_owned(),
            plugin: binary.plugin.clone(),
            command,
            code,
            msg,
            details,
        });
    }
    let output = [&err[..], &out[..]]
        .iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    Err(CniError::PluginExit {
        network: network.to_owned(),
        plugin: binary.plugin.clone(),
        command,
        status: status.to_string(),
        output: if output.is_empty() {
            "no output".into()
        } else {
            truncate(output, 2048)
        },
    })
}

/// The configuration one plugin gets on stdin: its own object from the list, plus the list's
/// `name` and `cniVersion`, the `prevResult` when there is one, and `runtimeConfig` holding
/// the capability arguments it declares in `capabilities` (and only those).
pub(super) fn plugin_stdin(
    list: &NetworkList,
    plugin: &Value,
    prev: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Vec<u8> {
    let mut conf = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    let declared: Map<String, Value> = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(cap, _)| capability_args.get(cap).map(|v| (cap.clone(), v.clone())))
        .collect();
    if !declared.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(declared));
    }
    serde_json::to_vec(&Value::Object(conf)).expect("JSON values serialise")
}

pub(super) fn capability_args(att: &Attachment) -> Map<String, Value> {
    let mut caps = Map::new();
    if !att.port_mappings.is_empty() {
        caps.insert(
            "portMappings".into(),
            serde_json::to_value(&att.port_mappings).expect("port mappings serialise"),
        );
    }
    caps
}

/// `CNI_NETNS`: the path while it is a network namespace, otherwise empty (the pin was removed
/// or its mount lost), which tells plugins to release what they hold outside the netns.
pub(super) fn netns_arg(netns: &Path) -> String {
    if !netns.as_os_str().is_empty() && crate::netns::is_netns(netns) {
        netns.to_string_lossy().into_owned()
    } else {
        String::new()
    }
}

/// `{"code": 7, "msg": "...", "details": "..."}`.
fn parse_plugin_error(stdout: &[u8]) -> Option<(u64, String, String)> {
    #[derive(Deserialize)]
    struct PluginError {
        #[serde(default)]
        code: u64,
        msg: String,
        #[serde(default)]
        details: String,
    }
    let e: PluginError = serde_json::from_slice(stdout).ok()?;
    Some((e.code, e.msg, e.details))
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
