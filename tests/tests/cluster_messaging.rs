//! Messaging across the nodes of a cluster (issue 14), with real `nats-server` processes and
//! real `hotline serve --cluster` nodes: a message from a client on one node reaches a client
//! on another with its receipts; a recipient who was offline gets everything, in order and
//! once per id, on whichever node they come back to; of two logins of one number on two
//! nodes at once exactly one survives; a group's copies have their own ids and the receipts
//! name `Sent`'s; a registration through one node closes the old device on another.

use std::collections::BTreeSet;
use std::time::Duration;

use hotline_client::{Client, ClientError};
use hotline_protocol::{close_code, ReceiptStatus, ServerFrame};
use hotline_tests::cluster::Cluster;

const ALICE: &str = "+15550140001";
const BOB: &str = "+15550140002";
const T: Duration = Duration::from_secs(20);

/// The next pushed message (acknowledged or not by the caller): id, from and body.
async fn next_message(client: &mut Client) -> (u64, String, Vec<u8>) {
    match client.next_frame_within(T).await {
        Ok(ServerFrame::TypedMessage { id, from, body, .. }) | Ok(ServerFrame::Message { id, from, body, .. }) => (id, from, body),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The next receipt: its item id, the message id it names, by whom, and the status.
async fn next_receipt(client: &mut Client) -> (u64, u64, String, ReceiptStatus) {
    match client.next_frame_within(T).await {
        Ok(ServerFrame::Receipt { id, message_id, by, status, .. }) => (id, message_id, by, status),
        other => panic!("expected a receipt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_from_node_one_reaches_node_two_and_its_receipts_come_back() {
    let cluster = Cluster::start(1, 2).unwrap();
    let alice_key = cluster.nodes[0].register(ALICE).await.unwrap();
    let bob_key = cluster.nodes[1].register(BOB).await.unwrap();
    let mut alice = cluster.nodes[0].login(ALICE, &alice_key).await.unwrap();
    let mut bob = cluster.nodes[1].login(BOB, &bob_key).await.unwrap();

    let client_id = alice.send(BOB, b"hi bob, from node 1".to_vec()).await.unwrap();
    let id = hotline_tests::answer_to(&mut alice, client_id).await.unwrap();

    let (got, from, body) = next_message(&mut bob).await;
    assert_eq!((got, from.as_str(), body.as_slice()), (id, ALICE, &b"hi bob, from node 1"[..]));
    bob.ack(id).await.unwrap();

    let (rid, message_id, by, status) = next_receipt(&mut alice).await;
    assert_eq!((message_id, by.as_str(), status), (id, BOB, ReceiptStatus::Delivered));
    alice.ack(rid).await.unwrap();

    bob.read(id, ALICE).await.unwrap();
    let (rid, message_id, by, status) = next_receipt(&mut alice).await;
    assert_eq!((message_id, by.as_str(), status), (id, BOB, ReceiptStatus::Read));
    alice.ack(rid).await.unwrap();

    // And back the other way, node 2 to node 1.
    let reply = bob.send(ALICE, b"hi alice".to_vec()).await.unwrap();
    let reply_id = hotline_tests::answer_to(&mut bob, reply).await.unwrap();
    let (got, from, body) = next_message(&mut alice).await;
    assert_eq!((got, from.as_str(), body.as_slice()), (reply_id, BOB, &b"hi alice"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_recipient_gets_everything_in_order_once_per_id_on_another_node() {
    let cluster = Cluster::start(3, 2).unwrap();
    let alice_key = cluster.nodes[0].register(ALICE).await.unwrap();
    let bob_key = cluster.nodes[0].register(BOB).await.unwrap();
    // Bob was last online on node 1.
    let bob = cluster.nodes[0].login(BOB, &bob_key).await.unwrap();
    bob.close().await;

    let mut alice = cluster.nodes[0].login(ALICE, &alice_key).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..20u64 {
        alice.send_with_id(100 + i, BOB, format!("message {i}").into_bytes()).await.unwrap();
        sent.push(hotline_tests::answer_to(&mut alice, 100 + i).await.unwrap());
    }
    // A retry under a stored client id is answered with the same id and stored once.
    alice.send_with_id(105, BOB, b"message 5".to_vec()).await.unwrap();
    assert_eq!(hotline_tests::answer_to(&mut alice, 105).await.unwrap(), sent[5]);
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "ids grow in sending order: {sent:?}");

    // Bob comes back on node 2: all twenty, in order, each once. He acknowledges fifteen.
    let mut bob = cluster.nodes[1].login(BOB, &bob_key).await.unwrap();
    for (i, id) in sent.iter().enumerate() {
        let (got, from, body) = next_message(&mut bob).await;
        assert_eq!((got, from.as_str(), body), (*id, ALICE, format!("message {i}").into_bytes()), "message {i}");
        if i < 15 {
            bob.ack(got).await.unwrap();
        }
    }
    assert!(bob.next_frame_within(Duration::from_millis(700)).await.is_err(), "a message came twice");
    // Alice hears of the fifteen deliveries (the acks are done), once each.
    let mut delivered = BTreeSet::new();
    for _ in 0..15 {
        let (rid, message_id, by, status) = next_receipt(&mut alice).await;
        assert_eq!((by.as_str(), status), (BOB, ReceiptStatus::Delivered));
        assert!(delivered.insert(message_id), "two receipts for {message_id}");
        alice.ack(rid).await.unwrap();
    }
    assert_eq!(delivered, sent[..15].iter().copied().collect());
    bob.close().await;

    // Back on node 1: the five he did not acknowledge, under the same ids, in order.
    let mut bob = cluster.nodes[0].login(BOB, &bob_key).await.unwrap();
    for (i, id) in sent.iter().enumerate().skip(15) {
        let (got, _, body) = next_message(&mut bob).await;
        assert_eq!((got, body), (*id, format!("message {i}").into_bytes()), "message {i} again");
        bob.ack(got).await.unwrap();
    }
    assert!(bob.next_frame_within(Duration::from_millis(700)).await.is_err(), "an acknowledged message came again");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_logins_of_one_number_on_two_nodes_at_once_leave_exactly_one_session() {
    let cluster = Cluster::start(1, 2).unwrap();
    let alice_key = cluster.nodes[0].register(ALICE).await.unwrap();
    let bob_key = cluster.nodes[0].register(BOB).await.unwrap();
    let mut alice = cluster.nodes[0].login(ALICE, &alice_key).await.unwrap();
    for round in 0..3 {
        let (one, two) = tokio::join!(cluster.nodes[0].login(BOB, &bob_key), cluster.nodes[1].login(BOB, &bob_key));
        let mut alive = Vec::new();
        let mut replaced = 0;
        for login in [one, two] {
            match login {
                Ok(client) => alive.push(client),
                // Kicked before its `LoggedIn` arrived.
                Err(e) => match e.downcast_ref::<ClientError>() {
                    Some(ClientError::Closed { code, .. }) if *code == close_code::SESSION_REPLACED => replaced += 1,
                    _ => panic!("round {round}: login failed: {e:#}"),
                },
            }
        }
        // Every session but one is closed with code 7.
        let deadline = std::time::Instant::now() + T;
        while alive.len() > 1 {
            assert!(std::time::Instant::now() < deadline, "round {round}: both logins stayed online");
            let mut closed = None;
            for (i, client) in alive.iter_mut().enumerate() {
                match client.next_frame_within(Duration::from_millis(200)).await {
                    Err(ClientError::Closed { code, .. }) => {
                        assert_eq!(code, close_code::SESSION_REPLACED, "round {round}");
                        closed = Some(i);
                        break;
                    }
                    Err(ClientError::Timeout) => {}
                    other => panic!("round {round}: unexpected {other:?}"),
                }
            }
            if let Some(i) = closed {
                alive.remove(i);
                replaced += 1;
            }
        }
        assert_eq!((alive.len(), replaced), (1, 1), "round {round}");
        // The survivor is the one messages reach.
        let mut bob = alive.pop().unwrap();
        let client_id = alice.send(BOB, format!("round {round}").into_bytes()).await.unwrap();
        let id = hotline_tests::answer_to(&mut alice, client_id).await.unwrap();
        let (got, _, body) = next_message(&mut bob).await;
        assert_eq!((got, body), (id, format!("round {round}").into_bytes()));
        bob.ack(id).await.unwrap();
        let (rid, ..) = next_receipt(&mut alice).await;
        alice.ack(rid).await.unwrap();
        bob.close().await;
    }
    // The losers were closed by kicks between the nodes, one per round.
    let kicks: f64 = cluster.nodes.iter().map(|n| n.metric("hotline_cluster_kicks_received_total").unwrap()).sum();
    assert!(kicks >= 3.0, "kicks received: {kicks}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_message_is_one_copy_per_member_each_with_its_id_and_receipts_name_the_sent_id() {
    const CAROL: &str = "+15550140003";
    let cluster = Cluster::start(1, 2).unwrap();
    let alice_key = cluster.nodes[0].register(ALICE).await.unwrap();
    let bob_key = cluster.nodes[0].register(BOB).await.unwrap();
    let carol_key = cluster.nodes[0].register(CAROL).await.unwrap();
    // The group is made through node 1, where Alice sends from.
    let mut alice = cluster.nodes[0].login(ALICE, &alice_key).await.unwrap();
    alice.command("router", "group-create", vec!["#team".into()]).await.unwrap().0.unwrap();
    for member in [BOB, CAROL] {
        alice.command("router", "group-add", vec!["#team".into(), member.into()]).await.unwrap().0.unwrap();
    }
    let mut bob = cluster.nodes[1].login(BOB, &bob_key).await.unwrap();
    let mut carol = cluster.nodes[0].login(CAROL, &carol_key).await.unwrap();

    let client_id = alice.send("#team", b"hello team".to_vec()).await.unwrap();
    let id = hotline_tests::answer_to(&mut alice, client_id).await.unwrap();
    let (bob_id, _, body) = next_message(&mut bob).await;
    assert_eq!(body, b"hello team");
    let (carol_id, _, body) = next_message(&mut carol).await;
    assert_eq!(body, b"hello team");
    // Each copy has its own id; `Sent` answered the first copy's.
    assert_ne!(bob_id, carol_id);
    assert!(id == bob_id || id == carol_id, "sent {id}, copies {bob_id} and {carol_id}");
    bob.ack(bob_id).await.unwrap();
    carol.ack(carol_id).await.unwrap();
    let mut by = BTreeSet::new();
    for _ in 0..2 {
        let (rid, message_id, who, status) = next_receipt(&mut alice).await;
        assert_eq!((message_id, status), (id, ReceiptStatus::Delivered), "receipts name the id Sent gave");
        by.insert(who);
        alice.ack(rid).await.unwrap();
    }
    assert_eq!(by, [BOB.to_string(), CAROL.to_string()].into_iter().collect());
    // A read receipt names it too.
    bob.read(bob_id, ALICE).await.unwrap();
    let (_, message_id, who, status) = next_receipt(&mut alice).await;
    assert_eq!((message_id, who.as_str(), status), (id, BOB, ReceiptStatus::Read));
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_on_a_new_device_through_one_node_closes_the_old_device_on_another() {
    let cluster = Cluster::start(1, 2).unwrap();
    let old_key = cluster.nodes[0].register(BOB).await.unwrap();
    let mut old_device = cluster.nodes[1].login(BOB, &old_key).await.unwrap();
    let new_key = cluster.nodes[0].register(BOB).await.unwrap();
    assert_ne!(new_key, old_key);
    match old_device.next_frame_within(T).await {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, close_code::KEY_REVOKED);
            assert!(reason.contains("another device"), "{reason}");
        }
        other => panic!("expected the old device's session on node 2 to be closed, got {other:?}"),
    }
    // The old key is refused on either node; the new one logs in on node 2.
    for node in &cluster.nodes {
        let mut again = node.connect().await.unwrap();
        match again.login(BOB, &old_key).await {
            Err(ClientError::Closed { code, .. }) => assert_eq!(code, close_code::AUTH_FAILED),
            other => panic!("old key was not refused: {other:?}"),
        }
    }
    cluster.nodes[1].login(BOB, &new_key).await.unwrap();
}
