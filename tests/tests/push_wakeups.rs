//! Push wake-ups against the real broker and a local HTTP receiver standing in for the push
//! gateway: a recipient with a push token that is offline gets one wake-up for a new
//! backlog (its number, its token, `{"waiting":1}`, never the body or the sender), none for
//! ten more within the interval, and one again for a message after it connected and drained
//! its queue; receipts for an offline sender wake nobody; a gateway that hangs never delays
//! `Sent`, and one that is down fails the wake-up (counted) and nothing else; a notifier
//! plugin that traps wakes nobody and the broker keeps serving, and one in probation is
//! rolled back to the built-in notifier, which wakes again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hotline_client::Client;
use hotline_tests::{answer_to, eventually, take_messages, Broker};
use serde_json::Value;

const ALICE: &str = "+15550920001";
const BOB: &str = "+15550920002";
const CAT: &str = "+15550920003";
const T: Duration = Duration::from_secs(20);

/// One request the receiver got.
#[derive(Debug)]
struct Request {
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    /// Never answers (holds the connection open).
    Hang,
}

/// A local HTTP/1.1 receiver on a thread per connection; every request goes to the channel.
fn receiver(answer: Answer) -> (u16, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, answer, tx));
        }
    });
    (port, rx)
}

fn serve(stream: TcpStream, answer: Answer, tx: mpsc::Sender<Request>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let _ = tx.send(Request { headers, body: String::from_utf8_lossy(&body).into_owned() });
        match answer {
            Answer::Ok => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}");
            }
            Answer::Hang => std::thread::sleep(Duration::from_secs(120)),
        }
    }
}

fn config(port: u16, extra: &str) -> String {
    format!(
        "[push]\nbatch_ms = 100\n\n[push.webhook]\nurl = \"http://127.0.0.1:{port}/push\"\nhmac_secret = \"whsec_push_test\"\ntimeout_ms = 2000\nattempts = 2\nbackoff_ms = 50\n{extra}"
    )
}

/// Logs `phone` in, stores `token` for it and disconnects; returns once the broker has no
/// session for it (`hotline_connections` back to `others`).
async fn set_token_and_leave(broker: &Broker, phone: &str, key: &str, token: &str, others: f64) {
    let mut client = broker.login(phone, key).await.unwrap();
    client.set_push_token(token).await.unwrap();
    client.close().await;
    offline(broker, others);
}

fn offline(broker: &Broker, others: f64) {
    eventually(T, || (broker.metric("hotline_connections").ok()? == others).then_some(())).expect("the session ended");
}

fn metric(broker: &Broker, name: &str) -> f64 {
    broker.metric(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `body` to `to` and waits for `Sent`; returns how long that took.
async fn send(client: &mut Client, to: &str, body: &str) -> Duration {
    let started = Instant::now();
    let cid = client.send(to, body.as_bytes().to_vec()).await.unwrap();
    answer_to(client, cid).await.expect("stored");
    started.elapsed()
}

/// Every wake-up in the next request within `limit`.
fn next_wakeups(rx: &mpsc::Receiver<Request>, limit: Duration) -> Option<(Request, Vec<Value>)> {
    let request = rx.recv_timeout(limit).ok()?;
    let wakeups = request.json()["wakeups"].as_array().expect("a wakeups list").clone();
    Some((request, wakeups))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_is_woken_once_per_backlog_with_its_number_and_never_the_body() {
    let (port, rx) = receiver(Answer::Ok);
    let broker = Broker::start_with_config(&config(port, "")).unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    set_token_and_leave(&broker, BOB, &bob_key, "tok-bob-1", 0.0).await;

    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    alice.set_push_token("tok-alice-1").await.unwrap();
    send(&mut alice, BOB, "the secret body").await;

    let (request, wakeups) = next_wakeups(&rx, T).expect("a wake-up reaches the gateway");
    assert_eq!(wakeups.len(), 1, "{}", request.body);
    let w = &wakeups[0];
    assert_eq!(w["number"], BOB);
    assert_eq!(w["token"], "tok-bob-1");
    assert_eq!(w["payload"], "{\"waiting\":1}");
    assert_eq!(w["waiting"], 1);
    assert!(w["at_ms"].as_u64().is_some(), "{w}");
    assert!(request.json()["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{}", request.body);
    assert!(!request.body.contains("secret body") && !request.body.contains(ALICE), "the body or the sender leaked: {}", request.body);
    assert!(request.header("x-hotline-signature").is_some_and(|s| s.starts_with("sha256=")), "{:?}", request.headers);
    assert_eq!(request.header("x-hotline-request-id"), request.json()["request_id"].as_str());

    // Ten more within the minute: the notifier skips each, nothing is posted.
    for i in 0..10 {
        send(&mut alice, BOB, &format!("more {i}")).await;
    }
    let (wake, skip) = ("hotline_push_notifier_decisions_total{decision=\"wake\"}", "hotline_push_notifier_decisions_total{decision=\"skip\"}");
    // The worker asks once per number taken from its queue: a number queued again before
    // the worker took it is asked about once (coalesced), so up to ten skips.
    eventually(T, || (metric(&broker, skip) >= 1.0).then_some(())).expect("the notifier was asked again");
    // Past the batch window: any batch would be posted by now.
    assert!(next_wakeups(&rx, Duration::from_millis(600)).is_none(), "woken again within the interval");
    let skipped = metric(&broker, skip);
    assert_eq!(metric(&broker, wake), 1.0, "one wake-up only");
    assert!((1.0..=10.0).contains(&skipped), "{skipped} skips");

    // Alice leaves; Bob connects and drains his queue: his acknowledgements queue delivered
    // receipts for Alice, who is offline with a token; a receipt alone wakes nobody.
    alice.close().await;
    offline(&broker, 0.0);
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    take_messages(&mut bob, 11).await;
    let receipts = "hotline_receipts_queued_total{status=\"delivered\"}";
    eventually(T, || (metric(&broker, receipts) >= 11.0).then_some(())).expect("delivered receipts queued");
    bob.close().await;
    offline(&broker, 0.0);
    assert!(next_wakeups(&rx, Duration::from_millis(600)).is_none(), "receipts woke someone");

    // A later message starts a new backlog: Bob is woken again.
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    send(&mut alice, BOB, "later").await;
    let (request, wakeups) = next_wakeups(&rx, T).expect("woken again after draining");
    assert_eq!(wakeups.len(), 1, "{}", request.body);
    assert_eq!((wakeups[0]["number"].as_str(), wakeups[0]["waiting"].as_u64()), (Some(BOB), Some(1)));
    // The poster counts a batch once the gateway's answer is back, just after the receiver
    // saw the request.
    let sent = "hotline_push_wakeups_total{outcome=\"sent\"}";
    eventually(T, || (metric(&broker, sent) >= 2.0).then_some(())).expect("both wake-ups counted as sent");
    assert_eq!(metric(&broker, sent), 2.0);
    assert_eq!(metric(&broker, "hotline_push_dropped_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_hangs_never_delays_sent() {
    let (port, rx) = receiver(Answer::Hang);
    let broker = Broker::start_with_config(&config(port, "")).unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let mut keys = Vec::new();
    for phone in [BOB, CAT] {
        keys.push(broker.register(phone).await.unwrap());
    }
    // Baseline: sends to nobody with a token, before the gateway is involved.
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let mut before = Vec::new();
    for i in 0..20 {
        before.push(send(&mut alice, ALICE, &format!("to self {i}")).await);
    }
    alice.close().await;
    offline(&broker, 0.0);
    for (phone, key) in [BOB, CAT].into_iter().zip(&keys) {
        set_token_and_leave(&broker, phone, key, &format!("tok-{phone}"), 0.0).await;
    }

    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    send(&mut alice, BOB, "first").await;
    // The gateway took the request and hangs: the poster is stuck in it from now on.
    rx.recv_timeout(T).expect("the gateway was called");
    let mut during = Vec::new();
    for i in 0..40 {
        let to = if i % 2 == 0 { BOB } else { CAT };
        during.push(send(&mut alice, to, &format!("while the gateway hangs {i}")).await);
    }
    let max = |v: &[Duration]| v.iter().max().copied().unwrap();
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (before_max, during_max) = (max(&before), max(&during));
    eprintln!(
        "send→Sent before: median {:?} max {before_max:?}; while the gateway hangs: median {:?} max {during_max:?}",
        median(&mut before),
        median(&mut during)
    );
    assert!(during_max < Duration::from_secs(1), "a send waited {during_max:?} while the gateway hung");
    // The wake-up for Cat was decided meanwhile and waits behind the stuck post.
    eventually(T, || (metric(&broker, "hotline_push_notifier_decisions_total{decision=\"wake\"}") >= 2.0).then_some(())).unwrap();
    assert_eq!(metric(&broker, "hotline_push_wakeups_total{outcome=\"sent\"}"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_that_traps_wakes_nobody_and_the_broker_keeps_serving() {
    let (port, rx) = receiver(Answer::Ok);
    // No automatic rollback: every call goes to the trapping version.
    let broker = Broker::start_with_config(&config(port, "\n[plugins]\nprobation_failures = 0\n")).unwrap();
    let trap = std::fs::read(env!("HOTLINE_TEST_PLUGIN_NOTIFIER_TRAP")).unwrap();
    broker.load_plugin("notifier", &trap, T).unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    set_token_and_leave(&broker, BOB, &bob_key, "tok-bob", 0.0).await;

    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    send(&mut alice, BOB, "one").await;
    let failed = "hotline_push_notifier_decisions_total{decision=\"failed\"}";
    eventually(T, || (metric(&broker, failed) >= 1.0).then_some(())).expect("the notifier was called and failed");
    assert!(next_wakeups(&rx, Duration::from_millis(600)).is_none(), "a trapping notifier woke someone");
    // Messages still flow: Alice sends again, Bob gets both.
    send(&mut alice, BOB, "two").await;
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    assert_eq!(take_messages(&mut bob, 2).await.len(), 2);
    let report = broker.plugins().unwrap();
    let current = report["versions"].as_array().unwrap().iter().find(|v| v["slot"] == "notifier" && v["state"] != "previous").cloned().unwrap();
    assert!(current["error_kinds"]["trap"].as_u64().unwrap() >= 1, "{current}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_is_down_fails_the_wakeup_and_nothing_else() {
    // A port nobody listens on: every attempt is refused at once.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let broker = Broker::start_with_config(&config(port, "")).unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    set_token_and_leave(&broker, BOB, &bob_key, "tok-bob", 0.0).await;

    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let took = send(&mut alice, BOB, "hello").await;
    assert!(took < Duration::from_secs(1), "Sent took {took:?}");
    let failed = "hotline_push_wakeups_total{outcome=\"failed\"}";
    eventually(T, || (metric(&broker, failed) >= 1.0).then_some(())).expect("the wake-up failed");
    assert_eq!(metric(&broker, "hotline_outbound_requests_total{gateway=\"push\",outcome=\"gave_up\"}"), 1.0);
    // The message itself is unaffected: Bob gets it.
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    assert_eq!(take_messages(&mut bob, 1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_notifier_in_probation_is_rolled_back_and_wake_ups_resume() {
    let (port, rx) = receiver(Answer::Ok);
    let broker = Broker::start_with_config(&config(port, "")).unwrap();
    let trap = std::fs::read(env!("HOTLINE_TEST_PLUGIN_NOTIFIER_TRAP")).unwrap();
    let built_in = broker.current_version("notifier").unwrap();
    broker.load_plugin("notifier", &trap, T).unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let others = ["+15550920011", "+15550920012", "+15550920013", "+15550920014"];
    for (i, phone) in others.iter().enumerate() {
        let key = broker.register(phone).await.unwrap();
        set_token_and_leave(&broker, phone, &key, &format!("tok-{i}"), 0.0).await;
    }
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    // Three numbers, three failed calls in probation (plugins.probation_failures = 3).
    for phone in &others[..3] {
        send(&mut alice, phone, "to a sleeping phone").await;
    }
    eventually(T, || (metric(&broker, "hotline_plugin_rollbacks_total") >= 1.0).then_some(())).expect("the notifier was rolled back");
    assert_eq!(broker.current_version("notifier").unwrap(), built_in);
    assert!(next_wakeups(&rx, Duration::from_millis(300)).is_none(), "a trapping notifier woke someone");
    // The built-in notifier serves again: the fourth number is woken.
    send(&mut alice, others[3], "after the rollback").await;
    let (_, wakeups) = next_wakeups(&rx, T).expect("woken by the built-in notifier");
    assert_eq!(wakeups[0]["number"], others[3]);
}
