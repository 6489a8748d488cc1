//! The seeded simulator: the real core (sessions, storage jobs, `commit_group`) driven
//! through a random schedule chosen by a seed, over a virtual clock, with client models, a
//! network that delivers each stream in pieces and breaks connections, an in-memory
//! journal that fails fsyncs and crashes, plugins that fail, time out or are swapped
//! mid-call, and re-registrations. After every step it checks the broker's promises, and
//! stops at the first broken one with the seed and the invariant's name.
//!
//! Fault kinds: connections break (in flight is lost) or end; fsyncs fail (the store is
//! poisoned until a restart); the broker crashes and restarts at any step, also between a
//! group's sync and its answers; the policy traps, times out (costing virtual time), or is
//! swapped to another behaviour (working, trapping, timing out, refusing receipts) now or
//! after a chosen number of further calls, that is in the middle of a request; a user
//! registers again (a new key; the old device's session must go).
//!
//! Invariants ([`invariant`]), checked after every step: no item answered `Sent` is lost
//! (its recipient got it, or it is in durable storage); a message is redelivered only under
//! the same id (and a client id is stored under one id); a client gets items for the first
//! time in id order, and each sender's messages in order; at most one delivered receipt per
//! message and one read receipt per read; nothing stays stored after its ack is durable; no
//! `Sent` after a failed fsync until a restart; no session stays online with a revoked key;
//! a message reaches a version-3 session as `TypedMessage` with the kind it was sent with,
//! and an older session as `Message`.
//! After the run, faults stop and everything drains; then every message was answered
//! `Sent` and delivered, storage holds nothing, and each message has exactly the delivered
//! receipt and each accepted read exactly the read receipt that durable acks and reads
//! queued (one each, unless the receipts policy refused).

mod broker;
mod client;
mod network;
pub mod policy;
#[cfg(test)]
mod tests;

/// The names of the invariants, as printed on a violation.
pub mod invariant {
    pub const SENT_NOT_LOST: &str = "sent-is-never-lost";
    pub const SAME_ID: &str = "redelivery-under-the-same-id";
    pub const ID_ORDER: &str = "first-delivery-in-id-order";
    pub const SENDER_ORDER: &str = "per-sender-order-per-recipient";
    pub const ONE_DELIVERED_RECEIPT: &str = "one-delivered-receipt-per-delivered-message";
    pub const ONE_READ_RECEIPT: &str = "one-read-receipt-per-read";
    pub const NOTHING_STORED_AFTER_ACK: &str = "nothing-stored-after-its-ack";
    pub const NO_SENT_AFTER_FAILED_FSYNC: &str = "no-sent-after-a-failed-fsync-until-restart";
    pub const REVOKED_KEY_KICKED: &str = "no-session-online-with-a-revoked-key";
    pub const DRAINS: &str = "everything-drains-once-faults-stop";
    pub const KIND_KEPT: &str = "a-message-arrives-with-its-kind-in-its-sessions-version";
    /// Every invariant.
    pub const ALL: [&str; 11] = [
        SENT_NOT_LOST,
        SAME_ID,
        ID_ORDER,
        SENDER_ORDER,
        ONE_DELIVERED_RECEIPT,
        ONE_READ_RECEIPT,
        NOTHING_STORED_AFTER_ACK,
        NO_SENT_AFTER_FAILED_FSYNC,
        REVOKED_KEY_KICKED,
        DRAINS,
        KIND_KEPT,
    ];
}

/// The code the simulated registrar accepts.
const CODE: &str = "123456";

use hotline_protocol::{close_code, ClientFrame, ServerFrame};

use crate::credentials::hash_key;
use crate::records::Account;
use crate::session::{Input, SessionConfig};
use crate::Millis;
use broker::SimBroker;
use client::ClientModel;
use network::{ConnId, Network, ToBroker};
use policy::Behaviour;

/// What a run looks like.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Users, each with one client.
    pub users: usize,
    /// Random steps before the drain.
    pub steps: usize,
    /// The sessions' delivery window.
    pub delivery_window: usize,
    /// Crashes, fsync failures, policy failures and swaps.
    pub faults: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig { users: 4, steps: 400, delivery_window: 4, faults: true }
    }
}

/// Where a traced run writes its schedule, one line per event.
pub type Trace<'a> = &'a mut dyn FnMut(&str);

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub seed: u64,
    /// Steps taken, the drain included.
    pub steps: usize,
    /// Messages sent (each answered `Sent` in the end).
    pub messages: usize,
    pub crashes: usize,
    pub fsync_failures: usize,
    /// Policy swaps that took effect (also those landing mid-request).
    pub policy_swaps: usize,
    pub registrations: usize,
}

/// A broken promise, with what it takes to see it again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("seed {seed}, step {step}: invariant {invariant} violated: {what}")]
pub struct Violation {
    pub seed: u64,
    pub step: usize,
    /// One of [`invariant::ALL`].
    pub invariant: &'static str,
    pub what: String,
}

/// Runs one seed.
pub fn run(seed: u64, config: &SimConfig) -> Result<SimReport, Violation> {
    run_traced(seed, config, None)
}

/// Runs one seed, writing every step of its schedule to `trace` if given.
pub fn run_traced(seed: u64, config: &SimConfig, trace: Option<Trace<'_>>) -> Result<SimReport, Violation> {
    let mut sim = Sim::new(seed, config, trace);
    for _ in 0..config.steps {
        sim.step += 1;
        sim.random_step();
        sim.now += sim.broker.policy.take_stalled();
        sim.check()?;
    }
    sim.drain()?;
    sim.check_drained()?;
    sim.report.policy_swaps = sim.broker.policy.swaps.load(std::sync::atomic::Ordering::Relaxed) as usize;
    Ok(sim.report)
}

/// Steps the drain may take before it counts as stuck.
const DRAIN_ROUNDS: usize = 200;

struct Sim<'t> {
    trace: Option<Trace<'t>>,
    seed: u64,
    rng: fastrand::Rng,
    faults: bool,
    step: usize,
    now: Millis,
    broker: SimBroker,
    net: Network,
    users: Vec<ClientModel>,
    /// Each user's current connection.
    conn_of: Vec<Option<ConnId>>,
    /// Promises the clients saw broken.
    violations: Vec<client::Broken>,
    report: SimReport,
}

impl<'t> Sim<'t> {
    fn new(seed: u64, config: &SimConfig, trace: Option<Trace<'t>>) -> Sim<'t> {
        // No queue limit: the client models retry a refused send only after a new login,
        // so a full queue would break `everything-drains-once-faults-stop` by design.
        let session = SessionConfig {
            delivery_window: config.delivery_window,
            max_body_bytes: 1024,
            hello_timeout_ms: 10_000,
            max_queue_items: u64::MAX,
        };
        let mut broker = SimBroker::new(session);
        let users: Vec<ClientModel> = (0..config.users)
            .map(|i| {
                let phone = format!("+1555000{i:04}");
                // Half the users speak protocol version 3 (and send some typed messages).
                let version = if i % 2 == 1 { 3 } else { 2 };
                ClientModel::new(phone.clone(), format!("key of {phone}"), version)
            })
            .collect();
        for user in &users {
            broker.store.put_account(&user.phone, Account { key_hash: hash_key(&user.key), registered_at_ms: 0 });
        }
        Sim {
            trace,
            seed,
            rng: fastrand::Rng::with_seed(seed),
            faults: config.faults,
            step: 0,
            now: 1_000_000,
            broker,
            net: Network::default(),
            conn_of: vec![None; users.len()],
            users,
            violations: Vec::new(),
            report: SimReport { seed, ..SimReport::default() },
        }
    }

    /// Writes one line of the schedule, if tracing.
    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = self.trace.as_mut() {
            let line = format!("step {:>4} t={}: {}", self.step, self.now, line());
            trace(&line);
        }
    }

    fn random_step(&mut self) {
        let u = self.rng.usize(..self.users.len());
        // Deliveries and breaks happen on any open connection, also one a user has left
        // behind by connecting again (an old device, or a reconnect before the old
        // connection noticed it broke).
        let any = self.any_connection();
        let roll = self.rng.u32(..112);
        match (roll, self.conn_of[u]) {
            (0..10, None) => self.connect(u),
            (0..2, Some(_)) => self.connect(u),
            (2, Some(_)) => self.register(u),
            (0..25, Some(c)) if self.users[u].logged_in => self.send(u, c),
            (25..45, _) => {
                let n = 1 + self.rng.usize(..8);
                if let Some(c) = any {
                    self.deliver_to_broker(c, n);
                }
            }
            (45..65, _) => {
                let n = 1 + self.rng.usize(..8);
                if let Some(c) = any {
                    self.deliver_to_client(c, n);
                }
            }
            (65..78, Some(c)) => self.ack(u, c),
            (78, Some(c)) => self.duplicate_ack(u, c),
            (79, Some(c)) if self.users[u].logged_in => self.duplicate_send(u, c),
            (80..83, Some(c)) => self.read(u, c),
            (83..85, _) => {
                if let Some(c) = any {
                    self.break_connection(c);
                }
            }
            (85, Some(c)) => {
                self.note(|| format!("client of connection {c} ends its stream"));
                self.net.send_to_broker(c, ToBroker::End)
            }
            (86..96, _) => {
                let n = 1 + self.rng.usize(..8);
                let crash = self.faults && self.rng.u32(..50) == 0;
                self.note(|| format!("commit a group of up to {n} jobs{}", if crash { ", then crash before answering" } else { "" }));
                self.broker.commit(self.now, n, &mut self.net, crash);
                if crash {
                    self.crashed();
                }
            }
            (96, _) if self.faults && self.rng.u32(..4) == 0 => {
                self.note(|| "the broker crashes and restarts".into());
                self.broker.crash(&mut self.net);
                self.crashed();
            }
            (97, _) if self.faults && self.rng.u32(..2) == 0 => {
                let n = 1 + self.rng.u64(..3);
                self.note(|| format!("the fsync {n} from now will fail"));
                self.broker.store.fail_fsync_at(n);
                self.report.fsync_failures += 1;
            }
            (100..112, _) => {
                let waiting = self.broker.questions.len();
                if waiting > 0 {
                    let i = self.rng.usize(..waiting);
                    self.note(|| format!("the plugins answer question {i} of {waiting} waiting"));
                    self.broker.answer(self.now, i, &mut self.net);
                }
            }
            (98, _) if self.faults => {
                let to = Behaviour::ALL[self.rng.usize(..Behaviour::ALL.len())];
                if self.rng.bool() {
                    self.note(|| format!("the plugins are swapped: now {to:?}"));
                    self.broker.policy.set(to);
                } else {
                    let calls = 1 + self.rng.u64(..4);
                    self.note(|| format!("the plugins are swapped after {calls} more calls: then {to:?}"));
                    self.broker.policy.swap_after(calls, to);
                }
            }
            _ => self.tick(),
        }
    }

    /// A random open connection.
    fn any_connection(&mut self) -> Option<ConnId> {
        let n = self.net.conns.len();
        if n == 0 {
            return None;
        }
        self.net.conns.keys().nth(self.rng.usize(..n)).copied()
    }

    /// User `u` connects and logs in (or registers again, if its key was refused).
    fn connect(&mut self, u: usize) {
        if self.users[u].needs_registration {
            return self.register(u);
        }
        let c = self.open(u);
        let phone = self.users[u].phone.clone();
        let key = self.users[u].key.clone();
        self.note(|| format!("{phone} connects as connection {c} and logs in with {key:?}"));
        self.login(c, phone, key);
    }

    fn open(&mut self, u: usize) -> ConnId {
        let c = self.net.open(u);
        self.broker.accept(self.now, c);
        self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Hello { min_version: 1, max_version: self.users[u].version }));
        self.conn_of[u] = Some(c);
        self.users[u].logged_in = false;
        c
    }

    fn login(&mut self, c: ConnId, phone: String, key: String) {
        if let Some(conn) = self.net.conns.get_mut(&c) {
            conn.key = Some(key.clone());
        }
        self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Login { key, phone }));
    }

    /// User `u` registers its number again on a new connection (a new device, or a lost
    /// key): a new key, and the old device's session must close. It logs in once it has
    /// the key.
    fn register(&mut self, u: usize) {
        let c = self.open(u);
        let phone = self.users[u].phone.clone();
        self.note(|| format!("{phone} registers again on connection {c}"));
        self.report.registrations += 1;
        self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::RequestCode { phone: phone.clone() }));
        self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Verify { phone, code: CODE.into() }));
    }

    fn send(&mut self, u: usize, c: ConnId) {
        let to = (u + 1 + self.rng.usize(..self.users.len() - 1)) % self.users.len();
        let client_id = self.users[u].new_message(to);
        self.report.messages += 1;
        self.note(|| format!("user {u} sends client id {client_id} to user {to} on connection {c}"));
        self.send_again(u, c, client_id);
    }

    /// Sends (or retries) `client_id` of user `u`.
    fn send_again(&mut self, u: usize, c: ConnId, client_id: u64) {
        let msg = &self.users[u].sent[&client_id];
        let to = self.users[msg.to].phone.clone();
        let frame = match msg.kind.clone() {
            Some(kind) => ClientFrame::SendTyped { client_id, to, kind, body: msg.body.clone() },
            None => ClientFrame::Send { client_id, to, body: msg.body.clone() },
        };
        self.net.send_to_broker(c, ToBroker::Frame(frame));
    }

    fn ack(&mut self, u: usize, c: ConnId) {
        if let Some(id) = self.users[u].take_ack() {
            self.note(|| format!("user {u} acks item {id} on connection {c}"));
            self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Ack { id }));
        }
    }

    fn duplicate_ack(&mut self, u: usize, c: ConnId) {
        let acked = &self.users[u].acked;
        if acked.is_empty() {
            return;
        }
        let id = *acked.iter().nth(self.rng.usize(..acked.len())).expect("in range");
        self.note(|| format!("user {u} acks item {id} again on connection {c}"));
        self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Ack { id }));
    }

    /// Sends an already answered message again under its client id (a client that missed
    /// nothing but retries anyway): it must be answered with the id stored the first time.
    fn duplicate_send(&mut self, u: usize, c: ConnId) {
        let stored = &self.users[u].stored_as;
        if stored.is_empty() {
            return;
        }
        let client_id = *stored.keys().nth(self.rng.usize(..stored.len())).expect("in range");
        self.note(|| format!("user {u} sends client id {client_id} again on connection {c}"));
        self.send_again(u, c, client_id);
    }

    fn read(&mut self, u: usize, c: ConnId) {
        if let Some((id, from)) = self.users[u].unread() {
            self.users[u].read.insert(id);
            self.note(|| format!("user {u} reports message {id} from {from} read on connection {c}"));
            self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Read { id, from }));
        }
    }

    /// Hands up to `n` items of `c`'s client stream to its session, while it reads.
    fn deliver_to_broker(&mut self, c: ConnId, n: usize) {
        for _ in 0..n {
            if !self.broker.wants_frames(c) {
                return;
            }
            let Some(item) = self.net.conns.get_mut(&c).and_then(|conn| conn.to_broker.pop_front()) else { return };
            self.note(|| format!("broker reads from connection {c}: {item:?}"));
            let input = match item {
                ToBroker::Frame(frame) => Input::Frame(frame),
                ToBroker::End => Input::StreamEnd,
            };
            self.broker.input(self.now, c, input, &mut self.net);
        }
    }

    /// Hands up to `n` frames of `c`'s broker stream to its client; a connection the broker
    /// closed ends once its stream is read.
    fn deliver_to_client(&mut self, c: ConnId, n: usize) {
        let Some(u) = self.net.conns.get(&c).map(|conn| conn.user) else { return };
        for _ in 0..n {
            let Some(frame) = self.net.conns.get_mut(&c).and_then(|conn| conn.to_client.pop_front()) else { break };
            self.note(|| format!("user {u} reads from connection {c}: {frame:?}"));
            match &frame {
                ServerFrame::LoggedIn { .. } => {
                    let retries: Vec<u64> = self.users[u].unanswered.iter().copied().collect();
                    for client_id in retries {
                        self.send_again(u, c, client_id);
                    }
                }
                ServerFrame::Registered { phone, key } => {
                    self.users[u].key = key.clone();
                    self.users[u].needs_registration = false;
                    self.login(c, phone.clone(), key.clone());
                }
                _ => {}
            }
            if let Err(broken) = self.users[u].receive(frame) {
                self.violations.push(broken);
            }
        }
        let conn = &self.net.conns[&c];
        if let (Some(code), true) = (conn.closed_by_broker, conn.to_client.is_empty()) {
            // A refused key that is still the user's latest: the account changed behind
            // its back (a `Registered` lost with its connection); it registers again.
            if code == close_code::AUTH_FAILED && conn.key.as_ref() == Some(&self.users[u].key) {
                self.users[u].needs_registration = true;
            }
            self.note(|| format!("connection {c} of user {u} closed by the broker with code {code}"));
            self.net.conns.remove(&c);
            self.disconnected(u, c);
        }
    }

    /// The connection breaks: whatever was in flight is lost; the broker notices.
    fn break_connection(&mut self, c: ConnId) {
        let Some(conn) = self.net.conns.remove(&c) else { return };
        self.note(|| format!("connection {c} of user {} breaks", conn.user));
        self.broker.input(self.now, c, Input::PeerStoppedReading, &mut self.net);
        self.disconnected(conn.user, c);
    }

    /// Connection `c` of user `u` is gone; if it was the user's current one, the user is
    /// offline.
    fn disconnected(&mut self, u: usize, c: ConnId) {
        if self.conn_of[u] == Some(c) {
            self.conn_of[u] = None;
            self.users[u].logged_in = false;
        }
    }

    /// The broker crashed (and restarted): every connection is gone.
    fn crashed(&mut self) {
        self.conn_of.fill(None);
        for user in &mut self.users {
            user.logged_in = false;
        }
        self.report.crashes += 1;
    }

    fn crash(&mut self) {
        self.note(|| "the broker crashes and restarts".into());
        self.broker.crash(&mut self.net);
        self.crashed();
    }

    fn tick(&mut self) {
        self.now += self.rng.u64(1..2_000);
        let due: Vec<ConnId> = self
            .broker
            .sessions
            .iter()
            .filter(|(_, s)| s.poll_timeout().is_some_and(|t| t <= self.now))
            .map(|(c, _)| *c)
            .collect();
        for c in due {
            self.note(|| format!("connection {c} times out"));
            self.broker.input(self.now, c, Input::Timeout, &mut self.net);
        }
    }

    fn violation(&self, invariant: &'static str, what: String) -> Violation {
        Violation { seed: self.seed, step: self.step, invariant, what }
    }

    /// The promises that hold after every step.
    fn check(&mut self) -> Result<(), Violation> {
        if let Some((invariant, what)) = self.broker.violations.first().or(self.violations.first()) {
            return Err(self.violation(invariant, what.clone()));
        }
        let durable = &self.broker.store.durable().queues;
        for sender in &self.users {
            for (client_id, id) in &sender.stored_as {
                let to = sender.sent[client_id].to;
                let recipient = &self.users[to];
                if !recipient.received.contains_key(id) && !durable.contains_key(&(recipient.phone.clone(), *id)) {
                    return Err(self.violation(
                        invariant::SENT_NOT_LOST,
                        format!(
                            "message {id} ({}'s client id {client_id}) was answered Sent, never reached {} and is not in durable storage",
                            sender.phone, recipient.phone
                        ),
                    ));
                }
            }
        }
        let visible = &self.broker.store.visible().queues;
        if let Some((user, id)) = self.broker.wiped.iter().find(|key| visible.contains_key(*key) || durable.contains_key(*key)) {
            return Err(self.violation(
                invariant::NOTHING_STORED_AFTER_ACK,
                format!("item {id} of {user} is stored although its ack was answered as durable"),
            ));
        }
        let accounts = &self.broker.store.durable().accounts;
        for (c, session) in &self.broker.sessions {
            let Some(phone) = session.phone() else { continue };
            let key = self.net.conns.get(c).and_then(|conn| conn.key.as_deref());
            let current = accounts.get(phone).map(|a| &a.key_hash);
            if key.map(hash_key).as_ref() != current {
                return Err(self.violation(
                    invariant::REVOKED_KEY_KICKED,
                    format!("connection {c} is still online as {phone} with key {key:?}, which the durable account no longer has"),
                ));
            }
        }
        Ok(())
    }

    /// Faults stop; everyone reconnects (retrying unanswered sends, registering again if
    /// its key was lost), takes and acks everything, until nothing moves.
    fn drain(&mut self) -> Result<(), Violation> {
        self.note(|| "faults stop; everything drains".into());
        self.broker.policy.set(Behaviour::Works);
        self.broker.store.cancel_fsync_failure();
        if self.broker.poisoned {
            self.crash();
        }
        let conns: Vec<ConnId> = self.net.conns.keys().copied().collect();
        for c in conns {
            self.break_connection(c);
        }
        for _ in 0..DRAIN_ROUNDS {
            self.step += 1;
            for u in 0..self.users.len() {
                if self.conn_of[u].is_none() {
                    self.connect(u);
                }
            }
            let conns: Vec<ConnId> = self.net.conns.keys().copied().collect();
            for &c in &conns {
                self.deliver_to_broker(c, usize::MAX);
                self.deliver_to_client(c, usize::MAX);
            }
            for u in 0..self.users.len() {
                if let Some(c) = self.conn_of[u] {
                    while let Some(id) = self.users[u].take_ack() {
                        self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Ack { id }));
                    }
                }
            }
            while !self.broker.questions.is_empty() {
                self.broker.answer(self.now, 0, &mut self.net);
            }
            let pending = self.broker.jobs.len();
            self.note(|| format!("commit all {pending} jobs"));
            self.broker.commit(self.now, pending, &mut self.net, false);
            self.check()?;
            let settled = self.broker.jobs.is_empty()
                && self.broker.questions.is_empty()
                && !self.net.busy()
                && self.users.iter().all(|u| u.unanswered.is_empty() && u.to_ack.is_empty())
                && self.broker.store.visible().queues.is_empty();
            if settled {
                self.report.steps = self.step;
                return Ok(());
            }
        }
        let unanswered: Vec<_> = self.users.iter().map(|u| (&u.phone, &u.unanswered, &u.to_ack, u.logged_in)).collect();
        let stored: Vec<_> = self.broker.store.visible().queues.keys().collect();
        Err(self.violation(
            invariant::DRAINS,
            format!(
                "nothing moved any more after {DRAIN_ROUNDS} drain rounds: {} jobs queued, network busy: {}, clients (unanswered, to ack, logged in): {unanswered:?}, stored: {stored:?}, durable id {}",
                self.broker.jobs.len(),
                self.net.busy(),
                crate::ports::Queues::durable_id(&self.broker.store),
            ),
        ))
    }

    /// The promises that hold once everything drained: every message reached its
    /// recipient; receipts are exactly those that durable acks and reads queued (one
    /// delivered receipt per delivered message, one read receipt per accepted read, none
    /// where policy refused); nothing is stored.
    fn check_drained(&self) -> Result<(), Violation> {
        let mut got: std::collections::BTreeMap<(u64, &'static str), usize> = std::collections::BTreeMap::new();
        for user in &self.users {
            for (key, ids) in &user.receipts {
                *got.entry(*key).or_default() += ids.len();
            }
        }
        for sender in &self.users {
            for (client_id, id) in &sender.stored_as {
                let to = &self.users[sender.sent[client_id].to];
                if !to.received.contains_key(id) {
                    let what = format!("message {id} ({}'s client id {client_id}) never reached {}", sender.phone, to.phone);
                    return Err(self.violation(invariant::SENT_NOT_LOST, what));
                }
                let expected = self.broker.receipts.get(&(*id, "delivered")).copied().unwrap_or(0) as usize;
                let delivered = got.get(&(*id, "delivered")).copied().unwrap_or(0);
                if delivered != expected || expected > 1 {
                    return Err(self.violation(
                        invariant::ONE_DELIVERED_RECEIPT,
                        format!(
                            "message {id} ({}'s client id {client_id}) was delivered, {expected} delivered receipts were queued for it and its sender got {delivered}",
                            sender.phone
                        ),
                    ));
                }
            }
        }
        let reads = self.broker.receipts.iter().filter(|((_, status), _)| *status == "read");
        let received = got.iter().filter(|((_, status), _)| *status == "read").map(|(k, n)| (*k, *n as u32));
        if let Some(((id, _), n)) = reads.map(|(k, n)| (*k, *n)).chain(received).find(|(key, _)| {
            let queued = self.broker.receipts.get(key).copied().unwrap_or(0);
            queued > 1 || got.get(key).copied().unwrap_or(0) as u32 != queued
        }) {
            let queued = self.broker.receipts.get(&(id, "read")).copied().unwrap_or(0);
            let what = format!("message {id}: {queued} read receipts queued by accepted reads, its sender got {n}");
            return Err(self.violation(invariant::ONE_READ_RECEIPT, what));
        }
        if let Some(((user, id), _)) = self.broker.store.durable().queues.iter().next() {
            let what = format!("item {id} of {user} is still stored after everything was acknowledged");
            return Err(self.violation(invariant::NOTHING_STORED_AFTER_ACK, what));
        }
        Ok(())
    }
}
