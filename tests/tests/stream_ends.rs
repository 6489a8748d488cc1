//! How a session ends when the client ends its side of the stream, as docs/protocol.md §1
//! says: a FIN gets every earlier frame answered, a FIN inside a frame is a malformed
//! frame, and STOP_SENDING closes the session while its queue stays for the next one.

use std::time::Duration;

use hotline_protocol::{close_code, encode, ClientFrame, FrameDecoder, ServerFrame};
use hotline_tests::Broker;

const ALICE: &str = "+15550980001";
const BOB: &str = "+15550980002";
const T: Duration = Duration::from_secs(10);

/// A QUIC connection with its one stream, driven by hand.
struct Raw {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl Raw {
    async fn connect(broker: &Broker) -> Raw {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(hotline_client::client_config(&broker.data.join("tls/cert.pem")).unwrap());
        let conn = endpoint.connect(broker.addr, "localhost").unwrap().await.unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        Raw { _endpoint: endpoint, conn, send, recv, decoder: FrameDecoder::new() }
    }

    async fn write(&mut self, frames: &[ClientFrame]) {
        let bytes: Vec<u8> = frames.iter().flat_map(encode).collect();
        self.send.write_all(&bytes).await.unwrap();
    }

    /// The next frame, or `None` once the stream has ended.
    async fn next(&mut self) -> Option<ServerFrame> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                return Some(frame);
            }
            match tokio::time::timeout(T, self.recv.read(&mut buf)).await.expect("a frame or the end in time") {
                Ok(Some(n)) => self.decoder.extend(&buf[..n]),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The application close the broker sent: code and reason.
    async fn closed(&self) -> (u32, String) {
        match tokio::time::timeout(T, self.conn.closed()).await.expect("closed in time") {
            quinn::ConnectionError::ApplicationClosed(close) => {
                (close.error_code.into_inner() as u32, String::from_utf8_lossy(&close.reason).into_owned())
            }
            other => panic!("expected an application close, got {other}"),
        }
    }
}

fn hello() -> ClientFrame {
    ClientFrame::Hello { min_version: 1, max_version: 1 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fin_gets_every_send_answered_in_order_before_the_close() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    broker.register(BOB).await.unwrap();
    let mut raw = Raw::connect(&broker).await;
    let mut frames = vec![hello(), ClientFrame::Login { phone: ALICE.into(), key: alice_key }];
    frames.extend((0..500).map(|client_id| ClientFrame::Send { client_id, to: BOB.into(), body: vec![7; 200] }));
    raw.write(&frames).await;
    raw.send.finish().unwrap();
    assert!(matches!(raw.next().await, Some(ServerFrame::Welcome { .. })));
    assert!(matches!(raw.next().await, Some(ServerFrame::LoggedIn { .. })));
    for expected in 0..500 {
        match raw.next().await {
            Some(ServerFrame::Sent { client_id, .. }) => assert_eq!(client_id, expected),
            other => panic!("expected Sent {expected}, got {other:?}"),
        }
    }
    assert_eq!(raw.next().await, None);
    assert_eq!(raw.closed().await, (close_code::NORMAL, "bye".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fin_inside_a_frame_closes_as_malformed_after_answering_the_whole_frames() {
    let broker = Broker::start().unwrap();
    let mut raw = Raw::connect(&broker).await;
    raw.write(&[hello(), ClientFrame::Ping { nonce: 42 }]).await;
    // A length prefix announcing 50 bytes, and 2 of them.
    raw.send.write_all(&[0, 0, 0, 50, 1, 2]).await.unwrap();
    raw.send.finish().unwrap();
    assert!(matches!(raw.next().await, Some(ServerFrame::Welcome { .. })));
    assert_eq!(raw.next().await, Some(ServerFrame::Pong { nonce: 42 }));
    let (code, reason) = raw.closed().await;
    assert_eq!(code, close_code::MALFORMED_FRAME, "{reason}");
    assert!(reason.contains("ended inside a frame (6 bytes of it arrived)"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sending_closes_the_session_and_the_queue_stays_for_the_next_one() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    alice.send(BOB, b"are you there?".to_vec()).await.unwrap();

    let mut raw = Raw::connect(&broker).await;
    raw.write(&[hello(), ClientFrame::Login { phone: BOB.into(), key: bob_key.clone() }]).await;
    let mut pushed = None;
    while pushed.is_none() {
        if let Some(ServerFrame::Message { id, .. }) = raw.next().await {
            pushed = Some(id);
        }
    }
    // Bob's app stops reading without acknowledging.
    raw.recv.stop(0u32.into()).unwrap();
    let (code, reason) = raw.closed().await;
    assert_eq!((code, reason.as_str()), (close_code::NORMAL, "the client stopped reading the stream"));

    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    match bob.next_frame_within(T).await.unwrap() {
        ServerFrame::TypedMessage { id, body, .. } => {
            assert_eq!(Some(id), pushed, "the same message, under the same id");
            assert_eq!(body, b"are you there?");
            bob.ack(id).await.unwrap();
        }
        other => panic!("unexpected {other:?}"),
    }
    bob.close().await;
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_is_logged_with_the_number_and_the_remote_address() {
    let mut broker = Broker::start_capturing_stderr(&["--log-format", "json"], &[("HOTLINE_LOG", "info")]).unwrap();
    let stderr = broker.take_stderr().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let key = broker.register(ALICE).await.unwrap();
    let first = broker.login(ALICE, &key).await.unwrap();
    // A second login replaces the first connection (close code 7).
    let second = broker.login(ALICE, &key).await.unwrap();
    let logged = loop {
        let line = lines.recv_timeout(T).expect("a close line in the log");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if event["message"] == "closing connection" && event["code"] == close_code::SESSION_REPLACED {
            break event;
        }
    };
    assert_eq!(logged["phone"], ALICE, "{logged}");
    let remote = logged["remote"].as_str().unwrap_or_default();
    assert!(remote.starts_with("127.0.0.1:") && remote.len() > "127.0.0.1:".len(), "{logged}");
    assert!(logged["reason"].as_str().unwrap_or_default().contains("newer connection"), "{logged}");
    drop(first);
    second.close().await;
}
