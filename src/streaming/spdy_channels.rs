//! remotecommand over SPDY: the client opens one stream per channel, named by its
//! `streamType` header; the session starts once every expected stream is there.

use std::time::Duration;

use super::remotecommand::{BoxRead, BoxWrite, Channels, Version};
use crate::monitor::protocol::StdioRequest;
use crate::spdy::{Incoming, Stream};

/// How long the client has to open its streams, as in kubelet's server.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Collects the client's streams for a session with the `stdio` channels.
pub async fn accept(
    incoming: &mut Incoming,
    version: Version,
    stdio: StdioRequest,
) -> Result<Channels, String> {
    let resize = stdio.tty && version.resizes();
    let expected = 1
        + usize::from(stdio.stdin)
        + usize::from(stdio.stdout)
        + usize::from(stdio.stderr && !stdio.tty)
        + usize::from(resize);
    let mut found = Found::default();
    let collect = async {
        while found.count < expected {
            let Some(stream) = incoming.accept().await else {
                return Err("the client closed the connection before opening its streams");
            };
            // The client waits for a reply to every stream it opens.
            if stream.reply(Vec::new(), false).await.is_err() {
                return Err("the client closed the connection before opening its streams");
            }
            found.add(stream);
        }
        Ok(())
    };
    match tokio::time::timeout(STREAM_CREATION_TIMEOUT, collect).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            return Err(format!(
                "the client opened {} of {expected} streams within {STREAM_CREATION_TIMEOUT:?}",
                found.count
            ));
        }
    }
    found
        .into_channels()
        .ok_or_else(|| "the client opened no error stream".into())
}

#[derive(Default)]
struct Found {
    count: usize,
    error: Option<BoxWrite>,
    stdin: Option<BoxRead>,
    stdout: Option<BoxWrite>,
    stderr: Option<BoxWrite>,
    resize: Option<BoxRead>,
    holds: Vec<Box<dyn std::any::Any + Send>>,
}

impl Found {
    fn add(&mut self, stream: Stream) {
        let kind = stream
            .header("streamtype")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (reader, writer) = stream.into_split();
        let (readable, writable) = match kind.as_str() {
            "stdin" => (Some(&mut self.stdin), None),
            "resize" => (Some(&mut self.resize), None),
            "stdout" => (None, Some(&mut self.stdout)),
            "stderr" => (None, Some(&mut self.stderr)),
            "error" => (None, Some(&mut self.error)),
            // An unknown stream is kept open and ignored, as kubelet's server does.
            _ => (None, None),
        };
        match (readable, writable) {
            (Some(slot), _) if slot.is_none() => {
                *slot = Some(Box::new(reader));
                self.holds.push(Box::new(writer));
                self.count += 1;
            }
            (_, Some(slot)) if slot.is_none() => {
                *slot = Some(Box::new(writer));
                self.holds.push(Box::new(reader));
                self.count += 1;
            }
            _ => {
                self.holds.push(Box::new(reader));
                self.holds.push(Box::new(writer));
            }
        }
    }

    fn into_channels(self) -> Option<Channels> {
        Some(Channels {
            error: self.error?,
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
            resize: self.resize,
            holds: self.holds,
        })
    }
}
