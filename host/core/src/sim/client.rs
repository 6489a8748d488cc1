//! A client as the simulator models it: it sends messages with increasing client ids and
//! retries unanswered ones under the same id after a reconnect, accepts (acks) what it
//! receives, reports some messages read, and checks every frame it gets against what the
//! broker promised.

use std::collections::{BTreeMap, BTreeSet};

use hotline_protocol::{MessageKind, ReceiptStatus, ServerFrame};

use super::invariant;

/// A broken promise: which invariant, and what happened.
pub type Broken = (&'static str, String);

/// A message this client sent.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Index of the recipient.
    pub to: usize,
    /// Sent with `SendTyped` and this kind, or with `Send` (`None`, kind `Text`).
    pub kind: Option<MessageKind>,
    /// Ends with the kind's label, so a recipient can check the kind it gets.
    pub body: Vec<u8>,
}

/// One user's client.
#[derive(Debug)]
pub struct ClientModel {
    pub phone: String,
    /// The highest protocol version it offers (2 or 3).
    pub version: u16,
    /// The key it logs in with (the latest a `Verify` gave it).
    pub key: String,
    /// Its key was refused: it registers again on its next connection.
    pub needs_registration: bool,
    /// Whether the current connection is logged in.
    pub logged_in: bool,
    next_client_id: u64,
    /// Every message sent, by client id.
    pub sent: BTreeMap<u64, Outgoing>,
    /// Client ids without a `Sent` yet (retried after each login).
    pub unanswered: BTreeSet<u64>,
    /// The id each send was stored under, from its `Sent`.
    pub stored_as: BTreeMap<u64, u64>,
    /// Items received, by id: the message body, or `None` for a receipt.
    pub received: BTreeMap<u64, Option<Vec<u8>>>,
    /// Message bodies received, with the id they came under.
    bodies: BTreeMap<Vec<u8>, u64>,
    /// Highest item id received for the first time.
    last_first_id: u64,
    /// Per sender, the highest message id received from it for the first time.
    last_from: BTreeMap<String, u64>,
    /// Ids pushed (again) and not acked since.
    pub to_ack: BTreeSet<u64>,
    /// Ids accepted (acked) at least once.
    pub acked: BTreeSet<u64>,
    /// Messages (id, sender phone) reported read.
    pub read: BTreeSet<u64>,
    /// Senders of received messages, by id.
    pub senders: BTreeMap<u64, String>,
    /// Receipt item ids per (message id, status name).
    pub receipts: BTreeMap<(u64, &'static str), BTreeSet<u64>>,
}

impl ClientModel {
    pub fn new(phone: String, key: String, version: u16) -> ClientModel {
        ClientModel {
            phone,
            version,
            key,
            needs_registration: false,
            last_from: BTreeMap::new(),
            logged_in: false,
            next_client_id: 0,
            sent: BTreeMap::new(),
            unanswered: BTreeSet::new(),
            stored_as: BTreeMap::new(),
            received: BTreeMap::new(),
            bodies: BTreeMap::new(),
            last_first_id: 0,
            to_ack: BTreeSet::new(),
            acked: BTreeSet::new(),
            read: BTreeSet::new(),
            senders: BTreeMap::new(),
            receipts: BTreeMap::new(),
        }
    }

    /// A new message to user `to`; its client id.
    pub fn new_message(&mut self, to: usize) -> u64 {
        self.next_client_id += 1;
        let client_id = self.next_client_id;
        // A version-3 client sends every third message as media and every third as an
        // explicitly typed text; the rest (and all of an older client's) with `Send`.
        let kind = match client_id % 3 {
            _ if self.version < 3 => None,
            0 => Some(MessageKind::Media { mime: "image/png".into() }),
            1 => Some(MessageKind::Text),
            _ => None,
        };
        let label = kind.as_ref().map_or("text".into(), MessageKind::label);
        let body = format!("{} #{client_id} {label}", self.phone).into_bytes();
        self.sent.insert(client_id, Outgoing { to, kind, body });
        self.unanswered.insert(client_id);
        client_id
    }

    /// Takes one frame from the broker; `Err` names a broken promise.
    pub fn receive(&mut self, frame: ServerFrame) -> Result<(), Broken> {
        match frame {
            ServerFrame::LoggedIn { .. } => self.logged_in = true,
            ServerFrame::Sent { client_id, id } => {
                if let Some(&before) = self.stored_as.get(&client_id) {
                    if before != id {
                        let what = format!("{}'s client id {client_id} was stored as {before} and again as {id}", self.phone);
                        return Err((invariant::SAME_ID, what));
                    }
                }
                self.stored_as.insert(client_id, id);
                self.unanswered.remove(&client_id);
            }
            ServerFrame::Message { id, from, body, .. } if self.version < 3 => self.message(id, from, body)?,
            ServerFrame::TypedMessage { id, from, kind, body, .. } if self.version >= 3 => {
                if !body.ends_with(format!(" {}", kind.label()).as_bytes()) {
                    let what = format!("{} got item {id} with kind {} but it was sent as {:?}", self.phone, kind.label(), String::from_utf8_lossy(&body));
                    return Err((invariant::KIND_KEPT, what));
                }
                self.message(id, from, body)?
            }
            frame @ (ServerFrame::Message { .. } | ServerFrame::TypedMessage { .. }) => {
                let what = format!("{}, speaking version {}, got a {} frame", self.phone, self.version, frame.name());
                return Err((invariant::KIND_KEPT, what));
            }
            ServerFrame::Receipt { id, message_id, status, .. } => {
                self.to_ack.insert(id);
                if self.received.contains_key(&id) {
                    return Ok(());
                }
                self.first_time(id)?;
                self.received.insert(id, None);
                let ids = self.receipts.entry((message_id, status_name(status))).or_default();
                ids.insert(id);
                if ids.len() > 1 {
                    let name = match status {
                        ReceiptStatus::Delivered => invariant::ONE_DELIVERED_RECEIPT,
                        ReceiptStatus::Read => invariant::ONE_READ_RECEIPT,
                    };
                    return Err((name, format!("{} got {} {status:?} receipts for message {message_id}: {ids:?}", self.phone, ids.len())));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Takes a pushed message (as `Message` or `TypedMessage`).
    fn message(&mut self, id: u64, from: String, body: Vec<u8>) -> Result<(), Broken> {
        self.to_ack.insert(id);
        if let Some(seen) = self.received.get(&id) {
            if seen.as_deref() != Some(&body[..]) {
                return Err((invariant::SAME_ID, format!("{} got item {id} twice with different contents", self.phone)));
            }
            return Ok(());
        }
        if let Some(&other) = self.bodies.get(&body) {
            return Err((invariant::SAME_ID, format!("{} got one message as item {other} and again as item {id}", self.phone)));
        }
        self.first_time(id)?;
        let last = self.last_from.entry(from.clone()).or_default();
        if id <= *last {
            let what = format!("{} got message {id} from {from} after message {last} from {from}", self.phone);
            return Err((invariant::SENDER_ORDER, what));
        }
        *last = id;
        self.bodies.insert(body.clone(), id);
        self.received.insert(id, Some(body));
        self.senders.insert(id, from);
        Ok(())
    }

    /// Items reach a client in id order, the first time each comes.
    fn first_time(&mut self, id: u64) -> Result<(), Broken> {
        if id <= self.last_first_id {
            let what = format!("{} got item {id} for the first time after item {}", self.phone, self.last_first_id);
            return Err((invariant::ID_ORDER, what));
        }
        self.last_first_id = id;
        Ok(())
    }

    /// The lowest item pushed and not acked since, marked acked.
    pub fn take_ack(&mut self) -> Option<u64> {
        let id = self.to_ack.pop_first()?;
        self.acked.insert(id);
        Some(id)
    }

    /// A message acked and not yet reported read, with its sender.
    pub fn unread(&self) -> Option<(u64, String)> {
        self.acked
            .iter()
            .find(|id| !self.read.contains(id) && self.senders.contains_key(id))
            .map(|id| (*id, self.senders[id].clone()))
    }
}

/// A receipt status as a map key ("delivered", "read").
pub fn status_name(status: ReceiptStatus) -> &'static str {
    match status {
        ReceiptStatus::Delivered => "delivered",
        ReceiptStatus::Read => "read",
    }
}
