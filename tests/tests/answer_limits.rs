//! Answers stay far below the frame limit that docs/protocol.md promises the broker never
//! exceeds, even when a request's fields are as long as a frame allows: reasons quote a
//! short prefix of a client's field, and a plugin's text is cut.

use std::time::Duration;

use hotline_client::ClientError;
use hotline_protocol::{close_code, ClientFrame, ErrorCode, ServerFrame};
use hotline_tests::Broker;

const ALICE: &str = "+15550950001";
const T: Duration = Duration::from_secs(10);
/// A field that, with the rest of its frame, nearly fills the 256 KiB frame limit.
const HUGE: usize = 250_000;

fn assert_short(what: &str, text: &str, max: usize) {
    assert!(text.len() <= max, "{what}: {} bytes: {}…", text.len(), &text[..200.min(text.len())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_quote_at_most_a_short_prefix_of_huge_fields() {
    let broker = Broker::start().unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let mut alice = broker.login(ALICE, &key).await.unwrap();

    alice.send_with_id(1, &"x".repeat(HUGE), b"hi".to_vec()).await.unwrap();
    match alice.next_frame_within(T).await.unwrap() {
        ServerFrame::SendFailed { client_id: 1, error: ErrorCode::InvalidArgument, reason } => {
            assert_short("SendFailed for a huge address", &reason, 200);
            assert!(reason.contains("250000 bytes"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }

    // A command for a slot that does not exist, and one whose plugin echoes a huge argument.
    let (answer, _) = alice.command(&"s".repeat(HUGE), "hello", vec![]).await.unwrap();
    assert_short("unknown slot", &answer.unwrap_err(), 200);
    let (answer, _) = alice.command("router", "group-create", vec![format!("#{}", "a".repeat(HUGE))]).await.unwrap();
    assert_short("router's refusal of a huge group name", &answer.unwrap_err(), 1024);
    let (answer, _) = alice.command("router", &"n".repeat(HUGE), vec![]).await.unwrap();
    assert_short("router's refusal of a huge command name", &answer.unwrap_err(), 1024);

    // Registration before login: a huge phone number.
    let mut anonymous = broker.connect().await.unwrap();
    match anonymous.request_code(&format!("+1{}", "5".repeat(HUGE))).await {
        Err(ClientError::Refused { error: ErrorCode::InvalidArgument, reason }) => assert_short("RequestCode", &reason, 200),
        other => panic!("unexpected {other:?}"),
    }
    match anonymous.verify(&"+".repeat(HUGE), "12345").await {
        Err(ClientError::Refused { error: ErrorCode::InvalidArgument, reason }) => assert_short("Verify", &reason, 200),
        other => panic!("unexpected {other:?}"),
    }
    // A login with a huge number is closed with a short reason.
    anonymous.send_frame(&ClientFrame::Login { phone: "9".repeat(HUGE), key: "k".into() }).await.unwrap();
    match anonymous.next_frame_within(T).await {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, close_code::AUTH_FAILED);
            assert_short("Login close reason", &reason, 200);
        }
        other => panic!("unexpected {other:?}"),
    }

    // The session that got all those answers still works.
    alice.send_with_id(2, ALICE, b"still here".to_vec()).await.unwrap();
    let mut sent = false;
    let mut received = false;
    while !(sent && received) {
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { client_id: 2, .. } => sent = true,
            ServerFrame::TypedMessage { id, body, .. } if body == b"still here" => {
                alice.ack(id).await.unwrap();
                received = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    alice.close().await;
}
