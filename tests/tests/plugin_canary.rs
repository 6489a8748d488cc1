//! Canary rollouts against the real broker: `hotline plugins canary router FILE --percent 10`
//! puts a router that refuses media (the contract test router) beside the default one; the
//! senders whose number hashes into buckets 0-9 (first 8 bytes of SHA-256, mod 100) see it
//! refuse their media, the others do not; `plugins list` compares the two; `plugins promote`
//! under load makes it everyone's router with every message answered. A trapping canary
//! dropped as `router.canary-50.wasm` is rolled back automatically under load, every message
//! delivered; a canary file survives a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hotline_protocol::{ErrorCode, MessageKind};
use hotline_tests::{answer_to, bin, eventually, install, version_of, Broker};
use sha2::Digest;

const BOB: &str = "+15550950000";
const T: Duration = Duration::from_secs(20);

/// The broker's bucket of a number.
fn bucket(number: &str) -> u64 {
    let digest = sha2::Sha256::digest(number.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap()) % 100
}

/// `want_in` numbers in buckets below `percent` and `want_out` others.
fn senders(percent: u64, want_in: usize, want_out: usize) -> (Vec<String>, Vec<String>) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for i in 1.. {
        let number = format!("+1555096{i:04}");
        if bucket(&number) < percent {
            if inside.len() < want_in {
                inside.push(number);
            }
        } else if outside.len() < want_out {
            outside.push(number);
        }
        if inside.len() == want_in && outside.len() == want_out {
            break;
        }
    }
    (inside, outside)
}

fn png() -> MessageKind {
    MessageKind::Media { mime: "image/png".into() }
}

fn plugins_cli(broker: &Broker, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin("hotline")).args(["plugins", "--admin", &broker.admin.to_string()]).args(args).output().unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Each sender sends media to Bob `rounds` times, one at a time; returns per message
/// (sender, when it was sent, the answer).
async fn media_load(broker: &Broker, senders: &[(String, String)], rounds: usize) -> Vec<(String, Instant, Result<u64, (ErrorCode, String)>)> {
    let mut tasks = Vec::new();
    for (phone, key) in senders {
        let mut client = broker.login(phone, key).await.unwrap();
        let phone = phone.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..rounds {
                let at = Instant::now();
                let id = client.send_typed(BOB, png(), b"a descriptor".to_vec()).await.unwrap();
                answers.push((phone.clone(), at, answer_to(&mut client, id).await));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_percent_canary_serves_its_senders_by_hash_and_promote_under_load_answers_every_message() {
    let broker = Arc::new(Broker::start().unwrap());
    let (inside, outside) = senders(10, 3, 12);
    let mut phones: Vec<String> = inside.iter().chain(&outside).cloned().collect();
    phones.push(BOB.into());
    let keys = broker.register_many(&phones, 4).await.unwrap();
    let senders: Vec<(String, String)> = phones.iter().cloned().zip(keys).filter(|(p, _)| p != BOB).collect();

    let contract = std::fs::read(env!("HOTLINE_TEST_PLUGIN_CONTRACT")).unwrap();
    let canary_version = version_of(&contract);
    let current = broker.current_version("router").unwrap();
    let out = ok(plugins_cli(&broker, &["canary", "router", env!("HOTLINE_TEST_PLUGIN_CONTRACT"), "--percent", "10"]));
    assert!(out.contains(&canary_version) && out.contains("10%"), "{out}");
    assert!(broker.plugin_dir().join("router.canary-10.wasm").exists(), "the canary persists as its file");

    // Senders in buckets 0-9 see the canary refuse media; the others are delivered.
    for (phone, answer) in media_load(&broker, &senders, 2).await.into_iter().map(|(p, _, a)| (p, a)) {
        if inside.contains(&phone) {
            let (error, reason) = answer.expect_err(&format!("{phone} (bucket {}) is on the canary", bucket(&phone)));
            assert_eq!((error, reason.as_str()), (ErrorCode::Rejected, "no media here (image/png)"));
        } else {
            answer.unwrap_or_else(|e| panic!("{phone} (bucket {}) is not on the canary: {e:?}", bucket(&phone)));
        }
    }

    // The admin API, the CLI and the metrics compare the two.
    let report = broker.plugins().unwrap();
    let canary = &report["canaries"][0];
    assert_eq!((canary["slot"].as_str(), canary["version"].as_str(), canary["percent"].as_u64()), (Some("router"), Some(&canary_version[..]), Some(10)), "{report}");
    assert_eq!(canary["canary"]["calls"].as_u64(), Some(6), "3 senders x 2 messages, one call each: {canary}");
    assert_eq!(canary["current"]["calls"].as_u64(), Some(24), "{canary}");
    assert_eq!(canary["canary"]["failures"].as_u64(), Some(0));
    assert!(canary["canary"]["p50_ms"].as_f64().is_some() && canary["current"]["p99_ms"].as_f64().is_some(), "{canary}");
    let table = ok(plugins_cli(&broker, &["list"]));
    assert!(table.contains("CANARIES") && table.lines().any(|l| l.contains("canary") && l.contains(&canary_version) && l.contains("10%")), "{table}");
    let percent = format!("hotline_plugin_canary_percent{{slot=\"router\",version=\"{canary_version}\"}}");
    assert_eq!(broker.metric(&percent).unwrap(), 10.0);
    let (_, metrics) = broker.admin_get("/metrics").unwrap();
    assert!(metrics.contains(&format!("hotline_plugin_call_duration_seconds_count{{slot=\"router\",version=\"{canary_version}\"}} 6")), "{metrics}");

    // Promote while every sender keeps sending: every message is answered, and those sent
    // after the promotion are refused for everyone.
    let load = {
        let broker = broker.clone();
        let senders = senders.clone();
        tokio::spawn(async move { media_load(&broker, &senders, 25).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let promoting = Instant::now();
    let b = broker.clone();
    let out = tokio::task::spawn_blocking(move || ok(plugins_cli(&b, &["promote", "router"]))).await.unwrap();
    let promoted = Instant::now();
    assert!(out.contains(&canary_version), "{out}");
    let answers = load.await.unwrap();
    assert_eq!(answers.len(), 15 * 25);
    let (mut before, mut after) = (0, 0);
    for (phone, at, answer) in answers {
        match answer {
            Err((ErrorCode::Rejected, _)) => {}
            Ok(_) => assert!(at < promoted && !inside.contains(&phone), "{phone} delivered media after the promotion"),
            Err(other) => panic!("{phone}: {other:?} (a message not answered by a router)"),
        }
        if at < promoting {
            before += 1;
        } else if at > promoted {
            after += 1;
        }
    }
    assert!(before > 0 && after > 0, "the load ran across the promotion ({before} before, {after} after)");
    assert_eq!(broker.current_version("router").unwrap(), canary_version);
    assert!(broker.plugins().unwrap()["canaries"].as_array().unwrap().is_empty());
    assert_eq!(std::fs::read(broker.plugin_dir().join("router.wasm")).unwrap(), contract, "the promoted version is the slot's file");
    assert!(!broker.plugin_dir().join("router.canary-10.wasm").exists());
    // The old current is kept for rollback.
    let report = broker.plugins().unwrap();
    assert!(report["versions"].as_array().unwrap().iter().any(|v| v["version"] == current.as_str() && v["state"] == "previous"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_dropped_as_a_file_is_rolled_back_under_load_and_a_canary_survives_a_restart() {
    let mut broker = Broker::start().unwrap();
    let (inside, outside) = senders(50, 5, 5);
    let mut phones: Vec<String> = inside.iter().chain(&outside).cloned().collect();
    phones.push(BOB.into());
    let keys = broker.register_many(&phones, 4).await.unwrap();
    let senders: Vec<(String, String)> = phones.iter().cloned().zip(keys.iter().cloned()).filter(|(p, _)| p != BOB).collect();
    let bob_key = keys.last().unwrap().clone();

    let trap = std::fs::read(env!("HOTLINE_TEST_PLUGIN_TRAP")).unwrap();
    let trap_version = version_of(&trap);
    install(&broker.plugin_dir(), "router.canary-50.wasm", &trap).unwrap();
    eventually(T, || (broker.plugins().unwrap()["canaries"][0]["version"] == trap_version.as_str()).then_some(())).unwrap();

    // Text from everyone: the canary traps for half of them; those calls are answered by
    // the current router, so every message is stored; after 3 failures in a row it is
    // rolled back.
    let mut tasks = Vec::new();
    for (phone, key) in &senders {
        let mut client = broker.login(phone, key).await.unwrap();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let id = client.send(BOB, b"hello".to_vec()).await.unwrap();
                answer_to(&mut client, id).await.expect("stored despite the failing canary");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = broker.plugins().unwrap();
    assert!(report["canaries"].as_array().unwrap().is_empty(), "{report}");
    let rolled = report["history"].as_array().unwrap().iter().find(|e| e["event"] == "rolled-back" && e["version"] == trap_version.as_str());
    assert!(rolled.is_some_and(|e| e["detail"].as_str().unwrap().contains("canary")), "{report}");
    assert!(broker.plugin_dir().join(format!("router.canary-50.wasm.rolled-back-{trap_version}")).exists());
    assert!(!broker.plugin_dir().join("router.canary-50.wasm").exists());
    assert_eq!(broker.metric("hotline_plugin_rollbacks_total").unwrap(), 1.0);
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    hotline_tests::take_messages(&mut bob, 100).await;
    bob.close().await;

    // A canary file is the canary's state: it runs again after a restart.
    let contract = std::fs::read(env!("HOTLINE_TEST_PLUGIN_CONTRACT")).unwrap();
    install(&broker.plugin_dir(), "router.canary-20.wasm", &contract).unwrap();
    let contract_version = version_of(&contract);
    eventually(T, || (broker.plugins().unwrap()["canaries"][0]["version"] == contract_version.as_str()).then_some(())).unwrap();
    broker.restart().unwrap();
    let canary = &broker.plugins().unwrap()["canaries"][0];
    assert_eq!((canary["version"].as_str(), canary["percent"].as_u64()), (Some(&contract_version[..]), Some(20)), "{canary}");
    // `plugins rollback` ends a running canary; the current version stays.
    let current = broker.current_version("router").unwrap();
    ok(plugins_cli(&broker, &["rollback", "router"]));
    assert!(broker.plugins().unwrap()["canaries"].as_array().unwrap().is_empty());
    assert_eq!(broker.current_version("router").unwrap(), current);
}
