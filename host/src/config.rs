//! Broker configuration: defaults that serve on loopback, overridable by a TOML file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::Durability;

/// Everything the broker reads from its config file. Every field has a default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data folder: storage, TLS material, SMS outbox. `--data` overrides it.
    pub data: PathBuf,
    /// UDP address of the QUIC listener.
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub udp: UdpConfig,
    pub tls: TlsConfig,
    pub plugins: PluginsConfig,
    pub admin: AdminConfig,
    pub alerts: AlertsConfig,
    pub media: MediaConfig,
    pub push: PushConfig,
    pub sms: SmsConfig,
    pub cluster: ClusterConfig,
}

/// Several nodes over NATS JetStream (docs/cluster.md). Off while `nats` is empty: one node
/// on fjall, no NATS needed. `--cluster` and `--node-id` override `nats` and `node_id`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://127.0.0.1:4222`, …); several for failover.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster: `[A-Za-z0-9_-]`, 1 to 32 characters.
    pub node_id: Option<String>,
    /// Mailbox streams; a recipient's items live in partition `hash(number) % partitions`.
    /// Fixed for the life of the cluster's data (changing it strands stored items).
    pub partitions: u16,
    /// JetStream replicas of every stream and bucket (1 or 3; 3 needs 3 NATS servers).
    pub replicas: usize,
    /// Prefix of every stream, bucket and subject the cluster uses, so two clusters can
    /// share one NATS deployment.
    pub prefix: String,
    /// How often a node looks through its online users' partitions for items whose
    /// wake-up was lost, in ms.
    pub sweep_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { nats: Vec::new(), node_id: None, partitions: 8, replicas: 3, prefix: "hotline".into(), sweep_ms: 1000 }
    }
}

impl ClusterConfig {
    /// Whether this broker is a node of a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats.is_empty()
    }

    /// The node's id; only for an enabled cluster, where validation made it present.
    pub fn node(&self) -> &str {
        self.node_id.as_deref().unwrap_or("")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: String| Err(ConfigError::Invalid(format!("cluster.{what}")));
        let name_ok = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if let Some(id) = &self.node_id {
            if !name_ok(id, 32) {
                return invalid(format!("node_id {id:?} must be 1 to 32 of A-Z a-z 0-9 _ -"));
            }
        }
        if !self.enabled() {
            return Ok(());
        }
        if self.node_id.is_none() {
            return invalid("node_id is required with cluster.nats (or --node-id with --cluster)".into());
        }
        for url in &self.nats {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) || url.len() <= "nats://".len() {
                return invalid(format!("nats: {url:?} is not a nats:// or tls:// URL"));
            }
        }
        if !(1..=1024).contains(&self.partitions) {
            return invalid("partitions must be 1..=1024".into());
        }
        if !matches!(self.replicas, 1..=5) {
            return invalid("replicas must be 1..=5".into());
        }
        if !name_ok(&self.prefix, 32) {
            return invalid(format!("prefix {:?} must be 1 to 32 of A-Z a-z 0-9 _ -", self.prefix));
        }
        if !(10..=600_000).contains(&self.sweep_ms) {
            return invalid("sweep_ms must be 10..=600000".into());
        }
        Ok(())
    }
}

/// The media endpoint: files (pictures, voice notes) uploaded and downloaded over HTTPS by
/// registered numbers, kept for `expiry_secs` (docs/protocol.md, "Media over HTTPS").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Whether the broker serves it at all.
    pub enabled: bool,
    /// TCP address of the HTTPS server; `--media` overrides it.
    pub listen: SocketAddr,
    /// Largest upload accepted, in bytes (larger ones are answered 413, nothing kept).
    pub max_upload_bytes: u64,
    /// An upload is gone (404, its file deleted) this long after it was made, in seconds.
    pub expiry_secs: u64,
    /// How often expired uploads and unreferenced files are deleted, in seconds.
    pub sweep_secs: u64,
    /// The base of the URLs uploads are answered with (`https://media.example.com`), when
    /// clients reach the endpoint at another address than the one they asked (a proxy).
    /// Without it, `https://` and the request's `Host`.
    pub public_url: Option<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            enabled: true,
            listen: "127.0.0.1:4443".parse().unwrap(),
            max_upload_bytes: 64 << 20,
            expiry_secs: 30 * 24 * 3600,
            sweep_secs: 60,
            public_url: None,
        }
    }
}

/// Push wake-ups (docs/operations.md, "Push wake-ups"): a number with no connection and a
/// new message is woken through the notifier plugin and this gateway. Off without
/// `webhook`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// The push gateway: wake-ups are POSTed there in batches (retries and signature as
    /// for SMS). Absent: push is off.
    pub webhook: Option<WebhookConfig>,
    /// A batch is posted this long after its first wake-up (or at 100 wake-ups), in ms.
    pub batch_ms: u64,
    /// Numbers waiting for the push worker; beyond, they are dropped (and counted).
    pub queue: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig { webhook: None, batch_ms: 100, queue: 4096 }
    }
}

impl PushConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(webhook) = &self.webhook {
            webhook.validate("push.webhook")?;
        }
        if !(1..=60_000).contains(&self.batch_ms) {
            return Err(ConfigError::Invalid("push.batch_ms must be 1..=60000".into()));
        }
        if !(1..=1_000_000).contains(&self.queue) {
            return Err(ConfigError::Invalid("push.queue must be 1..=1000000".into()));
        }
        Ok(())
    }
}

/// Queue monitoring: how often every queue is sampled, when a kind of queue raises an alert
/// (its largest queue holds at least `<kind>_items` for `<kind>_for_secs`; `0` items turns
/// the kind off), and where alerts go besides the log, the metrics and the console.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Sample period, in milliseconds.
    pub sample_ms: u64,
    /// URL that receives each raised and cleared alert as a JSON POST (retried with back-off).
    pub webhook: Option<String>,
    /// A recipient's stored queue (messages and receipts waiting for the number).
    pub stored_items: u64,
    pub stored_for_secs: u64,
    /// A connection's outbound mailbox (frames waiting to be written; 512 at most).
    pub mailbox_items: u64,
    pub mailbox_for_secs: u64,
    /// A plugin slot's call queue (questions waiting for or on the plugin threads).
    pub plugin_items: u64,
    pub plugin_for_secs: u64,
    /// The commit queue (jobs waiting for the committer; 4096 at most).
    pub commit_items: u64,
    pub commit_for_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            sample_ms: 1000,
            webhook: None,
            stored_items: 10_000,
            stored_for_secs: 300,
            mailbox_items: 256,
            mailbox_for_secs: 30,
            plugin_items: 64,
            plugin_for_secs: 10,
            commit_items: 2048,
            commit_for_secs: 10,
        }
    }
}

impl AlertsConfig {
    /// The rules in [`crate::monitor::QueueKind::ALL`] order.
    pub fn rules(&self) -> [crate::monitor::Rule; 4] {
        use crate::monitor::Rule;
        let rule = |items, secs: u64| Rule { items, for_ms: secs.saturating_mul(1000) };
        [
            rule(self.stored_items, self.stored_for_secs),
            rule(self.mailbox_items, self.mailbox_for_secs),
            rule(self.plugin_items, self.plugin_for_secs),
            rule(self.commit_items, self.commit_for_secs),
        ]
    }
}

/// The WebAssembly plugins: where they live and the limits they run under.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Plugin folder; default `<data>/plugins`.
    pub dir: Option<PathBuf>,
    /// Time limit of one plugin call, in milliseconds.
    pub call_timeout_ms: u64,
    /// Threads that run plugin calls (sessions wait for them without blocking the network
    /// threads); as many calls run at once.
    pub threads: usize,
    /// Memory cap of one plugin instance, in MiB.
    pub memory_limit_mib: u64,
    /// Idle instances kept per version (calls beyond run on new instances).
    pub max_idle_instances: usize,
    /// A new version is on probation for this long after it becomes current…
    pub probation_secs: u64,
    /// …and is rolled back automatically after this many consecutive failed calls in it
    /// (0: never automatically).
    pub probation_failures: u32,
    /// Earlier versions kept per slot for rollback.
    pub keep_versions: usize,
    /// Config text handed to each slot's plugin `init`.
    pub router_config: String,
    pub registrar_config: String,
    pub receipts_config: String,
    /// The notifier's (push wake-ups; the default reads `min_interval_secs = N`).
    pub notifier_config: String,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            call_timeout_ms: 100,
            threads: 4,
            memory_limit_mib: 64,
            max_idle_instances: 8,
            probation_secs: 300,
            probation_failures: 3,
            keep_versions: 16,
            router_config: String::new(),
            registrar_config: String::new(),
            receipts_config: String::new(),
            notifier_config: String::new(),
        }
    }
}

/// The admin HTTP endpoint: the console, the JSON API, health, metrics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// TCP address; `--admin` overrides it.
    pub listen: SocketAddr,
    /// With a token, every admin route needs `Authorization: Bearer <token>`. Without one
    /// the endpoint serves on a loopback address only. `HOTLINE_ADMIN_TOKEN` overrides it.
    pub token: Option<Secret>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: "127.0.0.1:9464".parse().unwrap(), token: None }
    }
}

/// How registration codes reach phones, and the host's limits on code requests (against
/// SMS pumping), checked before the registrar plugin is asked (docs/operations.md, "SMS
/// gateway").
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// `outbox` (default): `<data>/sms-outbox.jsonl`, for development. `webhook`: a POST to
    /// `[sms.webhook]`.
    pub provider: SmsProvider,
    /// The SMS gateway (`provider = "webhook"`).
    pub webhook: Option<WebhookConfig>,
    pub limits: SmsLimitsConfig,
}

/// Where texts go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    /// One JSON line per text in `<data>/sms-outbox.jsonl`.
    #[default]
    Outbox,
    /// A JSON POST to `[sms.webhook]`.
    Webhook,
}

/// Code requests allowed per hour (a sliding window), counted by the host. Unset, a limit
/// is [`SmsLimitsConfig::DEFAULT_PER_ADDRESS`] / [`SmsLimitsConfig::DEFAULT_PER_PREFIX`]
/// with the webhook provider and off with the outbox (development and tests register many
/// numbers from one machine, and no text costs anything); `0` turns a limit off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsLimitsConfig {
    /// Per source address (IPv4 address; IPv6 /64 network).
    pub per_address_per_hour: Option<u32>,
    /// Per number prefix: the first `prefix_digits` digits after `+`.
    pub per_prefix_per_hour: Option<u32>,
    /// Digits of the number prefix, 1..=15.
    pub prefix_digits: u8,
}

impl Default for SmsLimitsConfig {
    fn default() -> Self {
        SmsLimitsConfig { per_address_per_hour: None, per_prefix_per_hour: None, prefix_digits: 6 }
    }
}

impl SmsLimitsConfig {
    /// `per_address_per_hour` when unset with the webhook provider.
    pub const DEFAULT_PER_ADDRESS: u32 = 10;
    /// `per_prefix_per_hour` when unset with the webhook provider.
    pub const DEFAULT_PER_PREFIX: u32 = 100;
}

impl SmsConfig {
    /// The limits in force, per address and per prefix (`0`: none).
    pub fn limits(&self) -> (u32, u32) {
        let webhook = self.provider == SmsProvider::Webhook;
        let or_default = |set: Option<u32>, default: u32| set.unwrap_or(if webhook { default } else { 0 });
        (
            or_default(self.limits.per_address_per_hour, SmsLimitsConfig::DEFAULT_PER_ADDRESS),
            or_default(self.limits.per_prefix_per_hour, SmsLimitsConfig::DEFAULT_PER_PREFIX),
        )
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match (self.provider, &self.webhook) {
            (SmsProvider::Webhook, None) => {
                return Err(ConfigError::Invalid("sms.provider is \"webhook\" but [sms.webhook] is not set (its url at least)".into()));
            }
            (SmsProvider::Outbox, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "[sms.webhook] is set but sms.provider is \"outbox\": set provider = \"webhook\" to use it, or remove [sms.webhook]".into(),
                ));
            }
            (_, Some(webhook)) => webhook.validate("sms.webhook")?,
            (SmsProvider::Outbox, None) => {}
        }
        if !(1..=15).contains(&self.limits.prefix_digits) {
            return Err(ConfigError::Invalid("sms.limits.prefix_digits must be 1..=15".into()));
        }
        Ok(())
    }
}

/// An outbound webhook (`[sms.webhook]`, `[push.webhook]`): where the broker POSTs JSON
/// and how, see [`crate::outbound`] and docs/operations.md ("SMS gateway").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…`; `http://` only for a loopback host (else a config error).
    pub url: String,
    /// PEM file of the root certificates the gateway's certificate must chain to, instead
    /// of the built-in WebPKI (Mozilla) roots: a private gateway, a test's own CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A static header sent with every request, e.g. `{ name = "Authorization", value =
    /// "Bearer …" }`.
    #[serde(default)]
    pub header: Option<WebhookHeader>,
    /// Signs every request: `X-Hotline-Signature: sha256=<hex HMAC-SHA256(secret,
    /// "<timestamp>.<body>")>`.
    #[serde(default)]
    pub hmac_secret: Option<Secret>,
    /// Time limit of one attempt (connect, send, answer), in milliseconds.
    #[serde(default = "WebhookConfig::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per request, the first included (1 + retries).
    #[serde(default = "WebhookConfig::default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry, in milliseconds; doubling for each next one (at most a
    /// minute).
    #[serde(default = "WebhookConfig::default_backoff_ms")]
    pub backoff_ms: u64,
}

/// A static header of a webhook; its value is a secret (never shown).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookHeader {
    pub name: String,
    pub value: Secret,
}

impl WebhookConfig {
    fn default_timeout_ms() -> u64 {
        5000
    }

    fn default_attempts() -> u32 {
        4
    }

    fn default_backoff_ms() -> u64 {
        200
    }

    /// A webhook to `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            ca_file: None,
            header: None,
            hmac_secret: None,
            timeout_ms: Self::default_timeout_ms(),
            attempts: Self::default_attempts(),
            backoff_ms: Self::default_backoff_ms(),
        }
    }

    /// Checks the settings of the webhook at `section` (`sms.webhook`); the CA file is
    /// read when the webhook starts.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let invalid = |what: String| Err(ConfigError::Invalid(format!("{section}.{what}")));
        if let Err(e) = crate::outbound::check_url(&self.url) {
            return invalid(format!("url: {e}"));
        }
        if !(1..=120_000).contains(&self.timeout_ms) {
            return invalid("timeout_ms must be 1..=120000".into());
        }
        if !(1..=20).contains(&self.attempts) {
            return invalid("attempts must be 1..=20 (the first attempt included)".into());
        }
        if self.backoff_ms > 60_000 {
            return invalid("backoff_ms must be at most 60000".into());
        }
        if let Some(h) = &self.header {
            if let Err(e) = crate::outbound::check_header(&h.name, h.value.expose()) {
                return invalid(format!("header: {e}"));
            }
        }
        if self.hmac_secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
            return invalid("hmac_secret must not be empty".into());
        }
        Ok(())
    }
}

/// A secret setting (the admin token, webhook secrets): `***` wherever it is printed or serialized.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the one place that compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// The environment variable that sets `admin.token` over the config file (and that
/// `hotline status` and `hotline plugins` send).
pub const ADMIN_TOKEN_ENV: &str = "HOTLINE_ADMIN_TOKEN";

/// What the command line (and the environment) sets over the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub admin_token: Option<Secret>,
    /// `--media`: the media endpoint's address.
    pub media: Option<SocketAddr>,
    /// `--cluster`: the NATS servers of a cluster (`cluster.nats`).
    pub cluster: Option<Vec<String>>,
    /// `--node-id`: this node's name in the cluster (`cluster.node_id`).
    pub node_id: Option<String>,
}

impl Overrides {
    /// `admin_token` from `HOTLINE_ADMIN_TOKEN` when it is set and not empty.
    pub fn with_env_token(mut self) -> Overrides {
        self.admin_token = std::env::var(ADMIN_TOKEN_ENV).ok().filter(|t| !t.is_empty()).map(Secret::new);
        self
    }

    fn apply(&self, config: &mut Config) {
        if let Some(data) = &self.data {
            config.data = data.clone();
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(admin) = self.admin {
            config.admin.listen = admin;
        }
        if let Some(token) = &self.admin_token {
            config.admin.token = Some(token.clone());
        }
        if let Some(media) = self.media {
            config.media.listen = media;
        }
        if let Some(urls) = &self.cluster {
            config.cluster.nats = urls.clone();
        }
        if let Some(id) = &self.node_id {
            config.cluster.node_id = Some(id.clone());
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `fsync` (default): `Sent` means on disk. `buffered`: `Sent` means handed to the OS.
    pub durability: Durability,
    /// Undelivered items older than this are deleted, in seconds (default 30 days).
    pub message_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest message body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Items pushed to a session and not yet acknowledged, at most.
    pub delivery_window: usize,
    /// A connection that sends nothing (not even QUIC keep-alives) for this long is closed.
    pub idle_timeout_secs: u64,
    /// Items (messages and receipts) a recipient's stored queue may hold before a `Send` to
    /// it is refused (`QueueFull`, or `RateLimited` to a version-1 client); nothing stored
    /// is dropped, and the broker's receipts are queued regardless. Default
    /// [`DEFAULT_MAX_QUEUE_ITEMS`]; at least 1 (0 is refused, there is no "unlimited").
    pub max_queue_items: u64,
}

/// The default of `limits.max_queue_items`.
pub const DEFAULT_MAX_QUEUE_ITEMS: u64 = 100_000;

/// The QUIC listener's UDP socket.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UdpConfig {
    /// Kernel receive buffer, in bytes: what holds the packets of a burst of logins (or of
    /// many clients closing at once) until the broker reads them. Beyond the system's limit
    /// (`net.core.rmem_max`) only with CAP_NET_ADMIN; the broker warns when it got less.
    pub receive_buffer_bytes: usize,
    /// Kernel send buffer, in bytes (limit `net.core.wmem_max`).
    pub send_buffer_bytes: usize,
    /// Whether each connection probes for datagrams larger than QUIC's 1,200 bytes (path
    /// MTU discovery, up to 1,452). Off by default: on a login the probes and their
    /// acknowledgements were a quarter of the datagrams (and of the CPU), and chat frames
    /// are small.
    pub mtu_discovery: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig { receive_buffer_bytes: 32 << 20, send_buffer_bytes: 4 << 20, mtu_discovery: false }
    }
}

/// The broker's certificate and key: both set, or neither (then a development certificate
/// in `<data>/tls/`, made on first start).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. Only read, never written.
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`. Only read, never written.
    pub key: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: PathBuf::from("hotline-data"),
            listen: "127.0.0.1:4433".parse().unwrap(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            udp: UdpConfig::default(),
            tls: TlsConfig::default(),
            plugins: PluginsConfig::default(),
            admin: AdminConfig::default(),
            alerts: AlertsConfig::default(),
            media: MediaConfig::default(),
            push: PushConfig::default(),
            sms: SmsConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { durability: Durability::Fsync, message_ttl_secs: 30 * 24 * 3600 }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: hotline_protocol::MAX_BODY_LEN,
            delivery_window: 256,
            idle_timeout_secs: 60,
            max_queue_items: DEFAULT_MAX_QUEUE_ITEMS,
        }
    }
}

/// A config file that could not be used. The message names the file; the cause is the
/// error's `source` (print the chain, e.g. anyhow's `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("invalid config {path}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let config = Config::parse_file(path)?;
        config.validate()?;
        Ok(config)
    }

    /// The effective config: the file (or every default without one) with the command
    /// line and the environment over it, checked. What `serve` runs with, SIGHUP re-reads
    /// and `check-config` shows.
    pub fn resolve(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Config::parse_file(path)?,
            None => Config::default(),
        };
        overrides.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    fn parse_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })
    }

    /// The config as TOML, secrets shown as `***`.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot show the config as TOML: {e}\n"))
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let max = hotline_protocol::MAX_FRAME_LEN as usize - 1024;
        if self.limits.max_body_bytes == 0 || self.limits.max_body_bytes > max {
            return Err(ConfigError::Invalid(format!("limits.max_body_bytes must be 1..={max}")));
        }
        if self.plugins.call_timeout_ms == 0 || self.plugins.memory_limit_mib == 0 {
            return Err(ConfigError::Invalid("plugins.call_timeout_ms and plugins.memory_limit_mib must be positive".into()));
        }
        if !(1..=256).contains(&self.plugins.threads) {
            return Err(ConfigError::Invalid("plugins.threads must be 1..=256".into()));
        }
        if self.limits.delivery_window == 0 {
            return Err(ConfigError::Invalid("limits.delivery_window must be at least 1".into()));
        }
        if !(10..=3_600_000).contains(&self.alerts.sample_ms) {
            return Err(ConfigError::Invalid("alerts.sample_ms must be 10..=3600000".into()));
        }
        if let Some(url) = &self.alerts.webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!("alerts.webhook must be an http:// or https:// URL, not {url:?}")));
            }
        }
        if self.limits.max_queue_items == 0 {
            return Err(ConfigError::Invalid(format!(
                "limits.max_queue_items must be at least 1 (default {DEFAULT_MAX_QUEUE_ITEMS}); there is no unlimited setting"
            )));
        }
        match &self.admin.token {
            Some(token) if token.expose().is_empty() || !token.expose().bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(ConfigError::Invalid(format!(
                    "admin.token (or {ADMIN_TOKEN_ENV}) must be printable ASCII without spaces, and not empty"
                )));
            }
            Some(_) => {}
            None if !self.admin.listen.ip().is_loopback() => {
                return Err(ConfigError::Invalid(format!(
                    "admin.listen {} is not a loopback address and admin.token is not set: set admin.token (or \
                     {ADMIN_TOKEN_ENV}) to serve the admin endpoint beyond this machine, or listen on 127.0.0.1",
                    self.admin.listen
                )));
            }
            None => {}
        }
        self.media.validate()?;
        self.push.validate()?;
        self.sms.validate()?;
        self.cluster.validate()?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            let (set, unset) = if self.tls.cert.is_some() { ("tls.cert", "tls.key") } else { ("tls.key", "tls.cert") };
            return Err(ConfigError::Invalid(format!(
                "{set} is set but {unset} is not: set both, or neither for a development certificate in <data>/tls"
            )));
        }
        Ok(())
    }

    /// Where the development certificate and key live when `[tls]` sets neither.
    pub fn dev_tls_dir(&self) -> PathBuf {
        self.data.join("tls")
    }

    pub fn store_path(&self) -> PathBuf {
        self.data.join("store")
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.plugins.dir.clone().unwrap_or_else(|| self.data.join("plugins"))
    }

    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.data.join("plugin-cache")
    }

    /// The QUIC stateless-reset key (32 random bytes, made on first start): a restarted
    /// broker resets the connections of the process before it at once.
    pub fn reset_key_path(&self) -> PathBuf {
        self.data.join("quic-reset-key")
    }

    pub fn sms_outbox_path(&self) -> PathBuf {
        self.data.join("sms-outbox.jsonl")
    }

    /// The media endpoint's files: `blobs/<sha256>` and `tmp/` (uploads being received).
    pub fn media_dir(&self) -> PathBuf {
        self.data.join("media")
    }

    pub fn message_ttl(&self) -> Duration {
        Duration::from_secs(self.storage.message_ttl_secs)
    }
}

impl MediaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_upload_bytes == 0 {
            return Err(ConfigError::Invalid("media.max_upload_bytes must be at least 1".into()));
        }
        if self.expiry_secs == 0 || self.expiry_secs > 100 * 365 * 24 * 3600 {
            return Err(ConfigError::Invalid("media.expiry_secs must be 1..=3153600000 (100 years)".into()));
        }
        if !(1..=86_400).contains(&self.sweep_secs) {
            return Err(ConfigError::Invalid("media.sweep_secs must be 1..=86400".into()));
        }
        if let Some(url) = &self.public_url {
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            let authority = rest.map(|r| r.trim_end_matches('/')).unwrap_or_default();
            if authority.is_empty() || authority.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
                return Err(ConfigError::Invalid(format!(
                    "media.public_url must be an https:// (or http://) URL without query, like https://media.example.com, not {url:?}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:5000\"\nlisen = 1\n").unwrap();
        let err = Config::load(&path).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.contains("hotline.toml") && chain.contains("lisen"), "{chain}");
        // The cause is the source, not repeated in the message: a printed chain says it once.
        assert_eq!(chain.matches("unknown field").count(), 1, "{chain}");
        std::fs::write(&path, "[limits]\nmax_body_bytes = 0\n").unwrap();
        assert!(Config::load(&path).unwrap_err().to_string().contains("max_body_bytes"));
        std::fs::write(&path, "[limits]\nmax_queue_items = 0\n").unwrap();
        assert!(Config::load(&path).unwrap_err().to_string().contains("limits.max_queue_items must be at least 1"));
        std::fs::write(&path, "[limits]\nmax_queue_items = 5\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().limits.max_queue_items, 5);
        assert_eq!(Config::default().limits.max_queue_items, 100_000);
        std::fs::write(&path, "[storage]\ndurability = \"buffered\"\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().storage.durability, Durability::Buffered);
    }

    #[test]
    fn tls_cert_and_key_are_set_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        std::fs::write(&path, "[tls]\nkey = \"/etc/hotline/key.pem\"\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("tls.key is set but tls.cert is not"), "{err}");
        std::fs::write(&path, "[tls]\ncert = \"/etc/hotline/cert.pem\"\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("tls.cert is set but tls.key is not"), "{err}");
        std::fs::write(&path, "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
        assert!(Config::load(&path).is_ok());
    }

    #[test]
    fn a_non_loopback_admin_address_needs_a_token_which_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        std::fs::write(&path, "[admin]\nlisten = \"0.0.0.0:9464\"\n").unwrap();
        let err = Config::resolve(Some(&path), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("admin.listen 0.0.0.0:9464 is not a loopback address") && err.contains("admin.token"), "{err}");
        // The command line can bring it back to loopback, or the environment give a token.
        let loopback = Overrides { admin: Some("127.0.0.1:0".parse().unwrap()), ..Overrides::default() };
        assert!(Config::resolve(Some(&path), &loopback).is_ok());
        let token = Overrides { admin_token: Some(Secret::new("s3cret-token")), ..Overrides::default() };
        let config = Config::resolve(Some(&path), &token).unwrap();
        assert_eq!(config.admin.token.as_ref().map(Secret::expose), Some("s3cret-token"));
        for shown in [config.to_toml(), serde_json::to_string(&config).unwrap(), format!("{config:?}")] {
            assert!(!shown.contains("s3cret") && shown.contains("***"), "{shown}");
        }
        std::fs::write(&path, "[admin]\ntoken = \"with space\"\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("admin.token"), "{err}");
    }

    #[test]
    fn the_shown_toml_reads_back_as_the_same_config() {
        let config = Config::default();
        let back: Config = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&config).unwrap());
    }

    #[test]
    fn media_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        for (text, says) in [
            ("[media]\nmax_upload_bytes = 0\n", "media.max_upload_bytes"),
            ("[media]\nexpiry_secs = 0\n", "media.expiry_secs"),
            ("[media]\nsweep_secs = 0\n", "media.sweep_secs"),
            ("[media]\npublic_url = \"media.example.com\"\n", "media.public_url"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Config::load(&path).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        std::fs::write(&path, "[media]\nenabled = false\npublic_url = \"https://media.example.com/\"\n").unwrap();
        let media = Config::load(&path).unwrap().media;
        assert!(!media.enabled);
        assert_eq!(Config::default().media.max_upload_bytes, 64 << 20);
        assert_eq!(Config::default().media.listen.port(), 4443);
    }

    #[test]
    fn push_settings_are_checked_and_push_is_off_without_a_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        for (text, says) in [
            ("[push.webhook]\nurl = \"http://push.example.com/\"\n", "push.webhook.url"),
            ("[push.webhook]\nurl = \"https://p.example/\"\nattempts = 0\n", "push.webhook.attempts"),
            ("[push]\nbatch_ms = 0\n", "push.batch_ms"),
            ("[push]\nqueue = 0\n", "push.queue"),
            ("[push]\nwebhooks = 1\n", "unknown field"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", anyhow::Error::from(Config::load(&path).unwrap_err()));
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(Config::default().push.webhook.is_none(), "push is off by default");
        std::fs::write(&path, "[push.webhook]\nurl = \"https://push.example.com/wake\"\nhmac_secret = \"whsec_hidden\"\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!((config.push.batch_ms, config.push.queue), (100, 4096));
        for shown in [config.to_toml(), serde_json::to_string(&config).unwrap(), format!("{config:?}")] {
            assert!(!shown.contains("hidden") && shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn sms_settings_are_checked_and_secrets_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        for (text, says) in [
            ("[sms]\nprovider = \"webhook\"\n", "[sms.webhook] is not set"),
            ("[sms.webhook]\nurl = \"https://sms.example.com/\"\n", "sms.provider is \"outbox\""),
            ("[sms]\nprovider = \"webhook\"\n[sms.webhook]\nurl = \"http://sms.example.com/\"\n", "sms.webhook.url"),
            ("[sms]\nprovider = \"webhook\"\n[sms.webhook]\nurl = \"https://s.example/\"\nattempts = 0\n", "sms.webhook.attempts"),
            ("[sms]\nprovider = \"pigeon\"\n", "unknown variant"),
            ("[sms.limits]\nprefix_digits = 0\n", "sms.limits.prefix_digits"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", anyhow::Error::from(Config::load(&path).unwrap_err()));
            assert!(err.contains(says), "{text}: {err}");
        }
        assert_eq!(Config::default().sms.limits(), (0, 0), "no limits with the outbox unless set");
        std::fs::write(
            &path,
            "[sms]\nprovider = \"webhook\"\n[sms.webhook]\nurl = \"https://sms.example.com/send\"\nhmac_secret = \"whsec_hidden\"\n\
             header = { name = \"Authorization\", value = \"Bearer hidden-token\" }\n[sms.limits]\nper_prefix_per_hour = 0\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.sms.limits(), (SmsLimitsConfig::DEFAULT_PER_ADDRESS, 0));
        let webhook = config.sms.webhook.as_ref().unwrap();
        assert_eq!((webhook.timeout_ms, webhook.attempts, webhook.backoff_ms), (5000, 4, 200));
        for shown in [config.to_toml(), serde_json::to_string(&config).unwrap(), format!("{config:?}")] {
            assert!(!shown.contains("hidden") && shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn probation_failures_zero_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        std::fs::write(&path, "[plugins]\nprobation_failures = 0\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().plugins.probation_failures, 0);
    }

    #[test]
    fn a_cluster_needs_a_node_id_and_nats_urls_and_the_command_line_wins() {
        assert!(!Config::default().cluster.enabled());
        let urls = Some(vec!["nats://127.0.0.1:4222".to_string(), "nats://127.0.0.1:4223".to_string()]);
        let no_id = Overrides { cluster: urls.clone(), ..Overrides::default() };
        let err = Config::resolve(None, &no_id).unwrap_err().to_string();
        assert!(err.contains("cluster.node_id is required"), "{err}");
        let ok = Overrides { cluster: urls.clone(), node_id: Some("n1".into()), ..Overrides::default() };
        let config = Config::resolve(None, &ok).unwrap();
        assert!(config.cluster.enabled());
        assert_eq!((config.cluster.node(), config.cluster.nats.len(), config.cluster.partitions), ("n1", 2, 8));
        let bad_id = Overrides { cluster: urls.clone(), node_id: Some("node 1".into()), ..Overrides::default() };
        assert!(Config::resolve(None, &bad_id).unwrap_err().to_string().contains("cluster.node_id"));
        let bad_url = Overrides { cluster: Some(vec!["http://x".into()]), node_id: Some("n1".into()), ..Overrides::default() };
        assert!(Config::resolve(None, &bad_url).unwrap_err().to_string().contains("is not a nats:// or tls:// URL"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hotline.toml");
        std::fs::write(&path, "[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\nnode_id = \"a\"\npartitions = 0\n").unwrap();
        assert!(Config::load(&path).unwrap_err().to_string().contains("cluster.partitions"));
    }
}
