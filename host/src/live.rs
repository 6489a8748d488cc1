//! The running broker's effective config, and the reload (SIGHUP) that re-reads the config
//! file and the TLS certificate and applies what can change without a restart: the
//! certificate, `admin.token` and `limits.max_body_bytes`. Everything else changed in the
//! file is reported as needing a restart and keeps its running value.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use crate::broker::Broker;
use crate::config::{Config, Overrides};
use crate::tls::LiveCertificate;

/// The settings a reload applies to the running broker; every other changed key needs a
/// restart.
pub const LIVE_KEYS: [&str; 4] = ["tls.cert", "tls.key", "admin.token", "limits.max_body_bytes"];

/// What the broker runs with, and where it came from (to read it again).
pub struct Live {
    config: ArcSwap<Config>,
    /// The `--config` file, if any.
    file: Option<PathBuf>,
    /// The command line and environment, which keep winning over the file.
    overrides: Overrides,
    certificate: Arc<LiveCertificate>,
    broker: Arc<Broker>,
    started: Instant,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Applied: always the certificate (read again, changed or not), then the live keys
    /// whose value changed.
    pub applied: Vec<String>,
    /// Keys whose value changed in the file but that only a restart applies.
    pub need_restart: Vec<String>,
}

impl Live {
    pub fn new(config: Config, file: Option<PathBuf>, overrides: Overrides, certificate: Arc<LiveCertificate>, broker: Arc<Broker>) -> Arc<Live> {
        Arc::new(Live { config: ArcSwap::from_pointee(config), file, overrides, certificate, broker, started: Instant::now() })
    }

    /// The effective config: the file with the flags over it, as last (re)loaded, with the
    /// values of settings that need a restart as the broker started.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// How long the broker has been serving.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reads the config file and the certificate again and applies what can change live.
    /// Nothing is applied unless everything checks out: on an error the broker keeps its
    /// config and certificate.
    pub fn reload(&self) -> Result<Reloaded> {
        let new = Config::resolve(self.file.as_deref(), &self.overrides)?;
        let old = self.config.load_full();
        let mut effective = (*old).clone();
        effective.tls = new.tls.clone();
        effective.admin.token = new.admin.token.clone();
        effective.limits.max_body_bytes = new.limits.max_body_bytes;
        // A token removed while the endpoint still listens beyond loopback, say.
        effective.validate().context("the reloaded settings cannot apply to the running broker")?;
        let certified = crate::tls::certified_key_for(&effective, false)?;

        self.certificate.replace(certified);
        self.broker.set_max_body_bytes(effective.limits.max_body_bytes);
        self.config.store(Arc::new(effective));

        let mut applied = vec!["tls certificate".to_string()];
        let mut need_restart = Vec::new();
        for key in changed_keys(&old, &new) {
            if LIVE_KEYS.contains(&key.as_str()) {
                applied.push(key);
            } else {
                need_restart.push(key);
            }
        }
        // The token shows as "***" either way: compared on its own.
        if old.admin.token != new.admin.token && !applied.iter().any(|key| key == "admin.token") {
            applied.push("admin.token".into());
        }
        Ok(Reloaded { applied, need_restart })
    }
}

/// The dotted keys (`limits.max_body_bytes`) whose values differ between two configs.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (old, new) = (serde_json::to_value(old).unwrap_or_default(), serde_json::to_value(new).unwrap_or_default());
    let mut keys = Vec::new();
    diff("", &old, &new, &mut keys);
    keys
}

fn diff(prefix: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                diff(&key, a.get(name).unwrap_or(&Value::Null), b.get(name).unwrap_or(&Value::Null), out);
            }
        }
        (a, b) if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_named_by_their_dotted_path() {
        let old = Config::default();
        let mut new = old.clone();
        new.limits.max_body_bytes = 1000;
        new.plugins.threads = 2;
        new.tls.cert = Some("c.pem".into());
        assert_eq!(changed_keys(&old, &new), ["limits.max_body_bytes", "plugins.threads", "tls.cert"]);
        assert!(changed_keys(&old, &old.clone()).is_empty());
    }
}
