//! A message's kind (protocol version 3) against the real broker: a version-3 client sends
//! text and media messages with `SendTyped`; a version-3 recipient gets them as
//! `TypedMessage` with their kinds (and `hotline-chat listen` prints them); a client that
//! offers only version 2 gets `Message` with the same body; `SendTyped` in a version-2
//! session answers the frames before it and closes as malformed, storing nothing; a media
//! kind without a proper MIME type gets `InvalidArgument` and stores nothing.

use std::time::Duration;

use hotline_client::{Client, ClientError, ConnectOptions};
use hotline_protocol::{close_code, ClientFrame, ErrorCode, MessageKind, ServerFrame};
use hotline_tests::{answer_to, events, Broker};

const ALICE: &str = "+15550930001";
const BOB: &str = "+15550930002";
const CAROL: &str = "+15550930003";
const DAN: &str = "+15550930004";
const T: Duration = Duration::from_secs(10);

fn png() -> MessageKind {
    MessageKind::Media { mime: "image/png".into() }
}

/// Logs in with protocol versions up to 2 offered (a client from before version 3).
async fn login_version_2(broker: &Broker, phone: &str, key: &str) -> Client {
    let mut client = Client::connect(&ConnectOptions { versions: (1, 2), ..broker.options() }).await.unwrap();
    assert_eq!(client.version(), 2);
    client.login(phone, key).await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_3_recipients_get_each_message_with_its_kind_and_version_2_ones_the_same_body_as_message() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let carol_key = broker.register(CAROL).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dan_profile = dir.path().join("dan");
    broker.register_chat(&dan_profile, DAN, 5).unwrap();

    // Alice's client offers 1 to 4 (the default) and speaks 4, which has the kinds of 3.
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    assert_eq!(alice.version(), 4);
    let text = alice.send_typed(BOB, MessageKind::Text, b"hello bob".to_vec()).await.unwrap();
    let media = alice.send_typed(BOB, png(), b"descriptor for bob".to_vec()).await.unwrap();
    let plain = alice.send(BOB, b"plain send".to_vec()).await.unwrap();
    let for_carol = alice.send_typed(CAROL, png(), b"descriptor for carol".to_vec()).await.unwrap();
    let for_dan = alice.send_typed(DAN, MessageKind::Media { mime: "application/vnd.api+json".into() }, b"{}".to_vec()).await.unwrap();
    let text_to_dan = alice.send(DAN, b"and a caption".to_vec()).await.unwrap();
    let mut ids = Vec::new();
    for client_id in [text, media, plain, for_carol, for_dan, text_to_dan] {
        ids.push(answer_to(&mut alice, client_id).await.expect("stored"));
    }

    // Bob (version 4, which has version 3's TypedMessage): TypedMessage, each with the kind it was sent with (a plain Send is Text).
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    assert_eq!(bob.version(), 4);
    for (id, kind, body) in [(ids[0], MessageKind::Text, &b"hello bob"[..]), (ids[1], png(), b"descriptor for bob"), (ids[2], MessageKind::Text, b"plain send")] {
        match bob.next_frame_within(T).await.unwrap() {
            ServerFrame::TypedMessage { id: got, from, kind: got_kind, body: got_body, .. } => {
                assert_eq!((got, from.as_str(), &got_kind, &got_body[..]), (id, ALICE, &kind, body));
                bob.ack(id).await.unwrap();
            }
            other => panic!("expected a TypedMessage, got {other:?}"),
        }
    }
    bob.close().await;

    // Carol's client knows only version 2: a Message with the same id, sender and body.
    let mut carol = login_version_2(&broker, CAROL, &carol_key).await;
    match carol.next_frame_within(T).await.unwrap() {
        ServerFrame::Message { id, from, body, .. } => {
            assert_eq!((id, from.as_str(), &body[..]), (ids[3], ALICE, &b"descriptor for carol"[..]));
            carol.ack(id).await.unwrap();
        }
        other => panic!("expected a Message, got {other:?}"),
    }
    carol.close().await;

    // Dan's command-line client prints the kind of what it receives.
    let got = events(broker.chat(&dan_profile).args(["listen", "--count", "2", "--timeout", "20"]).output().unwrap());
    assert_eq!((got[0]["kind"].as_str(), got[0]["mime"].as_str(), got[0]["text"].as_str()), (Some("media"), Some("application/vnd.api+json"), Some("{}")));
    assert_eq!((got[1]["kind"].as_str(), got[1]["mime"].as_str(), got[1]["text"].as_str()), (Some("text"), None, Some("and a caption")));

    // Every recipient's ack made a delivered receipt for Alice, whatever its version.
    let mut delivered = Vec::new();
    while delivered.len() < 6 {
        if let ServerFrame::Receipt { id, message_id, .. } = alice.next_frame_within(T).await.unwrap() {
            alice.ack(id).await.unwrap();
            delivered.push(message_id);
        }
    }
    delivered.sort();
    assert_eq!(delivered, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_typed_in_a_version_2_session_and_a_bad_mime_type_store_nothing() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let carol_key = broker.register(CAROL).await.unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();

    // The client library refuses SendTyped in a version-2 session without sending it...
    let mut carol = login_version_2(&broker, CAROL, &carol_key).await;
    match carol.send_typed(BOB, png(), b"never sent".to_vec()).await {
        Err(ClientError::Protocol(why)) => assert_eq!(why, "SendTyped needs protocol version 3; this session speaks version 2"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // ...and the broker treats the frame as one that version lacks: the Send before it is
    // answered, then the connection closes as malformed; the SendTyped stores nothing.
    let before = carol.send(BOB, b"before".to_vec()).await.unwrap();
    carol.send_frame(&ClientFrame::SendTyped { client_id: 2, to: BOB.into(), kind: png(), body: b"typed".to_vec() }).await.unwrap();
    let before_id = answer_to(&mut carol, before).await.expect("the Send before it is stored");
    match carol.next_frame_within(T).await {
        Err(ClientError::Closed { code, reason }) => assert_eq!(
            (code, reason.as_str()),
            (close_code::MALFORMED_FRAME, "malformed frame: SendTyped is a frame of protocol version 3; this session speaks version 2")
        ),
        other => panic!("expected a close, got {other:?}"),
    }

    // A media kind whose MIME type is not type/subtype: InvalidArgument, nothing stored;
    // the connection stays open and the next message goes through.
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    for mime in ["image", "image/png; charset=utf-8", "", "im age/png"] {
        let client_id = alice.send_typed(BOB, MessageKind::Media { mime: mime.into() }, b"bad".to_vec()).await.unwrap();
        let (error, reason) = answer_to(&mut alice, client_id).await.expect_err("a bad MIME type was stored");
        assert_eq!(error, ErrorCode::InvalidArgument, "{mime:?}");
        assert!(reason.contains("is not a MIME type (type/subtype"), "{reason}");
    }
    let after = alice.send_typed(BOB, png(), b"after".to_vec()).await.unwrap();
    let after_id = answer_to(&mut alice, after).await.unwrap();

    // Bob gets the Send before the SendTyped, then Alice's good message: nothing between.
    let mut got = Vec::new();
    while got.len() < 2 {
        match bob.next_frame_within(T).await.unwrap() {
            ServerFrame::TypedMessage { id, kind, body, .. } => {
                bob.ack(id).await.unwrap();
                got.push((id, kind, String::from_utf8(body).unwrap()));
            }
            other => panic!("expected a TypedMessage, got {other:?}"),
        }
    }
    assert_eq!(got, vec![(before_id, MessageKind::Text, "before".to_string()), (after_id, png(), "after".to_string())]);
}
