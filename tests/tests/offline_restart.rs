//! 1,000 messages to an offline recipient, with a broker restart in the middle: all arrive
//! in order, exactly once, and storage is empty once everything is acknowledged.

use std::collections::HashMap;
use std::time::Duration;

use hotline_client::Client;
use hotline_protocol::ServerFrame;
use hotline_tests::Broker;

const ALICE: &str = "+15550200001";
const BOB: &str = "+15550200002";
const T: Duration = Duration::from_secs(20);

/// Sends `range` as "msg-NNNN" pipelined, then waits for every `Sent`. Returns client id → id.
async fn send_batch(alice: &mut Client, range: std::ops::Range<u32>) -> HashMap<u64, u64> {
    for i in range.clone() {
        alice.send_with_id(i as u64, BOB, format!("msg-{i:04}").into_bytes()).await.unwrap();
    }
    let mut sent = HashMap::new();
    while sent.len() < range.len() {
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { client_id, id } => assert!(sent.insert(client_id, id).is_none()),
            other => panic!("expected Sent, got {other:?}"),
        }
    }
    sent
}

#[tokio::test]
async fn a_thousand_messages_survive_a_restart_and_arrive_in_order_exactly_once() {
    let mut broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();

    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let mut sent = send_batch(&mut alice, 0..500).await;
    alice.close().await;

    broker.restart().unwrap();

    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    sent.extend(send_batch(&mut alice, 500..1000).await);
    alice.close().await;
    let mut ids: Vec<u64> = (0..1000).map(|i| sent[&i]).collect();
    let sorted = { let mut s = ids.clone(); s.sort(); s };
    assert_eq!(ids, sorted, "message ids follow send order, across the restart");

    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    for i in 0..1000u32 {
        match bob.next_frame_within(T).await.unwrap() {
            ServerFrame::TypedMessage { id, from, body, .. } => {
                assert_eq!(from, ALICE);
                assert_eq!(String::from_utf8(body).unwrap(), format!("msg-{i:04}"), "out of order at {i}");
                assert_eq!(id, ids[i as usize]);
                bob.ack(id).await.unwrap();
            }
            other => panic!("expected Message {i}, got {other:?}"),
        }
    }
    assert!(bob.next_frame_within(Duration::from_millis(500)).await.is_err(), "more than 1,000 messages");
    bob.close().await;

    // Alice takes her 1,000 delivered receipts.
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let mut receipts = 0;
    while receipts < 1000 {
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Receipt { id, message_id, .. } => {
                assert!(ids.contains(&message_id));
                alice.ack(id).await.unwrap();
                receipts += 1;
            }
            other => panic!("expected Receipt, got {other:?}"),
        }
    }
    alice.close().await;

    // After a restart nothing is delivered twice.
    broker.restart().unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    assert!(bob.next_frame_within(Duration::from_millis(500)).await.is_err(), "a message came back after its ack");
    bob.close().await;

    broker.stop().unwrap();
    let report = broker.inspect().unwrap();
    assert_eq!(report["queued_items"], 0, "storage still holds items: {report}");
    eprintln!("disk after drain: {} bytes", report["disk_bytes"]);
    ids.clear();
}

#[tokio::test]
async fn undelivered_messages_expire_after_the_configured_time() {
    let mut broker = Broker::start_with_config("[storage]\nmessage_ttl_secs = 1\n").unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    send_batch(&mut alice, 0..3).await;
    alice.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Expiry runs when the broker starts (and hourly after).
    broker.restart().unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    assert!(bob.next_frame_within(Duration::from_millis(700)).await.is_err(), "an expired message was delivered");
    bob.close().await;
    broker.stop().unwrap();
    assert_eq!(broker.inspect().unwrap()["queued_items"], 0);
}
