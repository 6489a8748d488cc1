//! `hotline plugins new --lang rust|c|python|js NAME SLOT`: for each language, a project
//! for each slot is written, built with its `build.sh` on the first try, loaded into a
//! running broker, and seen working through `hotline-chat`. The toolchains come from
//! `scripts/setup plugins`; a missing one fails the test.

use std::path::Path;
use std::process::Command;

use hotline_tests::{bin, build_plugin_script, events, ok, refused, Broker, BIG_PLUGIN_LOAD};

const ALICE: &str = "+15550910001";
const BOB: &str = "+15550910002";
const CAROL: &str = "+15550910003";

/// `hotline plugins new --lang LANG NAME SLOT --dir <scratch>/NAME`, then `build.sh`.
fn new_and_build(lang: &str, name: &str, slot: &str, scratch: &Path) -> Vec<u8> {
    let dir = scratch.join(name);
    let said = ok(Command::new(bin("hotline"))
        .args(["plugins", "new", "--lang", lang, name, slot, "--dir"])
        .arg(&dir)
        .output()
        .unwrap());
    assert!(said.contains(&format!("({lang} {slot} plugin, contract 0.2.0)")), "{said}");
    assert!(said.contains("./build.sh"), "{said}");
    // The three Rust projects (different names) share one cargo target folder of this run;
    // not one kept between runs: cargo may take an artifact of an earlier project of the
    // same name at another path as up to date.
    let rust_target = scratch.join("rust-target");
    let envs = [("CARGO_TARGET_DIR", rust_target.as_os_str())];
    let envs: &[_] = if lang == "rust" { &envs } else { &[] };
    build_plugin_script(&dir.join("build.sh"), &[], envs, &dir.join("out").join(format!("{slot}.wasm"))).unwrap()
}

/// Router, registrar and receipts projects in `lang`, each loaded into one broker in turn.
fn scaffolded_plugins_work(lang: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let profiles = tempfile::tempdir().unwrap();
    let broker = Broker::start().unwrap();
    broker.register_chat(&profiles.path().join("alice"), ALICE, 5).unwrap();
    broker.register_chat(&profiles.path().join("bob"), BOB, 5).unwrap();
    let alice = || broker.chat(&profiles.path().join("alice"));
    let bob = || broker.chat(&profiles.path().join("bob"));
    let hello = |slot: &str, name: &str| {
        assert_eq!(ok(alice().args(["command", slot, "hello"]).output().unwrap()).trim(), format!("hello from {name} ({lang} {slot})"));
        let why = refused(alice().args(["command", slot, "frobnicate"]).output().unwrap());
        assert!(why.contains(&format!("unknown command \"frobnicate\"; {name} knows: hello")), "{why}");
    };

    // Router: direct messages to E.164 numbers, anything else refused with a reason.
    let name = format!("{lang}-router");
    let router = new_and_build(lang, &name, "router", scratch.path());
    broker.load_plugin("router", &router, BIG_PLUGIN_LOAD).unwrap();
    hello("router", &name);
    ok(alice().args(["send", BOB, "through the new router"]).output().unwrap());
    let got = events(bob().args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
    assert_eq!((got[0]["from"].as_str(), got[0]["text"].as_str()), (Some(ALICE), Some("through the new router")));
    let got = events(alice().args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
    assert_eq!(got[0]["status"].as_str(), Some("delivered"));
    let why = refused(alice().args(["send", "#team", "hi"]).output().unwrap());
    assert!(why.contains(&format!("cannot deliver to \"#team\": {name} routes E.164 numbers only")), "{why}");

    // Registrar: six-digit codes by SMS; a wrong code is refused, the right one registers.
    let name = format!("{lang}-registrar");
    let registrar = new_and_build(lang, &name, "registrar", scratch.path());
    broker.load_plugin("registrar", &registrar, BIG_PLUGIN_LOAD).unwrap();
    hello("registrar", &name);
    let carol = profiles.path().join("carol");
    ok(broker.chat(&carol).args(["register", CAROL]).stdin(std::process::Stdio::null()).output().unwrap());
    let outbox = std::fs::read_to_string(broker.data.join("sms-outbox.jsonl")).unwrap();
    let sms = outbox.lines().last().unwrap();
    assert!(sms.contains(&format!("Your {name} code is ")), "{sms}");
    let why = refused(broker.chat(&carol).args(["register", CAROL, "--code", "000000"]).output().unwrap());
    assert!(why.contains("wrong code"), "{why}");
    broker.register_chat(&carol, CAROL, 6).unwrap();
    ok(broker.chat(&carol).args(["send", ALICE, "registered by a scaffolded registrar"]).output().unwrap());
    let got = events(alice().args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
    assert_eq!(got[0]["from"].as_str(), Some(CAROL));

    // Receipts: every receipt allowed, so Alice hears "delivered" and "read".
    let name = format!("{lang}-receipts");
    let receipts = new_and_build(lang, &name, "receipts", scratch.path());
    broker.load_plugin("receipts", &receipts, BIG_PLUGIN_LOAD).unwrap();
    hello("receipts", &name);
    ok(alice().args(["send", BOB, "read me"]).output().unwrap());
    events(bob().args(["listen", "--count", "1", "--timeout", "20", "--read"]).output().unwrap());
    let got = events(alice().args(["listen", "--count", "2", "--timeout", "20"]).output().unwrap());
    let statuses: Vec<_> = got.iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(statuses, vec!["delivered", "read"]);
    let counters = &broker.plugins().unwrap()["counters"];
    assert!(counters["receipts"]["allowed"].as_u64() >= Some(2), "{counters}");
    assert!(counters["registrar"]["verified"].as_u64() >= Some(1), "{counters}");
}

#[test]
fn rust_projects_build_and_load() {
    scaffolded_plugins_work("rust");
}

#[test]
fn c_projects_build_and_load() {
    scaffolded_plugins_work("c");
}

#[test]
fn python_projects_build_and_load() {
    scaffolded_plugins_work("python");
}

#[test]
fn js_projects_build_and_load() {
    scaffolded_plugins_work("js");
}

/// The notifier slot has a Rust template only: it builds (its `build.sh` checks the
/// `notifying` export), loads into the notifier slot and answers commands; the other
/// languages refuse the slot with a clear error.
#[test]
fn a_rust_notifier_project_builds_and_loads() {
    let scratch = tempfile::tempdir().unwrap();
    let profiles = tempfile::tempdir().unwrap();
    let broker = Broker::start().unwrap();
    broker.register_chat(&profiles.path().join("alice"), ALICE, 5).unwrap();
    let notifier = new_and_build("rust", "rust-notifier", "notifier", scratch.path());
    broker.load_plugin("notifier", &notifier, BIG_PLUGIN_LOAD).unwrap();
    let said = ok(broker.chat(&profiles.path().join("alice")).args(["command", "notifier", "hello"]).output().unwrap());
    assert_eq!(said.trim(), "hello from rust-notifier (rust notifier)");
    let why = refused(Command::new(bin("hotline")).args(["plugins", "new", "--lang", "python", "py-notifier", "notifier", "--dir"]).arg(scratch.path().join("py")).output().unwrap());
    assert!(why.contains("no python template for the notifier slot"), "{why}");
}
