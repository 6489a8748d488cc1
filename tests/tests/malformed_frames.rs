//! Raw QUIC connections sending malformed, oversized and out-of-order frames are closed
//! with an error code; other users' sessions carry on undisturbed.

use std::time::Duration;

use hotline_client::{Client, ClientError};
use hotline_protocol::{close_code, encode, ClientFrame, ServerFrame};
use hotline_tests::Broker;

const BOB: &str = "+15550500001";
const CAROL: &str = "+15550500002";
const T: Duration = Duration::from_secs(10);

fn hello() -> Vec<u8> {
    encode(&ClientFrame::Hello { min_version: 1, max_version: 1 })
}

/// Writes `bytes` on a fresh connection and returns the close code the broker answered with.
async fn close_code_for(broker: &Broker, bytes: Vec<u8>) -> (u32, String) {
    let mut raw = Client::connect_raw(&broker.options()).await.unwrap();
    raw.write_raw(&bytes).await.unwrap();
    loop {
        match raw.next_frame_within(T).await {
            Ok(ServerFrame::Welcome { .. }) => continue,
            Ok(other) => panic!("expected a close, got {other:?}"),
            Err(ClientError::Closed { code, reason }) => return (code, reason),
            Err(e) => panic!("expected a close with a code, got {e}"),
        }
    }
}

#[tokio::test]
async fn bad_frames_close_only_the_offending_connection() {
    let broker = Broker::start().unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let carol_key = broker.register(CAROL).await.unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let mut carol = broker.login(CAROL, &carol_key).await.unwrap();

    let mut oversized = hello();
    oversized.extend_from_slice(&(hotline_protocol::MAX_FRAME_LEN + 1).to_be_bytes());
    let mut garbage = hello();
    garbage.extend_from_slice(&[0, 0, 0, 3, 0xFF, 0xFF, 0xFF]);
    let mut trailing = hello();
    trailing.extend_from_slice(&[0, 0, 0, 3, 5, 1, 0]); // Ack{1} and a stray byte
    let mut send_before_login = hello();
    send_before_login.extend(encode(&ClientFrame::Send { client_id: 1, to: BOB.into(), body: b"x".to_vec() }));
    let login_before_hello = encode(&ClientFrame::Login { phone: BOB.into(), key: bob_key.clone() });
    let mut hello_twice = hello();
    hello_twice.extend(hello());
    let wrong_version = encode(&ClientFrame::Hello { min_version: 7, max_version: 9 });

    let cases = [
        ("oversized", oversized, close_code::FRAME_TOO_LARGE),
        ("garbage", garbage, close_code::MALFORMED_FRAME),
        ("trailing bytes", trailing, close_code::MALFORMED_FRAME),
        ("Send before Login", send_before_login, close_code::UNEXPECTED_FRAME),
        ("Login before Hello", login_before_hello, close_code::UNEXPECTED_FRAME),
        ("Hello twice", hello_twice, close_code::UNEXPECTED_FRAME),
        ("unsupported version", wrong_version, close_code::UNSUPPORTED_VERSION),
    ];
    for (round, (name, bytes, want)) in cases.into_iter().enumerate() {
        // Traffic between Bob and Carol goes on around each attack.
        let text = format!("round {round}");
        let cid = bob.send(CAROL, text.clone().into_bytes()).await.unwrap();
        let (code, reason) = close_code_for(&broker, bytes).await;
        assert_eq!(code, want, "{name}: closed with {code} ({reason})");
        assert!(!reason.is_empty(), "{name}: no reason given");
        assert!(matches!(bob.next_frame_within(T).await.unwrap(), ServerFrame::Sent { client_id, .. } if client_id == cid));
        match carol.next_frame_within(T).await.unwrap() {
            ServerFrame::TypedMessage { id, body, .. } => {
                assert_eq!(body, text.as_bytes(), "after {name}");
                carol.ack(id).await.unwrap();
            }
            other => panic!("after {name}: expected Message, got {other:?}"),
        }
        assert!(matches!(bob.next_frame_within(T).await.unwrap(), ServerFrame::Receipt { .. }));
    }

    // A connection that stops halfway through a frame harms nobody either.
    let mut half = Client::connect_raw(&broker.options()).await.unwrap();
    half.write_raw(&[0, 0, 0, 50, 1, 2]).await.unwrap();
    drop(half);
    bob.send(CAROL, b"still here".to_vec()).await.unwrap();
    assert!(matches!(carol.next_frame_within(T).await.unwrap(), ServerFrame::TypedMessage { body, .. } if body == b"still here"));
}
