//! Plugin contract versions side by side: a router built from the frozen `wit/0.1.0` keeps
//! loading and serving in a broker whose other plugins are 0.2.0 (it routes media like any
//! message: 0.1.0 has no kind), and `/api/plugins` says which contract each version was
//! built against; a 0.2.0 router sees a message's kind (it refuses media naming its MIME
//! type) and a 0.2.0 receipts plugin sees the kind of the message a receipt is about; the
//! kv atomics (increment, compare-and-swap) hold when many commands race on pooled
//! instances.

use std::time::Duration;

use hotline_client::ReceivedMessage;
use hotline_protocol::{ErrorCode, MessageKind, ServerFrame};
use hotline_tests::Broker;

const ALICE: &str = "+15551200001";
const BOB: &str = "+15551200002";
const T: Duration = Duration::from_secs(10);
const LOAD: Duration = Duration::from_secs(60);

fn test_plugin(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `contract_version` `/api/plugins` lists for `slot`'s version `version`.
fn contract_of(broker: &Broker, slot: &str, version: &str) -> String {
    let report = broker.plugins().unwrap();
    let listed = report["versions"].as_array().unwrap().iter().find(|v| v["slot"] == slot && v["version"] == version);
    let listed = listed.unwrap_or_else(|| panic!("{slot} {version} not listed: {report}"));
    listed["contract_version"].as_str().unwrap_or_else(|| panic!("no contract_version: {listed}")).to_string()
}

/// Sends `body` of `kind` from `from` to `to` and answers the `Sent` id or the refusal.
async fn send_kind(from: &mut hotline_client::Client, to: &str, kind: MessageKind, body: &[u8]) -> Result<u64, (ErrorCode, String)> {
    let client_id = from.send_typed(to, kind, body.to_vec()).await.unwrap();
    loop {
        match from.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { client_id: c, id } if c == client_id => return Ok(id),
            ServerFrame::SendFailed { client_id: c, error, reason } if c == client_id => return Err((error, reason)),
            ServerFrame::Receipt { id, .. } => from.ack(id).await.unwrap(),
            other => panic!("expected Sent or SendFailed, got {other:?}"),
        }
    }
}

/// Sends a text message.
async fn send(from: &mut hotline_client::Client, to: &str, body: &[u8]) -> Result<u64, (ErrorCode, String)> {
    send_kind(from, to, MessageKind::Text, body).await
}

/// The next message pushed to `client`.
async fn received(client: &mut hotline_client::Client) -> ReceivedMessage {
    let frame = client.next_frame_within(T).await.unwrap();
    ReceivedMessage::from_frame(frame).unwrap_or_else(|other| panic!("expected a message, got {other:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_built_from_frozen_0_1_0_serves_next_to_0_2_0_plugins() {
    let broker = Broker::start().unwrap();
    // The built-in plugins are built against the newest contract.
    for slot in ["router", "registrar", "receipts"] {
        let current = broker.current_version(slot).unwrap();
        assert_eq!(contract_of(&broker, slot, &current), "0.2.0", "built-in {slot}");
    }

    let old = test_plugin(env!("HOTLINE_TEST_PLUGIN_ROUTER_0_1_0"));
    let version = broker.load_plugin("router", &old, LOAD).unwrap();
    assert_eq!(contract_of(&broker, "router", &version), "0.1.0");

    // Registration goes through the 0.2.0 registrar, routing through the 0.1.0 router.
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let id = send(&mut alice, BOB, b"from an old router").await.unwrap();
    let got = received(&mut bob).await;
    assert_eq!((got.id, got.from.as_str(), got.body.as_slice()), (id, ALICE, &b"from an old router"[..]));
    bob.ack(id).await.unwrap();
    // The 0.2.0 receipts plugin lets the delivered receipt through.
    match alice.next_frame_within(T).await.unwrap() {
        ServerFrame::Receipt { message_id, by, .. } => assert_eq!((message_id, by.as_str()), (id, BOB)),
        other => panic!("expected a receipt, got {other:?}"),
    }
    // The answer is the 0.1.0 router's own.
    let (error, reason) = send(&mut alice, "#team", b"to a group").await.unwrap_err();
    assert_eq!(error, ErrorCode::Rejected);
    assert!(reason.contains("router-0-1-0 routes E.164 numbers only"), "{reason}");

    // Its kv (0.1.0's interface, served by the newest one) keeps state across calls.
    let (noted, _) = alice.command("router", "note", vec!["colour".into(), "teal".into()]).await.unwrap();
    assert_eq!(noted.unwrap(), "noted colour");
    let (recalled, _) = bob.command("router", "recall", vec!["colour".into()]).await.unwrap();
    assert_eq!(recalled.unwrap(), "teal");
    // A 0.1.0 router is not told the kind: it routes media like any message, and the
    // recipient still gets the kind the sender gave.
    let media = send_kind(&mut alice, BOB, MessageKind::Media { mime: "image/png".into() }, b"descriptor").await.unwrap();
    let got = received(&mut bob).await;
    assert_eq!((got.id, got.kind), (media, MessageKind::Media { mime: "image/png".into() }));
    bob.ack(media).await.unwrap();
    let report = broker.plugins().unwrap();
    assert_eq!(report["counters"]["router"]["routed_0_1_0"], 2, "{report}");

    // A 0.2.0 router replaces it, and the 0.1.0 one comes back on rollback.
    let new = test_plugin(env!("HOTLINE_TEST_PLUGIN_CONTRACT"));
    let next = broker.load_plugin("router", &new, LOAD).unwrap();
    assert_eq!(contract_of(&broker, "router", &next), "0.2.0");
    // It sees the kind: media is refused with its MIME type, text goes through.
    let (error, reason) = send_kind(&mut alice, BOB, MessageKind::Media { mime: "video/mp4".into() }, b"descriptor").await.unwrap_err();
    assert_eq!((error, reason.as_str()), (ErrorCode::Rejected, "no media here (video/mp4)"));
    let text = send(&mut alice, BOB, b"text is fine").await.unwrap();
    let got = received(&mut bob).await;
    assert_eq!((got.id, got.kind), (text, MessageKind::Text));
    bob.ack(text).await.unwrap();
    let out = std::process::Command::new(hotline_tests::bin("hotline"))
        .args(["plugins", "--admin", &broker.admin.to_string(), "rollback", "router"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(broker.current_version("router").unwrap(), version);
    let (contract, _) = alice.command("router", "contract", vec![]).await.unwrap();
    assert_eq!(contract.unwrap(), "0.1.0");
    send(&mut alice, BOB, b"after the rollback").await.unwrap();
}

/// Runs `count` commands `name KEY args…` on the router from `clients` connections at once
/// and answers the outputs.
async fn race(broker: &Broker, keys: &[(String, String)], count: usize, name: &str, args: &[&str]) -> Vec<String> {
    let mut tasks = Vec::new();
    for (i, (phone, key)) in keys.iter().enumerate() {
        let mut client = broker.login(phone, key).await.unwrap();
        let per_client = count / keys.len() + usize::from(i < count % keys.len());
        let (name, args): (String, Vec<String>) = (name.into(), args.iter().map(|a| a.to_string()).collect());
        tasks.push(tokio::spawn(async move {
            let mut outputs = Vec::new();
            for _ in 0..per_client {
                let (result, _) = client.command("router", &name, args.clone()).await.unwrap();
                outputs.push(result.unwrap_or_else(|e| panic!("{name}: {e}")));
            }
            outputs
        }));
    }
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.extend(task.await.unwrap());
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_increment_and_compare_and_swap_count_exactly_across_pooled_instances() {
    // Eight plugin threads, so up to eight instances of the router run at once; a time limit
    // that leaves room for compare-and-swap retries on two cores.
    let broker = Broker::start_with_config("[plugins]\nthreads = 8\ncall_timeout_ms = 5000\n").unwrap();
    broker.load_plugin("router", &test_plugin(env!("HOTLINE_TEST_PLUGIN_CONTRACT")), LOAD).unwrap();
    let phones: Vec<String> = (0..8).map(|i| format!("+155512010{i:02}")).collect();
    let keys = broker.register_many(&phones, 4).await.unwrap();
    let keys: Vec<(String, String)> = phones.into_iter().zip(keys).collect();
    const N: usize = 400;

    let outputs = race(&broker, &keys, N, "incr", &["hits"]).await;
    // Every increment answered a different value: 1..=N, each once.
    let mut values: Vec<usize> = outputs.iter().map(|o| o.parse().unwrap()).collect();
    values.sort_unstable();
    assert_eq!(values, (1..=N).collect::<Vec<_>>());

    // Read, spin (so other instances run meanwhile), compare-and-swap, retry: exact too.
    let outputs = race(&broker, &keys, N, "cas-incr", &["swaps", "300"]).await;
    let retried = outputs.iter().filter(|o| !o.ends_with(" after 1 tries")).count();
    assert_eq!(get(&broker, &keys[0], "swaps").await, N.to_string(), "{retried} of {N} compare-and-swaps retried");
    // The same read-modify-write without the atomics loses updates when it races: what the
    // atomics are for (reported, not asserted: whether a given run races is up to the scheduler).
    race(&broker, &keys, N, "naive-incr", &["naive", "300"]).await;
    let naive = get(&broker, &keys[0], "naive").await;
    eprintln!("{N} racing commands: {retried} compare-and-swap commands retried, and they counted {N}; get-then-set counted {naive}");
    assert_eq!(get(&broker, &keys[0], "hits").await, N.to_string());
}

/// The counter `key` as the router's `get` command answers it.
async fn get(broker: &Broker, (phone, secret): &(String, String), key: &str) -> String {
    let mut client = broker.login(phone, secret).await.unwrap();
    let (value, _) = client.command("router", "get", vec![key.into()]).await.unwrap();
    client.close().await;
    value.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_limits_refuse_oversized_keys_with_a_clear_error_and_the_plugin_keeps_serving() {
    let broker = Broker::start().unwrap();
    broker.load_plugin("router", &test_plugin(env!("HOTLINE_TEST_PLUGIN_CONTRACT")), LOAD).unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let mut alice = broker.login(ALICE, &key).await.unwrap();
    let (fine, _) = alice.command("router", "incr", vec!["k".repeat(1024)]).await.unwrap();
    assert_eq!(fine.unwrap(), "1");
    let (refused, _) = alice.command("router", "incr", vec!["k".repeat(1025)]).await.unwrap();
    let refused = refused.unwrap_err();
    assert!(refused.contains("longer than the limit of 1024 bytes"), "{refused}");
    let (after, _) = alice.command("router", "incr", vec!["k".repeat(1024)]).await.unwrap();
    assert_eq!(after.unwrap(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_2_0_receipts_plugin_sees_the_kind_of_the_message_a_receipt_is_about() {
    let broker = Broker::start().unwrap();
    let version = broker.load_plugin("receipts", &test_plugin(env!("HOTLINE_TEST_PLUGIN_CONTRACT_RECEIPTS")), LOAD).unwrap();
    assert_eq!(contract_of(&broker, "receipts", &version), "0.2.0");
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();

    // The default router delivers both kinds.
    let media = send_kind(&mut alice, BOB, MessageKind::Media { mime: "image/jpeg".into() }, b"descriptor").await.unwrap();
    let text = send(&mut alice, BOB, b"hello").await.unwrap();
    for id in [media, text] {
        assert_eq!(received(&mut bob).await.id, id);
    }
    // Media first, so its receipts are decided before the text's (a session's requests are
    // answered in order): the delivered receipt at the ack, the read receipt from the
    // delivered record the ack left.
    for id in [media, text] {
        bob.ack(id).await.unwrap();
    }
    for id in [media, text] {
        bob.read(id, ALICE).await.unwrap();
    }
    let mut receipts = Vec::new();
    while receipts.len() < 2 {
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Receipt { id, message_id, status, .. } => {
                alice.ack(id).await.unwrap();
                receipts.push((message_id, status));
            }
            other => panic!("expected a receipt, got {other:?}"),
        }
    }
    use hotline_protocol::ReceiptStatus::{Delivered, Read};
    assert_eq!(receipts, [(text, Delivered), (text, Read)], "receipts about media are held back");
    // The plugin was asked about every receipt, and told each one's kind.
    for (status, kind) in [("delivered", "media"), ("read", "media"), ("delivered", "text"), ("read", "text")] {
        let (count, _) = alice.command("receipts", "asked", vec![status.into(), kind.into()]).await.unwrap();
        assert_eq!(count.unwrap(), "1", "asked about {status} {kind}");
    }
}
