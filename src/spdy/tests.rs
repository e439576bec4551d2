//! Whole-session tests over `tokio::io::duplex`, driven by a minimal SPDY client.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::frame::{self, Frame, Setting, goaway, rst, setting};
use super::headers::{HeaderDecoder, HeaderEncoder};
use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// Plays the Go client: opens streams, sends frames, reads what the server sends.
struct Client {
    io: DuplexStream,
    buf: BytesMut,
    encoder: HeaderEncoder,
    decoder: HeaderDecoder,
}

impl Client {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            encoder: HeaderEncoder::new(),
            decoder: HeaderDecoder::new(1 << 20),
        }
    }

    async fn send(&mut self, frame: Frame) {
        self.io.write_all(&frame.to_bytes()).await.unwrap();
    }

    async fn open(&mut self, stream_id: u32, headers: &[(&str, &str)]) {
        let headers: Headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let header_block = self.encoder.encode(&headers).into();
        self.send(Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block,
        })
        .await;
    }

    async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id,
            fin,
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    /// Next frame, or `None` at EOF. Header blocks are decoded to keep zlib in sync.
    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("server went silent")
    }

    async fn next_inner(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = frame::parse(&self.buf, frame::WIRE_MAX_FRAME_LEN).unwrap()
            {
                self.buf.advance(used);
                if let Frame::SynReply { header_block, .. } = &frame {
                    self.decoder.decode(header_block).unwrap();
                }
                return Some(frame);
            }
            if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                return None;
            }
        }
    }

    /// Next frame that is not a WINDOW_UPDATE.
    async fn next_ignoring_window_updates(&mut self) -> Option<Frame> {
        loop {
            match self.next().await {
                Some(Frame::WindowUpdate { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Reads until nothing arrives for `quiet`.
    async fn drain_for(&mut self, quiet: Duration) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = tokio::time::timeout(quiet, self.next_inner()).await {
            frames.push(frame);
        }
        frames
    }
}

fn start(config: Config) -> (Client, Connection, Incoming) {
    let (client_io, server_io) = tokio::io::duplex(256 * 1024);
    let (connection, incoming) = serve_with(server_io, config);
    (Client::new(client_io), connection, incoming)
}

/// Accepts streams, replies, and echoes each stream's data back followed by FIN.
fn spawn_echo_server(mut incoming: Incoming) -> tokio::task::JoinHandle<Vec<Headers>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut tasks = Vec::new();
        while let Some(stream) = incoming.accept().await {
            seen.push(stream.headers().clone());
            stream.reply(vec![], false).await.unwrap();
            tasks.push(tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                tokio::io::copy(&mut reader, &mut writer).await.unwrap();
                writer.shutdown().await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        seen
    })
}

#[tokio::test]
async fn three_streams_echo_and_half_close() {
    let (mut client, connection, incoming) = start(Config::default());
    let server = spawn_echo_server(incoming);
    for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout")] {
        client
            .open(id, &[("streamtype", kind), ("requestid", "0")])
            .await;
    }
    let payloads = [
        (1u32, b"one".to_vec()),
        (3, vec![7u8; 40_000]),
        (5, b"five".to_vec()),
    ];
    for (id, payload) in &payloads {
        client.data(*id, payload, true).await;
    }
    let mut received: std::collections::HashMap<u32, Vec<u8>> = Default::default();
    let mut replied = std::collections::HashSet::new();
    let mut finished = std::collections::HashSet::new();
    while finished.len() < 3 {
        match client.next().await.expect("frame") {
            Frame::SynReply { stream_id, fin, .. } => {
                assert!(!fin);
                assert!(replied.insert(stream_id));
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                assert!(replied.contains(&stream_id), "DATA before SYN_REPLY");
                received
                    .entry(stream_id)
                    .or_default()
                    .extend_from_slice(&data);
                if fin {
                    finished.insert(stream_id);
                }
            }
            Frame::WindowUpdate { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    for (id, payload) in &payloads {
        assert_eq!(received[id], *payload, "stream {id}");
    }
    connection.close().await;
    assert!(connection.is_closed());
    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen[0].contains(&("streamtype".into(), "error".into())));
    // After close: GOAWAY OK then EOF.
    assert!(matches!(
        client.next_ignoring_window_updates().await,
        Some(Frame::GoAway {
            last_good_stream_id: 5,
            status: goaway::OK
        })
    ));
    assert_eq!(client.next().await, None);
}

#[tokio::test]
async fn stream_exposes_headers_case_insensitively() {
    let (mut client, _connection, mut incoming) = start(Config::default());
    client
        .open(1, &[("StreamType", "data"), ("port", "80")])
        .await;
    let stream = incoming.accept().await.unwrap();
    assert_eq!(stream.id(), 1);
    assert_eq!(stream.header("STREAMTYPE"), Some("data"));
    assert_eq!(stream.header("Port"), Some("80"));
    assert_eq!(stream.header("missing"), None);
}

#[tokio::test]
async fn odd_pings_are_echoed_even_pings_ignored() {
    let (mut client, _connection, _incoming) = start(Config::default());
    client.send(Frame::Ping { id: 2 }).await;
    client.send(Frame::Ping { id: 1 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
    assert!(
        client
            .drain_for(Duration::from_millis(100))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn window_update_sent_as_application_reads() {
    let (mut client, _connection, mut incoming) = start(Config::default());
    client.open(1, &[]).await;
    let mut stream = incoming.accept().await.unwrap();
    stream.reply(vec![], false).await.unwrap();
    client.data(1, &[1u8; 40_000], false).await;
    // Nothing consumed yet: no credit returned.
    let frames = client.drain_for(Duration::from_millis(100)).await;
    assert!(
        frames
            .iter()
            .all(|f| !matches!(f, Frame::WindowUpdate { .. })),
        "{frames:?}"
    );
    let mut sink = vec![0u8; 40_000];
    stream.read_exact(&mut sink).await.unwrap();
    let frames = client.drain_for(Duration::from_millis(100)).await;
    let credit = |id| {
        frames
            .iter()
            .filter_map(|f| match f {
                Frame::WindowUpdate { stream_id, delta } if *stream_id == id => Some(*delta),
                _ => None,
            })
            .sum::<u32>()
    };
    assert_eq!(credit(1), 40_000);
    assert_eq!(credit(0), 40_000);
}

/// A flow-control-aware peer (it announced SETTINGS_INITIAL_WINDOW_SIZE) gets no more
/// than its window until it sends WINDOW_UPDATE.
#[tokio::test]
async fn peer_window_respected_until_window_update() {
    let (mut client, _connection, mut incoming) = start(Config::default());
    client
        .send(Frame::Settings {
            clear: false,
            entries: vec![Setting {
                flags: 0,
                id: setting::INITIAL_WINDOW_SIZE,
                value: 65536,
            }],
        })
        .await;
    client.open(1, &[]).await;
    let stream = incoming.accept().await.unwrap();
    stream.reply(vec![], false).await.unwrap();
    let total = 100_000usize;
    let writer = tokio::spawn(async move {
        let mut stream = stream;
        stream.write_all(&vec![9u8; total]).await.unwrap();
        stream.shutdown().await.unwrap();
        stream
    });
    let data_len = |frames: &[Frame]| {
        frames
            .iter()
            .map(|f| match f {
                Frame::Data { data, .. } => data.len(),
                _ => 0,
            })
            .sum::<usize>()
    };
    let first = client.drain_for(Duration::from_millis(200)).await;
    assert_eq!(data_len(&first), 65536);
    client
        .send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 65536,
        })
        .await;
    // Stream window open but the session window is still exhausted.
    assert_eq!(
        data_len(&client.drain_for(Duration::from_millis(200)).await),
        0
    );
    client
        .send(Frame::WindowUpdate {
            stream_id: 0,
            delta: 65536,
        })
        .await;
    let rest = client.drain_for(Duration::from_millis(200)).await;
    assert_eq!(data_len(&rest), total - 65536);
    assert!(
        rest.iter()
            .any(|f| matches!(f, Frame::Data { fin: true, .. }))
    );
    writer.await.unwrap();
}

/// spdystream never sends WINDOW_UPDATE: a large transfer must still complete.
#[tokio::test]
async fn peer_without_flow_control_does_not_stall() {
    echo_without_window_updates(8 << 20).await;
}

/// The port-forward scale check; run with `cargo test --release --lib spdy -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "moves 100 MiB each way; slow in debug builds"]
async fn peer_without_flow_control_moves_100_mib() {
    echo_without_window_updates(100 << 20).await;
}

async fn echo_without_window_updates(total: usize) {
    let (mut client, _connection, incoming) = start(Config::default());
    let _server = spawn_echo_server(incoming);
    client.open(1, &[]).await;
    let chunk = vec![0xA5u8; 1 << 20];
    let (mut read_half, mut write_half) = tokio::io::split(client.io);
    let sender = tokio::spawn(async move {
        // Big DATA frames, as spdystream emits one frame per Write call.
        for i in 0..total / chunk.len() {
            let fin = i + 1 == total / chunk.len();
            let frame = Frame::Data {
                stream_id: 1,
                fin,
                data: Bytes::copy_from_slice(&chunk),
            };
            write_half.write_all(&frame.to_bytes()).await.unwrap();
        }
        write_half
    });
    let mut buf = BytesMut::new();
    let mut echoed = 0usize;
    let mut fin = false;
    while !fin {
        let got = tokio::time::timeout(WAIT, async {
            loop {
                if let Some((frame, used)) = frame::parse(&buf, frame::WIRE_MAX_FRAME_LEN).unwrap()
                {
                    buf.advance(used);
                    return Some(frame);
                }
                if read_half.read_buf(&mut buf).await.unwrap() == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("transfer stalled");
        match got.expect("eof") {
            Frame::Data { data, fin: f, .. } => {
                echoed += data.len();
                fin = f;
            }
            Frame::SynReply { .. } | Frame::WindowUpdate { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(echoed, total);
    sender.await.unwrap();
}

#[tokio::test]
async fn data_for_unknown_stream_gets_invalid_stream() {
    let (mut client, connection, _incoming) = start(Config::default());
    client.data(7, b"x", false).await;
    assert_eq!(
        client.next_ignoring_window_updates().await,
        Some(Frame::RstStream {
            stream_id: 7,
            status: rst::INVALID_STREAM
        })
    );
    assert!(!connection.is_closed());
}

#[tokio::test]
async fn data_after_fin_gets_stream_already_closed() {
    let (mut client, _connection, mut incoming) = start(Config::default());
    client.open(1, &[]).await;
    let _stream = incoming.accept().await.unwrap();
    client.data(1, b"a", true).await;
    client.data(1, b"b", false).await;
    assert_eq!(
        client.next_ignoring_window_updates().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: rst::STREAM_ALREADY_CLOSED
        })
    );
}

#[tokio::test]
async fn wrong_version_gets_goaway_protocol_error() {
    let (mut client, connection, mut incoming) = start(Config::default());
    client
        .io
        .write_all(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1])
        .await
        .unwrap();
    assert_eq!(
        client.next().await,
        Some(Frame::GoAway {
            last_good_stream_id: 0,
            status: goaway::PROTOCOL_ERROR
        })
    );
    assert_eq!(client.next().await, None);
    tokio::time::timeout(WAIT, connection.closed())
        .await
        .unwrap();
    assert!(incoming.accept().await.is_none());
}

#[tokio::test]
async fn oversized_frame_ends_session() {
    let config = Config {
        max_frame_len: 1024,
        ..Config::default()
    };
    let (mut client, connection, _incoming) = start(config);
    client.open(1, &[]).await;
    client.data(1, &[0u8; 2048], false).await;
    assert_eq!(
        client.next_ignoring_window_updates().await,
        Some(Frame::GoAway {
            last_good_stream_id: 1,
            status: goaway::PROTOCOL_ERROR
        })
    );
    tokio::time::timeout(WAIT, connection.closed())
        .await
        .unwrap();
}

#[tokio::test]
async fn header_bomb_ends_session() {
    let (mut client, connection, _incoming) = start(Config::default());
    let bomb = "z".repeat(4 << 20);
    client.open(1, &[("x", &bomb)]).await;
    assert!(matches!(
        client.next().await,
        Some(Frame::GoAway {
            status: goaway::PROTOCOL_ERROR,
            ..
        })
    ));
    tokio::time::timeout(WAIT, connection.closed())
        .await
        .unwrap();
}

#[tokio::test]
async fn streams_beyond_limit_are_refused() {
    let config = Config {
        max_concurrent_streams: 2,
        ..Config::default()
    };
    let (mut client, _connection, mut incoming) = start(config);
    for id in [1, 3, 5] {
        client.open(id, &[]).await;
    }
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 5,
            status: rst::REFUSED_STREAM
        })
    );
    let first = incoming.accept().await.unwrap();
    let _second = incoming.accept().await.unwrap();
    // Closing one stream frees a slot.
    first.reset(rst::CANCEL);
    drop(first);
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: rst::CANCEL
        })
    );
    client.open(7, &[]).await;
    assert_eq!(incoming.accept().await.unwrap().id(), 7);
}

#[tokio::test]
async fn dropping_open_stream_sends_cancel_but_finished_stream_does_not() {
    let (mut client, _connection, mut incoming) = start(Config::default());
    client.open(1, &[]).await;
    client.open(3, &[]).await;
    let open = incoming.accept().await.unwrap();
    let mut done = incoming.accept().await.unwrap();
    client.data(3, b"", true).await;
    done.reply(vec![], true).await.unwrap();
    let mut sink = Vec::new();
    done.read_to_end(&mut sink).await.unwrap();
    drop(done);
    let (reader, writer) = open.into_split();
    drop(writer);
    // One half left: still open, nothing sent yet.
    let frames = client.drain_for(Duration::from_millis(100)).await;
    assert!(
        frames.iter().all(|f| matches!(
            f,
            Frame::SynReply {
                stream_id: 3,
                fin: true,
                ..
            }
        )),
        "{frames:?}"
    );
    drop(reader);
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: rst::CANCEL
        })
    );
}

#[tokio::test]
async fn peer_reset_fails_reads_and_writes_with_connection_reset() {
    let (mut client, _connection, mut incoming) = start(Config::default());
    client.open(1, &[]).await;
    let mut stream = incoming.accept().await.unwrap();
    stream.reply(vec![], false).await.unwrap();
    client.data(1, b"unread", false).await;
    client
        .send(Frame::RstStream {
            stream_id: 1,
            status: rst::CANCEL,
        })
        .await;
    let mut buf = [0u8; 16];
    let err = loop {
        match stream.read(&mut buf).await {
            Ok(n) => assert!(n > 0, "EOF instead of reset"),
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    let err = stream.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn transport_eof_ends_session_and_aborts_reads() {
    let (mut client, connection, mut incoming) = start(Config::default());
    client.open(1, &[]).await;
    let mut stream = incoming.accept().await.unwrap();
    client.data(1, b"tail", false).await;
    drop(client);
    tokio::time::timeout(WAIT, connection.closed())
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"tail");
    let err = stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    assert!(incoming.accept().await.is_none());
}

#[tokio::test]
async fn write_before_reply_sends_empty_reply_first() {
    let (mut client, _connection, mut incoming) = start(Config::default());
    client.open(1, &[]).await;
    let mut stream = incoming.accept().await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply {
            stream_id: 1,
            fin: false,
            ..
        })
    ));
    assert!(matches!(
        client.next().await,
        Some(Frame::Data { stream_id: 1, .. })
    ));
    assert!(stream.reply(vec![], false).await.is_err());
}

#[tokio::test]
async fn large_writes_are_split_into_bounded_frames() {
    let (mut client, _connection, mut incoming) = start(Config::default());
    client.open(1, &[]).await;
    let mut stream = incoming.accept().await.unwrap();
    stream.reply(vec![], false).await.unwrap();
    stream.write_all(&[3u8; 50_000]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut total = 0;
    loop {
        match client.next().await.unwrap() {
            Frame::Data { data, fin, .. } => {
                assert!(data.len() <= super::stream::MAX_DATA_CHUNK);
                total += data.len();
                if fin {
                    break;
                }
            }
            Frame::SynReply { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(total, 50_000);
}

#[tokio::test]
async fn unread_stream_applies_back_pressure_and_recovers() {
    let config = Config {
        max_buffered_per_stream: 64 * 1024,
        ..Config::default()
    };
    let (mut client, _connection, mut incoming) = start(config);
    client.open(1, &[]).await;
    let mut stream = incoming.accept().await.unwrap();
    let (_read_half, mut write_half) = tokio::io::split(client.io);
    let total = 4 << 20;
    let sender = tokio::spawn(async move {
        let frame = Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![1u8; 32 * 1024]),
        };
        for _ in 0..total / (32 * 1024) {
            write_half.write_all(&frame.to_bytes()).await.unwrap();
        }
        write_half
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The session must have stopped reading: the sender is stuck on the full pipe.
    assert!(!sender.is_finished());
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < total {
        got += tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
    }
    sender.await.unwrap();
}

/// Deterministic xorshift so CI covers arbitrary input without a fuzzer.
fn pseudo_random_bytes(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}

#[test]
fn parser_and_header_decoder_survive_random_input() {
    let mut seed = 0x5EED_1234_ABCD_0001u64;
    for round in 0..5000 {
        let len = (round % 200) + 1;
        let mut input = pseudo_random_bytes(&mut seed, len);
        // Bias towards SPDY/3 control frames so the per-type parsers are reached.
        if round % 2 == 0 && input.len() >= 8 {
            input[0] = 0x80;
            input[1] = 0x03;
            input[2] = 0;
            input[3] %= 11;
            let body = (input.len() - 8) as u32;
            input[5..8].copy_from_slice(&body.to_be_bytes()[1..]);
        }
        let _ = frame::parse(&input, 1 << 16);
        let _ = HeaderDecoder::new(1 << 16).decode(&input);
        let _ = super::headers::parse_plain(&input);
    }
}

#[tokio::test]
async fn session_survives_random_input() {
    let mut seed = 0xC0FF_EE00_1234_5678u64;
    for round in 0..200 {
        let (mut client, connection, incoming) = start(Config::default());
        let _server = spawn_echo_server(incoming);
        // A valid stream first so the random tail hits live-stream code paths.
        client.open(1, &[("streamtype", "data")]).await;
        let noise = pseudo_random_bytes(&mut seed, 64 + round * 7);
        let _ = client.io.write_all(&noise).await;
        drop(client);
        tokio::time::timeout(WAIT, connection.closed())
            .await
            .expect("session did not end");
    }
}
