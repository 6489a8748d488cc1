//! The router file is replaced 50 times while messages flow: no message lost, no send
//! failed, each message routed by exactly one version, every version listed; an operator
//! rollback puts the previous version back.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hotline_protocol::ServerFrame;
use hotline_tests::{eventually, install, take_messages, version_of, with_marker, Broker};

const ALICE: &str = "+15550600001";
const BOB: &str = "+15550600002";
const SWAPS: usize = 50;
const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_is_swapped_fifty_times_while_messages_flow() {
    let broker = Arc::new(Broker::start_with_config("[plugins]\nkeep_versions = 64\n").unwrap());
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let original = std::fs::read(broker.plugin_dir().join("router.wasm")).unwrap();
    let first = broker.current_version("router").unwrap();

    // Alice sends one message at a time, without pause, until the swaps are done.
    let stop = Arc::new(AtomicBool::new(false));
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let sender = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut sent, mut failures) = (Vec::new(), Vec::new());
            let mut client_id = 0u64;
            while !stop.load(Ordering::Relaxed) {
                client_id += 1;
                alice.send_with_id(client_id, BOB, format!("m{client_id}").into_bytes()).await.unwrap();
                match alice.next_frame_within(T).await.unwrap() {
                    ServerFrame::Sent { client_id: c, id } if c == client_id => sent.push(id),
                    other => failures.push(format!("{other:?}")),
                }
            }
            alice.close().await;
            (sent, failures)
        })
    };

    let swapper = {
        let broker = broker.clone();
        tokio::task::spawn_blocking(move || {
            let mut versions = Vec::new();
            for i in 1..=SWAPS {
                let bytes = with_marker(&original, &format!("swap {i}"));
                let version = version_of(&bytes);
                install(&broker.plugin_dir(), "router.wasm", &bytes).unwrap();
                eventually(T, || (broker.current_version("router").ok()? == version).then_some(()))
                    .unwrap_or_else(|e| panic!("swap {i} to {version}: {e}"));
                versions.push(version);
            }
            versions
        })
    };
    let versions = swapper.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = sender.await.unwrap();
    assert!(failures.is_empty(), "sends failed during swaps: {failures:?}");
    assert!(sent.len() > SWAPS, "messages did not flow during the swaps ({} sent)", sent.len());

    // Every version is listed, and the router calls across all versions add up to one per
    // message: each message was routed by exactly one version.
    let report = broker.plugins().unwrap();
    let routers: Vec<&serde_json::Value> = report["versions"].as_array().unwrap().iter().filter(|v| v["slot"] == "router").collect();
    let listed: BTreeSet<&str> = routers.iter().map(|v| v["version"].as_str().unwrap()).collect();
    for v in versions.iter().chain([&first]) {
        assert!(listed.contains(v.as_str()), "version {v} not listed");
    }
    let calls: u64 = routers.iter().map(|v| v["calls"].as_u64().unwrap()).sum();
    assert_eq!(calls, sent.len() as u64, "router calls across versions != messages");
    assert_eq!(report["counters"]["router"]["routed"], sent.len() as u64);
    assert!(routers.iter().all(|v| v["errors"] == 0));
    // The versions kept for rollback hold their component files on disk by hash, not in
    // memory: one file per listed version of any slot, and nothing else.
    let kept: BTreeSet<String> = std::fs::read_dir(broker.data.join("plugin-cache/versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let all_listed: BTreeSet<&str> = report["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(kept.len(), all_listed.len(), "kept files {kept:?} for versions {all_listed:?}");
    for v in &all_listed {
        assert!(kept.iter().any(|f| f.starts_with(v) && f.ends_with(".wasm")), "no file kept for version {v}: {kept:?}");
    }

    // Nothing lost: Bob gets every message exactly once, in order.
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let received = take_messages(&mut bob, sent.len()).await;
    assert_eq!(received, sent);

    // The operator rolls back: the previous version is current again.
    let out = std::process::Command::new(hotline_tests::bin("hotline"))
        .args(["plugins", "--admin", &broker.admin.to_string(), "rollback", "router"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(broker.current_version("router").unwrap(), versions[SWAPS - 2]);
    let table = std::process::Command::new(hotline_tests::bin("hotline"))
        .args(["plugins", "--admin", &broker.admin.to_string(), "list"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(&versions[SWAPS - 1]) && table.contains("rolled-back"), "{table}");
}
