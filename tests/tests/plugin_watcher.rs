//! The plugin watcher and a slot's lifecycle as an operator sees them: a complete file
//! (renamed into place, or closed by its writer) is loaded at once, a loaded file is read
//! once, a refused file is refused once and set aside so the folder says what serves (and a
//! restart serves it), a re-installed version is listed once, and `probation_failures = 0`
//! turns automatic rollback off.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hotline_protocol::{ErrorCode, ServerFrame};
use hotline_tests::{eventually, install, take_messages, version_of, with_marker, Broker};

const ALICE: &str = "+15550800001";
const BOB: &str = "+15550800002";
const T: Duration = Duration::from_secs(20);

/// The router events of kind `event` for `version` in the swap history.
fn router_events(broker: &Broker, event: &str, version: &str) -> usize {
    let report = broker.plugins().unwrap();
    report["history"].as_array().unwrap().iter().filter(|e| e["slot"] == "router" && e["event"] == event && e["version"] == version).count()
}

/// How many times each router version is listed.
fn router_listing(broker: &Broker) -> Vec<(String, String)> {
    let report = broker.plugins().unwrap();
    report["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["slot"] == "router")
        .map(|v| (v["version"].as_str().unwrap().to_string(), v["state"].as_str().unwrap().to_string()))
        .collect()
}

fn listed_once(listing: &[(String, String)], version: &str) -> bool {
    listing.iter().filter(|(v, _)| v == version).count() == 1
}

/// Bytes the process has read (all threads), from `/proc/PID/io`.
fn rchar(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines().find_map(|l| l.strip_prefix("rchar:")).unwrap().trim().parse().unwrap()
}

/// `hotline plugins rollback router`.
fn operator_rollback(broker: &Broker) {
    let out = std::process::Command::new(hotline_tests::bin("hotline"))
        .args(["plugins", "--admin", &broker.admin.to_string(), "rollback", "router"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The latest "loaded" event of router `version` at or after `since_ms`: its time (Unix
/// ms) and detail.
fn loaded_since(broker: &Broker, version: &str, since_ms: u64) -> Option<(u64, String)> {
    let report = broker.plugins().unwrap();
    report["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["slot"] == "router" && e["event"] == "loaded" && e["version"] == version)
        .filter_map(|e| Some((e["at_ms"].as_u64()?, e["detail"].as_str()?.to_string())))
        .filter(|(at, _)| *at >= since_ms)
        .max()
}

/// A file renamed into place, or written in place and closed, is complete: the watcher loads
/// it at once instead of waiting for a quiet period. Measures the time from the rename (or
/// from opening the file to write it) to the version's "loaded" event in the admin API, for
/// a version in the compile cache; prints the figures. The bound asserted is generous (a
/// busy test machine); the printed figure is the measurement (issue 10: within 50 ms).
#[test]
fn a_complete_file_is_loaded_at_once() {
    let broker = Broker::start().unwrap();
    let dir = broker.plugin_dir();
    let path = dir.join("router.wasm");
    let a_bytes = std::fs::read(&path).unwrap();
    let b_bytes = with_marker(&a_bytes, "at once");
    // Both versions compiled once (A at start), so every swap below loads from the cache.
    broker.load_plugin("router", &b_bytes, T).unwrap();

    let mut figures: Vec<(&str, u64)> = Vec::new();
    for round in 0..10 {
        let bytes = if round % 2 == 0 { &a_bytes } else { &b_bytes };
        let version = version_of(bytes);
        let how = if round < 6 { "renamed into place" } else { "written in place, closed" };
        let started = unix_ms();
        if round < 6 {
            install(&dir, "router.wasm", bytes).unwrap();
        } else {
            std::fs::write(&path, bytes).unwrap();
        }
        let (at, detail) = eventually(T, || loaded_since(&broker, &version, started)).unwrap();
        assert!(detail.contains("compile cache"), "round {round}: {detail}");
        let ms = at - started;
        eprintln!("{how}: loaded {ms} ms after the write began ({detail})");
        assert!(ms < 1000, "{how}: loaded only {ms} ms after the write began");
        assert_eq!(broker.current_version("router").unwrap(), version);
        figures.push((how, ms));
    }
    for how in ["renamed into place", "written in place, closed"] {
        let mut ms: Vec<u64> = figures.iter().filter(|(h, _)| *h == how).map(|(_, ms)| *ms).collect();
        ms.sort();
        eprintln!("{how}, from the compile cache: median {} ms, worst {} ms ({} swaps)", ms[ms.len() / 2], ms[ms.len() - 1], ms.len());
    }
}

#[test]
fn a_refused_file_is_refused_once_and_set_aside() {
    let broker = Broker::start().unwrap();
    let dir = broker.plugin_dir();
    let serving = std::fs::read(dir.join("router.wasm")).unwrap();
    let good = broker.current_version("router").unwrap();
    let bad = b"#!/bin/sh\necho this is not a component\n".to_vec();
    let version = version_of(&bad);
    install(&dir, "router.wasm", &bad).unwrap();
    eventually(T, || (router_events(&broker, "refused", &version) > 0).then_some(())).unwrap();

    // The folder says what serves: the refused file aside, the serving bytes back in place.
    let aside = dir.join(format!("router.wasm.refused-{version}"));
    eventually(T, || (std::fs::read(dir.join("router.wasm")).ok()? == serving).then_some(())).expect("serving bytes put back");
    assert_eq!(std::fs::read(&aside).unwrap(), bad);
    assert_eq!(broker.metric("hotline_plugin_refused_total").unwrap(), 1.0);

    // Nothing happens again: one refusal, a counter that stays put.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(router_events(&broker, "refused", &version), 1, "refused more than once");
    assert_eq!(broker.metric("hotline_plugin_refused_total").unwrap(), 1.0);
    assert_eq!(broker.current_version("router").unwrap(), good);
}

/// A file written in place is tried while it is being written (and refused); it is not
/// taken from its writer, and once the writer closes it, it is set aside.
#[test]
fn a_file_written_in_place_is_set_aside_only_after_its_writer_closes_it() {
    let broker = Broker::start().unwrap();
    let dir = broker.plugin_dir();
    let serving = std::fs::read(dir.join("router.wasm")).unwrap();
    let (first, second) = (b"this is not a ".to_vec(), b"component either\n".to_vec());
    let path = dir.join("router.wasm");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&first).unwrap();
    file.flush().unwrap();
    let partial = version_of(&first);
    eventually(T, || (router_events(&broker, "refused", &partial) > 0).then_some(())).unwrap();
    // Still the writer's file.
    file.write_all(&second).unwrap();
    file.flush().unwrap();
    let whole = [first, second].concat();
    assert_eq!(std::fs::read(&path).unwrap(), whole, "the file was taken from its writer");
    assert!(!dir.join(format!("router.wasm.refused-{partial}")).exists());

    drop(file);
    let version = version_of(&whole);
    let aside = dir.join(format!("router.wasm.refused-{version}"));
    eventually(T, || (std::fs::read(&aside).ok()? == whole).then_some(())).expect("the closed file is set aside");
    eventually(T, || (std::fs::read(&path).ok()? == serving).then_some(())).expect("serving bytes put back");
    assert_eq!(router_events(&broker, "refused", &version), 1);
}

#[test]
fn an_idle_broker_does_not_read_its_plugin_files_again() {
    let broker = Broker::start().unwrap();
    let dir = broker.plugin_dir();
    let next = with_marker(&std::fs::read(dir.join("router.wasm")).unwrap(), "idle");
    broker.load_plugin("router", &next, T).unwrap();

    let pid = broker.pid().unwrap();
    let before = rchar(pid);
    std::thread::sleep(Duration::from_secs(5));
    let read = rchar(pid) - before;
    eprintln!("the idle broker read {read} bytes in 5 s");
    assert!(read < 64 << 10, "an idle broker read {read} bytes in 5 s");
}

#[test]
fn a_restart_after_a_refusal_serves_the_version_that_served_before_it() {
    let mut broker = Broker::start().unwrap();
    let dir = broker.plugin_dir();
    let serving = with_marker(&std::fs::read(dir.join("router.wasm")).unwrap(), "serving");
    let good = broker.load_plugin("router", &serving, T).unwrap();

    // A receipts plugin dropped in as the router: refused.
    let wrong = std::fs::read(dir.join("receipts.wasm")).unwrap();
    let refused = version_of(&wrong);
    install(&dir, "router.wasm", &wrong).unwrap();
    let aside = dir.join(format!("router.wasm.refused-{refused}"));
    eventually(T, || aside.exists().then_some(())).expect("the refused file is kept aside");
    eventually(T, || (std::fs::read(dir.join("router.wasm")).ok()? == serving).then_some(())).expect("serving bytes put back");

    broker.restart().unwrap();
    assert_eq!(broker.current_version("router").unwrap(), good);
    assert_eq!(router_events(&broker, "refused", &refused), 0, "refused again at start");
    assert_eq!(std::fs::read(aside).unwrap(), wrong);
}

#[test]
fn a_reinstalled_version_is_listed_once() {
    let broker = Broker::start().unwrap();
    let dir = broker.plugin_dir();
    let a_bytes = std::fs::read(dir.join("router.wasm")).unwrap();
    let a = broker.current_version("router").unwrap();
    let b_bytes = with_marker(&a_bytes, "b");
    let b = broker.load_plugin("router", &b_bytes, T).unwrap();

    // B rolled back, then installed again.
    operator_rollback(&broker);
    assert_eq!(broker.current_version("router").unwrap(), a);
    assert!(router_listing(&broker).contains(&(b.clone(), "rolled-back".into())));
    broker.load_plugin("router", &b_bytes, T).unwrap();
    let listing = router_listing(&broker);
    assert!(listed_once(&listing, &b) && listed_once(&listing, &a), "{listing:?}");
    assert_eq!(listing[0], (b.clone(), "probation".into()), "{listing:?}");

    // The earlier version A installed again.
    broker.load_plugin("router", &a_bytes, T).unwrap();
    let listing = router_listing(&broker);
    assert!(listed_once(&listing, &b) && listed_once(&listing, &a), "{listing:?}");
    assert_eq!(listing[0], (a.clone(), "probation".into()), "{listing:?}");
    assert_eq!(listing[1], (b, "previous".into()), "{listing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_probation_failures_zero_a_failing_router_is_never_rolled_back() {
    let broker = Broker::start_with_config("[plugins]\nprobation_failures = 0\n").unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let good = broker.current_version("router").unwrap();
    let trap = std::fs::read(env!("HOTLINE_TEST_PLUGIN_TRAP")).unwrap();
    let bad = broker.load_plugin("router", &trap, T).unwrap();

    // Every send fails (retryable), and the failing router stays current.
    for client_id in 1..=6 {
        alice.send_with_id(client_id, BOB, b"hello".to_vec()).await.unwrap();
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::SendFailed { client_id: c, error: ErrorCode::Retryable, .. } if c == client_id => {}
            other => panic!("expected SendFailed{{Retryable}}, got {other:?}"),
        }
    }
    assert_eq!(broker.current_version("router").unwrap(), bad);
    assert_eq!(router_events(&broker, "rolled-back", &bad), 0);
    assert_eq!(broker.metric("hotline_plugin_rollbacks_total").unwrap(), 0.0);

    // The operator rolls back by hand; the retries go through and nothing was lost.
    operator_rollback(&broker);
    assert_eq!(broker.current_version("router").unwrap(), good);
    let mut ids = Vec::new();
    for client_id in 1..=6 {
        alice.send_with_id(client_id, BOB, b"hello".to_vec()).await.unwrap();
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { client_id: c, id } if c == client_id => ids.push(id),
            other => panic!("expected Sent, got {other:?}"),
        }
    }
    alice.close().await;
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    assert_eq!(take_messages(&mut bob, ids.len()).await, ids);
}
