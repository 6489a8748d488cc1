//! TLS material: loads the operator's certificate and key (`[tls]`), or, when neither is
//! configured, the development pair in `<data>/tls/`, made there on first start. A
//! configured path is only ever read, never written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// The rustls server config the broker serves with: the configured `tls.cert` and `tls.key`,
/// or the development certificate in `<data>/tls/` (made if neither of its files exists).
pub fn server_config_for(config: &Config) -> Result<rustls::ServerConfig> {
    match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => server_config(&Pem::new("tls.cert", cert), &Pem::new("tls.key", key)),
        (None, None) => {
            let dir = config.dev_tls_dir();
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if ensure_dev_certificate(&cert, &key)? {
                tracing::info!(cert = %cert.display(), "made a development certificate");
            }
            server_config(&Pem::new("development certificate", &cert), &Pem::new("development key", &key))
        }
        // `Config::validate` refuses this too; kept here so no caller can get past it.
        (Some(_), None) => bail!("tls.cert is set but tls.key is not: set both, or neither for a development certificate"),
        (None, Some(_)) => bail!("tls.key is set but tls.cert is not: set both, or neither for a development certificate"),
    }
}

/// Writes a self-signed certificate for localhost, 127.0.0.1 and ::1 to `cert` and its key
/// to `key` (mode 0600) if neither exists. Returns whether it made them. If only one of the
/// two exists, nothing is written and the error says which is missing: a new pair would
/// replace a certificate clients already trust.
pub fn ensure_dev_certificate(cert: &Path, key: &Path) -> Result<bool> {
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(false),
        (false, false) => {}
        (cert_exists, _) => {
            let (missing, present) = if cert_exists { (key, cert) } else { (cert, key) };
            bail!(
                "development TLS file {} is missing but {} exists; restore it, or delete {} to make a new \
                 development certificate (clients must then trust the new one)",
                missing.display(),
                present.display(),
                present.display()
            );
        }
    }
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).context("generating development certificate")?;
    if let Some(dir) = cert.parent() {
        create_private_dir(dir)?;
    }
    // `create_new`: never replaces a file, even one that appeared since the check above.
    write_new(key, certified.signing_key.serialize_pem().as_bytes())?;
    write_new(cert, certified.cert.pem().as_bytes())?;
    Ok(true)
}

/// Creates `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Writes a file that must not exist yet, with mode 0600.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", path.display()))
}

/// A PEM file and what it is to the operator (`tls.cert`, `tls.key`, …), for errors.
struct Pem {
    what: &'static str,
    path: PathBuf,
}

impl Pem {
    fn new(what: &'static str, path: &Path) -> Pem {
        Pem { what, path: path.to_path_buf() }
    }

    fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path).with_context(|| format!("cannot read {} {}", self.what, self.path.display()))
    }
}

impl std::fmt::Display for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.what, self.path.display())
    }
}

/// A rustls server config for QUIC with ALPN `hotline/1`, TLS 1.3 only. Every error names
/// the file it is about.
fn server_config(cert: &Pem, key: &Pem) -> Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.read()?.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{cert} is not a PEM certificate chain"))?;
    anyhow::ensure!(!certs.is_empty(), "{cert} holds no PEM certificate");
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.read()?.as_slice())
        .with_context(|| format!("{key} is not a PEM private key"))?
        .with_context(|| format!("{key} holds no PEM private key"))?;
    // AES-128-GCM with SHA-256 first, whatever the client prefers: its key schedule hashes
    // with SHA-256, which this kind of CPU computes in hardware, where SHA-384 took 5% of
    // the broker's CPU in a burst of logins. (QUIC protects its Initial packets with it anyway.)
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth();
    let mut config = match builder.with_single_cert(certs, key_der) {
        Ok(config) => config,
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            bail!("{key} does not match the certificate in {cert}")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot use {key} with {cert}")),
    };
    config.alpn_protocols = vec![hotline_protocol::ALPN.to_vec()];
    config.ignore_client_order = true;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_development_pair_is_never_completed_over_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls/cert.pem"), dir.path().join("tls/key.pem"));
        assert!(ensure_dev_certificate(&cert, &key).unwrap());
        assert!(!ensure_dev_certificate(&cert, &key).unwrap());
        std::fs::remove_file(&cert).unwrap();
        let key_bytes = std::fs::read(&key).unwrap();
        let err = format!("{:#}", ensure_dev_certificate(&cert, &key).unwrap_err());
        assert!(err.contains("cert.pem is missing"), "{err}");
        assert_eq!(std::fs::read(&key).unwrap(), key_bytes);
        assert!(!cert.exists());
    }

    #[test]
    fn handshakes_hash_with_sha256_whatever_the_client_prefers() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        ensure_dev_certificate(&cert, &key).unwrap();
        let config = server_config(&Pem::new("cert", &cert), &Pem::new("key", &key)).unwrap();
        let first = config.crypto_provider().cipher_suites[0].suite();
        assert_eq!(first, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert!(config.ignore_client_order);
    }
}
