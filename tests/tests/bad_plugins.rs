//! Broken plugin files are refused and failing versions are rolled back, within a bounded
//! time, while the broker keeps serving and loses nothing.

use std::io::Write;
use std::time::{Duration, Instant};

use hotline_client::Client;
use hotline_protocol::{ClientFrame, ErrorCode, ServerFrame};
use hotline_tests::{eventually, install, take_messages, version_of, with_marker, Broker};

const ALICE: &str = "+15550700001";
const BOB: &str = "+15550700002";
const T: Duration = Duration::from_secs(20);

/// Sends one message, retrying retryable failures with the same client id (as a phone
/// would). Returns the message id and the number of retries.
async fn send_reliably(client: &mut Client, client_id: u64, text: &str) -> (u64, u32) {
    let mut retries = 0;
    loop {
        client.send_with_id(client_id, BOB, text.as_bytes().to_vec()).await.unwrap();
        match client.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { client_id: c, id } if c == client_id => return (id, retries),
            ServerFrame::SendFailed { client_id: c, error: ErrorCode::Retryable, .. } if c == client_id => {
                retries += 1;
                assert!(retries < 200, "message {client_id} never got through");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn history_has(broker: &Broker, event: &str, version: &str) -> bool {
    let report = broker.plugins().unwrap();
    report["history"].as_array().unwrap().iter().any(|e| e["event"] == event && e["version"] == version && e["slot"] == "router")
}

/// Bob takes everything queued and checks it is exactly `ids`, in order.
async fn bob_receives_exactly(broker: &Broker, bob_key: &str, ids: &[u64]) {
    let mut bob = broker.login(BOB, bob_key).await.unwrap();
    let received = take_messages(&mut bob, ids.len()).await;
    assert_eq!(received, ids);
    assert!(bob.next_frame_within(Duration::from_millis(300)).await.is_err());
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_are_refused_and_the_current_version_stays() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let dir = broker.plugin_dir();
    let router = std::fs::read(dir.join("router.wasm")).unwrap();
    let receipts = std::fs::read(dir.join("receipts.wasm")).unwrap();
    let current = broker.current_version("router").unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not wasm", b"#!/bin/sh\necho this is not a component\n".to_vec()),
        ("truncated", router[..router.len() / 2].to_vec()),
        ("wrong world", receipts.clone()),
        ("empty", Vec::new()),
    ];
    let mut ids = Vec::new();
    for (n, (name, bytes)) in cases.into_iter().enumerate() {
        let version = if bytes.is_empty() { "-".to_string() } else { version_of(&bytes) };
        let start = Instant::now();
        install(&dir, "router.wasm", &bytes).unwrap();
        if name != "empty" {
            eventually(T, || history_has(&broker, "refused", &version).then_some(()))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!("{name}: refused after {:?}", start.elapsed());
        assert_eq!(broker.current_version("router").unwrap(), current, "{name} replaced the router");
        let (id, retries) = send_reliably(&mut alice, n as u64, name).await;
        assert_eq!(retries, 0, "{name}: the current version should have kept serving");
        ids.push(id);
    }

    // Written slowly in pieces, without a rename: the complete file is what ends up serving.
    let full = with_marker(&router, "slow");
    let mut file = std::fs::File::create(dir.join("router.wasm")).unwrap();
    for chunk in full.chunks(full.len() / 4 + 1) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        let (id, _) = send_reliably(&mut alice, 100 + ids.len() as u64, "during slow write").await;
        ids.push(id);
        std::thread::sleep(Duration::from_millis(400));
    }
    drop(file);
    let version = version_of(&full);
    eventually(T, || (broker.current_version("router").ok()? == version).then_some(()))
        .expect("the completely written file is loaded");
    let (id, _) = send_reliably(&mut alice, 999, "after").await;
    ids.push(id);
    alice.close().await;
    bob_receives_exactly(&broker, &bob_key, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_that_trap_loop_or_exhaust_memory_are_rolled_back() {
    // A time limit long enough for the hog to reach its memory cap first even on a loaded
    // machine (with the default 100 ms, a starved hog was cut off by time on every call).
    let mut broker = Broker::start_with_config("[plugins]\ncall_timeout_ms = 1000\n").unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let dir = broker.plugin_dir();
    let good = broker.current_version("router").unwrap();

    // Each with the kind its failures are counted under, and the kinds it may also show
    // (on a loaded machine the hog can run past the time limit before it fills its cap).
    let cases = [
        ("traps on every call", env!("HOTLINE_TEST_PLUGIN_TRAP"), "trap", None),
        ("loops forever", env!("HOTLINE_TEST_PLUGIN_SPIN"), "timeout", None),
        ("allocates without bound", env!("HOTLINE_TEST_PLUGIN_HOG"), "memory", Some("timeout")),
    ];
    let mut ids = Vec::new();
    for (n, (name, path, kind, also)) in cases.into_iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let bad = version_of(&bytes);
        install(&dir, "router.wasm", &bytes).unwrap();
        eventually(T, || (broker.current_version("router").ok()? == bad).then_some(()))
            .unwrap_or_else(|e| panic!("{name}: the version never loaded: {e}"));
        // Messages keep coming; the failing version is cut off and rolled back, and the
        // sender's retries go through on the good version. Nothing is lost.
        let start = Instant::now();
        let mut total_retries = 0;
        for i in 0..5 {
            let (id, retries) = send_reliably(&mut alice, (n * 10 + i) as u64, name).await;
            total_retries += retries;
            ids.push(id);
        }
        let rolled_back_after = start.elapsed();
        assert!(total_retries >= 1, "{name}: no call failed");
        assert_eq!(broker.current_version("router").unwrap(), good, "{name}: not rolled back");
        assert!(history_has(&broker, "rolled-back", &bad), "{name}: rollback not in history");
        assert!(rolled_back_after < Duration::from_secs(10), "{name}: took {rolled_back_after:?}");
        // The folder says what serves: the good version is back in place, the bad file aside.
        assert_eq!(version_of(&std::fs::read(dir.join("router.wasm")).unwrap()), good, "{name}: file not restored");
        assert!(dir.join(format!("router.wasm.rolled-back-{bad}")).exists(), "{name}: bad file not kept aside");
        // Its state is on its info series; its failures are counted under their kind (on a
        // series without the state, which moves), and not as the other failures.
        let info = format!("hotline_plugin_version_info{{slot=\"router\",version=\"{bad}\",state=\"rolled-back\"}}");
        assert_eq!(broker.metric(&info).unwrap(), 1.0, "{name}: {info}");
        for other in ["timeout", "trap", "instantiation", "memory"] {
            let series = format!("hotline_plugin_errors_total{{slot=\"router\",version=\"{bad}\",kind=\"{other}\"}}");
            let count = broker.metric(&series).unwrap();
            if other == kind {
                assert!(count >= 1.0, "{name}: {series} is {count}");
            } else if also != Some(other) {
                assert_eq!(count, 0.0, "{name}: {series}");
            }
        }
        eprintln!("{name}: rolled back, all sends through after {rolled_back_after:?} ({total_retries} retries)");
    }
    // Three automatic rollbacks, counted once each.
    assert_eq!(broker.metric("hotline_plugin_rollbacks_total").unwrap(), 3.0);
    alice.close().await;
    bob_receives_exactly(&broker, &bob_key, &ids).await;
    // A restart does not bring a rolled-back version back.
    broker.restart().unwrap();
    assert_eq!(broker.current_version("router").unwrap(), good);
}

/// A router whose instances leak (1 MiB kept per call, like componentize-js instances grow)
/// would trap at the memory cap; the broker recycles an instance once it holds 3/4 of the
/// cap, so no call fails and nothing is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_keep_growing_are_recycled_before_they_fail_a_call() {
    let broker = Broker::start_with_config("[plugins]\nmemory_limit_mib = 16\nrouter_config = \"leak\"\n").unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let leaky = std::fs::read(env!("HOTLINE_TEST_PLUGIN_HOG")).unwrap();
    let version = version_of(&leaky);
    install(&broker.plugin_dir(), "router.wasm", &leaky).unwrap();
    eventually(T, || (broker.current_version("router").ok()? == version).then_some(())).unwrap();

    // 16 MiB cap, 1 MiB per call: without recycling an instance fails within ~15 calls.
    let mut ids = Vec::new();
    for i in 0..60 {
        let (id, retries) = send_reliably(&mut alice, i, "leaky").await;
        assert_eq!(retries, 0, "message {i} failed a call");
        ids.push(id);
    }
    alice.close().await;
    let report = broker.plugins().unwrap();
    let listed = report["versions"].as_array().unwrap().iter().find(|v| v["version"] == version.as_str()).unwrap().clone();
    assert_eq!(listed["state"], "probation", "{listed}");
    assert_eq!(listed["errors"], 0, "{listed}");
    assert!(listed["recycled_instances"].as_u64() >= Some(2), "{listed}");
    let memory = listed["instance_memory_bytes"].as_u64().unwrap();
    assert!(memory > 1 << 20 && memory <= 16 << 20, "{listed}");
    bob_receives_exactly(&broker, &bob_key, &ids).await;
}

/// A router that runs to its time limit on every call holds up nobody but the senders who
/// wait for it: plugin calls run on `plugins.threads` threads of their own (here 2), so the
/// calls queue there, at most two at a time, while every connection goes on being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_runs_to_its_time_limit_holds_up_no_other_client() {
    const SENDERS: usize = 6;
    const LIMIT_MS: u64 = 300;
    let broker = Broker::start_with_config(&format!(
        "[plugins]\nthreads = 2\ncall_timeout_ms = {LIMIT_MS}\nprobation_failures = 0\n"
    ))
    .unwrap();
    let phones: Vec<String> = (0..SENDERS + 1).map(|i| format!("+1555071{i:04}")).collect();
    let keys = broker.register_many(&phones, 4).await.unwrap();
    let mut senders = Vec::new();
    for (phone, key) in phones.iter().zip(&keys).take(SENDERS) {
        senders.push(broker.login(phone, key).await.unwrap());
    }
    let mut bystander = broker.login(&phones[SENDERS], &keys[SENDERS]).await.unwrap();
    let spin = std::fs::read(env!("HOTLINE_TEST_PLUGIN_SPIN")).unwrap();
    let spinning = version_of(&spin);
    install(&broker.plugin_dir(), "router.wasm", &spin).unwrap();
    eventually(T, || (broker.current_version("router").ok()? == spinning).then_some(())).unwrap();

    let start = Instant::now();
    for sender in &mut senders {
        sender.send_with_id(1, BOB, b"stuck".to_vec()).await.unwrap();
    }
    // The bystander is answered at once, while the senders' questions still wait.
    bystander.send_frame(&ClientFrame::Ping { nonce: 7 }).await.unwrap();
    match bystander.next_frame_within(T).await.unwrap() {
        ServerFrame::Pong { nonce: 7 } => {}
        other => panic!("unexpected {other:?}"),
    }
    let waiting = broker.metric("hotline_policy_questions").unwrap();
    assert!(waiting >= 1.0, "the Pong waited for the plugin calls ({waiting} questions left)");
    // Every sender is told to retry once its call ran out of time; with two threads the
    // six calls take at least three time limits one after another.
    for sender in &mut senders {
        match sender.next_frame_within(T).await.unwrap() {
            ServerFrame::SendFailed { client_id: 1, error: ErrorCode::Retryable, .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = start.elapsed();
    let serial = Duration::from_millis(LIMIT_MS * SENDERS as u64 / 2);
    assert!(took >= serial - Duration::from_millis(50), "{SENDERS} calls of {LIMIT_MS} ms on 2 threads took only {took:?}");
    assert_eq!(broker.metric("hotline_policy_questions").unwrap(), 0.0);
    eprintln!("{SENDERS} timed-out calls answered in {took:?}; the bystander's Pong came at once");
}

/// A router that sleeps (blocks inside a WASI call, where the epoch deadline cannot reach
/// it) is cut off at the time limit like one that loops: the sender is told to retry after
/// about the limit, not the minute it asked to sleep; the failure is counted as a time-out;
/// a bystander is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_sleeps_in_wasi_is_cut_off_at_the_time_limit() {
    const LIMIT_MS: u64 = 300;
    let broker = Broker::start_with_config(&format!(
        "[plugins]\nthreads = 2\ncall_timeout_ms = {LIMIT_MS}\nprobation_failures = 0\n"
    ))
    .unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let sleep = std::fs::read(env!("HOTLINE_TEST_PLUGIN_SLEEP")).unwrap();
    let sleeping = version_of(&sleep);
    install(&broker.plugin_dir(), "router.wasm", &sleep).unwrap();
    eventually(T, || (broker.current_version("router").ok()? == sleeping).then_some(())).unwrap();

    for round in 0..2u64 {
        let start = Instant::now();
        alice.send_with_id(round, BOB, b"sleepy".to_vec()).await.unwrap();
        bob.send_frame(&ClientFrame::Ping { nonce: round }).await.unwrap();
        match bob.next_frame_within(T).await.unwrap() {
            ServerFrame::Pong { nonce } if nonce == round => {}
            other => panic!("unexpected {other:?}"),
        }
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::SendFailed { client_id, error: ErrorCode::Retryable, .. } if client_id == round => {}
            other => panic!("unexpected {other:?}"),
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(LIMIT_MS - 20), "cut off after only {took:?}");
        assert!(took < Duration::from_secs(10), "the sleep was not cut off: {took:?}");
        eprintln!("round {round}: the sleeping call was cut off after {took:?}");
    }
    let series = format!("hotline_plugin_errors_total{{slot=\"router\",version=\"{sleeping}\",kind=\"timeout\"}}");
    assert_eq!(broker.metric(&series).unwrap(), 2.0, "{series}");
    let trap = format!("hotline_plugin_errors_total{{slot=\"router\",version=\"{sleeping}\",kind=\"trap\"}}");
    assert_eq!(broker.metric(&trap).unwrap(), 0.0, "{trap}");
    alice.close().await;
    bob.close().await;
}
