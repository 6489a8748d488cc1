//! The client library against the real broker: a restarted broker ends old connections at
//! once (its stateless-reset key outlives the process), a split client pipelines thousands
//! of sends from one task while another reads the answers, and the broker says in words why
//! a frame is malformed.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use hotline_client::{Client, ClientError};
use hotline_protocol::{close_code, ServerFrame};
use hotline_tests::Broker;

const ALICE: &str = "+15550900001";
const BOB: &str = "+15550900002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_client_learns_of_a_broker_restart_within_3_seconds() {
    let mut broker = Broker::start().unwrap();
    let key_file = broker.data.join("quic-reset-key");
    let key = std::fs::read(&key_file).expect("the broker keeps its reset key in the data folder");
    assert_eq!(key.len(), 32);
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);

    let alice_key = broker.register(ALICE).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    // The client waits for frames, as an idle app does; it notes when its connection ends.
    let watcher = tokio::spawn(async move {
        let error = loop {
            match alice.next_frame().await {
                Ok(frame) => eprintln!("frame while waiting: {frame:?}"),
                Err(e) => break e,
            }
        };
        (Instant::now(), error)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let broker = tokio::task::spawn_blocking(move || {
        broker.kill().unwrap();
        broker.start_again().unwrap();
        broker
    })
    .await
    .unwrap();
    let restarted = Instant::now();
    let (ended, error) = tokio::time::timeout(Duration::from_secs(20), watcher)
        .await
        .expect("the connection did not end within 20 s of the restart")
        .unwrap();
    let after = ended.saturating_duration_since(restarted);
    eprintln!("connection ended {after:?} after the restart: {error}");
    assert!(after < Duration::from_secs(3), "the client learnt of the restart only after {after:?}: {error}");
    assert!(
        matches!(&error, ClientError::Lost(why) if why == "the broker reset the connection (restarted?)"),
        "{error:?}"
    );
    // The same key after the restart, and the client can log in again at once.
    assert_eq!(std::fs::read(&key_file).unwrap(), key);
    broker.login(ALICE, &alice_key).await.unwrap().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_client_pipelines_5000_sends_while_another_task_reads_every_answer() {
    const N: u64 = 5000;
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    broker.register(BOB).await.unwrap();
    let alice = broker.login(ALICE, &alice_key).await.unwrap();
    let (mut tx, mut rx) = alice.split();

    // One task writes every send without reading anything (1 KiB each: more than the
    // stream's flow-control windows hold, so the writer depends on the reader).
    let sender = tokio::spawn(async move {
        for client_id in 0..N {
            tx.send_with_id(client_id, BOB, vec![b'x'; 1024]).await.unwrap();
        }
        tx
    });
    // The other reads every answer.
    let reader = tokio::spawn(async move {
        let mut answered = HashSet::new();
        while answered.len() < N as usize {
            match rx.next_frame_within(Duration::from_secs(30)).await {
                Ok(ServerFrame::Sent { client_id, .. }) => assert!(answered.insert(client_id), "{client_id} answered twice"),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => panic!("after {} answers: {e}", answered.len()),
            }
        }
        (rx, answered)
    });
    let started = Instant::now();
    let (tx, (rx, answered)) = tokio::time::timeout(Duration::from_secs(300), async {
        (sender.await.unwrap(), reader.await.unwrap())
    })
    .await
    .expect("pipelined sends did not all get answers");
    eprintln!("{N} pipelined sends answered in {:?}", started.elapsed());
    assert_eq!(answered, (0..N).collect::<HashSet<_>>());
    // The halves go back together to close cleanly.
    Client::reunite(tx, rx).unwrap().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_says_in_words_why_a_frame_is_malformed() {
    let broker = Broker::start().unwrap();
    let mut client = broker.connect().await.unwrap();
    // Frame type 200 (varint c8 01) does not exist.
    client.write_raw(&[0, 0, 0, 2, 0xC8, 0x01]).await.unwrap();
    match client.next_frame_within(Duration::from_secs(10)).await {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, close_code::MALFORMED_FRAME);
            assert_eq!(reason, "malformed frame: unknown frame type 200 (known: 0 to 10)");
        }
        other => panic!("expected a close, got {other:?}"),
    }
}
