//! SIGHUP: the broker reads its config file and its certificate again. New handshakes get
//! the new certificate (connections already open stay up), `limits.max_body_bytes` applies
//! to new sessions, a changed setting that needs a restart is named in the log line, and
//! a bad certificate or config is refused while the broker serves on as before.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use hotline_client::{Client, ConnectOptions};
use hotline_protocol::ServerFrame;
use hotline_tests::Broker;

const T: Duration = Duration::from_secs(30);

/// A new certificate and key for `localhost` written to `cert` and `key`; a copy of the
/// certificate to `ca` (what clients trust).
fn write_pair(cert: &Path, key: &Path, ca: &Path) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(cert, certified.cert.pem()).unwrap();
    std::fs::write(key, certified.signing_key.serialize_pem()).unwrap();
    std::fs::write(ca, certified.cert.pem()).unwrap();
}

fn write_config(path: &Path, cert: &Path, key: &Path, extra: &str) {
    let text = format!("[tls]\ncert = {:?}\nkey = {:?}\n{extra}", cert.display().to_string(), key.display().to_string());
    std::fs::write(path, text).unwrap();
}

/// Sends SIGHUP and returns the broker's next log line about a reload.
fn reload(broker: &Broker, log: &mpsc::Receiver<String>) -> Result<String> {
    unsafe { libc::kill(broker.pid().context("not running")? as i32, libc::SIGHUP) };
    loop {
        let line = log.recv_timeout(T).context("no reload line in the log")?;
        if line.contains("reload") {
            return Ok(line);
        }
    }
}

async fn connect(broker: &Broker, ca: &PathBuf) -> Result<Client> {
    Ok(Client::connect(&ConnectOptions::new(broker.addr, ca)).await?)
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_live_limits_and_refuses_bad_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key, config) = (dir.path().join("cert.pem"), dir.path().join("key.pem"), dir.path().join("hotline.toml"));
    let (ca_a, ca_b) = (dir.path().join("ca-a.pem"), dir.path().join("ca-b.pem"));
    write_pair(&cert, &key, &ca_a);
    write_config(&config, &cert, &key, "");
    let mut broker = Broker::start_capturing_stderr(&["--config", config.to_str().unwrap()], &[("HOTLINE_LOG", "info")])?;
    let (tx, log) = mpsc::channel();
    let stderr = broker.take_stderr().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Two numbers registered over the first certificate; the first one's session stays
    // open across the reload.
    let (phone, other) = ("+15550900001", "+15550900002");
    let mut keys = Vec::new();
    for number in [phone, other] {
        let mut client = connect(&broker, &ca_a).await?;
        client.request_code(number).await?;
        keys.push(client.verify(number, &broker.sms_code(number)?).await?);
        client.close().await;
    }
    let mut early = connect(&broker, &ca_a).await?;
    early.login(phone, &keys[0]).await?;

    // A new certificate and a smaller body limit; a thread count, which needs a restart.
    write_pair(&cert, &key, &ca_b);
    write_config(&config, &cert, &key, "[limits]\nmax_body_bytes = 1000\n[plugins]\nthreads = 2\n");
    let line = reload(&broker, &log)?;
    assert!(line.contains("reloaded"), "{line}");
    assert!(line.contains("tls certificate") && line.contains("limits.max_body_bytes"), "{line}");
    assert!(line.contains("restart_needed") && line.contains("plugins.threads"), "{line}");

    let err = connect(&broker, &ca_a).await.err().context("a handshake with the old certificate still succeeded")?;
    assert!(format!("{err:#}").to_lowercase().contains("certificate") || format!("{err:?}").contains("Certificate"), "{err:#}");
    let mut client = connect(&broker, &ca_b).await?;
    client.login(other, &keys[1]).await?;
    client.send_with_id(1, phone, vec![b'x'; 2000]).await?;
    match client.next_frame_within(T).await? {
        ServerFrame::SendFailed { client_id: 1, error, .. } => assert_eq!(format!("{error:?}"), "TooLarge"),
        other => panic!("a 2000-byte body under a 1000-byte limit: {other:?}"),
    }
    client.send_with_id(2, phone, vec![b'x'; 900]).await?;
    match client.next_frame_within(T).await? {
        ServerFrame::Sent { client_id: 2, .. } => {}
        other => panic!("a 900-byte body: {other:?}"),
    }
    let (_, shown) = broker.admin_get("/api/config")?;
    let shown: serde_json::Value = serde_json::from_str(&shown)?;
    assert_eq!(shown["limits"]["max_body_bytes"], 1000);
    // What needs a restart keeps its running value.
    assert_eq!(shown["plugins"]["threads"], 4);
    // The connection made before the reload is still served.
    early.send_with_id(3, other, b"still here".to_vec()).await?;
    loop {
        match early.next_frame_within(T).await? {
            ServerFrame::Sent { client_id: 3, .. } => break,
            ServerFrame::TypedMessage { id, .. } => early.ack(id).await?,
            other => panic!("the early session got {other:?}"),
        }
    }

    // A certificate that is not one is refused; the broker keeps serving the one it has.
    std::fs::write(&cert, "not a certificate")?;
    let line = reload(&broker, &log)?;
    assert!(line.contains("reload refused") && line.contains("tls.cert"), "{line}");
    connect(&broker, &ca_b).await?.close().await;
    // So is a config with an error, naming the key; nothing of it applies.
    write_pair(&cert, &key, &dir.path().join("ca-c.pem"));
    write_config(&config, &cert, &key, "[limits]\nmax_body_bytes = 0\n[plugins]\nthreads = 2\n");
    let line = reload(&broker, &log)?;
    assert!(line.contains("reload refused") && line.contains("max_body_bytes"), "{line}");
    connect(&broker, &ca_b).await?.close().await;
    let (_, shown) = broker.admin_get("/api/config")?;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&shown)?["limits"]["max_body_bytes"], 1000);
    broker.stop()?;
    Ok(())
}
