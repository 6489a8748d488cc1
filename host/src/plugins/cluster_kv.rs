//! Plugin key-value state in a cluster: the NATS JetStream key-value bucket
//! `<prefix>_plugins`, shared by every node, behind [`PluginKv`] ([`NatsPluginKv`]).
//!
//! Layout: one bucket entry per plugin key, named `<slot>.<hex(key)>` (lower-case hex, so
//! any bytes make a valid NATS key; the empty key is `<slot>._`), the value as is; history 1.
//! Reads ask the stream leader (not a direct get, which any replica may answer before it
//! caught up), so a node reads what any node wrote before. Compare-and-swap and increment
//! use the key's revision: read the entry, compare, then `create`/`update` expecting that
//! revision (or delete expecting it); losing a race to another writer means reading again.
//! Plugin calls run on the plugin threads (OS threads), which block on the runtime here;
//! every operation is bounded by [`OP_TIMEOUT`].

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

use super::kv_backend::{add_to_counter, IncrementError, KvError, PluginKv};

/// Longest wait for one bucket operation (a read, a write and its acknowledgement, or a
/// listing); past it the call fails (a write may still have happened).
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for creating or opening the bucket at start.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the empty key after the slot (hex never produces it).
const EMPTY_KEY: &str = "_";

/// The header a key-value delete or purge marker carries.
const KV_OPERATION: &str = "KV-Operation";

/// What [`NatsPluginKv::open`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The bucket could neither be created nor opened (NATS unreachable, JetStream off, or
    /// a bucket of that name with another configuration that cannot be read).
    #[error("plugin kv bucket {bucket}: {detail}")]
    Bucket { bucket: String, detail: String },
    /// Opening took longer than the time limit.
    #[error("plugin kv bucket {0}: no answer from NATS within {OPEN_TIMEOUT:?}")]
    TimedOut(String),
}

/// Plugin key-value state in the cluster's `<prefix>_plugins` bucket.
pub struct NatsPluginKv {
    bucket: kv::Store,
    client: async_nats::Client,
    handle: tokio::runtime::Handle,
}

/// The bucket entry name of a plugin key.
fn entry_name(slot: &str, key: &[u8]) -> String {
    if key.is_empty() {
        format!("{slot}.{EMPTY_KEY}")
    } else {
        format!("{slot}.{}", hex::encode(key))
    }
}

/// The plugin key of an entry name's part after `<slot>.` (`None`: not one of ours).
fn plugin_key(name: &str) -> Option<Vec<u8>> {
    if name == EMPTY_KEY {
        Some(Vec::new())
    } else {
        hex::decode(name).ok()
    }
}

fn bucket_error(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Bucket(format!("{what}: {e}"))
}

/// The current entry of a key: its value (`None` when absent or deleted) and the revision
/// a conditional write must expect (0: the key was never written).
struct Current {
    value: Option<Vec<u8>>,
    revision: u64,
}

impl NatsPluginKv {
    /// Creates the bucket `<prefix>_plugins` with `replicas` replicas, or opens it when
    /// another node already did (several nodes may start at once). `handle` is the runtime
    /// the NATS client runs on; plugin threads block on it.
    pub fn open(js: jetstream::Context, prefix: &str, replicas: usize, handle: tokio::runtime::Handle) -> Result<NatsPluginKv, OpenError> {
        let name = format!("{prefix}_plugins");
        let config = kv::Config {
            bucket: name.clone(),
            description: "Hotline plugin key-value state: <slot>.<hex(key)>".into(),
            history: 1,
            max_value_size: hotline_plugin::limits::KV_MAX_VALUE_BYTES as i32,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let client = js.client();
        let opened = block(&handle, async {
            tokio::time::timeout(OPEN_TIMEOUT, async {
                match js.create_key_value(config).await {
                    Ok(bucket) => Ok(bucket),
                    // Created by another node meanwhile, or with a configuration of an
                    // earlier start (e.g. other replicas): use it as it is.
                    Err(created) => js.get_key_value(name.clone()).await.map_err(|opened| format!("creating it: {created}; opening it: {opened}")),
                }
            })
            .await
        });
        match opened {
            Ok(Ok(bucket)) => Ok(NatsPluginKv { bucket, client, handle }),
            Ok(Err(detail)) => Err(OpenError::Bucket { bucket: name, detail }),
            Err(_) => Err(OpenError::TimedOut(name)),
        }
    }

    /// Runs one bucket operation to its end (or [`OP_TIMEOUT`]) from a plugin thread.
    fn run<T>(&self, what: &str, op: impl Future<Output = Result<T, KvError>> + Send) -> Result<T, KvError>
    where
        T: Send,
    {
        match block(&self.handle, async { tokio::time::timeout(OP_TIMEOUT, op).await }) {
            Ok(result) => result,
            Err(_) => Err(KvError::Bucket(format!("{what}: no answer from NATS within {OP_TIMEOUT:?}"))),
        }
    }

    /// The current entry of `name`, read from the stream leader.
    async fn current(&self, name: &str) -> Result<Current, KvError> {
        let subject = format!("{}{name}", self.bucket.prefix);
        match self.bucket.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                let deleted = message.headers.get(KV_OPERATION).is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
                Ok(Current { value: (!deleted).then(|| message.payload.to_vec()), revision: message.sequence })
            }
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => Ok(Current { value: None, revision: 0 }),
            Err(e) => Err(bucket_error("read", e)),
        }
    }

    /// Writes `value` (`Some`) or a delete marker (`None`) under `name` if its revision is
    /// still `revision`: true when written, false when another write came first.
    async fn write_at(&self, name: &str, revision: u64, value: Option<&[u8]>) -> Result<bool, KvError> {
        let written = match value {
            // Revision 0: "no message for this key yet" (what `create` sends).
            Some(value) => self.bucket.update(name, value.to_vec().into(), revision).await.map(|_| ()),
            None => self.bucket.delete_expect_revision(name, Some(revision)).await,
        };
        match written {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(bucket_error("conditional write", e)),
        }
    }

    /// Every present key of `slot`, in byte order. Costs one ephemeral ordered consumer
    /// (headers only, last entry per key) on the bucket's stream, one delivery per key of
    /// the slot ever written (deleted keys leave a marker that is delivered and skipped),
    /// and deleting the consumer: linear in the slot's keys, whatever the prefix.
    async fn slot_keys(&self, slot: &str) -> Result<Vec<Vec<u8>>, KvError> {
        let subject_prefix = format!("{}{slot}.", self.bucket.prefix);
        let consumer = self
            .bucket
            .stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                description: Some("hotline plugin kv key listing".into()),
                filter_subject: format!("{subject_prefix}>"),
                headers_only: true,
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| bucket_error("listing keys", e))?;
        let consumer_name = consumer.cached_info().name.clone();
        // Key → present, in delivery order: an entry written while the listing runs is
        // delivered again and its last state wins.
        let mut keys = BTreeMap::new();
        let listed: Result<(), KvError> = async {
            if consumer.cached_info().num_pending == 0 {
                return Ok(());
            }
            let mut messages = consumer.messages().await.map_err(|e| bucket_error("listing keys", e))?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| bucket_error("listing keys", e))?;
                let pending = message.info().map_err(|e| bucket_error("listing keys", e))?.pending;
                let deleted = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(KV_OPERATION))
                    .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
                if let Some(key) = message.subject.as_str().strip_prefix(&subject_prefix).and_then(plugin_key) {
                    keys.insert(key, !deleted);
                }
                if pending == 0 {
                    break;
                }
            }
            Ok(())
        }
        .await;
        // The server would drop it after its inactivity threshold anyway.
        if let Err(e) = self.bucket.stream.delete_consumer(&consumer_name).await {
            tracing::debug!(error = %e, "deleting a plugin kv listing consumer");
        }
        listed?;
        Ok(keys.into_iter().filter_map(|(key, present)| present.then_some(key)).collect())
    }
}

/// Blocks the calling thread on `fut`: directly on a plain thread (the plugin threads),
/// through `block_in_place` on a worker of a multi-threaded runtime (a plugin's `init` runs
/// at start, on the serving runtime), and on a helper thread otherwise.
fn block<F>(handle: &tokio::runtime::Handle, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    match tokio::runtime::Handle::try_current() {
        Err(_) => handle.block_on(fut),
        Ok(current) if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(fut))
        }
        Ok(_) => std::thread::scope(|s| s.spawn(|| handle.block_on(fut)).join().expect("a plugin kv operation panicked")),
    }
}

impl PluginKv for NatsPluginKv {
    fn get(&self, slot: &str, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let name = entry_name(slot, key);
        self.run("read", async { Ok(self.current(&name).await?.value) })
    }

    fn set(&self, slot: &str, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        let name = entry_name(slot, key);
        self.run("write", async {
            self.bucket.put(&name, value.to_vec().into()).await.map_err(|e| bucket_error("write", e))?;
            Ok(())
        })
    }

    fn delete(&self, slot: &str, key: &[u8]) -> Result<(), KvError> {
        let name = entry_name(slot, key);
        self.run("delete", async {
            // An absent key stays absent without a marker.
            if self.current(&name).await?.value.is_none() {
                return Ok(());
            }
            self.bucket.delete(&name).await.map_err(|e| bucket_error("delete", e))
        })
    }

    /// Lists the whole slot (see `slot_keys`: linear in the slot's keys), then filters.
    fn keys(&self, slot: &str, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, KvError> {
        self.run("listing keys", async {
            let keys = self.slot_keys(slot).await?;
            Ok(keys.into_iter().filter(|k| k.starts_with(prefix)).take(limit).collect())
        })
    }

    /// Lists the whole slot (see `slot_keys`: linear in the slot's keys), then filters.
    fn keys_after(&self, slot: &str, prefix: &[u8], after: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, KvError> {
        self.run("listing keys", async {
            let keys = self.slot_keys(slot).await?;
            Ok(keys.into_iter().filter(|k| k.starts_with(prefix) && k.as_slice() > after).take(limit).collect())
        })
    }

    fn compare_and_swap(&self, slot: &str, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, KvError> {
        let name = entry_name(slot, key);
        self.run("compare-and-swap", async {
            loop {
                let current = self.current(&name).await?;
                if current.value.as_deref() != expected {
                    return Ok(false);
                }
                if current.value.is_none() && new.is_none() {
                    // Absent and to stay absent: nothing to write.
                    return Ok(true);
                }
                if self.write_at(&name, current.revision, new).await? {
                    return Ok(true);
                }
                // Another write came between the read and ours: compare again.
            }
        })
    }

    fn increment(&self, slot: &str, key: &[u8], delta: i64) -> Result<i64, IncrementError> {
        let name = entry_name(slot, key);
        let result = self.run("increment", async {
            loop {
                let current = self.current(&name).await?;
                let sum = match add_to_counter(current.value.as_deref(), delta) {
                    Ok(sum) => sum,
                    Err(refused) => return Ok(Err(refused)),
                };
                if self.write_at(&name, current.revision, Some(&sum.to_le_bytes())).await? {
                    return Ok(Ok(sum));
                }
            }
        });
        result?
    }
}

#[cfg(test)]
mod tests;
