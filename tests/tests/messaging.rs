//! Two numbers register, exchange messages and see sent → delivered → read; the CLI does
//! the same walk-through; wrong input gets clear errors.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use hotline_client::ClientError;
use hotline_protocol::{ErrorCode, ReceiptStatus, ServerFrame};
use hotline_tests::Broker;

const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";
const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn two_numbers_exchange_messages_and_the_sender_sees_sent_delivered_read() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();

    let client_id = alice.send(BOB, b"hi bob".to_vec()).await.unwrap();
    let id = match alice.next_frame_within(T).await.unwrap() {
        ServerFrame::Sent { client_id: c, id } if c == client_id => id,
        other => panic!("expected Sent, got {other:?}"),
    };

    // Bob is online: the message is pushed at once.
    match bob.next_frame_within(T).await.unwrap() {
        ServerFrame::TypedMessage { id: got, from, body, .. } => {
            assert_eq!((got, from.as_str(), body.as_slice()), (id, ALICE, &b"hi bob"[..]));
        }
        other => panic!("expected Message, got {other:?}"),
    }
    bob.ack(id).await.unwrap();
    let delivered = alice.next_frame_within(T).await.unwrap();
    let ServerFrame::Receipt { id: rid, message_id, by, status: ReceiptStatus::Delivered, .. } = delivered else {
        panic!("expected delivered receipt, got {delivered:?}")
    };
    assert_eq!((message_id, by.as_str()), (id, BOB));
    alice.ack(rid).await.unwrap();

    bob.read(id, ALICE).await.unwrap();
    let read = alice.next_frame_within(T).await.unwrap();
    let ServerFrame::Receipt { id: rid, message_id, status: ReceiptStatus::Read, .. } = read else {
        panic!("expected read receipt, got {read:?}")
    };
    assert_eq!(message_id, id);
    alice.ack(rid).await.unwrap();

    // And back the other way.
    let reply_id = bob.send(ALICE, b"hi alice".to_vec()).await.unwrap();
    assert!(matches!(bob.next_frame_within(T).await.unwrap(), ServerFrame::Sent { client_id, .. } if client_id == reply_id));
    assert!(matches!(alice.next_frame_within(T).await.unwrap(), ServerFrame::TypedMessage { from, body, .. } if from == BOB && body == b"hi alice"));
}

#[tokio::test]
async fn a_retry_with_the_same_client_id_is_stored_once() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    for _ in 0..3 {
        alice.send_with_id(42, BOB, b"once".to_vec()).await.unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { client_id: 42, id } => ids.push(id),
            other => panic!("expected Sent, got {other:?}"),
        }
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "retries got different ids: {ids:?}");
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    assert!(matches!(bob.next_frame_within(T).await.unwrap(), ServerFrame::TypedMessage { id, .. } if id == ids[0]));
    assert!(bob.next_frame_within(Duration::from_millis(500)).await.is_err(), "message stored more than once");
}

#[tokio::test]
async fn wrong_codes_unknown_numbers_and_bad_keys_get_clear_errors() {
    let broker = Broker::start().unwrap();
    let mut client = broker.connect().await.unwrap();

    let err = client.request_code("5550100001").await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { error: ErrorCode::InvalidArgument, .. }), "{err}");

    let err = client.verify(ALICE, "12345").await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { error: ErrorCode::CodeExpired, .. }), "{err}");

    client.request_code(ALICE).await.unwrap();
    let right = broker.sms_code(ALICE).unwrap();
    let wrong = if right == "00000" { "11111" } else { "00000" };
    let err = client.verify(ALICE, wrong).await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { error: ErrorCode::WrongCode, ref reason } if reason.contains("attempts left")), "{err}");
    let key = client.verify(ALICE, &right).await.unwrap();
    client.close().await;

    // Sending to a number nobody registered.
    let mut alice = broker.login(ALICE, &key).await.unwrap();
    let cid = alice.send(BOB, b"anyone?".to_vec()).await.unwrap();
    match alice.next_frame_within(T).await.unwrap() {
        ServerFrame::SendFailed { client_id, error: ErrorCode::UnknownRecipient, reason } => {
            assert_eq!(client_id, cid);
            assert!(reason.contains(BOB), "{reason}");
        }
        other => panic!("expected SendFailed, got {other:?}"),
    }
    // A body over the limit is refused, the session goes on.
    let cid = alice.send(ALICE, vec![0; 70_000]).await.unwrap();
    assert!(matches!(alice.next_frame_within(T).await.unwrap(), ServerFrame::SendFailed { client_id, error: ErrorCode::TooLarge, .. } if client_id == cid));

    // Logging in with a wrong key, or as an unknown number, closes with AUTH_FAILED.
    for (phone, key) in [(ALICE, "not-the-key"), (BOB, key.as_str())] {
        let mut c = broker.connect().await.unwrap();
        match c.login(phone, key).await.unwrap_err() {
            ClientError::Closed { code, reason } => {
                assert_eq!(code, hotline_protocol::close_code::AUTH_FAILED);
                assert!(!reason.is_empty());
            }
            other => panic!("expected close, got {other}"),
        }
    }
}

#[test]
fn hotline_chat_walk_through() {
    let broker = Broker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));

    // Alice registers interactively: the code is typed on stdin once the SMS arrives.
    let mut register = broker.chat(&alice).args(["register", ALICE]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let code = wait_for(|| broker.sms_code(ALICE).ok());
    writeln!(register.stdin.take().unwrap(), "{code}").unwrap();
    let out = register.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("registered"));

    // Bob registers the scripted way: request (no stdin), then --code.
    let status = broker.chat(&bob).args(["register", BOB]).stdin(Stdio::null()).status().unwrap();
    assert!(status.success());
    let code = broker.sms_code(BOB).unwrap();
    assert!(broker.chat(&bob).args(["register", BOB, "--code", &code]).status().unwrap().success());

    // Alice sends and waits for "read" while Bob listens with --read.
    let send = broker.chat(&alice).args(["send", BOB, "hello from the CLI", "--wait", "read"]).stdout(Stdio::piped()).spawn().unwrap();
    let listen = broker.chat(&bob).args(["listen", "--count", "1", "--timeout", "20", "--read"]).output().unwrap();
    assert!(listen.status.success(), "{}", String::from_utf8_lossy(&listen.stderr));
    let event: serde_json::Value = serde_json::from_slice(&listen.stdout).unwrap();
    assert_eq!(event["type"], "message");
    assert_eq!(event["from"], ALICE);
    assert_eq!(event["text"], "hello from the CLI");
    let sent = send.wait_with_output().unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let id: u64 = String::from_utf8_lossy(&sent.stdout).trim().parse().unwrap();
    assert_eq!(event["id"], id);

    // Bob answers with --wait sent; Alice's listen sees the message.
    assert!(broker.chat(&bob).args(["send", ALICE, "got it"]).status().unwrap().success());
    let listen = broker.chat(&alice).args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap();
    let event: serde_json::Value = serde_json::from_slice(&listen.stdout).unwrap();
    assert_eq!((event["type"].as_str(), event["text"].as_str()), (Some("message"), Some("got it")));

    // Receipts reach a listener too: Bob's "got it" was delivered to Alice.
    let listen = broker.chat(&bob).args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap();
    let event: serde_json::Value = serde_json::from_slice(&listen.stdout).unwrap();
    assert_eq!((event["type"].as_str(), event["status"].as_str()), (Some("receipt"), Some("delivered")));

    // A listen whose count is not reached by the timeout says so and fails.
    let listen = broker.chat(&bob).args(["listen", "--count", "1", "--timeout", "1"]).output().unwrap();
    assert!(!listen.status.success());
    assert!(String::from_utf8_lossy(&listen.stderr).contains("timed out after 0 of 1"));
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not met within 10 s");
}
