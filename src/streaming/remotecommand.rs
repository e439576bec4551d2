//! remotecommand: the exec and attach protocol of kubelet's streaming API, whatever carries
//! it (SPDY streams or WebSocket channels). The client gets the process's stdout and stderr,
//! sends stdin and terminal sizes, and learns how the process ended from the error channel.

use std::future::Future;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::monitor::session::{Output, SessionReader, SessionWriter};

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// The versions of the protocol, oldest first. They differ in how the end is reported (v4:
/// a JSON Status) and in terminal resizing (v3 on); v5 adds closing a channel (WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "channel.k8s.io",
            Version::V2 => "v2.channel.k8s.io",
            Version::V3 => "v3.channel.k8s.io",
            Version::V4 => "v4.channel.k8s.io",
            Version::V5 => "v5.channel.k8s.io",
        }
    }

    pub fn resizes(self) -> bool {
        self >= Version::V3
    }
}

/// What SPDY clients may choose, best first. kubelet's own server stops at v4 over SPDY
/// (v5 only adds a WebSocket close signal), and so do clients that talk to it.
pub const SPDY_VERSIONS: [Version; 4] = [Version::V4, Version::V3, Version::V2, Version::V1];
/// What WebSocket clients may choose (binary channels only).
pub const WEBSOCKET_VERSIONS: [Version; 2] = [Version::V5, Version::V4];

/// The first of the client's offers (in its order) that we speak.
pub fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    ours: &[Version],
) -> Option<Version> {
    offers
        .into_iter()
        .flat_map(|offer| offer.split(','))
        .map(str::trim)
        .find_map(|offer| ours.iter().copied().find(|v| v.name() == offer))
}

/// The client's ends of one session. Absent channels were not asked for.
pub struct Channels {
    pub stdin: Option<BoxRead>,
    pub stdout: Option<BoxWrite>,
    pub stderr: Option<BoxWrite>,
    pub error: BoxWrite,
    pub resize: Option<BoxRead>,
    /// Transport objects that must live as long as the session (e.g. the unused half of a
    /// SPDY stream: dropping it would reset the stream).
    pub holds: Vec<Box<dyn std::any::Any + Send>>,
}

/// Exec reports the process's exit code; attach ends without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    /// The monitor went away (the pod was stopped, or its monitor died).
    Lost,
    /// The client went away first; the session was dropped (an exec is killed by its monitor).
    ClientGone,
    /// The session could not start.
    Failed(String),
}

/// Runs a session until the process ends or the client goes away, then reports the end on
/// the error channel and closes every channel.
pub async fn run(
    channels: Channels,
    session: (SessionWriter, SessionReader),
    version: Version,
    kind: Kind,
    client_gone: impl Future<Output = ()>,
) -> Ending {
    let Channels {
        stdin,
        mut stdout,
        mut stderr,
        error,
        resize,
        holds,
    } = channels;
    let (writer, mut reader) = session;
    // The input side holds the monitor connection's write half until the session is over:
    // closing it early would tell the monitor the client has gone.
    let input = tokio::spawn(forward_input(stdin, resize, writer));
    let output = copy_output(&mut reader, &mut stdout, &mut stderr);
    let ending = tokio::select! {
        ending = output => ending,
        () = client_gone => Ending::ClientGone,
    };
    input.abort();
    if ending == Ending::ClientGone {
        return ending;
    }
    end_channels([stdout, stderr], error, report(&ending, kind, version)).await;
    drop(holds);
    ending
}

/// Reports a session that could not start (e.g. the command does not exist) on the error
/// channel, the way kubelet's server reports a failed exec.
pub async fn fail(channels: Channels, version: Version, message: String) {
    let Channels {
        stdout,
        stderr,
        error,
        holds,
        ..
    } = channels;
    let report = report(&Ending::Failed(message), Kind::Exec, version);
    end_channels([stdout, stderr], error, report).await;
    drop(holds);
}

/// Ends the client's side of a session: stdout and stderr close, then the error channel
/// carries `report` and closes.
async fn end_channels(outputs: [Option<BoxWrite>; 2], mut error: BoxWrite, report: Option<String>) {
    for mut out in outputs.into_iter().flatten() {
        let _ = out.shutdown().await;
    }
    if let Some(report) = report {
        let _ = error.write_all(report.as_bytes()).await;
    }
    let _ = error.shutdown().await;
}

async fn copy_output(
    reader: &mut SessionReader,
    stdout: &mut Option<BoxWrite>,
    stderr: &mut Option<BoxWrite>,
) -> Ending {
    loop {
        let (target, data) = match reader.next().await {
            Ok(Some(Output::Exit(code))) => return Ending::Exited(code),
            Ok(None) | Err(_) => return Ending::Lost,
            Ok(Some(Output::Stdout(data))) => (stdout.as_mut(), data),
            Ok(Some(Output::Stderr(data))) => (stderr.as_mut(), data),
        };
        // A client that stopped reading one channel still gets the others and the end.
        if let Some(target) = target
            && target.write_all(&data).await.is_err()
        {
            *stdout = None;
            *stderr = None;
        }
    }
}

async fn forward_input(
    mut stdin: Option<BoxRead>,
    mut resize: Option<BoxRead>,
    mut writer: SessionWriter,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut sizes = SizeDecoder::default();
    let mut resize_buf = vec![0u8; 1024];
    while stdin.is_some() || resize.is_some() {
        tokio::select! {
            read = async { stdin.as_mut().unwrap().read(&mut buf).await }, if stdin.is_some() => {
                let sent = match read {
                    Ok(n) if n > 0 => writer.stdin(&buf[..n]).await,
                    _ => {
                        stdin = None;
                        writer.close_stdin().await
                    }
                };
                if sent.is_err() {
                    break;
                }
            }
            read = async { resize.as_mut().unwrap().read(&mut resize_buf).await }, if resize.is_some() => {
                match read {
                    Ok(n) if n > 0 => {
                        for size in sizes.push(&resize_buf[..n]) {
                            let _ = writer.resize(size.width, size.height).await;
                        }
                    }
                    _ => resize = None,
                }
            }
        }
    }
    // Keep the write half open until the session task ends and aborts this one.
    std::future::pending::<()>().await;
    drop(writer);
}

/// The first terminal size the client sends on `resize` (the last one, if one read brought
/// several), waiting at most `wait`; whatever followed it stays on the channel.
pub async fn first_size(
    resize: &mut Option<BoxRead>,
    wait: std::time::Duration,
) -> Option<TerminalSize> {
    let reader = resize.as_mut()?;
    let mut decoder = SizeDecoder::default();
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + wait;
    let size = loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                if let Some(last) = decoder.push(&buf[..n]).pop() {
                    break Some(last);
                }
            }
            _ => break None,
        }
    };
    let rest = std::mem::take(&mut decoder.pending);
    if !rest.is_empty()
        && let Some(reader) = resize.take()
    {
        *resize = Some(Box::new(std::io::Cursor::new(rest).chain(reader)));
    }
    size
}

/// A terminal size as clients send it: `{"Width":80,"Height":24}`, one JSON object after
/// another with nothing between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Splits a byte stream into terminal sizes, whatever the read boundaries.
#[derive(Default)]
pub struct SizeDecoder {
    pending: Vec<u8>,
}

/// Garbage on the resize channel is dropped rather than kept forever.
const MAX_PENDING_SIZE_BYTES: usize = 4096;

impl SizeDecoder {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<TerminalSize> {
        self.pending.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        loop {
            let mut objects =
                serde_json::Deserializer::from_slice(&self.pending).into_iter::<TerminalSize>();
            match objects.next() {
                Some(Ok(size)) => {
                    let used = objects.byte_offset();
                    sizes.push(size);
                    self.pending.drain(..used);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    self.pending.clear();
                    break;
                }
                None => {
                    self.pending.clear();
                    break;
                }
            }
        }
        if self.pending.len() > MAX_PENDING_SIZE_BYTES {
            self.pending.clear();
        }
        sizes
    }
}

/// kubelet's metav1.Status as the error channel carries it (v4 and v5).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Status {
    metadata: serde_json::Map<String, serde_json::Value>,
    status: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    message: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    details: Option<Details>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Cause {
    reason: String,
    message: String,
}

/// What the error channel carries at the end; None: nothing (success before v4).
fn report(ending: &Ending, kind: Kind, version: Version) -> Option<String> {
    let failure = match (ending, kind) {
        (Ending::Exited(0), _) | (Ending::Exited(_), Kind::Attach) => None,
        (Ending::Exited(code), Kind::Exec) => Some((
            format!("command terminated with non-zero exit code: exit status {code}"),
            "NonZeroExitCode",
            Some(Details {
                causes: vec![Cause {
                    reason: "ExitCode".into(),
                    message: code.to_string(),
                }],
            }),
        )),
        (Ending::Lost | Ending::ClientGone, _) => Some((
            "the pod's monitor ended the session (the pod was stopped?)".into(),
            "InternalError",
            None,
        )),
        (Ending::Failed(message), _) => Some((message.clone(), "InternalError", None)),
    };
    if version < Version::V4 {
        return failure.map(|(message, _, _)| message);
    }
    let status = match failure {
        None => Status {
            metadata: Default::default(),
            status: "Success".into(),
            message: String::new(),
            reason: String::new(),
            details: None,
        },
        Some((message, reason, details)) => Status {
            metadata: Default::default(),
            status: "Failure".into(),
            message,
            reason: reason.into(),
            details,
        },
    };
    serde_json::to_string(&status).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_clients_first_offer_we_speak() {
        let offers = [
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "channel.k8s.io",
        ];
        assert_eq!(negotiate(offers, &SPDY_VERSIONS), Some(Version::V4));
        assert_eq!(negotiate(offers, &WEBSOCKET_VERSIONS), Some(Version::V5));
        assert_eq!(
            negotiate(["v2.channel.k8s.io, channel.k8s.io"], &SPDY_VERSIONS),
            Some(Version::V2)
        );
        assert_eq!(negotiate(["v9.channel.k8s.io"], &SPDY_VERSIONS), None);
        assert_eq!(negotiate([], &SPDY_VERSIONS), None);
    }

    #[test]
    fn sizes_are_decoded_across_reads() {
        let mut decoder = SizeDecoder::default();
        assert_eq!(decoder.push(br#"{"Width":80,"#), vec![]);
        assert_eq!(
            decoder.push(br#""Height":24}{"Width":100,"Height":50}{"Wi"#),
            vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 50
                }
            ]
        );
        assert_eq!(
            decoder.push(br#"dth":1,"Height":2}"#),
            vec![TerminalSize {
                width: 1,
                height: 2
            }]
        );
        // Garbage is dropped, and decoding goes on after it.
        assert_eq!(decoder.push(b"]]]"), vec![]);
        assert_eq!(decoder.push(br#"{"Width":3,"Height":4}"#).len(), 1);
    }

    #[test]
    fn exit_reports_match_kubelets() {
        assert_eq!(
            report(&Ending::Exited(0), Kind::Exec, Version::V4).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            report(&Ending::Exited(3), Kind::Exec, Version::V4).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert_eq!(report(&Ending::Exited(0), Kind::Exec, Version::V2), None);
        assert!(
            report(&Ending::Exited(2), Kind::Exec, Version::V3)
                .unwrap()
                .contains("exit status 2")
        );
        assert_eq!(
            report(&Ending::Exited(1), Kind::Attach, Version::V5).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert!(
            report(&Ending::Lost, Kind::Attach, Version::V4)
                .unwrap()
                .contains("Failure")
        );
    }
}
