//! Plugins written in C, Python, JavaScript and WebAssembly text (`plugins/examples/`): each is built from
//! source with its language's toolchain, copied into a running broker's plugin folder,
//! observed through `hotline-chat`, then swapped back to the built-in plugin, whose
//! behaviour is observed again. The toolchains come from `scripts/setup plugins`; a missing
//! one fails the test.

use std::path::Path;
use std::time::Duration;

use hotline_protocol::{ErrorCode, ServerFrame};
use hotline_tests::{build_plugin_script, events, BIG_PLUGIN_LOAD, install, ok, refused, version_of, with_marker, workspace_root, Broker};

const ALICE: &str = "+15550900001";
const BOB: &str = "+15550900002";
const CAROL: &str = "+15550900003";

/// Builds `plugins/examples/<example>/build.sh` into a scratch folder.
fn build_example(example: &str, scratch: &Path) -> Vec<u8> {
    let script = workspace_root().join("plugins/examples").join(example).join("build.sh");
    let out = scratch.join(format!("{example}.wasm"));
    build_plugin_script(&script, &[out.as_os_str()], &[], &out).unwrap()
}

/// A broker with Alice and Bob registered through `hotline-chat`.
fn broker_with_two_users(profiles: &Path) -> Broker {
    let broker = Broker::start().unwrap();
    broker.register_chat(&profiles.join("alice"), ALICE, 5).unwrap();
    broker.register_chat(&profiles.join("bob"), BOB, 5).unwrap();
    broker
}

/// The block-list router of `example` (same behaviour in every language): Bob blocks
/// Alice, Alice is refused with a reason, Bob unblocks her, her message arrives. Then the
/// built-in router comes back: it ignores the stored block and knows groups again.
fn block_list_router(example: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let router = build_example(example, scratch.path());
    let profiles = tempfile::tempdir().unwrap();
    let broker = broker_with_two_users(profiles.path());
    let alice = || broker.chat(&profiles.path().join("alice"));
    let bob = || broker.chat(&profiles.path().join("bob"));
    let builtin = std::fs::read(broker.plugin_dir().join("router.wasm")).unwrap();

    // While the router compiles (tens of seconds for Python and JS), a swap of another
    // slot is not held up: each slot loads on its own thread.
    install(&broker.plugin_dir(), "router.wasm", &router).unwrap();
    std::thread::sleep(Duration::from_millis(500)); // past the quiet period: compiling now
    let receipts = with_marker(&std::fs::read(broker.plugin_dir().join("receipts.wasm")).unwrap(), example);
    broker.load_plugin("receipts", &receipts, BIG_PLUGIN_LOAD).unwrap();
    let router_now = broker.current_version("router").unwrap();
    if example != "c-router" {
        assert_eq!(router_now, version_of(&builtin), "the {example} router was current before the receipts swap finished");
    }
    broker.wait_for_version("router", &version_of(&router), BIG_PLUGIN_LOAD).unwrap();
    assert_eq!(ok(bob().args(["command", "router", "blocked"]).output().unwrap()).trim(), "nobody is blocked");
    assert_eq!(ok(bob().args(["command", "router", "block", ALICE]).output().unwrap()).trim(), format!("blocked {ALICE}"));
    assert_eq!(ok(bob().args(["command", "router", "blocked"]).output().unwrap()).trim(), ALICE);
    let why = refused(alice().args(["send", BOB, "let me in"]).output().unwrap());
    assert!(why.contains(&format!("{BOB} does not accept your messages")), "{why}");
    let why = refused(bob().args(["command", "router", "block", "nobody"]).output().unwrap());
    assert!(why.contains("\"nobody\" is not an E.164 number"), "{why}");
    let why = refused(alice().args(["send", "#team", "hi all"]).output().unwrap());
    assert!(why.contains("takes E.164 numbers only"), "{why}");
    let why = refused(alice().args(["group", "create", "#team"]).output().unwrap());
    assert!(why.contains("unknown command \"group-create\""), "{why}");
    // Bob never got the refused message.
    let got = events(bob().args(["listen", "--timeout", "1"]).output().unwrap());
    assert!(got.is_empty(), "{got:?}");

    assert_eq!(ok(bob().args(["command", "router", "unblock", ALICE]).output().unwrap()).trim(), format!("unblocked {ALICE}"));
    ok(alice().args(["send", BOB, "hello again"]).output().unwrap());
    let got = events(bob().args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
    assert_eq!((got[0]["from"].as_str(), got[0]["text"].as_str()), (Some(ALICE), Some("hello again")));
    let counters = &broker.plugins().unwrap()["counters"]["router"];
    assert!(counters["routed"].as_u64() >= Some(1) && counters["rejected"].as_u64() >= Some(2), "{counters}");

    // Block again, then swap the built-in router back: it knows nothing of block lists.
    ok(bob().args(["command", "router", "block", ALICE]).output().unwrap());
    broker.load_plugin("router", &builtin, BIG_PLUGIN_LOAD).unwrap();
    ok(alice().args(["send", BOB, "the default router lets me through"]).output().unwrap());
    let got = events(bob().args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
    assert_eq!(got[0]["text"].as_str(), Some("the default router lets me through"));
    let why = refused(bob().args(["command", "router", "blocked"]).output().unwrap());
    assert!(why.contains("unknown command"), "{why}");
    ok(alice().args(["group", "create", "#team"]).output().unwrap());
    ok(alice().args(["group", "add", "#team", BOB]).output().unwrap());
    ok(alice().args(["send", "#team", "groups are back"]).output().unwrap());
    let got = events(bob().args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
    assert_eq!(got[0]["text"].as_str(), Some("groups are back"));
}

#[test]
fn c_router_blocks_senders_and_the_builtin_router_comes_back() {
    block_list_router("c-router");
}

#[test]
fn python_router_blocks_senders_and_the_builtin_router_comes_back() {
    block_list_router("python-router");
}

#[test]
fn js_router_blocks_senders_and_the_builtin_router_comes_back() {
    block_list_router("js-router");
}

/// A second slot outside Rust: receipts in Python let "delivered" through and never "read".
#[test]
fn python_receipts_hide_read_receipts_and_the_builtin_receipts_come_back() {
    let scratch = tempfile::tempdir().unwrap();
    let receipts = build_example("python-receipts", scratch.path());
    let profiles = tempfile::tempdir().unwrap();
    let broker = broker_with_two_users(profiles.path());
    let alice = || broker.chat(&profiles.path().join("alice"));
    let bob = || broker.chat(&profiles.path().join("bob"));
    let builtin = std::fs::read(broker.plugin_dir().join("receipts.wasm")).unwrap();
    // Alice sends, Bob reads: the receipt statuses Alice hears.
    let statuses = |text: &str| -> Vec<String> {
        ok(alice().args(["send", BOB, text]).output().unwrap());
        let got = events(bob().args(["listen", "--count", "1", "--timeout", "20", "--read"]).output().unwrap());
        assert_eq!(got[0]["text"].as_str(), Some(text));
        // The first receipt is awaited; then three quiet seconds show whether a read follows.
        let mut got = events(alice().args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
        got.extend(events(alice().args(["listen", "--timeout", "3"]).output().unwrap()));
        got.iter().filter_map(|e| e["status"].as_str().map(String::from)).collect()
    };

    broker.load_plugin("receipts", &receipts, BIG_PLUGIN_LOAD).unwrap();
    assert_eq!(
        ok(alice().args(["command", "receipts", "policy"]).output().unwrap()).trim(),
        "delivered receipts: always; read receipts: never"
    );
    assert_eq!(statuses("read me"), vec!["delivered"]);
    let counters = &broker.plugins().unwrap()["counters"]["receipts"];
    assert_eq!((counters["delivered_receipts"].as_u64(), counters["read_receipts_dropped"].as_u64()), (Some(1), Some(1)), "{counters}");

    broker.load_plugin("receipts", &builtin, BIG_PLUGIN_LOAD).unwrap();
    assert_eq!(statuses("read me too"), vec!["delivered", "read"]);
    let why = refused(alice().args(["command", "receipts", "policy"]).output().unwrap());
    assert!(why.contains("unknown command"), "{why}");
}

/// A router in WebAssembly text against the canonical ABI (`plugins/examples/wat-router`),
/// with no bindings generator and no WASI: it delivers to E.164 numbers, one message or a
/// pipelined batch, rejects anything else with its reason, refuses commands, and counts.
#[test]
fn wat_router_written_against_the_canonical_abi_routes_and_rejects() {
    let scratch = tempfile::tempdir().unwrap();
    let router = build_example("wat-router", scratch.path());
    let profiles = tempfile::tempdir().unwrap();
    let broker = broker_with_two_users(profiles.path());
    let alice = || broker.chat(&profiles.path().join("alice"));
    let bob = || broker.chat(&profiles.path().join("bob"));
    let builtin = std::fs::read(broker.plugin_dir().join("router.wasm")).unwrap();

    broker.load_plugin("router", &router, BIG_PLUGIN_LOAD).unwrap();
    let listed = broker.plugins().unwrap();
    let version = version_of(&router);
    let info = listed["versions"].as_array().unwrap().iter().find(|v| v["version"] == version.as_str()).unwrap().clone();
    assert_eq!(info["contract_version"], "0.2.0", "{info}");

    ok(alice().args(["send", BOB, "hello from the canonical ABI"]).output().unwrap());
    let got = events(bob().args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
    assert_eq!((got[0]["from"].as_str(), got[0]["text"].as_str()), (Some(ALICE), Some("hello from the canonical ABI")));
    let why = refused(alice().args(["send", "#team", "hi all"]).output().unwrap());
    assert!(why.contains("cannot deliver to \"#team\": this router takes E.164 numbers only"), "{why}");
    let why = refused(alice().args(["send", "+0123456789", "leading zero"]).output().unwrap());
    assert!(why.contains("cannot deliver to \"+0123456789\""), "{why}");
    let why = refused(bob().args(["command", "router", "blocked"]).output().unwrap());
    assert!(why.contains("unknown command; this router takes none"), "{why}");
    let why = refused(alice().args(["group", "create", "#team"]).output().unwrap());
    assert!(why.contains("unknown command; this router takes none"), "{why}");

    // Pipelined sends (the broker batches them into `route-batch` calls): every E.164 one
    // is delivered, every other one is refused with its own reason, in the same pipeline.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let carol_key = broker.register(CAROL).await.unwrap();
        let mut carol = broker.login(CAROL, &carol_key).await.unwrap();
        for i in 0..20u64 {
            let to = if i % 5 == 4 { format!("#group{i}") } else { BOB.to_string() };
            carol.send_with_id(i, &to, format!("batch {i}").into_bytes()).await.unwrap();
        }
        let (mut sent, mut refused) = (0, Vec::new());
        while sent + refused.len() < 20 {
            match carol.next_frame_within(Duration::from_secs(20)).await.unwrap() {
                ServerFrame::Sent { client_id, .. } => {
                    assert!(client_id % 5 != 4, "message {client_id} to a group was delivered");
                    sent += 1;
                }
                ServerFrame::SendFailed { client_id, error: ErrorCode::Rejected, reason } => {
                    assert_eq!(reason, format!("cannot deliver to \"#group{client_id}\": this router takes E.164 numbers only"));
                    refused.push(client_id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        refused.sort_unstable();
        assert_eq!((sent, refused), (16, vec![4, 9, 14, 19]));
        carol.close().await;
    });
    let got = events(bob().args(["listen", "--count", "16", "--timeout", "20"]).output().unwrap());
    assert_eq!(got.len(), 16, "{got:?}");
    assert!(got.iter().all(|e| e["from"].as_str() == Some(CAROL)), "{got:?}");
    let counters = &broker.plugins().unwrap()["counters"]["router"];
    assert_eq!((counters["routed"].as_u64(), counters["rejected"].as_u64()), (Some(17), Some(6)), "{counters}");

    // The built-in router comes back and knows groups again.
    broker.load_plugin("router", &builtin, BIG_PLUGIN_LOAD).unwrap();
    ok(alice().args(["group", "create", "#team"]).output().unwrap());
}
