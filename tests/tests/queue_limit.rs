//! `limits.max_queue_items` with the real broker: a send to a recipient whose stored queue
//! is full is refused (`QueueFull` in protocol version 2, `RateLimited` in version 1),
//! nothing stored is dropped, and once the recipient takes its items the same sends are
//! accepted. Also the version negotiation that decides which code a client gets.

use std::time::Duration;

use hotline_client::{Client, ConnectOptions, ReceivedMessage};
use hotline_protocol::{close_code, ClientFrame, ErrorCode, ServerFrame};
use hotline_tests::Broker;

const ALICE: &str = "+15550110001";
const BOB: &str = "+15550110002";
const CAROL: &str = "+15550110003";
const T: Duration = Duration::from_secs(10);
const FULL: &str = "the recipient's queue is full (5 items waiting); try again later";

/// The answer to send `client_id`: `Ok(id)` or `Err((code, reason))`. Receipts that come
/// meanwhile are acked.
async fn answer(client: &mut Client, client_id: u64) -> Result<u64, (ErrorCode, String)> {
    loop {
        match client.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { client_id: c, id } if c == client_id => return Ok(id),
            ServerFrame::SendFailed { client_id: c, error, reason } if c == client_id => return Err((error, reason)),
            ServerFrame::Receipt { id, .. } => client.ack(id).await.unwrap(),
            other => panic!("waiting for the answer to {client_id}, got {other:?}"),
        }
    }
}

async fn send(client: &mut Client, client_id: u64, to: &str, body: &str) -> Result<u64, (ErrorCode, String)> {
    client.send_with_id(client_id, to, body.as_bytes().to_vec()).await.unwrap();
    answer(client, client_id).await
}

/// Logs in with protocol versions `versions` offered.
async fn login_speaking(broker: &Broker, phone: &str, key: &str, versions: (u16, u16)) -> Client {
    let mut client = Client::connect(&ConnectOptions { versions, ..broker.options() }).await.unwrap();
    client.login(phone, key).await.unwrap();
    client
}

/// Takes the next `n` messages (acking each): (id, from, body).
async fn take(client: &mut Client, n: usize) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        match ReceivedMessage::from_frame(client.next_frame_within(T).await.unwrap()) {
            Ok(ReceivedMessage { id, from, body, .. }) => {
                client.ack(id).await.unwrap();
                out.push((id, from, String::from_utf8(body).unwrap()));
            }
            Err(other) => panic!("expected a message, got {other:?}"),
        }
    }
    out
}

#[tokio::test]
async fn the_sixth_send_to_a_full_queue_is_refused_the_five_arrive_and_after_acks_sends_are_accepted_again() {
    let broker = Broker::start_with_config("[limits]\nmax_queue_items = 5\n").unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let carol_key = broker.register(CAROL).await.unwrap();

    // Alice's client offers versions 1 to 4 (the default) and gets 4, which has `QueueFull`.
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    assert_eq!(alice.version(), 4);
    // Bob is offline: five messages fill his queue.
    let mut stored = Vec::new();
    for n in 1..=5 {
        stored.push(send(&mut alice, n, BOB, &format!("message {n}")).await.unwrap());
    }
    let refused = send(&mut alice, 6, BOB, "message 6").await;
    assert_eq!(refused, Err((ErrorCode::QueueFull, FULL.to_string())));
    // A version-1 client gets the code it knows, with the same reason.
    let mut carol = login_speaking(&broker, CAROL, &carol_key, (1, 1)).await;
    assert_eq!(carol.version(), 1);
    let refused = send(&mut carol, 1, BOB, "from carol").await;
    assert_eq!(refused, Err((ErrorCode::RateLimited, FULL.to_string())));

    // Bob logs in: the five, intact and in order, nothing else.
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let got = take(&mut bob, 5).await;
    let want: Vec<(u64, String, String)> = (1..=5).map(|n| (stored[n - 1], ALICE.to_string(), format!("message {n}"))).collect();
    assert_eq!(got, want);
    // FIN and wait for the broker's close: every ack was applied.
    bob.close().await;

    // Now the same client ids are accepted, once each.
    let id6 = send(&mut alice, 6, BOB, "message 6").await.unwrap();
    let carols = send(&mut carol, 1, BOB, "from carol").await.unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let got = take(&mut bob, 2).await;
    assert_eq!(got, vec![(id6, ALICE.to_string(), "message 6".to_string()), (carols, CAROL.to_string(), "from carol".to_string())]);
    assert!(bob.next_frame_within(Duration::from_millis(300)).await.is_err(), "more than the accepted messages arrived");
}

#[tokio::test]
async fn hello_gets_the_highest_common_version_and_a_range_without_one_closes_with_code_4() {
    let broker = Broker::start().unwrap();
    for ((min_version, max_version), want) in [((1, 1), 1), ((1, 2), 2), ((1, 3), 3), ((2, 7), 4), ((3, 3), 3), ((4, 4), 4)] {
        let mut client = Client::connect_raw(&broker.options()).await.unwrap();
        client.send_frame(&ClientFrame::Hello { min_version, max_version }).await.unwrap();
        assert_eq!(client.next_frame_within(T).await.unwrap(), ServerFrame::Welcome { version: want });
    }
    let mut client = Client::connect_raw(&broker.options()).await.unwrap();
    client.send_frame(&ClientFrame::Hello { min_version: 5, max_version: 6 }).await.unwrap();
    match client.next_frame_within(T).await {
        Err(hotline_client::ClientError::Closed { code, reason }) => {
            assert_eq!((code, reason.as_str()), (close_code::UNSUPPORTED_VERSION, "this broker speaks versions 1 to 4"));
        }
        other => panic!("expected close 4, got {other:?}"),
    }
}
