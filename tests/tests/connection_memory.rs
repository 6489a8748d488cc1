//! What a connection holds in the broker is bounded in bytes, not only in frames: clients
//! that never read what the broker pushes them cost a few MiB each, however much waits for
//! them; and answers to pipelined sends come in the order of the sends.

use std::time::Duration;

use hotline_protocol::ServerFrame;
use hotline_tests::{eventually, Broker};

const SENDER: &str = "+15550960000";
const READERS: [&str; 3] = ["+15550960001", "+15550960002", "+15550960003"];
const T: Duration = Duration::from_secs(30);
/// Messages queued for each reader, and their size: 24 MiB per reader.
const QUEUED: usize = 400;
const BODY: usize = 60 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_read_hold_a_bounded_number_of_bytes() {
    let broker = Broker::start().unwrap();
    let sender_key = broker.register(SENDER).await.unwrap();
    let mut keys = Vec::new();
    for reader in READERS {
        keys.push(broker.register(reader).await.unwrap());
    }
    let mut sender = broker.login(SENDER, &sender_key).await.unwrap();
    for (i, reader) in READERS.iter().enumerate() {
        for n in 0..QUEUED {
            sender.send_with_id((i * QUEUED + n) as u64, reader, vec![n as u8; BODY]).await.unwrap();
            // Keep at most 64 sends unanswered.
            if n >= 64 {
                assert!(matches!(sender.next_frame_within(T).await.unwrap(), ServerFrame::Sent { .. }));
            }
        }
        for _ in 0..64 {
            assert!(matches!(sender.next_frame_within(T).await.unwrap(), ServerFrame::Sent { .. }));
        }
    }
    // Every send is answered `Sent`: all is stored.
    sender.close().await;
    let before = broker.rss_bytes().unwrap();

    // Three readers log in and never read: the broker pushes until their connections are
    // full, then waits. 72 MiB wait for them.
    let mut readers = Vec::new();
    for (reader, key) in READERS.iter().zip(&keys) {
        readers.push(broker.login(reader, key).await.unwrap());
    }
    let mut last = -1.0;
    let mailbox = eventually(T, || {
        std::thread::sleep(Duration::from_millis(500));
        let now = broker.metric("hotline_connection_mailbox_bytes").ok()?;
        let settled = now > 0.0 && now == last;
        last = now;
        settled.then_some(now)
    })
    .expect("the mailboxes fill and settle");
    let grown = broker.rss_bytes().unwrap() as f64 - before as f64;
    eprintln!("mailboxes {:.1} MiB; broker grew {:.1} MiB for 3 readers that do not read", mailbox / MIB, grown / MIB);
    assert!(mailbox <= 3.0 * 1.1 * MIB, "mailboxes hold {:.1} MiB", mailbox / MIB);
    assert!(grown < 40.0 * MIB, "the broker grew by {:.1} MiB", grown / MIB);

    // Once a reader reads, it gets everything, in order.
    let mut first = readers.remove(0);
    let mut bodies = 0;
    while bodies < QUEUED {
        match first.next_frame_within(T).await.unwrap() {
            ServerFrame::TypedMessage { id, body, .. } => {
                assert_eq!(body, vec![bodies as u8; BODY]);
                first.ack(id).await.unwrap();
                bodies += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    first.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_pipelined_sends_come_in_the_order_of_the_sends() {
    let broker = Broker::start().unwrap();
    let sender_key = broker.register(SENDER).await.unwrap();
    broker.register(READERS[0]).await.unwrap();
    let mut sender = broker.login(SENDER, &sender_key).await.unwrap();
    // Every fifth send is refused at once (no such address); the rest are stored. The
    // refusals must not overtake the `Sent`s of earlier sends.
    const N: u64 = 3000;
    for client_id in 0..N {
        let to = if client_id % 5 == 4 { "nobody" } else { READERS[0] };
        sender.send_with_id(client_id, to, vec![1; 100]).await.unwrap();
    }
    for expected in 0..N {
        match sender.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { client_id, .. } | ServerFrame::SendFailed { client_id, .. } => {
                assert_eq!(client_id, expected, "answers out of order")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    sender.close().await;
}
