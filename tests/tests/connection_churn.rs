//! Connections that come and go: the broker gives back the memory a connection held once it
//! is gone, takes a burst of logins without dropping a packet, and forgets the sessions of
//! many clients that vanish together at once, not after the idle timeout.
//!
//! The figures each test prints (logins/s, latency, memory) are for reading in the test
//! log; `hotline-bench connections` measures them properly (release build, docs/perf.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hotline_client::Client;
use hotline_tests::Broker;
use tokio::sync::Semaphore;

const MIB: f64 = 1024.0 * 1024.0;
/// Logins in flight at once, as a fleet of phones reconnecting after an outage would be.
const CONCURRENCY: usize = 256;

/// Registers `n` numbers (from `first`) on `broker`.
async fn numbers(broker: &Broker, first: usize, n: usize) -> (Vec<String>, Vec<String>) {
    let phones: Vec<String> = (0..n).map(|i| format!("+1555{:07}", first + i)).collect();
    let keys = broker
        .register_many(&phones, 16)
        .await
        .expect("registration");
    (phones, keys)
}

/// Logs every number in, [`CONCURRENCY`] at a time. Returns the clients and the time each
/// login took (QUIC handshake, `Hello`, `Login`), sorted.
async fn log_in_all(
    broker: &Broker,
    phones: &[String],
    keys: &[String],
) -> (Vec<Client>, Vec<Duration>) {
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let tasks: Vec<_> = phones
        .iter()
        .zip(keys)
        .map(|(phone, key)| {
            let (gate, options, phone, key) =
                (gate.clone(), broker.options(), phone.clone(), key.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let start = Instant::now();
                let mut client = Client::connect(&options).await?;
                client.login(&phone, &key).await?;
                anyhow::Ok((client, start.elapsed()))
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut times = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let (client, took) = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("login {i} ({}) failed: {e:#}", phones[i]));
        clients.push(client);
        times.push(took);
    }
    times.sort();
    (clients, times)
}

/// Waits (without blocking the runtime) until `f` holds, for at most `limit`; returns how
/// long it took, or `None`.
async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn sessions(broker: &Broker) -> f64 {
    broker.metric("hotline_sessions").unwrap()
}

/// Connections the broker's QUIC endpoint holds, closing ones included.
fn quic_connections(broker: &Broker) -> f64 {
    broker.metric("hotline_quic_connections").unwrap()
}

/// The broker's RSS once it has stopped falling: the allocator returns freed pages about a
/// second after they are freed (see host/src/memory.rs).
async fn settled_rss(broker: &Broker) -> f64 {
    let mut last = broker.rss_bytes().unwrap() as f64;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = broker.rss_bytes().unwrap() as f64;
        if (last - now).abs() < 0.5 * MIB {
            return now;
        }
        last = now;
    }
    last
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_after_rounds_of_logins_and_closes() {
    const N: usize = 2000;
    const ROUNDS: usize = 3;
    let broker = Broker::start().unwrap();
    let (phones, keys) = numbers(&broker, 3_000_000, N).await;
    // The registrations' connections are gone too, closing period and all.
    until(Duration::from_secs(30), || quic_connections(&broker) == 0.0)
        .await
        .expect("the registrations' connections end");
    let idle = settled_rss(&broker).await;
    let allocated = |broker: &Broker| broker.metric("hotline_memory_allocated_bytes").unwrap();
    let idle_allocated = allocated(&broker);
    eprintln!(
        "idle: {:.1} MiB ({:.1} MiB allocated)",
        idle / MIB,
        idle_allocated / MIB
    );
    let mut after = Vec::new();
    for round in 0..ROUNDS {
        let (clients, _) = log_in_all(&broker, &phones, &keys).await;
        let held = broker.rss_bytes().unwrap() as f64;
        assert_eq!(quic_connections(&broker), N as f64, "one QUIC connection per client held");
        // Every client closes at the same moment.
        let closes: Vec<_> = clients
            .into_iter()
            .map(|client| tokio::spawn(client.close()))
            .collect();
        for close in closes {
            close.await.unwrap();
        }
        until(Duration::from_secs(10), || sessions(&broker) == 0.0)
            .await
            .expect("every session ends");
        // The connections outlive their sessions by QUIC's closing period, with their
        // buffers and keys; what the broker holds after that is what it keeps.
        let closing = until(Duration::from_secs(30), || quic_connections(&broker) == 0.0)
            .await
            .expect("the QUIC endpoint lets go of every closed connection");
        eprintln!("round {round}: QUIC connections gone {closing:?} after the sessions");
        let rss = settled_rss(&broker).await;
        eprintln!(
            "round {round}: {N} held: {:.1} MiB ({:.1} KiB each); all closed: {:.1} MiB ({:.1} MiB allocated)",
            held / MIB,
            (held - idle) / N as f64 / 1024.0,
            rss / MIB,
            allocated(&broker) / MIB
        );
        assert!(
            held - rss > 40.0 * MIB,
            "closing {N} connections gave back only {:.1} MiB",
            (held - rss) / MIB
        );
        after.push(rss);
    }
    // Nothing a connection allocated outlives it (what the allocator keeps aside, RSS shows).
    let kept = allocated(&broker) - idle_allocated;
    assert!(
        kept < 4.0 * MIB,
        "{:.1} MiB more allocated after {ROUNDS} rounds than idle",
        kept / MIB
    );
    let (first, last) = (after[0], after[ROUNDS - 1]);
    assert!(
        first - idle < 12.0 * MIB,
        "after the first round the broker holds {:.1} MiB more than idle",
        (first - idle) / MIB
    );
    assert!(
        last - first < 6.0 * MIB,
        "after {ROUNDS} rounds the broker holds {:.1} MiB more than after the first",
        (last - first) / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_loses_no_packets() {
    const N: usize = 3000;
    let broker = Broker::start().unwrap();
    let (phones, keys) = numbers(&broker, 4_000_000, N).await;
    let drops = broker.udp_drops().unwrap();
    let start = Instant::now();
    let (clients, times) = log_in_all(&broker, &phones, &keys).await;
    let took = start.elapsed();
    eprintln!(
        "{N} logins, {CONCURRENCY} at a time, in {:.1} s ({:.0}/s): p50 {:?} p99 {:?} max {:?}",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[N - 1]
    );
    assert_eq!(clients.len(), N);
    // Generous for a debug build on a busy machine; lost handshake packets would show here
    // as whole seconds of retransmission timers, and in the drop counter below.
    assert!(took < Duration::from_secs(120), "{N} logins took {took:?}");
    assert_eq!(
        broker.udp_drops().unwrap() - drops,
        0,
        "the broker's socket dropped datagrams in the burst"
    );
    assert_eq!(
        broker.metric("hotline_udp_receive_drops_total").unwrap(),
        broker.udp_drops().unwrap() as f64
    );
    assert!(
        broker.metric("hotline_udp_receive_buffer_bytes").unwrap() >= 32.0 * MIB,
        "the default buffer is 32 MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_together_leave_no_dead_sessions() {
    const N: usize = 2000;
    let broker = Broker::start().unwrap();
    let (phones, keys) = numbers(&broker, 5_000_000, N).await;
    let (clients, _) = log_in_all(&broker, &phones, &keys).await;
    assert_eq!(sessions(&broker), N as f64);
    let drops = broker.udp_drops().unwrap();
    // No goodbye: each connection is closed where it stands (QUIC's CONNECTION_CLOSE, all
    // in the same instant), as when an app is killed or a phone drops its connection.
    drop(clients);
    let gone = until(Duration::from_secs(10), || sessions(&broker) == 0.0).await;
    eprintln!("{N} sessions gone {gone:?} after their clients closed");
    match gone {
        None => panic!(
            "{} sessions still open 10 s after their clients closed",
            sessions(&broker)
        ),
        Some(took) => assert!(
            took < Duration::from_secs(3),
            "the sessions took {took:?} to end after their clients closed"
        ),
    }
    assert_eq!(
        broker.udp_drops().unwrap() - drops,
        0,
        "the broker's socket dropped datagrams"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_too_small_for_a_burst_reports_its_drops() {
    // 4 KiB (the kernel makes it 8): a handful of handshake packets fill it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hotline.toml");
    std::fs::write(&config, "[udp]\nreceive_buffer_bytes = 4096\n").unwrap();
    let mut broker = Broker::start_capturing_stderr(&["--config", config.to_str().unwrap(), "--log-format", "json"], &[]).unwrap();
    let stderr = broker.take_stderr().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    assert_eq!(broker.metric("hotline_udp_receive_buffer_bytes").unwrap(), 8192.0);
    // 300 handshakes at once; whether each gets through is not the point.
    let options = broker.options();
    let attempts: Vec<_> = (0..300)
        .map(|_| {
            let options = options.clone();
            tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(5), Client::connect(&options)).await })
        })
        .collect();
    for attempt in attempts {
        let _ = attempt.await;
    }
    // Abandoned handshakes may still be retransmitting: the kernel's counter read just
    // before and just after the metric brackets it.
    let before = broker.udp_drops().unwrap() as f64;
    let drops = broker.metric("hotline_udp_receive_drops_total").unwrap();
    let after = broker.udp_drops().unwrap() as f64;
    assert!(drops > 0.0, "300 handshakes at once into an 8 KiB buffer dropped nothing");
    assert!(before <= drops && drops <= after, "the metric ({drops}) is the kernel's counter ({before}..{after})");
    // The broker says so in its log, within its 10 s check.
    let warning = loop {
        let line = lines.recv_timeout(Duration::from_secs(20)).expect("a warning about drops in the log");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if event["message"].as_str().unwrap_or_default().contains("dropped datagrams") {
            break event;
        }
    };
    assert!(warning["dropped"].as_u64().unwrap_or(0) > 0, "{warning}");
    assert!(warning["message"].as_str().unwrap().contains("udp.receive_buffer_bytes"), "{warning}");
}
