//! Several nodes over NATS JetStream (issue 14; docs/cluster.md): the cluster backend. A
//! node keeps its users' messages in partitioned mailbox streams, accounts, the session
//! directory, idempotency and delivered records in key-value buckets, and carries out the
//! core's jobs and ports over them. The delivery rules stay the core's
//! (`hotline-core`); this module only stores and reads.
//!
//! - `names.rs`: every stream, bucket, subject, key and deduplication id; partitioning;
//!   cluster message ids.
//! - `setup.rs`: connecting and creating (or checking) streams and buckets.
//! - `records.rs`: what is stored (envelope, delivered record, directory entry, kick).
//! - `mailboxes.rs`: the node's cache of its online users' queues, the per-partition
//!   ordered consumers that feed it, the backlog load and the sweep; the `Queues` port.
//! - `directory.rs`: the session directory (compare-and-set claims, epochs, kicks).
//! - `jobs.rs`: the job executor (a lane per session) and how each job maps to JetStream.
//! - `ports.rs`: the `Accounts` port.

mod directory;
mod jobs;
mod mailboxes;
pub mod names;
mod ports;
mod records;
mod setup;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use hotline_core::Close;

pub use jobs::{Answer, Lane};
pub use mailboxes::Mailboxes;

use crate::config::ClusterConfig;
use crate::sessions::Sessions;
use directory::Directory;
use names::Names;
use setup::Buckets;

/// What can go wrong talking to the cluster.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// No NATS server of the list could be reached at start.
    #[error("cannot reach NATS at {urls}: {detail}")]
    Connect { urls: String, detail: String },
    /// A stream, bucket or subscription could not be created or checked.
    #[error("setting up {what}: {detail}")]
    Setup { what: String, detail: String },
    /// JetStream did not acknowledge a publish (nothing may be answered `Sent`).
    #[error("publishing to {subject} failed: {detail}")]
    Publish { subject: String, detail: String },
    /// A key-value read or write failed.
    #[error("bucket {bucket}: {detail}")]
    Kv { bucket: String, detail: String },
    /// Reading or deleting a mailbox stream's message failed.
    #[error("stream {stream}: {detail}")]
    Stream { stream: String, detail: String },
    /// A stored record does not decode (corruption, or a newer node's format).
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    /// The session's job lane is gone (the broker is shutting down).
    #[error("the cluster job executor stopped")]
    Stopped,
}

/// The cluster's counters (`hotline_cluster_*` in `/metrics`).
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// Items published to mailbox streams (messages and receipts).
    pub publishes: AtomicU64,
    /// Publishes that failed or were not acknowledged.
    pub publish_failures: AtomicU64,
    /// Kicks sent to other nodes.
    pub kicks_sent: AtomicU64,
    /// Kicks received from other nodes.
    pub kicks_received: AtomicU64,
    /// Items the sweep found that the partition consumers had not brought.
    pub sweep_found: AtomicU64,
}

impl ClusterMetrics {
    /// Writes the counters into `/metrics`.
    pub(crate) fn expose(&self, out: &mut crate::admin::Exposition) {
        for (name, help, value) in [
            ("hotline_cluster_publishes_total", "Items published to the mailbox streams.", &self.publishes),
            ("hotline_cluster_publish_failures_total", "Mailbox publishes that failed or were not acknowledged.", &self.publish_failures),
            ("hotline_cluster_kicks_sent_total", "Kicks sent to other nodes (a login of a number held there).", &self.kicks_sent),
            ("hotline_cluster_kicks_received_total", "Kicks received from other nodes.", &self.kicks_received),
            ("hotline_cluster_sweep_found_total", "Items the sweep found that the partition consumers had not brought.", &self.sweep_found),
        ] {
            out.counter(name, help, value.load(Ordering::Relaxed));
        }
    }
}

/// A node's connection to the cluster and everything it runs over it.
pub struct Cluster {
    names: Names,
    js: jetstream::Context,
    buckets: Buckets,
    /// The queues of the users online on this node (the core's `Queues` port).
    pub mailboxes: Arc<Mailboxes>,
    directory: Arc<Directory>,
    pub metrics: Arc<ClusterMetrics>,
}

impl Cluster {
    /// Connects, creates (or checks) every stream and bucket, and starts the partition
    /// consumers, the sweep and the kick listener. `ttl` is the message TTL (streams'
    /// `max_age`).
    pub async fn start(config: &ClusterConfig, ttl: Duration, sessions: Arc<Sessions>) -> Result<Arc<Cluster>, ClusterError> {
        let names = Names::new(config);
        let client = setup::connect(config).await?;
        let js = jetstream::new(client.clone());
        let buckets = setup::create_all(&js, &names, config, ttl).await?;
        let metrics: Arc<ClusterMetrics> = Arc::default();
        let mailboxes = Arc::new(Mailboxes::new(names.clone(), js.clone(), sessions.clone(), metrics.clone()));
        let directory = Arc::new(Directory::new(names.clone(), client, buckets.sessions.clone(), sessions, metrics.clone()));
        directory.clone().listen().await?;
        for partition in 0..names.partitions() {
            let start = mailboxes.start_of(partition).await?;
            tokio::spawn(mailboxes.clone().watch(partition, start));
        }
        tokio::spawn(mailboxes.clone().sweep_every(Duration::from_millis(config.sweep_ms)));
        tracing::info!(node = names.node(), nats = %config.nats.join(","), partitions = names.partitions(), replicas = config.replicas, "joined the cluster");
        Ok(Arc::new(Cluster { names, js, buckets, mailboxes, directory, metrics }))
    }

    /// A session of `phone` (local session `session`) logged in here: mark it interested
    /// in the cache, claim the number in the directory (kicking its session elsewhere),
    /// and load its backlog. The core hears `Registered` only after this.
    pub async fn logged_in(&self, phone: &str, session: u64, replaces: &Close) -> Result<(), ClusterError> {
        self.mailboxes.interest(phone, session);
        let result = async {
            self.directory.claim(phone, session, replaces).await?;
            self.mailboxes.load(phone).await
        }
        .await;
        if result.is_err() {
            self.logged_out(phone, session);
        }
        result
    }

    /// Local session `session` of `phone` ended.
    pub fn logged_out(&self, phone: &str, session: u64) {
        self.mailboxes.drop_interest(phone, session);
        self.directory.release(phone, session);
    }

    /// The node's JetStream context (for the plugins' bucket).
    pub fn jetstream(&self) -> jetstream::Context {
        self.js.clone()
    }

    /// Closes `phone`'s session, here or on the node that holds it.
    pub async fn kick(&self, phone: &str, close: Close) {
        self.directory.kick(phone, close).await;
    }
}
