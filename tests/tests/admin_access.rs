//! Who may use the admin endpoint, and the operator commands built on it: with
//! `admin.token` every route needs the token; without one the broker refuses to serve the
//! endpoint beyond loopback; `/api/config` never shows the token; `hotline status` and
//! `hotline plugins` send it; `hotline check-config` checks a file as `serve` would.

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{Context, Result};
use hotline_tests::{bin, ok, refused, Broker};

const TOKEN: &str = "an-admin-token-for-tests";

/// `method path` on the admin endpoint with extra headers (a `Host` among them replaces
/// the usual one): the status and the body.
fn request(admin: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {admin}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    stream.write_all(format!("{head}\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_string();
    Ok((status, body))
}

#[test]
fn with_a_token_every_route_needs_it() -> Result<()> {
    let broker = Broker::start_with_config(&format!("[admin]\ntoken = \"{TOKEN}\"\n"))?;
    let bearer = format!("Bearer {TOKEN}");
    for path in ["/api/plugins", "/api/status", "/api/config", "/metrics", "/healthz", "/readyz", "/", "/no-such-route"] {
        let (status, body) = request(broker.admin, "GET", path, &[])?;
        assert_eq!(status, 401, "{path} without the token: {body}");
        let (status, body) = request(broker.admin, "GET", path, &[("Authorization", "Bearer not-the-token")])?;
        assert_eq!(status, 401, "{path} with a wrong token: {body}");
    }
    let (status, body) = request(broker.admin, "GET", "/api/plugins", &[])?;
    assert_eq!(status, 401);
    assert!(serde_json::from_str::<serde_json::Value>(&body)?["error"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
    let (status, body) = request(broker.admin, "GET", "/api/plugins", &[("Authorization", &bearer)])?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"router\""), "{body}");
    let (status, _) = request(broker.admin, "GET", "/metrics", &[("Authorization", &bearer)])?;
    assert_eq!(status, 200);
    // A rollback without the token changes nothing.
    let (status, _) = request(broker.admin, "POST", "/api/plugins/router/rollback", &[])?;
    assert_eq!(status, 401);

    // The effective config shows that a token is set, never the token.
    let (status, config) = request(broker.admin, "GET", "/api/config", &[("Authorization", &bearer)])?;
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(&config)?;
    assert_eq!(config["admin"]["token"], "***");
    assert_eq!(config["data"], broker.data.to_str().unwrap());
    assert!(!config.to_string().contains(TOKEN));

    // The commands take the token from --token or HOTLINE_ADMIN_TOKEN.
    let admin = broker.admin.to_string();
    let err = refused(Command::new(bin("hotline")).args(["status", "--admin", &admin]).env_remove("HOTLINE_ADMIN_TOKEN").output()?);
    assert!(err.contains("needs its token") && err.contains("--token"), "{err}");
    let summary = ok(Command::new(bin("hotline")).args(["status", "--admin", &admin, "--token", TOKEN]).output()?);
    assert!(summary.starts_with("hotline ") && summary.contains("sessions") && summary.contains("router"), "{summary}");
    let json = ok(Command::new(bin("hotline")).args(["plugins", "list", "--json", "--admin", &admin]).env("HOTLINE_ADMIN_TOKEN", TOKEN).output()?);
    assert!(serde_json::from_str::<serde_json::Value>(&json)?["versions"].is_array());
    Ok(())
}

/// `hotline serve` with the admin endpoint on all addresses (port 0) and `envs`.
fn serve_on_all_addresses(data: &std::path::Path, envs: &[(&str, &str)]) -> Result<std::process::Child> {
    Ok(Command::new(bin("hotline"))
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0", "--media", "127.0.0.1:0"])
        .env("HOTLINE_LOG", "warn")
        .env_remove("HOTLINE_ADMIN_TOKEN")
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?)
}

#[test]
fn without_a_token_the_endpoint_is_refused_beyond_loopback() -> Result<()> {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    // Refused before anything starts: the config check comes first.
    let out = serve_on_all_addresses(&dir.path().join("data"), &[])?.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("admin.token") && err.contains("not a loopback address"), "{err}");
    assert!(!dir.path().join("data").exists(), "the refused start made the data folder");

    // With a token it serves there, and wants the token.
    let mut child = serve_on_all_addresses(&dir.path().join("data"), &[("HOTLINE_ADMIN_TOKEN", TOKEN)])?;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().context("hotline exited before listening")??;
    let served = (|| -> Result<()> {
        let admin: SocketAddr = line.split_whitespace().nth(5).context("no admin address")?.parse()?;
        assert!(admin.ip().is_unspecified(), "{line}");
        let loopback: SocketAddr = format!("127.0.0.1:{}", admin.port()).parse()?;
        assert_eq!(request(loopback, "GET", "/healthz", &[])?.0, 401);
        assert_eq!(request(loopback, "GET", "/healthz", &[("Authorization", &format!("Bearer {TOKEN}"))])?, (200, "ok\n".into()));
        Ok(())
    })();
    child.kill()?;
    child.wait()?;
    served
}

#[test]
fn without_a_token_requests_to_other_names_and_cross_site_changes_are_refused() -> Result<()> {
    let broker = Broker::start()?;
    assert_eq!(request(broker.admin, "GET", "/api/status", &[])?.0, 200);
    // A name that resolves to 127.0.0.1 for a web page (DNS rebinding) is not loopback.
    let (status, body) = request(broker.admin, "GET", "/api/status", &[("Host", "attacker.example:9464")])?;
    assert_eq!(status, 403, "{body}");
    // A page of another site cannot roll a plugin back through the browser.
    let (status, body) = request(broker.admin, "POST", "/api/plugins/router/rollback", &[("Origin", "https://attacker.example")])?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("another site"), "{body}");
    Ok(())
}

#[test]
fn status_summarizes_a_running_broker() -> Result<()> {
    let broker = Broker::start()?;
    let (status, body) = broker.admin_get("/api/status")?;
    assert_eq!(status, 200);
    let s: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["uptime_secs"].is_u64() && s["sessions"] == 0 && s["connections"].is_u64(), "{s}");
    assert_eq!(s["storage"]["poisoned"], false);
    assert!(s["storage"]["disk_bytes"].as_u64().unwrap() > 0, "{s}");
    let mut slots: Vec<&str> = s["plugins"].as_array().unwrap().iter().map(|p| p["slot"].as_str().unwrap()).collect();
    slots.sort();
    assert_eq!(slots, ["notifier", "receipts", "registrar", "router"], "{s}");
    let kinds: Vec<&str> = s["queues"]["kinds"].as_array().unwrap().iter().map(|k| k["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"commit"), "{s}");
    let text = ok(Command::new(bin("hotline")).args(["status", "--admin", &broker.admin.to_string()]).output()?);
    for line in ["sessions     0", "storage", "plugins", "queues"] {
        assert!(text.contains(line), "{line:?} not in {text}");
    }
    let json = ok(Command::new(bin("hotline")).args(["status", "--json", "--admin", &broker.admin.to_string()]).output()?);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json)?["plugins"], s["plugins"]);
    Ok(())
}

#[test]
fn check_config_prints_the_effective_settings_or_names_the_bad_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("hotline.toml");
    let check = || Command::new(bin("hotline")).arg("check-config").arg(&file).env_remove("HOTLINE_ADMIN_TOKEN").output();

    std::fs::write(&file, format!("[limits]\nmax_body_bytes = 1000\n[admin]\nlisten = \"0.0.0.0:9464\"\ntoken = \"{TOKEN}\"\n"))?;
    let out = check()?;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("max_body_bytes = 1000") && text.contains("delivery_window = 256"), "{text}");
    assert!(text.contains("token = \"***\"") && !text.contains(TOKEN), "{text}");
    assert!(text.contains("development certificate"), "{text}");

    std::fs::write(&file, "[admin]\nlisten = \"0.0.0.0:9464\"\n")?;
    let out = check()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin.token"), "{}", String::from_utf8_lossy(&out.stderr));

    std::fs::write(&file, "[limits]\nmax_body_byte = 5\n")?;
    let out = check()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_body_byte") && err.contains("hotline.toml"), "{err}");

    std::fs::write(&file, "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n")?;
    let out = check()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls.cert") && err.contains("/nonexistent/cert.pem"), "{err}");
    Ok(())
}
