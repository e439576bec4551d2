//! Arbitrary bytes from a "client" into a whole server session that echoes streams.
#![no_main]

use std::time::Duration;

use ferrocri::spdy;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut client_reader, mut client) = tokio::io::split(client);
        // Keep reading what the server sends so its writer never blocks the test.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_reader, &mut tokio::io::sink()).await;
        });
        let (connection, mut incoming) = spdy::serve(server);
        tokio::spawn(async move {
            while let Some(stream) = incoming.accept().await {
                let _ = stream.reply(vec![], false).await;
                tokio::spawn(async move {
                    let (mut reader, mut writer) = stream.into_split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                    let _ = writer.shutdown().await;
                });
            }
        });
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        drop(client);
        // The session must end on its own once the transport is gone.
        tokio::time::timeout(Duration::from_secs(5), connection.closed())
            .await
            .expect("session did not end after transport EOF");
    });
});
