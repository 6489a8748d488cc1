//! A `Read{id, from}` must name a message delivered (acknowledged) to the reader from
//! `from` and not yet reported read: forged, wrong-sender, early and repeated reports get an
//! error and make no receipt, so no one can make anyone receive `Read` for a message.

use std::time::Duration;

use hotline_client::Client;
use hotline_protocol::{ErrorCode, ReceiptStatus, ServerFrame};
use hotline_tests::Broker;

const ALICE: &str = "+15550900001";
const BOB: &str = "+15550900002";
const MALLORY: &str = "+15550900003";
const T: Duration = Duration::from_secs(10);

/// Reports `id` from `from` as read and returns the broker's answer: `Some(reason)` for a
/// refusal, `None` when it was accepted (no answer, so a `Ping` answered next proves it).
async fn report_read(client: &mut Client, id: u64, from: &str) -> Option<String> {
    client.read(id, from).await.unwrap();
    client.send_frame(&hotline_protocol::ClientFrame::Ping { nonce: id }).await.unwrap();
    match client.next_frame_within(T).await.unwrap() {
        ServerFrame::Pong { nonce } if nonce == id => None,
        ServerFrame::Error { error: ErrorCode::InvalidArgument, reason } => {
            assert!(matches!(client.next_frame_within(T).await.unwrap(), ServerFrame::Pong { .. }));
            Some(reason)
        }
        other => panic!("unexpected answer to Read: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_name_a_delivered_message_once_and_cannot_be_forged() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mallory_key = broker.register(MALLORY).await.unwrap();

    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let client_id = alice.send(BOB, b"lunch?".to_vec()).await.unwrap();
    let id = match alice.next_frame_within(T).await.unwrap() {
        ServerFrame::Sent { client_id: c, id } if c == client_id => id,
        other => panic!("expected Sent, got {other:?}"),
    };

    // Mallory was never sent message `id`, and message 999999 does not exist.
    let mut mallory = broker.login(MALLORY, &mallory_key).await.unwrap();
    let reason = report_read(&mut mallory, id, ALICE).await.expect("a forged Read is refused");
    assert!(reason.contains(&format!("no message {id} from {ALICE}")), "{reason}");
    assert!(report_read(&mut mallory, 999_999, ALICE).await.is_some(), "a Read of a message that never existed is refused");

    // Bob has the message but has not acknowledged it yet; then names the wrong sender.
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    match bob.next_frame_within(T).await.unwrap() {
        ServerFrame::TypedMessage { id: got, from, .. } => assert_eq!((got, from.as_str()), (id, ALICE)),
        other => panic!("expected the message, got {other:?}"),
    }
    assert!(report_read(&mut bob, id, ALICE).await.is_some(), "a Read before the Ack is refused");
    bob.ack(id).await.unwrap();
    assert!(report_read(&mut bob, id, MALLORY).await.is_some(), "a Read naming another sender is refused");
    // The real report is accepted once; a second one is refused.
    assert_eq!(report_read(&mut bob, id, ALICE).await, None, "Bob's Read of a delivered message is accepted");
    let again = report_read(&mut bob, id, ALICE).await.expect("a second Read of the same message is refused");
    assert!(again.contains("once"), "{again}");

    // Alice gets exactly one delivered and one read receipt, both from Bob, and nothing else.
    let mut statuses = Vec::new();
    while let Ok(frame) = alice.next_frame_within(Duration::from_millis(1500)).await {
        match frame {
            ServerFrame::Receipt { id: rid, message_id, by, status, .. } => {
                assert_eq!((message_id, by.as_str()), (id, BOB), "a receipt for another message or from someone else");
                alice.ack(rid).await.unwrap();
                statuses.push(status);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(statuses, [ReceiptStatus::Delivered, ReceiptStatus::Read]);
    for client in [alice, bob, mallory] {
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_its_ack_is_accepted_even_before_the_ack_is_durable() {
    // `hotline-chat listen --read` writes Ack and Read back to back, without waiting.
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    for n in 0..20u8 {
        alice.send(BOB, vec![n]).await.unwrap();
    }
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < 20 {
        if let ServerFrame::TypedMessage { id, from, .. } = bob.next_frame_within(T).await.unwrap() {
            bob.ack(id).await.unwrap();
            bob.read(id, &from).await.unwrap();
            ids.push(id);
        }
    }
    let mut read = Vec::new();
    while read.len() < 20 {
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Receipt { id: rid, message_id, status: ReceiptStatus::Read, .. } => {
                alice.ack(rid).await.unwrap();
                read.push(message_id);
            }
            ServerFrame::Receipt { id: rid, .. } => alice.ack(rid).await.unwrap(),
            _ => {}
        }
    }
    assert_eq!(read, ids, "one read receipt per message, in order");
    // And Bob was told of no refusal.
    assert!(bob.next_frame_within(Duration::from_millis(500)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_a_read_needs_expires_with_the_queue() {
    let mut broker = Broker::start_with_config("[storage]\nmessage_ttl_secs = 1\n").unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    alice.send(BOB, b"read me later".to_vec()).await.unwrap();
    alice.close().await;
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let id = match bob.next_frame_within(T).await.unwrap() {
        ServerFrame::TypedMessage { id, .. } => id,
        other => panic!("unexpected {other:?}"),
    };
    bob.ack(id).await.unwrap();
    bob.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Expiry runs when the broker starts (and hourly after).
    broker.restart().unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let reason = report_read(&mut bob, id, ALICE).await.expect("a Read after the message's lifetime is refused");
    assert!(reason.contains(&format!("no message {id}")), "{reason}");
    bob.close().await;
}
