//! The registry of QUIC connections, from the handshake to the close: id, remote address,
//! the number once logged in, when it connected and what waits in its outbound mailbox;
//! and the operator's kick. The admin API lists and kicks through it
//! (`GET /api/connections`, `POST /api/connections/{id}/kick`), the queue monitor reads
//! the mailboxes, `/metrics` counts the open connections. Knows nothing of QUIC: a
//! connection's task registers itself ([`Connections::open`]) and listens to its
//! [`ConnectionHandle::kicked`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::Notify;

use crate::broker::now_ms;
use crate::server::MailboxLoad;

/// The reason the client sees when an operator kicks its connection (close code 0).
pub const KICK_REASON: &str = "disconnected by an operator";

/// One connection as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionInfo {
    pub id: u64,
    /// The client's address and port.
    pub remote: String,
    /// The number, once logged in.
    pub phone: Option<String>,
    /// When the handshake finished, Unix ms.
    pub connected_at_ms: u64,
    /// Frames waiting in the mailbox to be written to the client.
    pub mailbox_items: u64,
    /// Their bytes.
    pub mailbox_bytes: u64,
}

/// What the registry holds of one connection.
struct Entry {
    remote: SocketAddr,
    connected_at_ms: u64,
    phone: Mutex<Option<String>>,
    mailbox: Arc<MailboxLoad>,
    /// Notified once by [`Connections::kick`]; the permit waits if nobody listens yet.
    kick: Notify,
}

/// Every open connection, by id.
#[derive(Default)]
pub struct Connections {
    map: DashMap<u64, Arc<Entry>>,
    next_id: AtomicU64,
}

impl Connections {
    /// Registers a connection from `remote`; it stays listed until the returned
    /// handle is dropped.
    pub fn open(self: &Arc<Self>, remote: SocketAddr) -> ConnectionHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(Entry {
            remote,
            connected_at_ms: now_ms(),
            phone: Mutex::new(None),
            mailbox: Arc::default(),
            kick: Notify::new(),
        });
        self.map.insert(id, entry.clone());
        ConnectionHandle { id, entry, registry: self.clone() }
    }

    /// Every open connection, by id.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        let mut list: Vec<ConnectionInfo> = self.map.iter().map(|e| info(*e.key(), e.value())).collect();
        list.sort_by_key(|c| c.id);
        list
    }

    /// The connection `id`, if open.
    pub fn get(&self, id: u64) -> Option<ConnectionInfo> {
        self.map.get(&id).map(|e| info(id, e.value()))
    }

    /// Asks connection `id` to close with close code 0 and [`KICK_REASON`]. Whether it was
    /// open. Its session ends (leaving the directory) and the connection goes, after the
    /// answers already queued; it stays listed until then.
    pub fn kick(&self, id: u64) -> bool {
        match self.map.get(&id) {
            Some(entry) => {
                entry.kick.notify_one();
                true
            }
            None => false,
        }
    }

    /// Every connection's outbound mailbox for queue monitoring: its name (`conn-<id>`, with
    /// the number in parentheses once logged in) and the frames waiting in it.
    pub fn mailboxes(&self) -> Vec<(String, u64)> {
        self.list()
            .into_iter()
            .map(|c| {
                let name = match &c.phone {
                    Some(phone) => format!("conn-{} ({phone})", c.id),
                    None => format!("conn-{}", c.id),
                };
                (name, c.mailbox_items)
            })
            .collect()
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn info(id: u64, entry: &Entry) -> ConnectionInfo {
    ConnectionInfo {
        id,
        remote: entry.remote.to_string(),
        phone: entry.phone.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        connected_at_ms: entry.connected_at_ms,
        mailbox_items: entry.mailbox.items(),
        mailbox_bytes: entry.mailbox.bytes(),
    }
}

/// A connection's place in the registry, held by its task; dropping it unlists the
/// connection.
pub struct ConnectionHandle {
    id: u64,
    entry: Arc<Entry>,
    registry: Arc<Connections>,
}

impl ConnectionHandle {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client's address and port.
    pub fn remote(&self) -> SocketAddr {
        self.entry.remote
    }

    /// The counters of the connection's outbound mailbox (handed to `mailbox::channel`).
    pub fn mailbox(&self) -> Arc<MailboxLoad> {
        self.entry.mailbox.clone()
    }

    /// The connection is logged in as `phone`.
    pub fn logged_in(&self, phone: &str) {
        *self.entry.phone.lock().unwrap_or_else(|p| p.into_inner()) = Some(phone.to_string());
    }

    /// Resolves when an operator kicks the connection (at once if that happened already and
    /// was not yet seen).
    pub async fn kicked(&self) {
        self.entry.kick.notified().await
    }
}

impl Drop for ConnectionHandle {
    fn drop(&mut self) {
        self.registry.map.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn connections_are_listed_until_dropped_and_a_kick_reaches_them() {
        let registry = Arc::new(Connections::default());
        let a = registry.open("127.0.0.1:5001".parse().unwrap());
        let b = registry.open("[::1]:5002".parse().unwrap());
        b.logged_in("+15550001111");
        let list = registry.list();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].id, list[0].remote.as_str(), list[0].phone.as_deref()), (a.id(), "127.0.0.1:5001", None));
        assert_eq!((list[1].remote.as_str(), list[1].phone.as_deref()), ("[::1]:5002", Some("+15550001111")));
        assert_eq!(
            registry.mailboxes(),
            vec![(format!("conn-{}", a.id()), 0), (format!("conn-{} (+15550001111)", b.id()), 0)]
        );
        let json = serde_json::to_value(&list[0]).unwrap();
        for field in ["id", "remote", "phone", "connected_at_ms", "mailbox_items", "mailbox_bytes"] {
            assert!(json.get(field).is_some(), "{field} missing in {json}");
        }

        // A kick before anyone listens is kept; an unknown id is refused.
        assert!(registry.kick(a.id()));
        tokio::time::timeout(Duration::from_secs(1), a.kicked()).await.expect("the kick arrives");
        assert!(!registry.kick(999));
        let b_id = b.id();
        drop(b);
        assert_eq!(registry.len(), 1);
        assert!(registry.get(b_id).is_none() && !registry.kick(b_id));
    }
}
