//! TLS material: loads the operator's certificate and key (`[tls]`), or, when neither is
//! configured, the development pair in `<data>/tls/`, made there on first start. A
//! configured path is only ever read, never written. The certificate served can be
//! replaced while the broker runs ([`LiveCertificate`], on SIGHUP).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::Config;

/// The rustls server config the broker serves with: the configured `tls.cert` and `tls.key`,
/// or the development certificate in `<data>/tls/` (made if neither of its files exists).
/// The certificate is served through the returned [`LiveCertificate`], which can replace it.
pub fn server_config_for(config: &Config) -> Result<(rustls::ServerConfig, Arc<LiveCertificate>)> {
    let certified = certified_key_for(config, true)?;
    let live = Arc::new(LiveCertificate { current: ArcSwap::from_pointee(certified) });
    Ok((server_config(live.clone())?, live))
}

/// The certificate chain and key `config` names, read and checked against each other.
/// With `make_dev`, the development pair is made when neither of its files exists;
/// without (a reload, `check-config`), a missing file is an error.
pub fn certified_key_for(config: &Config, make_dev: bool) -> Result<CertifiedKey> {
    let (cert, key) = pem_files(config)?;
    if make_dev && config.tls.cert.is_none() && ensure_dev_certificate(&cert.path, &key.path)? {
        tracing::info!(cert = %cert.path.display(), "made a development certificate");
    }
    certified_key(&cert, &key)
}

/// Checks the certificate and key `config` names without making any file. Says what
/// will be served: the files, or a development certificate made at the first start.
pub fn check(config: &Config) -> Result<String> {
    let (cert, key) = pem_files(config)?;
    if config.tls.cert.is_none() && !cert.path.exists() && !key.path.exists() {
        return Ok(format!("a development certificate, made at the first start in {}", config.dev_tls_dir().display()));
    }
    certified_key(&cert, &key)?;
    Ok(format!("{cert} with {key}"))
}

/// The certificate and key files of `config`.
fn pem_files(config: &Config) -> Result<(Pem, Pem)> {
    match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Ok((Pem::new("tls.cert", cert), Pem::new("tls.key", key))),
        (None, None) => {
            let dir = config.dev_tls_dir();
            Ok((Pem::new("development certificate", &dir.join("cert.pem")), Pem::new("development key", &dir.join("key.pem"))))
        }
        // `Config::validate` refuses this too; kept here so no caller can get past it.
        (Some(_), None) => bail!("tls.cert is set but tls.key is not: set both, or neither for a development certificate"),
        (None, Some(_)) => bail!("tls.key is set but tls.cert is not: set both, or neither for a development certificate"),
    }
}

/// The certificate the broker serves. [`LiveCertificate::replace`] swaps it: handshakes
/// from then on use the new one; connections already open keep theirs.
#[derive(Debug)]
pub struct LiveCertificate {
    current: ArcSwap<CertifiedKey>,
}

impl LiveCertificate {
    pub fn replace(&self, certified: CertifiedKey) {
        self.current.store(Arc::new(certified));
    }
}

impl rustls::server::ResolvesServerCert for LiveCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
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

/// The crypto the broker serves with. AES-128-GCM with SHA-256 first, whatever the client
/// prefers: its key schedule hashes with SHA-256, which this kind of CPU computes in
/// hardware, where SHA-384 took 5% of the broker's CPU in a burst of logins. (QUIC protects
/// its Initial packets with it anyway.)
fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// Reads a PEM certificate chain and its private key and checks that they belong together.
/// Every error names the file it is about.
fn certified_key(cert: &Pem, key: &Pem) -> Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.read()?.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{cert} is not a PEM certificate chain"))?;
    anyhow::ensure!(!certs.is_empty(), "{cert} holds no PEM certificate");
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.read()?.as_slice())
        .with_context(|| format!("{key} is not a PEM private key"))?
        .with_context(|| format!("{key} holds no PEM private key"))?;
    match CertifiedKey::from_der(certs, key_der, &provider()) {
        Ok(certified) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            bail!("{key} does not match the certificate in {cert}")
        }
        Err(e) => Err(e).with_context(|| format!("cannot use {key} with {cert}")),
    }
}

/// A rustls server config for QUIC with ALPN `hotline/1`, TLS 1.3 only, serving the
/// certificate `live` holds.
///
/// Sessions resume: each handshake ends with one stateless ticket (encrypted with a key
/// of this process, a new key every 6 hours, a ticket accepted up to 12), and a client that reconnects with it skips
/// the certificate (none sent, signed or verified) while still agreeing a fresh key
/// (x25519). rustls' default was two tickets per handshake kept in a table of 256
/// sessions, which a broker with more clients than that only filled and evicted. No
/// 0-RTT data (`max_early_data_size` stays 0): a login is never replayed.
fn server_config(live: Arc<LiveCertificate>) -> Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(live);
    config.alpn_protocols = vec![hotline_protocol::ALPN.to_vec()];
    config.ignore_client_order = true;
    config.ticketer = rustls::crypto::ring::Ticketer::new().context("making the TLS session ticket key")?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 1;
    Ok(config)
}

/// A rustls server config for the media endpoint's HTTPS: ALPN `http/1.1`, TLS 1.3 and 1.2
/// (for HTTP clients that still only speak 1.2), serving the same certificate as QUIC
/// through `live`, so a reload (SIGHUP) replaces it for both.
pub fn https_config(live: Arc<LiveCertificate>) -> Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(live);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
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
        let certified = certified_key(&Pem::new("cert", &cert), &Pem::new("key", &key)).unwrap();
        let config = server_config(Arc::new(LiveCertificate { current: ArcSwap::from_pointee(certified) })).unwrap();
        let first = config.crypto_provider().cipher_suites[0].suite();
        assert_eq!(first, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert!(config.ignore_client_order);
        assert!(config.ticketer.enabled() && config.send_tls13_tickets == 1, "one stateless ticket per handshake");
    }
}
