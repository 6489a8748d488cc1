//! The client library against the real broker: a restarted broker ends old connections at
//! once (its stateless-reset key outlives the process), a split client pipelines thousands
//! of sends from one task while another reads the answers, and the broker says in words why
//! a frame is malformed. A client that keeps its TLS config resumes its TLS session on the
//! next connect (the broker sends no certificate again); many clients share one endpoint;
//! `Hello` and `Login` in one write log in with one exchange.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hotline_client::{Client, ClientError, ConnectOptions};
use hotline_protocol::{close_code, ServerFrame};
use hotline_tests::Broker;

const ALICE: &str = "+15550900001";
const BOB: &str = "+15550900002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_client_learns_of_a_broker_restart_within_3_seconds() {
    let mut broker = Broker::start().unwrap();
    let key_file = broker.data.join("quic-reset-key");
    let key = std::fs::read(&key_file).expect("the broker keeps its reset key in the data folder");
    assert_eq!(key.len(), 32);
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);

    let alice_key = broker.register(ALICE).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    // The client waits for frames, as an idle app does; it notes when its connection ends.
    let watcher = tokio::spawn(async move {
        let error = loop {
            match alice.next_frame().await {
                Ok(frame) => eprintln!("frame while waiting: {frame:?}"),
                Err(e) => break e,
            }
        };
        (Instant::now(), error)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let broker = tokio::task::spawn_blocking(move || {
        broker.kill().unwrap();
        broker.start_again().unwrap();
        broker
    })
    .await
    .unwrap();
    let restarted = Instant::now();
    let (ended, error) = tokio::time::timeout(Duration::from_secs(20), watcher)
        .await
        .expect("the connection did not end within 20 s of the restart")
        .unwrap();
    let after = ended.saturating_duration_since(restarted);
    eprintln!("connection ended {after:?} after the restart: {error}");
    assert!(after < Duration::from_secs(3), "the client learnt of the restart only after {after:?}: {error}");
    assert!(
        matches!(&error, ClientError::Lost(why) if why == "the broker reset the connection (restarted?)"),
        "{error:?}"
    );
    // The same key after the restart, and the client can log in again at once.
    assert_eq!(std::fs::read(&key_file).unwrap(), key);
    broker.login(ALICE, &alice_key).await.unwrap().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_client_pipelines_5000_sends_while_another_task_reads_every_answer() {
    const N: u64 = 5000;
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    broker.register(BOB).await.unwrap();
    let alice = broker.login(ALICE, &alice_key).await.unwrap();
    let (mut tx, mut rx) = alice.split();

    // One task writes every send without reading anything (1 KiB each: more than the
    // stream's flow-control windows hold, so the writer depends on the reader).
    let sender = tokio::spawn(async move {
        for client_id in 0..N {
            tx.send_with_id(client_id, BOB, vec![b'x'; 1024]).await.unwrap();
        }
        tx
    });
    // The other reads every answer.
    let reader = tokio::spawn(async move {
        let mut answered = HashSet::new();
        while answered.len() < N as usize {
            match rx.next_frame_within(Duration::from_secs(30)).await {
                Ok(ServerFrame::Sent { client_id, .. }) => assert!(answered.insert(client_id), "{client_id} answered twice"),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => panic!("after {} answers: {e}", answered.len()),
            }
        }
        (rx, answered)
    });
    let started = Instant::now();
    let (tx, (rx, answered)) = tokio::time::timeout(Duration::from_secs(300), async {
        (sender.await.unwrap(), reader.await.unwrap())
    })
    .await
    .expect("pipelined sends did not all get answers");
    eprintln!("{N} pipelined sends answered in {:?}", started.elapsed());
    assert_eq!(answered, (0..N).collect::<HashSet<_>>());
    // The halves go back together to close cleanly.
    Client::reunite(tx, rx).unwrap().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_says_in_words_why_a_frame_is_malformed() {
    let broker = Broker::start().unwrap();
    let mut client = broker.connect().await.unwrap();
    // Frame type 200 (varint c8 01) does not exist.
    client.write_raw(&[0, 0, 0, 2, 0xC8, 0x01]).await.unwrap();
    match client.next_frame_within(Duration::from_secs(10)).await {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, close_code::MALFORMED_FRAME);
            assert_eq!(reason, "malformed frame: unknown frame type 200 (known: 0 to 10)");
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

/// A certificate verifier that counts the certificates it is asked to check, and checks
/// them as the client library does (against the broker's development certificate).
#[derive(Debug)]
struct CountingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    checked: AtomicUsize,
}

impl rustls::client::danger::ServerCertVerifier for CountingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.checked.fetch_add(1, Ordering::SeqCst);
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client config as `hotline_client::client_config` makes it, checking the broker's
/// certificate through `verifier`; each call has its own ticket store, as each device has.
fn counting_config(verifier: &Arc<CountingVerifier>) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    tls.alpn_protocols = vec![hotline_protocol::ALPN.to_vec()];
    quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap()))
}

fn counting_verifier(broker: &Broker) -> Arc<CountingVerifier> {
    let pem = std::fs::read(broker.data.join("tls/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
    Arc::new(CountingVerifier { inner, checked: AtomicUsize::new(0) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeping_its_tls_config_resumes_without_a_certificate() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let verifier = counting_verifier(&broker);
    let options = ConnectOptions { config: Some(counting_config(&verifier)), ..broker.options() };

    let mut first = Client::connect(&options).await.unwrap();
    first.login(ALICE, &alice_key).await.unwrap();
    first.close().await;
    assert_eq!(verifier.checked.load(Ordering::SeqCst), 1, "the first handshake checks the broker's certificate");
    for _ in 0..3 {
        let mut again = Client::connect(&options).await.unwrap();
        again.login(ALICE, &alice_key).await.unwrap();
        again.close().await;
    }
    assert_eq!(
        verifier.checked.load(Ordering::SeqCst),
        1,
        "the reconnects resumed the TLS session with the broker's ticket: no certificate was sent to check"
    );
    // A client without the kept config still makes a full handshake, and logs in.
    let mut fresh = Client::connect(&broker.options()).await.unwrap();
    fresh.login(ALICE, &alice_key).await.unwrap();
    fresh.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_devices_than_a_session_cache_holds_all_resume() {
    // rustls' default server keeps 256 sessions (two per handshake); the broker's tickets
    // carry the session themselves, so 300 devices reconnecting all resume.
    const DEVICES: usize = 300;
    let broker = Broker::start().unwrap();
    let verifier = counting_verifier(&broker);
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let devices: Vec<ConnectOptions> = (0..DEVICES)
        .map(|_| ConnectOptions {
            endpoint: Some(endpoint.clone()),
            config: Some(counting_config(&verifier)),
            ..broker.options()
        })
        .collect();
    for round in 0..2 {
        let permits = Arc::new(tokio::sync::Semaphore::new(32));
        let mut connects = tokio::task::JoinSet::new();
        for options in &devices {
            let options = options.clone();
            let permit = permits.clone().acquire_owned().await.unwrap();
            connects.spawn(async move {
                // Connect says Hello and waits for Welcome: the ticket came before it.
                let client = Client::connect(&options).await.unwrap();
                client.close().await;
                drop(permit);
            });
        }
        while let Some(done) = connects.join_next().await {
            done.unwrap();
        }
        assert_eq!(verifier.checked.load(Ordering::SeqCst), DEVICES, "round {round}: one certificate check per device, in the first round only");
    }
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).map(|cert| cert.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sharing_one_endpoint_log_in_and_close_cleanly() {
    let broker = Broker::start().unwrap();
    let phones: Vec<String> = (0..40).map(|i| format!("+1555091{i:04}")).collect();
    let keys = broker.register_many(&phones, 8).await.unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = hotline_client::client_config(&broker.data.join("tls/cert.pem")).unwrap();
    let options = ConnectOptions { endpoint: Some(endpoint.clone()), config: Some(config), ..broker.options() };
    let mut logins = tokio::task::JoinSet::new();
    for (phone, key) in phones.iter().cloned().zip(keys) {
        let options = options.clone();
        logins.spawn(async move {
            let mut client = Client::connect(&options).await?;
            client.login(&phone, &key).await?;
            Ok::<_, ClientError>(client)
        });
    }
    let mut clients = Vec::new();
    while let Some(client) = logins.join_next().await {
        clients.push(client.unwrap().unwrap());
    }
    assert_eq!(clients.len(), 40);
    assert_eq!(endpoint.open_connections(), 40, "every client on the one socket");
    assert_eq!(broker.metric("hotline_sessions").unwrap(), 40.0);
    let closes: Vec<_> = clients.into_iter().map(|c| tokio::spawn(c.close())).collect();
    let started = Instant::now();
    for close in closes {
        close.await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(3), "a close waits for its own connection, not the shared endpoint");
    let deadline = Instant::now() + Duration::from_secs(5);
    while broker.metric("hotline_sessions").unwrap() > 0.0 {
        assert!(Instant::now() < deadline, "sessions left after the closes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The shared endpoint still serves a new connection after the others closed.
    let client = Client::connect(&options).await.unwrap();
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_and_login_in_one_write_log_in_and_get_what_is_queued() {
    let broker = Broker::start().unwrap();
    let alice_key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();
    let mut alice = broker.login(ALICE, &alice_key).await.unwrap();
    let cid = alice.send(BOB, b"waiting for you".to_vec()).await.unwrap();
    hotline_tests::answer_to(&mut alice, cid).await.unwrap();

    let mut bob = Client::connect_and_login(&broker.options(), BOB, &bob_key).await.unwrap();
    assert_eq!(bob.version(), hotline_protocol::PROTOCOL_VERSION, "the Welcome was read and kept");
    match bob.next_frame_within(Duration::from_secs(5)).await.unwrap() {
        ServerFrame::TypedMessage { from, body, .. } => assert_eq!((from.as_str(), body.as_slice()), (ALICE, &b"waiting for you"[..])),
        other => panic!("expected the queued message, got {other:?}"),
    }
    assert_eq!(broker.metric("hotline_sessions").unwrap(), 2.0);

    // A wrong key is refused as after a separate Hello: the broker closes with AUTH_FAILED.
    match Client::connect_and_login(&broker.options(), ALICE, "not-the-key").await {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, close_code::AUTH_FAILED);
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("expected the broker's close, got {other}"),
        Ok(_) => panic!("a wrong key logged in"),
    }
    // An older protocol range still gets its own version before the login.
    let old = ConnectOptions { versions: (1, 2), ..broker.options() };
    let alice2 = Client::connect_and_login(&old, ALICE, &alice_key).await.unwrap();
    assert_eq!(alice2.version(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_mtu_probes_only_when_both_sides_turn_them_on() {
    // By default neither side probes: a login is fewer datagrams, packets stay at 1,200 bytes.
    let broker = Broker::start().unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let client = Client::connect_and_login(&broker.options(), ALICE, &key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = client.stats();
    assert_eq!((stats.path.sent_plpmtud_probes, stats.path.current_mtu), (0, 1200), "{:?}", stats.path);
    let default_datagrams = stats.udp_tx.datagrams + stats.udp_rx.datagrams;
    client.close().await;
    drop(broker);

    // `udp.mtu_discovery = true` and `ConnectOptions::mtu_discovery`: both sides probe, and
    // on loopback the path grows to QUIC's largest (1,452 bytes).
    let broker = Broker::start_with_config("[udp]\nmtu_discovery = true\n").unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let options = ConnectOptions { mtu_discovery: true, ..broker.options() };
    let client = Client::connect_and_login(&options, ALICE, &key).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.stats().path.current_mtu < 1452 {
        assert!(Instant::now() < deadline, "the path MTU did not grow: {:?}", client.stats().path);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = client.stats();
    assert!(stats.path.sent_plpmtud_probes > 0);
    assert!(stats.udp_tx.datagrams + stats.udp_rx.datagrams > default_datagrams, "probes cost datagrams: {default_datagrams} without");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_its_own_socket_trades_no_connection_ids() {
    // With its own endpoint (the default, as an app has) a client uses empty connection ids:
    // it issues none, the broker issues it one spare instead of four and never retires the
    // first, so a login takes fewer datagrams than through a shared endpoint.
    let broker = Broker::start().unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let own = Client::connect_and_login(&broker.options(), ALICE, &key).await.unwrap();
    // The broker issues its ids once the handshake is confirmed, after the client issued
    // any of its own.
    let stats = frames_until(&own, |s| s.frame_rx.new_connection_id >= 1).await;
    assert_eq!(
        (stats.frame_tx.new_connection_id, stats.frame_tx.retire_connection_id, stats.frame_rx.new_connection_id),
        (0, 0, 1),
        "{stats:?}"
    );
    let own_datagrams = stats.udp_tx.datagrams + stats.udp_rx.datagrams;
    // It still works as a client: a message to itself comes back.
    let (mut tx, mut rx) = own.split();
    tx.send(ALICE, b"to me".to_vec()).await.unwrap();
    let mut got = false;
    while !got {
        match rx.next_frame_within(Duration::from_secs(5)).await.unwrap() {
            ServerFrame::Message { body, .. } | ServerFrame::TypedMessage { body, .. } => got = body == b"to me",
            _ => {}
        }
    }
    Client::reunite(tx, rx).unwrap().close().await;

    // Many devices on one shared endpoint need ids to tell their connections apart.
    let shared = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let options = ConnectOptions { endpoint: Some(shared), ..broker.options() };
    let client = Client::connect_and_login(&options, ALICE, &key).await.unwrap();
    let stats = frames_until(&client, |s| s.frame_tx.new_connection_id >= 5 && s.frame_rx.new_connection_id >= 4).await;
    // Four each way, and one more from the client once the broker retired its first.
    assert_eq!(
        (stats.frame_tx.new_connection_id, stats.frame_rx.retire_connection_id, stats.frame_rx.new_connection_id),
        (5, 1, 4),
        "{stats:?}"
    );
    assert!(
        stats.udp_tx.datagrams + stats.udp_rx.datagrams > own_datagrams,
        "{own_datagrams} datagrams on its own socket, {} shared",
        stats.udp_tx.datagrams + stats.udp_rx.datagrams
    );
    client.close().await;
}

/// The client's QUIC counters once `done` holds of them (at most 5 s).
async fn frames_until(client: &Client, done: impl Fn(&quinn::ConnectionStats) -> bool) -> quinn::ConnectionStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = client.stats();
        if done(&stats) || Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
