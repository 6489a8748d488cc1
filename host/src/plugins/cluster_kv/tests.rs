//! The bucket backend against a real `nats-server` (JetStream on, started by each test on
//! a free loopback port), with the behaviours the store's plugin kv tests check, and the
//! same answers from two nodes (two clients) sharing the bucket.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// A `nats-server -js` on a free loopback port; killed on drop.
struct NatsServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/tools/bin/nats-server` (installed by `scripts/setup bench`), or `HOTLINE_NATS_SERVER`.
fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HOTLINE_NATS_SERVER") {
        return path.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("tools/bin/nats-server");
    assert!(path.exists(), "{} is missing: run scripts/setup bench (or set HOTLINE_NATS_SERVER)", path.display());
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl NatsServer {
    fn start() -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        NatsServer { child, url: format!("nats://127.0.0.1:{port}"), _dir: dir }
    }

    /// A JetStream context of a new client, once the server answers JetStream requests.
    fn jetstream(&self, runtime: &tokio::runtime::Runtime) -> jetstream::Context {
        let deadline = Instant::now() + Duration::from_secs(20);
        runtime.block_on(async {
            loop {
                if let Ok(client) = async_nats::connect(&self.url).await {
                    let js = jetstream::new(client);
                    if js.query_account().await.is_ok() {
                        return js;
                    }
                }
                assert!(Instant::now() < deadline, "nats-server at {} did not serve JetStream", self.url);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn open(server: &NatsServer, runtime: &tokio::runtime::Runtime) -> NatsPluginKv {
    NatsPluginKv::open(server.jetstream(runtime), "hotline", 1, runtime.handle().clone()).unwrap()
}

#[test]
fn cluster_kv_get_set_delete_and_slots_apart() {
    let server = NatsServer::start();
    let runtime = runtime();
    let kv = open(&server, &runtime);
    assert_eq!(kv.get("router", b"k").unwrap(), None);
    kv.set("router", b"k", b"v1").unwrap();
    kv.set("router", b"k", b"v2").unwrap();
    assert_eq!(kv.get("router", b"k").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(kv.get("receipts", b"k").unwrap(), None, "another slot's space");
    kv.delete("router", b"k").unwrap();
    kv.delete("router", b"k").unwrap();
    assert_eq!(kv.get("router", b"k").unwrap(), None);
    // Any bytes as a key (NATS keys allow few characters), the empty key, an empty value,
    // and a value at the limit.
    let odd = [0u8, b'.', b'*', b'>', 0xff, b' '];
    kv.set("router", &odd, b"odd").unwrap();
    kv.set("router", b"", b"").unwrap();
    let big = vec![7u8; crate::plugins::MAX_VALUE_BYTES];
    kv.set("router", b"big", &big).unwrap();
    // A key at the limit (2 KiB of hex in the subject).
    let long = vec![0xabu8; crate::plugins::MAX_KEY_BYTES];
    assert!(kv.compare_and_swap("router", &long, None, Some(b"long")).unwrap());
    assert_eq!(kv.increment("router", &long, 1).unwrap_err().to_string(), "the value is 4 bytes long, not a counter (8 bytes, little-endian)");
    assert_eq!(kv.keys("router", &long[..10], 10).unwrap(), vec![long.clone()]);
    kv.delete("router", &long).unwrap();
    assert_eq!(kv.get("router", &odd).unwrap().as_deref(), Some(&b"odd"[..]));
    assert_eq!(kv.get("router", b"").unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(kv.get("router", b"big").unwrap(), Some(big));
    assert_eq!(kv.keys("router", b"", 10).unwrap(), [b"".to_vec(), odd.to_vec(), b"big".to_vec()]);
}

#[test]
fn cluster_kv_compare_and_swap_increment_and_keys_after() {
    let server = NatsServer::start();
    let runtime = runtime();
    let kv = open(&server, &runtime);
    assert!(kv.compare_and_swap("router", b"k", None, Some(b"1")).unwrap());
    assert!(!kv.compare_and_swap("router", b"k", None, Some(b"2")).unwrap());
    assert!(!kv.compare_and_swap("router", b"k", Some(b"2"), Some(b"3")).unwrap());
    assert_eq!(kv.get("router", b"k").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(kv.compare_and_swap("router", b"k", Some(b"1"), None).unwrap());
    assert_eq!(kv.get("router", b"k").unwrap(), None);
    // Created again after a delete (the key's last entry is a delete marker).
    assert!(kv.compare_and_swap("router", b"k", None, Some(b"4")).unwrap());
    assert_eq!(kv.get("router", b"k").unwrap().as_deref(), Some(&b"4"[..]));
    assert!(kv.compare_and_swap("router", b"absent", None, None).unwrap());

    assert_eq!(kv.increment("router", b"n", 5).unwrap(), 5);
    assert_eq!(kv.increment("router", b"n", -7).unwrap(), -2);
    assert_eq!(kv.get("router", b"n").unwrap().unwrap(), (-2i64).to_le_bytes());
    let overflow = kv.increment("router", b"n", i64::MIN).unwrap_err();
    assert!(matches!(overflow, IncrementError::Overflow { value: -2, delta: i64::MIN }), "{overflow}");
    assert!(overflow.to_string().contains("overflow"));
    assert_eq!(kv.get("router", b"n").unwrap().unwrap(), (-2i64).to_le_bytes(), "a refused increment changes nothing");
    kv.set("router", b"s", b"text").unwrap();
    let not_counter = kv.increment("router", b"s", 1).unwrap_err();
    assert!(matches!(not_counter, IncrementError::NotACounter(4)), "{not_counter}");
    assert!(not_counter.to_string().contains("not a counter"));
    assert_eq!(kv.get("router", b"s").unwrap().as_deref(), Some(&b"text"[..]));
    // Another slot's space is another counter.
    assert_eq!(kv.increment("receipts", b"n", 1).unwrap(), 1);

    for k in ["a", "b/1", "b/2", "b/3", "c"] {
        kv.set("router", k.as_bytes(), b"").unwrap();
    }
    kv.set("router", b"b/4", b"").unwrap();
    kv.delete("router", b"b/4").unwrap();
    assert_eq!(kv.keys("router", b"b/", 10).unwrap(), [b"b/1".to_vec(), b"b/2".to_vec(), b"b/3".to_vec()]);
    assert_eq!(kv.keys("router", b"b/", 2).unwrap().len(), 2);
    assert!(kv.keys("router", b"z", 10).unwrap().is_empty());
    assert!(kv.keys("notifier", b"", 10).unwrap().is_empty(), "a slot never written");
    let page = |after: &[u8]| kv.keys_after("router", b"b/", after, 2).unwrap();
    assert_eq!(page(b""), [b"b/1".to_vec(), b"b/2".to_vec()]);
    assert_eq!(page(b"b/2"), [b"b/3".to_vec()]);
    assert!(page(b"b/3").is_empty());
    assert!(kv.keys_after("router", b"b/", b"z", 2).unwrap().is_empty());
}

#[test]
fn cluster_kv_increments_from_two_nodes_are_exact() {
    let server = NatsServer::start();
    let runtime = runtime();
    // Two nodes: two clients, each its own handle of the one bucket.
    let nodes = [Arc::new(open(&server, &runtime)), Arc::new(open(&server, &runtime))];
    std::thread::scope(|s| {
        for i in 0..8 {
            let kv = nodes[i % 2].clone();
            s.spawn(move || {
                for _ in 0..50 {
                    kv.increment("router", b"n", 1).unwrap();
                    // A compare-and-swap loop on another key, racing the same way.
                    loop {
                        let old = kv.get("router", b"m").unwrap();
                        let value = old.as_deref().map_or(0, |b| i64::from_le_bytes(b.try_into().unwrap()));
                        if kv.compare_and_swap("router", b"m", old.as_deref(), Some(&(value + 1).to_le_bytes())).unwrap() {
                            break;
                        }
                    }
                }
            });
        }
    });
    for kv in &nodes {
        assert_eq!(kv.get("router", b"n").unwrap().unwrap(), 400i64.to_le_bytes());
        assert_eq!(kv.get("router", b"m").unwrap().unwrap(), 400i64.to_le_bytes());
    }
}

#[test]
fn cluster_kv_fails_clearly_when_nats_is_gone() {
    let server = NatsServer::start();
    let runtime = runtime();
    let kv = open(&server, &runtime);
    kv.set("router", b"k", b"v").unwrap();
    drop(server);
    let started = Instant::now();
    let error = kv.get("router", b"k").unwrap_err();
    assert!(matches!(error, KvError::Bucket(_)), "{error}");
    assert!(started.elapsed() < OP_TIMEOUT + Duration::from_secs(1), "bounded by the time limit: {:?}", started.elapsed());
    assert!(matches!(kv.increment("router", b"n", 1), Err(IncrementError::Backend(KvError::Bucket(_)))));
}
