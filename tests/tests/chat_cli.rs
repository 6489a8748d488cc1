//! `hotline-chat` against the real broker: registration in two steps remembers the server,
//! CA and number from the first; the profile holding the key is private; `send` retries a
//! Retryable refusal with the same client id, says so, and fails clearly when it runs out.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use hotline_tests::{bin, events, install, ok, refused, version_of, Broker};

const ALICE: &str = "+15550910001";
const BOB: &str = "+15550910002";
const T: Duration = Duration::from_secs(30);

#[test]
fn register_in_two_steps_remembers_the_server_ca_and_number_and_keeps_the_key_private() {
    let broker = Broker::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("bob");
    // Step one, as in the README: the code is requested with --server and --ca.
    ok(broker.chat(&profile).args(["register", BOB]).stdin(Stdio::null()).output().unwrap());
    let code = broker.sms_code(BOB).unwrap();
    // Step two without --server, --ca or the number, from another folder: the profile has them.
    let chat = || {
        let mut cmd = Command::new(bin("hotline-chat"));
        cmd.arg("--profile").arg(&profile).current_dir(dir.path());
        cmd
    };
    let out = ok(chat().args(["register", "--code", &code]).output().unwrap());
    assert!(out.contains(&format!("registered {BOB}")), "{out}");
    let path = profile.join("profile.json");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "profile.json holds the key");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(saved["server"], broker.addr.to_string());
    assert_eq!(saved["phone"], BOB);
    // The registered profile works without the options too.
    ok(chat().args(["send", BOB, "note to self"]).output().unwrap());
    let got = events(chat().args(["listen", "--count", "1", "--timeout", "20"]).output().unwrap());
    assert_eq!(got[0]["text"], "note to self");
}

#[test]
fn send_retries_a_retryable_refusal_with_the_same_client_id() {
    // The trapping router stays current however often it fails, so every send is Retryable.
    let broker = Broker::start_with_config("[plugins]\nprobation_failures = 1000000\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    broker.register_chat(&alice, ALICE, 5).unwrap();
    broker.register_chat(&bob, BOB, 5).unwrap();
    let good = std::fs::read(broker.plugin_dir().join("router.wasm")).unwrap();
    broker.load_plugin("router", &std::fs::read(env!("HOTLINE_TEST_PLUGIN_TRAP")).unwrap(), T).unwrap();

    // Out of retries: every attempt is reported, then a clear failure.
    let err = refused(broker.chat(&alice).args(["send", BOB, "lost?", "--retries", "2"]).output().unwrap());
    assert!(err.contains("attempt 1 of 3 refused (Retryable)"), "{err}");
    assert!(err.contains("attempt 2 of 3 refused (Retryable)"), "{err}");
    assert!(err.contains("not sent after 3 attempts (Retryable)"), "{err}");

    // The good router comes back while `send` waits to retry: the retry goes through.
    let mut child = broker
        .chat(&alice)
        .args(["send", BOB, "got through", "--retries", "6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("attempt 1 of 7 refused (Retryable)"), "{first}");
    install(&broker.plugin_dir(), "router.wasm", &good).unwrap();
    broker.wait_for_version("router", &version_of(&good), T).unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "send failed: {first}{rest}");
    let id = String::from_utf8(out.stdout).unwrap();
    assert!(id.trim().parse::<u64>().is_ok(), "expected the message id, got {id:?}");

    // Bob gets that message once, and not the one that was never sent.
    let got = events(broker.chat(&bob).args(["listen", "--timeout", "3"]).output().unwrap());
    let texts: Vec<_> = got.iter().filter(|e| e["type"] == "message").map(|e| e["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["got through"]);
}
