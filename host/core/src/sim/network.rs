//! The simulated network, within QUIC's guarantees: one ordered stream each way per
//! connection, delivered in pieces at moments the schedule chooses; a connection that breaks
//! loses whatever was still in flight either way.

use std::collections::{BTreeMap, VecDeque};

use hotline_protocol::{ClientFrame, ServerFrame};

/// Names one connection.
pub type ConnId = u64;

/// What travels from a client to the broker.
#[derive(Debug, Clone)]
pub enum ToBroker {
    Frame(ClientFrame),
    /// The client finished its stream.
    End,
}

/// One connection's streams.
#[derive(Debug)]
pub struct Conn {
    /// Index of the user whose client opened it.
    pub user: usize,
    pub to_broker: VecDeque<ToBroker>,
    pub to_client: VecDeque<ServerFrame>,
    /// The broker closed it with this close code: what is in `to_client` still arrives,
    /// nothing more.
    pub closed_by_broker: Option<u32>,
    /// The key its `Login` carries (none yet while it registers).
    pub key: Option<String>,
}

/// Every open connection.
#[derive(Debug, Default)]
pub struct Network {
    pub conns: BTreeMap<ConnId, Conn>,
    next: ConnId,
}

impl Network {
    pub fn open(&mut self, user: usize) -> ConnId {
        self.next += 1;
        let conn = Conn { user, to_broker: VecDeque::new(), to_client: VecDeque::new(), closed_by_broker: None, key: None };
        self.conns.insert(self.next, conn);
        self.next
    }

    /// Queues a frame for the client of `conn`, if the connection is still there.
    pub fn send_to_client(&mut self, conn: ConnId, frame: ServerFrame) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.to_client.push_back(frame);
        }
    }

    pub fn send_to_broker(&mut self, conn: ConnId, item: ToBroker) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.to_broker.push_back(item);
        }
    }

    /// Whether anything is still in flight on any connection.
    pub fn busy(&self) -> bool {
        self.conns.values().any(|c| !c.to_broker.is_empty() || !c.to_client.is_empty())
    }
}
