//! Plugin state (a group's members, a receipt setting) lives in the broker's storage: it
//! survives a swap of the plugin and a restart of the broker. Driven with hotline-chat.

use std::time::Duration;

use hotline_tests::{events, eventually, install, ok, version_of, with_marker, Broker};

const ALICE: &str = "+15550800001";
const BOB: &str = "+15550800002";
const CAROL: &str = "+15550800003";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_survive_a_swap_and_a_restart() {
    let mut broker = Broker::start().unwrap();
    let profiles = tempfile::tempdir().unwrap();
    let profile = |name: &str| profiles.path().join(name);
    for (name, phone) in [("alice", ALICE), ("bob", BOB), ("carol", CAROL)] {
        broker.register_chat(&profile(name), phone, 5).unwrap();
    }
    let alice = || broker.chat(&profile("alice"));
    ok(alice().args(["group", "create", "#team"]).output().unwrap());
    ok(alice().args(["group", "add", "#team", BOB]).output().unwrap());
    ok(alice().args(["group", "add", "#team", CAROL]).output().unwrap());
    let members = ok(alice().args(["group", "members", "#team"]).output().unwrap());
    assert_eq!(members.lines().collect::<Vec<_>>(), vec![ALICE, BOB, CAROL]);
    // Refusals reach the client as errors.
    let dup = alice().args(["group", "create", "#team"]).output().unwrap();
    assert!(!dup.status.success());

    // Swap the router for a new version.
    let router = std::fs::read(broker.plugin_dir().join("router.wasm")).unwrap();
    let next = with_marker(&router, "v2");
    install(&broker.plugin_dir(), "router.wasm", &next).unwrap();
    eventually(Duration::from_secs(20), || (broker.current_version("router").ok()? == version_of(&next)).then_some(())).unwrap();
    let members = ok(alice().args(["group", "members", "#team"]).output().unwrap());
    assert_eq!(members.lines().collect::<Vec<_>>(), vec![ALICE, BOB, CAROL], "after the swap");

    // Restart the broker: the members are still there, and a group message fans out.
    broker.restart().unwrap();
    let alice = || broker.chat(&profile("alice"));
    let members = ok(alice().args(["group", "members", "#team"]).output().unwrap());
    assert_eq!(members.lines().collect::<Vec<_>>(), vec![ALICE, BOB, CAROL], "after the restart");
    ok(alice().args(["send", "#team", "hello team"]).output().unwrap());
    for name in ["bob", "carol"] {
        let got = events(broker.chat(&profile(name)).args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
        assert_eq!((got[0]["from"].as_str(), got[0]["text"].as_str()), (Some(ALICE), Some("hello team")), "{name}");
    }
    // Alice, the sender, does not get her own group message.
    let none = broker.chat(&profile("alice")).args(["listen", "--timeout", "1"]).output().unwrap();
    assert!(ok(none).lines().all(|l| !l.contains("hello team")));

    // Carol leaves; a non-member cannot send to the group.
    ok(broker.chat(&profile("carol")).args(["group", "remove", "#team", CAROL]).output().unwrap());
    let refused = broker.chat(&profile("carol")).args(["send", "#team", "let me back"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a member"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hiding_read_receipts_is_a_per_user_setting_of_the_receipts_plugin() {
    let broker = Broker::start().unwrap();
    let profiles = tempfile::tempdir().unwrap();
    let profile = |name: &str| profiles.path().join(name);
    for (name, phone) in [("alice", ALICE), ("bob", BOB)] {
        broker.register_chat(&profile(name), phone, 5).unwrap();
    }
    ok(broker.chat(&profile("bob")).args(["command", "receipts", "read-receipts", "off"]).output().unwrap());
    ok(broker.chat(&profile("alice")).args(["send", BOB, "private?"]).output().unwrap());
    events(broker.chat(&profile("bob")).args(["listen", "--count", "1", "--timeout", "20", "--read"]).output().unwrap());
    // Alice hears "delivered" but never "read".
    let got = events(broker.chat(&profile("alice")).args(["listen", "--timeout", "2"]).output().unwrap());
    let statuses: Vec<&str> = got.iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(statuses, vec!["delivered"]);
}
