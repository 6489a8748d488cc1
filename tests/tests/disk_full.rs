//! A full disk: fjall refuses writes from the first failed journal write on. Sends are
//! refused as retryable and nothing acknowledged is lost; `/readyz` and `/healthz` fail with
//! the reason; a gauge shows it; and the log says it once, not once per message.
//!
//! The data folder is a small tmpfs mounted by the test (the tests run as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hotline_protocol::{ErrorCode, ServerFrame};
use hotline_tests::{eventually, Broker};

const ALICE: &str = "+15550970001";
const BOB: &str = "+15550970002";
const T: Duration = Duration::from_secs(20);

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output().unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs as the data folder and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file, until it is full.
fn fill(dir: &Path) {
    let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    while filler.write_all(&chunk).and_then(|()| filler.flush()).is_ok() {}
    while filler.write_all(&chunk[..512]).is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_readiness_with_the_reason_and_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("stderr.log");
    let mount = Tmpfs::mount(&data, "64m");
    let mut broker = Broker::start_at(data.clone(), &[], Some(log.clone()), None).unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    assert_eq!(broker.admin_get("/readyz").unwrap().0, 200);
    assert_eq!(broker.metric("hotline_storage_poisoned").unwrap(), 0.0);

    // Some messages are stored while there is room; then the disk fills.
    let mut stored = Vec::new();
    for n in 0..5u64 {
        alice.send_with_id(n, BOB, vec![1; 4096]).await.unwrap();
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { id, .. } => stored.push(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    fill(&data);

    // Sends may still fit in pages the journal already has; from the first refusal on,
    // every send is refused as retryable, and none is acknowledged and then lost.
    let mut refused = 0;
    for n in 100..400u64 {
        alice.send_with_id(n, BOB, vec![2; 4096]).await.unwrap();
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { id, .. } => {
                assert_eq!(refused, 0, "a send was stored after storage refused one");
                stored.push(id);
            }
            ServerFrame::SendFailed { error: ErrorCode::Retryable, .. } => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("{} sends stored, then {refused} refused", stored.len());
    assert!(refused >= 200, "only {refused} of 300 sends were refused on a full disk");

    let (status, body) = broker.admin_get("/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("storage refuses writes") && body.contains("No space left on device"), "{body}");
    assert_eq!(broker.admin_get("/healthz").unwrap().0, 503);
    assert_eq!(broker.metric("hotline_storage_poisoned").unwrap(), 1.0);
    assert!(broker.metric("hotline_storage_failed_writes_total").unwrap() >= refused as f64);

    // The broker keeps serving what needs no write: Bob logs in and gets what was stored.
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    for id in &stored {
        match bob.next_frame_within(T).await.unwrap() {
            ServerFrame::TypedMessage { id: got, .. } => assert_eq!(got, *id),
            other => panic!("unexpected {other:?}"),
        }
    }

    // One log line for the change of state, not one per refused message.
    let text = eventually(T, || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("storage write failed").then_some(text)
    })
    .expect("the failure is logged");
    let about_storage = text.lines().filter(|l| l.contains("storage") || l.contains("persist failed")).count();
    eprintln!("{text}");
    assert_eq!(text.matches("storage write failed").count(), 1, "{text}");
    assert!(about_storage <= 3, "{about_storage} log lines about storage for {refused} refused sends:\n{text}");

    broker.kill().unwrap();
    drop(mount);
}
