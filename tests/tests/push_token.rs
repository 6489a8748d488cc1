//! A device's push token (protocol version 4, `SetPushToken`) against the real broker: set
//! and answered `PushTokenSet`, shown as present by `GET /api/accounts` (never its value),
//! still there after a SIGKILL; a bad token or one before `Login` gets `Error` and the
//! connection goes on; a version-3 session that sends it is closed as a version-3 broker
//! would; `hotline-chat push-token` sets and clears it; registering the number on a new
//! device drops the old device's token.

use std::time::Duration;

use hotline_client::{Client, ClientError, ConnectOptions};
use hotline_protocol::{close_code, ClientFrame, ErrorCode, ServerFrame};
use hotline_tests::{answer_to, ok, refused, Broker};
use serde_json::Value;

const ALICE: &str = "+15550910001";
const BOB: &str = "+15550910002";
const DAN: &str = "+15550910004";
const T: Duration = Duration::from_secs(10);

/// `push_token` of every account in `GET /api/accounts`, by number.
fn tokens(broker: &Broker) -> Vec<(String, bool)> {
    let (status, body) = broker.admin_get("/api/accounts").unwrap();
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    json["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["phone"].as_str().unwrap().to_string(), a["push_token"].as_bool().unwrap_or_else(|| panic!("no push_token in {a}"))))
        .collect()
}

fn has_token(broker: &Broker, phone: &str) -> bool {
    tokens(broker).into_iter().find(|(p, _)| p == phone).unwrap_or_else(|| panic!("{phone} is not listed")).1
}

/// The next frame, which must be `Error`.
async fn error(client: &mut Client) -> (ErrorCode, String) {
    match client.next_frame_within(T).await.unwrap() {
        ServerFrame::Error { error, reason } => (error, reason),
        other => panic!("expected Error, got {other:?}"),
    }
}

/// A `Ping` answered by its `Pong`: the connection still works.
async fn still_open(client: &mut Client, nonce: u64) {
    client.send_frame(&ClientFrame::Ping { nonce }).await.unwrap();
    assert_eq!(client.next_frame_within(T).await.unwrap(), ServerFrame::Pong { nonce });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_set_once_durable_bad_ones_get_an_error_and_it_survives_sigkill() {
    let mut broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    broker.register(BOB).await.unwrap();

    // Before Login: an Error, and the connection goes on (here to log in).
    let mut alice = broker.connect().await.unwrap();
    assert_eq!(alice.version(), 4);
    alice.send_frame(&ClientFrame::SetPushToken { token: "apns:0a1b".into() }).await.unwrap();
    assert_eq!(error(&mut alice).await, (ErrorCode::Rejected, "SetPushToken is allowed only after Login; log in first".to_string()));
    still_open(&mut alice, 1).await;
    alice.login(ALICE, &alice_key).await.unwrap();
    assert_eq!(tokens(&broker), [(ALICE.to_string(), false), (BOB.to_string(), false)]);

    // Too long, then a control character: each an Error with the reason; nothing stored.
    alice.send_frame(&ClientFrame::SetPushToken { token: "x".repeat(4097) }).await.unwrap();
    assert_eq!(error(&mut alice).await, (ErrorCode::InvalidArgument, "the push token is 4097 bytes long; at most 4096 are allowed".to_string()));
    alice.send_frame(&ClientFrame::SetPushToken { token: "two\nlines".into() }).await.unwrap();
    assert_eq!(error(&mut alice).await, (ErrorCode::InvalidArgument, "\"two\\nlines\" is not a push token: it contains a control character".to_string()));
    match alice.set_push_token(&"y".repeat(5000)).await {
        Err(ClientError::Refused { error: ErrorCode::InvalidArgument, .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!has_token(&broker, ALICE));
    // The session still works: a ping, a message.
    still_open(&mut alice, 2).await;
    let cid = alice.send(BOB, b"still here".to_vec()).await.unwrap();
    answer_to(&mut alice, cid).await.expect("stored");

    // The longest token is accepted; the answer comes once it is durable.
    let token = format!("fcm:{}", "z".repeat(4092));
    assert!(alice.set_push_token(&token).await.unwrap().is_empty());
    assert_eq!(tokens(&broker), [(ALICE.to_string(), true), (BOB.to_string(), false)]);
    // The operator sees that there is one, never what it is.
    let (_, body) = broker.admin_get("/api/accounts").unwrap();
    assert!(!body.contains("zzzz"), "the token's value is shown: {body}");

    // SIGKILL right after the answer: the token is still there after the restart.
    broker.kill().unwrap();
    broker.start_again().unwrap();
    assert_eq!(tokens(&broker), [(ALICE.to_string(), true), (BOB.to_string(), false)]);

    // The empty token removes it, durably too.
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    alice.set_push_token("").await.unwrap();
    assert!(!has_token(&broker, ALICE));
    broker.kill().unwrap();
    broker.start_again().unwrap();
    assert!(!has_token(&broker, ALICE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_session_sending_it_is_closed_as_malformed_after_the_answers_owed() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    broker.register(BOB).await.unwrap();
    let mut alice = Client::connect(&ConnectOptions { versions: (1, 3), ..broker.options() }).await.unwrap();
    assert_eq!(alice.version(), 3);
    alice.login(ALICE, &alice_key).await.unwrap();
    // The client refuses it here, sending nothing.
    match alice.set_push_token("apns:0a1b").await {
        Err(ClientError::Protocol(why)) => assert_eq!(why, "SetPushToken needs protocol version 4; this session speaks version 3"),
        other => panic!("expected a local refusal, got {other:?}"),
    }
    still_open(&mut alice, 1).await;
    // Sent anyway: the Send before it is answered, then the broker closes with code 1.
    let cid = alice.send(BOB, b"before".to_vec()).await.unwrap();
    alice.send_frame(&ClientFrame::SetPushToken { token: "apns:0a1b".into() }).await.unwrap();
    assert!(matches!(alice.next_frame_within(T).await.unwrap(), ServerFrame::Sent { client_id, .. } if client_id == cid));
    match alice.next_frame_within(T).await {
        Err(ClientError::Closed { code, reason }) => assert_eq!(
            (code, reason.as_str()),
            (close_code::MALFORMED_FRAME, "malformed frame: SetPushToken is a frame of protocol version 4; this session speaks version 3")
        ),
        other => panic!("expected close 1, got {other:?}"),
    }
    assert!(!has_token(&broker, ALICE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotline_chat_sets_and_clears_it_and_a_new_device_makes_the_old_token_stale() {
    let broker = Broker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dan = dir.path().join("dan");
    broker.register_chat(&dan, DAN, 5).unwrap();

    let out = ok(broker.chat(&dan).args(["push-token", "apns:00ff00ff"]).output().unwrap());
    assert_eq!(out.trim(), format!("push token of {DAN} set (13 bytes)"));
    assert!(has_token(&broker, DAN));
    let out = ok(broker.chat(&dan).args(["push-token", "--clear"]).output().unwrap());
    assert_eq!(out.trim(), format!("push token of {DAN} removed"));
    assert!(!has_token(&broker, DAN));
    // A bad token is the broker's refusal, in words; neither a token nor --clear is usage.
    let err = refused(broker.chat(&dan).args(["push-token", "tab\there"]).output().unwrap());
    assert!(err.contains("is not a push token: it contains a control character"), "{err}");
    refused(broker.chat(&dan).args(["push-token"]).output().unwrap());
    ok(broker.chat(&dan).args(["push-token", "apns:old-phone"]).output().unwrap());
    assert!(has_token(&broker, DAN));

    // The number is registered on a new device: the old device's token would wake the
    // wrong phone, so it is gone; the new device sets its own.
    let new_key = broker.register(DAN).await.unwrap();
    assert!(!has_token(&broker, DAN));
    let mut new_device = broker.login(DAN, &new_key).await.unwrap();
    new_device.set_push_token("apns:new-phone").await.unwrap();
    assert!(has_token(&broker, DAN));
    // The old device's key no longer logs in, so it cannot replace it.
    let err = refused(broker.chat(&dan).args(["push-token", "apns:old-phone"]).output().unwrap());
    assert!(err.contains("register this device again"), "{err}");
    assert!(has_token(&broker, DAN));
}
