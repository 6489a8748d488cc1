//! Connecting to NATS and creating (or checking) every stream and bucket the cluster uses.
//! Idempotent: several nodes may start at once, and a node that starts again finds
//! everything in place.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};

use super::names::Names;
use super::ClusterError;
use crate::config::ClusterConfig;

/// How long a node keeps trying to reach NATS at start before it gives up.
const CONNECT_PATIENCE: Duration = Duration::from_secs(15);
/// How long the mailbox streams remember a publish's `Nats-Msg-Id` (a resend within it is
/// stored once).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// How long idempotency records live: a client retries within a day (as on one node).
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The key-value buckets of a cluster.
pub struct Buckets {
    pub accounts: kv::Store,
    pub sessions: kv::Store,
    pub idem: kv::Store,
    pub delivered: kv::Store,
    pub push: kv::Store,
}

/// Connects to one of `config.nats` (every URL is given to the client, which reconnects to
/// any of them later), retrying for [`CONNECT_PATIENCE`].
pub async fn connect(config: &ClusterConfig) -> Result<async_nats::Client, ClusterError> {
    let urls = config.nats.join(",");
    let addrs: Vec<async_nats::ServerAddr> = config
        .nats
        .iter()
        .map(|url| url.parse().map_err(|e| ClusterError::Connect { urls: urls.clone(), detail: format!("{url}: {e}") }))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    loop {
        let options = async_nats::ConnectOptions::new()
            .name(format!("hotline-{}", config.node()))
            .connection_timeout(Duration::from_secs(3))
            // Reconnects forever once connected: a NATS server that dies is replaced by
            // another of the list.
            .max_reconnects(None);
        match options.connect(addrs.clone()).await {
            Ok(client) => return Ok(client),
            Err(e) if started.elapsed() < CONNECT_PATIENCE => {
                tracing::warn!(urls = %urls, error = %e, "NATS not reachable yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(ClusterError::Connect { urls, detail: e.to_string() }),
        }
    }
}

/// Creates (or updates to this configuration) every mailbox stream and bucket. Retried
/// while JetStream is still electing its leaders after a start.
pub async fn create_all(js: &jetstream::Context, names: &Names, config: &ClusterConfig, ttl: Duration) -> Result<Buckets, ClusterError> {
    let started = Instant::now();
    loop {
        match try_create_all(js, names, config, ttl).await {
            Ok(buckets) => return Ok(buckets),
            Err(e) if started.elapsed() < CONNECT_PATIENCE * 2 => {
                tracing::warn!(error = %e, "JetStream not ready yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn try_create_all(js: &jetstream::Context, names: &Names, config: &ClusterConfig, ttl: Duration) -> Result<Buckets, ClusterError> {
    for n in 0..names.partitions() {
        let name = names.stream(n);
        let stream = stream::Config {
            name: name.clone(),
            subjects: vec![names.stream_subjects(n)],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            allow_direct: true,
            retention: stream::RetentionPolicy::Limits,
            max_age: ttl,
            duplicate_window: DUPLICATE_WINDOW.min(ttl),
            ..Default::default()
        };
        js.create_or_update_stream(stream).await.map_err(|e| ClusterError::Setup { what: format!("stream {name}"), detail: e.to_string() })?;
    }
    let bucket = |what: &str, max_age: Duration| kv::Config {
        bucket: names.bucket(what),
        history: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    };
    let create = |config: kv::Config| async move {
        let what = format!("bucket {}", config.bucket);
        js.create_or_update_key_value(config).await.map_err(|e| ClusterError::Setup { what, detail: e.to_string() })
    };
    Ok(Buckets {
        accounts: create(bucket("accounts", Duration::ZERO)).await?,
        sessions: create(bucket("sessions", Duration::ZERO)).await?,
        idem: create(bucket("idem", IDEMPOTENCY_TTL.min(ttl).max(DUPLICATE_WINDOW))).await?,
        delivered: create(bucket("delivered", ttl)).await?,
        push: create(bucket("push", Duration::ZERO)).await?,
    })
}
