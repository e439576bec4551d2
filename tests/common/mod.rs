//! Test harness: starts the real ferrocri binary with its own root, state and socket, and
//! talks to it through the generated CRI clients over that unix socket.
#![allow(dead_code)]

pub mod pods;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ferrocri::cri::v1::image_service_client::ImageServiceClient;
use ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferrocri");

/// A daemon under test. Killed (SIGKILL) when dropped if still running.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    pub child: Option<Child>,
    /// A command the binary is started under (its arguments follow), e.g. `unshare -m …`
    /// to give the daemon a mount namespace of its own; empty: started directly.
    pub wrapper: Vec<String>,
}

impl Daemon {
    /// Writes a config with this test's own folders plus `extra` TOML, and starts the daemon.
    pub fn start(extra: &str) -> Daemon {
        Daemon::start_in(tempfile::tempdir().expect("tempdir"), extra)
    }

    /// [`Daemon::start`] in a folder the caller made (e.g. to put a CNI configuration in it
    /// first); `root`, `state`, the socket, the config and the log go into it.
    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> Daemon {
        let mut daemon = Daemon::prepare(dir, extra);
        daemon.restart();
        daemon
    }

    /// Writes the config into `dir` without starting anything; `restart` starts it.
    pub fn prepare(dir: tempfile::TempDir, extra: &str) -> Daemon {
        let socket = dir.path().join("ferrocri.sock");
        let config_path = dir.path().join("config.toml");
        let mut text = format!(
            "root_dir = \"{root}\"\nstate_dir = \"{state}\"\nsocket = \"{socket}\"\n{extra}\n",
            root = dir.path().join("root").display(),
            state = dir.path().join("state").display(),
            socket = socket.display(),
        );
        // Never let a test daemon write its default network into the host's /etc/cni/net.d.
        if !extra.contains("[cni]") {
            text.push_str(&format!(
                "[cni]\nconf_dir = \"{}\"\n",
                dir.path().join("net.d").display()
            ));
        }
        std::fs::write(&config_path, text).expect("write config");
        Daemon {
            dir,
            config_path,
            socket,
            child: None,
            wrapper: Vec::new(),
        }
    }

    /// Starts the binary again with the same config and waits for its socket to answer.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log file");
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = command
            .arg("--config")
            .arg(&self.config_path)
            .arg("--log-level")
            .arg("debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ferrocri");
        self.child = Some(child);
        let log_path = self.dir.path().join("daemon.log");
        wait_for_socket(&self.socket, self.child.as_mut().unwrap(), &log_path);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("kill");
    }

    /// Waits for the daemon to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.wait(Duration::from_secs(10));
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.socket).await
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    pub async fn image(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for_socket(socket: &Path, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("ferrocri exited early with {status}; its log:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "socket {} never answered",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A gRPC channel over a unix socket (the URI is a placeholder; the connector ignores it).
pub async fn connect(socket: &Path) -> Channel {
    let socket = socket.to_owned();
    Endpoint::from_static("http://ferrocri.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to ferrocri")
}

/// A gRPC service over one bare HTTP/2 connection.
pub type BareH2 = tower::util::BoxCloneService<
    http::Request<tonic::body::Body>,
    http::Response<hyper::body::Incoming>,
    hyper::Error,
>;

/// An ImageService client over a bare HTTP/2 connection to `socket`. Unlike a tonic `Channel`
/// it does not enforce `grpc-timeout` itself, so a test sees the daemon's own answer when a
/// deadline passes.
pub async fn image_client_without_local_deadlines(socket: &Path) -> ImageServiceClient<BareH2> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to ferrocri");
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let service = tower::service_fn(move |req: http::Request<tonic::body::Body>| {
        let mut sender = sender.clone();
        async move { sender.send_request(req).await }
    });
    ImageServiceClient::with_origin(
        tower::util::BoxCloneService::new(service),
        Uri::from_static("http://ferrocri.invalid"),
    )
}

/// Runs the binary with `args` and returns (exit code, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run ferrocri");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends `body` as the raw protobuf payload of `path` (e.g. "/runtime.v1.RuntimeService/Version"),
/// bypassing the generated client so that tests can send bytes no real client would.
pub async fn call_raw(
    channel: Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|_| ())
}

/// Encodes a `Vec<u8>` as-is and ignores what comes back.
#[derive(Clone, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
