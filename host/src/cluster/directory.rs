//! The cluster's session directory: which node holds each number's session, in the
//! `<prefix>_sessions` bucket, claimed with compare-and-set and a growing epoch; and the
//! kicks that close the older session of a number on another node (close code 7, as on
//! one node). The node-local directory ([`Sessions`]) still carries wake-ups and kicks to
//! this node's sessions.
//!
//! A login claims the number: read the entry, write `{node: me, epoch: old + 1}` at the
//! revision read (create if absent); a lost race reads again, so the later claim wins and
//! kicks. If the entry named another node, that node gets a kick with the new epoch and
//! closes its session of the number if that session's epoch is older. A logout deletes
//! the entry only at the revision this node wrote, leaving a newer login elsewhere alone.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use hotline_core::Close;

use super::names::{self, Names};
use super::records::{from_json, to_json, Claim, Kick};
use super::{ClusterError, ClusterMetrics};
use crate::sessions::Sessions;

/// How long a login keeps trying to claim its number while JetStream fails.
const CLAIM_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// This node's claim on a number, for its local session `session`.
struct Local {
    phone: String,
    session: u64,
    /// The epoch and revision written; `None` while the claim is being written.
    written: Option<(u64, u64)>,
    /// The highest epoch a kick named while the claim was being written.
    kicked: u64,
    /// The close that kick asked for.
    kick_close: Option<Close>,
}

pub struct Directory {
    names: Names,
    client: async_nats::Client,
    bucket: kv::Store,
    sessions: Arc<Sessions>,
    metrics: Arc<ClusterMetrics>,
    /// This node's claims, by the number's token (the bucket's key).
    local: Mutex<HashMap<String, Local>>,
}

impl Directory {
    pub fn new(names: Names, client: async_nats::Client, bucket: kv::Store, sessions: Arc<Sessions>, metrics: Arc<ClusterMetrics>) -> Directory {
        Directory { names, client, bucket, sessions, metrics, local: Mutex::default() }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kv_error(&self, e: impl std::fmt::Display) -> ClusterError {
        ClusterError::Kv { bucket: self.names.bucket("sessions"), detail: e.to_string() }
    }

    /// Claims `phone` for local session `session`; kicks the number's session on the node
    /// that held it. Returns once the claim is written.
    pub async fn claim(&self, phone: &str, session: u64, replaces: &Close) -> Result<(), ClusterError> {
        let key = names::token(phone);
        self.local().insert(key.clone(), Local { phone: phone.to_string(), session, written: None, kicked: 0, kick_close: None });
        // A lost race is read again; so is a failure while JetStream elects a leader (no
        // responders, a time-out), for a while.
        let started = std::time::Instant::now();
        let (old, epoch, revision) = loop {
            let entry = match self.bucket.entry(&key).await {
                Ok(entry) => entry,
                Err(_) if started.elapsed() < CLAIM_PATIENCE => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    self.forget(phone, session);
                    return Err(self.kv_error(e));
                }
            };
            let (old, read_revision) = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => (Some(from_json::<Claim>(&entry.value, "directory entry")?), Some(entry.revision)),
                // A deleted entry: its marker's revision keeps the epochs growing.
                Some(entry) => (None, Some(entry.revision)),
                None => (None, None),
            };
            let epoch = old.as_ref().map_or(0, |c| c.epoch).max(read_revision.unwrap_or(0)) + 1;
            let value = to_json(&Claim { node: self.names.node().to_string(), epoch }).into();
            let written = match read_revision {
                Some(revision) => self.bucket.update(&key, value, revision).await.map_err(|e| (e.kind() == kv::UpdateErrorKind::WrongLastRevision, e.to_string())),
                None => self.bucket.create(&key, value).await.map_err(|e| (e.kind() == kv::CreateErrorKind::AlreadyExists, e.to_string())),
            };
            match written {
                Ok(revision) => break (old, epoch, revision),
                // Another login of the number wrote first: read it and claim after it.
                Err((true, _)) => continue,
                Err((false, _)) if started.elapsed() < CLAIM_PATIENCE => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
                Err((false, e)) => {
                    self.forget(phone, session);
                    return Err(self.kv_error(e));
                }
            }
        };
        let kicked = {
            let mut local = self.local();
            match local.get_mut(&key) {
                Some(l) if l.session == session => {
                    l.written = Some((epoch, revision));
                    (l.kicked > epoch).then(|| l.kick_close.clone().unwrap_or_else(|| replaces.clone()))
                }
                _ => None,
            }
        };
        if let Some(close) = kicked {
            // A newer login elsewhere kicked this one while it was being written.
            self.local().remove(&key);
            self.sessions.kick_session(phone, session, close);
        }
        if let Some(old) = old.filter(|old| old.node != self.names.node()) {
            self.send_kick(&old.node, Kick { number: phone.to_string(), epoch, code: replaces.code, reason: replaces.reason.clone() }).await;
        }
        Ok(())
    }

    /// Local session `session` of `phone` ended: forget its claim and delete the entry if
    /// it is still the one this node wrote.
    pub fn release(self: &Arc<Self>, phone: &str, session: u64) {
        let Some(revision) = self.forget(phone, session) else { return };
        let this = self.clone();
        let key = names::token(phone);
        tokio::spawn(async move {
            // Fails harmlessly when a newer login wrote the entry since.
            if let Err(e) = this.bucket.delete_expect_revision(&key, Some(revision)).await {
                tracing::debug!(error = %e, "directory entry not deleted (a newer login holds it)");
            }
        });
    }

    /// Removes `phone`'s local claim if it is session `session`'s; the revision it wrote.
    fn forget(&self, phone: &str, session: u64) -> Option<u64> {
        let mut local = self.local();
        let key = names::token(phone);
        if local.get(&key).is_some_and(|l| l.session == session) {
            return local.remove(&key).and_then(|l| l.written.map(|(_, revision)| revision));
        }
        None
    }

    /// Closes `phone`'s session wherever it is (a re-registration revokes the old device):
    /// here through the local directory, on another node with a kick.
    pub async fn kick(&self, phone: &str, close: Close) {
        self.sessions.kick(phone, close.clone());
        let entry = match self.bucket.entry(names::token(phone)).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => entry,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, %phone, "could not look the number up to kick its session");
                return;
            }
        };
        let Ok(claim) = from_json::<Claim>(&entry.value, "directory entry") else { return };
        if claim.node != self.names.node() {
            self.send_kick(&claim.node, Kick { number: phone.to_string(), epoch: claim.epoch + 1, code: close.code, reason: close.reason.clone() }).await;
        }
    }

    async fn send_kick(&self, node: &str, kick: Kick) {
        let subject = self.names.kick_subject(node);
        match self.client.publish(subject, to_json(&kick).into()).await {
            Ok(()) => {
                self.metrics.kicks_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, node, "could not send a kick"),
        }
    }

    /// A kick for this node: closes the number's local session if its epoch is older.
    fn kicked(&self, kick: Kick) {
        self.metrics.kicks_received.fetch_add(1, Ordering::Relaxed);
        self.newer_claim(&names::token(&kick.number), kick.epoch, Close::new(kick.code, kick.reason));
    }

    /// A claim of epoch `epoch` on the number with token `key` exists elsewhere: this
    /// node's session of it closes with `close` if it is older.
    fn newer_claim(&self, key: &str, epoch: u64, close: Close) {
        let mut local = self.local();
        let Some(claim) = local.get_mut(key) else { return };
        match claim.written {
            Some((own, _)) if own < epoch => {
                let (phone, session) = (claim.phone.clone(), claim.session);
                local.remove(key);
                drop(local);
                tracing::debug!(%phone, own, epoch, "closing a session a newer login replaced");
                self.sessions.kick_session(&phone, session, close);
            }
            Some(_) => {}
            None => {
                if epoch > claim.kicked {
                    claim.kicked = epoch;
                    claim.kick_close = Some(close);
                }
            }
        }
    }

    /// Listens to this node's kick subject until the runtime stops.
    pub async fn listen(self: Arc<Self>) -> Result<(), ClusterError> {
        let subject = self.names.kick_subject(self.names.node());
        let fail = |e: &dyn std::fmt::Display| ClusterError::Setup { what: format!("subscription {subject}"), detail: e.to_string() };
        let mut kicks = self.client.subscribe(subject.clone()).await.map_err(|e| fail(&e))?;
        // Known to the server before the first claim can name this node.
        self.client.flush().await.map_err(|e| fail(&e))?;
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(message) = kicks.next().await {
                match from_json::<Kick>(&message.payload, "kick") {
                    Ok(kick) => this.kicked(kick),
                    Err(e) => tracing::warn!(error = %e, "ignored a kick that does not decode"),
                }
            }
        });
        tokio::spawn(self.watch());
        Ok(())
    }

    /// The backstop for a lost kick (the node's NATS connection was down when it was
    /// sent): every claim written to the directory reaches every node through a watch of
    /// the bucket, and a claim by another node with a newer epoch closes the local session
    /// as its kick would have. Runs until the runtime stops, watching again after an error.
    async fn watch(self: Arc<Self>) {
        loop {
            match self.bucket.watch_all().await {
                Ok(mut entries) => {
                    while let Some(entry) = entries.next().await {
                        let Ok(entry) = entry else { break };
                        if entry.operation != kv::Operation::Put {
                            continue;
                        }
                        let Ok(claim) = from_json::<Claim>(&entry.value, "directory entry") else { continue };
                        if claim.node != self.names.node() {
                            let close = Close::new(hotline_protocol::close_code::SESSION_REPLACED, "logged in again on another node");
                            self.newer_claim(&entry.key, claim.epoch, close);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watching the directory failed; trying again"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}
