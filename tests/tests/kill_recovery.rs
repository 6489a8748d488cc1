//! The broker is killed with SIGKILL right after answering `Sent`: after a restart every
//! message that was acknowledged as sent is delivered.

use std::collections::BTreeSet;
use std::time::Duration;

use hotline_protocol::ServerFrame;
use hotline_tests::Broker;

const BOB: &str = "+15550300009";
const SENDERS: u64 = 4;
const PER_SENDER: u64 = 100;
const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_message_acknowledged_as_sent_survives_sigkill() {
    let mut broker = Broker::start().unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let phone = format!("+1555030000{s}");
        let key = broker.register(&phone).await.unwrap();
        senders.push(broker.login(&phone, &key).await.unwrap());
    }

    // Several senders at once, so their writes share fsyncs (group commit).
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut client)| {
            tokio::spawn(async move {
                for i in 0..PER_SENDER {
                    client.send_with_id(i, BOB, format!("s{s}-{i}").into_bytes()).await.unwrap();
                }
                let mut acked = BTreeSet::new();
                while acked.len() < PER_SENDER as usize {
                    match client.next_frame_within(T).await.unwrap() {
                        ServerFrame::Sent { id, .. } => acked.insert(id),
                        other => panic!("expected Sent, got {other:?}"),
                    };
                }
                (client, acked)
            })
        })
        .collect();
    let mut acked = BTreeSet::new();
    let mut clients = Vec::new();
    for t in tasks {
        let (client, ids) = t.await.unwrap();
        acked.extend(ids);
        clients.push(client);
    }
    // Kill the moment the last Sent arrived: no graceful shutdown, no flush.
    broker.kill().unwrap();
    drop(clients);
    assert_eq!(acked.len(), (SENDERS * PER_SENDER) as usize);

    broker.start_again().unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let mut received = BTreeSet::new();
    while received.len() < acked.len() {
        match bob.next_frame_within(T).await {
            Ok(ServerFrame::TypedMessage { id, .. }) => {
                assert!(received.insert(id), "message {id} delivered twice");
                bob.ack(id).await.unwrap();
            }
            Ok(other) => panic!("expected Message, got {other:?}"),
            Err(e) => panic!("after {} of {} messages: {e}", received.len(), acked.len()),
        }
    }
    assert_eq!(received, acked);
}
