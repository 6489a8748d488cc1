//! TLS material as an operator configures it: the broker only reads configured files, never
//! writes them; a missing, unusable or mismatched file stops the start with its name; the
//! development certificate is made only when `[tls]` sets nothing.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use hotline_client::{Client, ConnectOptions};
use hotline_tests::{serve_refused, Broker};

/// A certificate and key for `localhost`, written as `<name>-cert.pem` and `<name>-key.pem`.
fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join(format!("{name}-cert.pem")), dir.join(format!("{name}-key.pem")));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn write_config(dir: &Path, tls: &str) -> PathBuf {
    let path = dir.join("hotline.toml");
    std::fs::write(&path, format!("[tls]\n{tls}")).unwrap();
    path
}

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

#[test]
fn a_configured_key_without_a_certificate_is_refused_and_left_untouched() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_, key) = write_pair(dir.path(), "operator");
    let before = std::fs::read(&key)?;
    let config = write_config(dir.path(), &format!("key = {}\n", toml_path(&key)));
    let data = dir.path().join("data");
    let out = serve_refused(&data, &[OsStr::new("--config"), config.as_os_str()])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("tls.key is set but tls.cert is not"), "{err}");
    assert_eq!(std::fs::read(&key)?, before, "the operator's key was written over");
    assert!(!data.join("tls").exists(), "a development certificate was made");
    Ok(())
}

#[test]
fn a_configured_file_that_is_missing_is_named_and_the_other_left_untouched() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = write_pair(dir.path(), "operator");
    let (cert_bytes, key_bytes) = (std::fs::read(&cert)?, std::fs::read(&key)?);
    let data = dir.path().join("data");

    let missing_cert = dir.path().join("missing-cert.pem");
    let config = write_config(dir.path(), &format!("cert = {}\nkey = {}\n", toml_path(&missing_cert), toml_path(&key)));
    let out = serve_refused(&data, &[OsStr::new("--config"), config.as_os_str()])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("tls.cert {}", missing_cert.display())), "{err}");
    assert!(!missing_cert.exists(), "the configured certificate path was written");
    assert_eq!(std::fs::read(&key)?, key_bytes, "the operator's key was written over");

    let missing_key = dir.path().join("missing-key.pem");
    let config = write_config(dir.path(), &format!("cert = {}\nkey = {}\n", toml_path(&cert), toml_path(&missing_key)));
    let out = serve_refused(&data, &[OsStr::new("--config"), config.as_os_str()])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("tls.key {}", missing_key.display())), "{err}");
    assert!(!missing_key.exists(), "the configured key path was written");
    assert_eq!(std::fs::read(&cert)?, cert_bytes, "the operator's certificate was written over");
    assert!(!data.join("tls").exists(), "a development certificate was made");
    Ok(())
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused_naming_both_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, _) = write_pair(dir.path(), "one");
    let (_, other_key) = write_pair(dir.path(), "two");
    let config = write_config(dir.path(), &format!("cert = {}\nkey = {}\n", toml_path(&cert), toml_path(&other_key)));
    let out = serve_refused(&dir.path().join("data"), &[OsStr::new("--config"), config.as_os_str()])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains(&cert.display().to_string()) && err.contains(&other_key.display().to_string()), "{err}");
    Ok(())
}

#[test]
fn a_file_that_is_not_pem_is_refused_with_its_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, _) = write_pair(dir.path(), "operator");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n")?;
    let config = write_config(dir.path(), &format!("cert = {}\nkey = {}\n", toml_path(&cert), toml_path(&garbage)));
    let out = serve_refused(&dir.path().join("data"), &[OsStr::new("--config"), config.as_os_str()])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("tls.key {} holds no PEM private key", garbage.display())), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_configured_pair_serves_and_no_development_certificate_is_made() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = write_pair(dir.path(), "operator");
    let (cert_bytes, key_bytes) = (std::fs::read(&cert)?, std::fs::read(&key)?);
    let config = write_config(dir.path(), &format!("cert = {}\nkey = {}\n", toml_path(&cert), toml_path(&key)));
    let config = config.to_str().unwrap();
    let mut broker = Broker::start_with(&["--config", config])?;
    // The client trusts the operator's certificate only: the handshake proves it is served.
    let client = Client::connect(&ConnectOptions { ca: cert.clone(), ..broker.options() }).await?;
    client.close().await;
    broker.stop()?;
    assert!(!broker.data.join("tls").exists(), "a development certificate was made");
    assert_eq!(std::fs::read(&cert)?, cert_bytes);
    assert_eq!(std::fs::read(&key)?, key_bytes);
    Ok(())
}
