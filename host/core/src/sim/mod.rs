//! The seeded simulator: the real core (sessions, storage jobs, `commit_group`) driven
//! through a random schedule chosen by a seed, over a virtual clock, with client models, a
//! network that delivers each stream in pieces and breaks connections, an in-memory
//! journal that fails fsyncs and crashes, and a policy that fails. After every step it
//! checks the broker's promises, and stops at the first broken one with the seed.
//!
//! Invariants checked after every step: no item answered `Sent` is lost (its recipient got
//! it, or it is in durable storage); a message is redelivered only under the same id; a
//! client gets items for the first time in id order (so per sender, per recipient, in
//! order); at most one receipt per (message, status); the same client id is never stored
//! under two ids; no `Sent` after a failed fsync until a restart. After the run, faults stop
//! and everything drains; then every message was answered `Sent`, storage holds nothing
//! (everything acked was wiped), and every message has exactly one delivered receipt.

mod broker;
mod client;
mod network;
#[cfg(test)]
mod tests;

use hotline_protocol::{ClientFrame, ReceiptStatus};

use crate::credentials::hash_key;
use crate::records::Account;
use crate::session::{Input, SessionConfig};
use crate::Millis;
use broker::SimBroker;
use client::ClientModel;
use network::{ConnId, Network, ToBroker};

/// What a run looks like.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Users, each with one client.
    pub users: usize,
    /// Random steps before the drain.
    pub steps: usize,
    /// The sessions' delivery window.
    pub delivery_window: usize,
    /// Crashes, fsync failures and policy failures.
    pub faults: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig { users: 4, steps: 400, delivery_window: 4, faults: true }
    }
}

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
}

/// A broken promise, with what it takes to see it again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("seed {seed}, step {step}: {what}\n  replay: SIM_SEED={seed} cargo test -p hotline-core --lib sim::tests::replay -- --nocapture")]
pub struct Violation {
    pub seed: u64,
    pub step: usize,
    pub what: String,
}

/// Runs one seed.
pub fn run(seed: u64, config: &SimConfig) -> Result<SimReport, Violation> {
    let mut sim = Sim::new(seed, config);
    for _ in 0..config.steps {
        sim.step += 1;
        sim.random_step();
        sim.check()?;
    }
    sim.drain()?;
    sim.check_drained()?;
    Ok(sim.report)
}

/// Steps the drain may take before it counts as stuck.
const DRAIN_ROUNDS: usize = 200;

struct Sim {
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
    violations: Vec<String>,
    report: SimReport,
}

impl Sim {
    fn new(seed: u64, config: &SimConfig) -> Sim {
        let session = SessionConfig { delivery_window: config.delivery_window, max_body_bytes: 1024, hello_timeout_ms: 10_000 };
        let mut broker = SimBroker::new(session);
        let users: Vec<ClientModel> = (0..config.users).map(|i| ClientModel::new(format!("+1555000{i:04}"))).collect();
        for user in &users {
            broker.store.put_account(&user.phone, Account { key_hash: hash_key(&key_of(&user.phone)), registered_at_ms: 0 });
        }
        Sim {
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

    fn random_step(&mut self) {
        let u = self.rng.usize(..self.users.len());
        // Deliveries and breaks happen on any open connection, also one a user has left
        // behind by connecting again (an old device, or a reconnect before the old
        // connection noticed it broke).
        let any = self.any_connection();
        let roll = self.rng.u32(..100);
        match (roll, self.conn_of[u]) {
            (0..10, None) => self.connect(u),
            (0..2, Some(_)) => self.connect(u),
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
            (85, Some(c)) => self.net.send_to_broker(c, ToBroker::End),
            (86..96, _) => {
                let n = 1 + self.rng.usize(..8);
                self.broker.commit(self.now, n, &mut self.net);
            }
            (96, _) if self.faults && self.rng.u32(..4) == 0 => self.crash(),
            (97, _) if self.faults && self.rng.u32(..2) == 0 => {
                self.broker.store.fail_fsync_at(1 + self.rng.u64(..3));
                self.report.fsync_failures += 1;
            }
            (98, _) if self.faults => {
                let failing = &self.broker.policy.failing;
                failing.store(!failing.load(std::sync::atomic::Ordering::Relaxed), std::sync::atomic::Ordering::Relaxed);
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

    fn connect(&mut self, u: usize) {
        let c = self.net.open(u);
        self.broker.accept(self.now, c);
        self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Hello { min_version: 1, max_version: 1 }));
        let phone = self.users[u].phone.clone();
        self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Login { key: key_of(&phone), phone }));
        self.conn_of[u] = Some(c);
        self.users[u].logged_in = false;
    }

    fn send(&mut self, u: usize, c: ConnId) {
        let to = (u + 1 + self.rng.usize(..self.users.len() - 1)) % self.users.len();
        let client_id = self.users[u].new_message(to);
        self.report.messages += 1;
        self.send_again(u, c, client_id);
    }

    /// Sends (or retries) `client_id` of user `u`.
    fn send_again(&mut self, u: usize, c: ConnId, client_id: u64) {
        let msg = &self.users[u].sent[&client_id];
        let frame = ClientFrame::Send { client_id, to: self.users[msg.to].phone.clone(), body: msg.body.clone() };
        self.net.send_to_broker(c, ToBroker::Frame(frame));
    }

    fn ack(&mut self, u: usize, c: ConnId) {
        if let Some(id) = self.users[u].take_ack() {
            self.net.send_to_broker(c, ToBroker::Frame(ClientFrame::Ack { id }));
        }
    }

    fn duplicate_ack(&mut self, u: usize, c: ConnId) {
        let acked = &self.users[u].acked;
        if acked.is_empty() {
            return;
        }
        let id = *acked.iter().nth(self.rng.usize(..acked.len())).expect("in range");
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
        self.send_again(u, c, client_id);
    }

    fn read(&mut self, u: usize, c: ConnId) {
        if let Some((id, from)) = self.users[u].unread() {
            self.users[u].read.insert(id);
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
            let logged_in = matches!(frame, hotline_protocol::ServerFrame::LoggedIn { .. });
            if let Err(what) = self.users[u].receive(frame) {
                self.violations.push(what);
            }
            if logged_in {
                let retries: Vec<u64> = self.users[u].unanswered.iter().copied().collect();
                for client_id in retries {
                    self.send_again(u, c, client_id);
                }
            }
        }
        let conn = &self.net.conns[&c];
        if conn.closed_by_broker && conn.to_client.is_empty() {
            self.net.conns.remove(&c);
            self.disconnected(u, c);
        }
    }

    /// The connection breaks: whatever was in flight is lost; the broker notices.
    fn break_connection(&mut self, c: ConnId) {
        let Some(conn) = self.net.conns.remove(&c) else { return };
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

    fn crash(&mut self) {
        self.broker.crash(&mut self.net);
        self.conn_of.fill(None);
        for user in &mut self.users {
            user.logged_in = false;
        }
        self.report.crashes += 1;
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
            self.broker.input(self.now, c, Input::Timeout, &mut self.net);
        }
    }

    fn violation(&self, what: String) -> Violation {
        Violation { seed: self.seed, step: self.step, what }
    }

    /// The promises that hold after every step.
    fn check(&mut self) -> Result<(), Violation> {
        if let Some(what) = self.broker.violations.first().or(self.violations.first()) {
            return Err(self.violation(what.clone()));
        }
        let durable = &self.broker.store.durable().queues;
        for sender in &self.users {
            for (client_id, id) in &sender.stored_as {
                let to = sender.sent[client_id].to;
                let recipient = &self.users[to];
                if !recipient.received.contains_key(id) && !durable.contains_key(&(recipient.phone.clone(), *id)) {
                    return Err(self.violation(format!(
                        "message {id} ({}'s client id {client_id}) was answered Sent, never reached {} and is not in durable storage",
                        sender.phone, recipient.phone
                    )));
                }
            }
        }
        Ok(())
    }

    /// Faults stop; everyone reconnects (retrying unanswered sends), takes and acks
    /// everything, until nothing moves.
    fn drain(&mut self) -> Result<(), Violation> {
        self.broker.policy.failing.store(false, std::sync::atomic::Ordering::Relaxed);
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
            let pending = self.broker.jobs.len();
            self.broker.commit(self.now, pending, &mut self.net);
            self.check()?;
            let settled = self.broker.jobs.is_empty()
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
        Err(self.violation(format!(
            "nothing moved any more after {DRAIN_ROUNDS} drain rounds: {} jobs queued, network busy: {}, clients (unanswered, to ack, logged in): {unanswered:?}, stored: {stored:?}, durable id {}",
            self.broker.jobs.len(),
            self.net.busy(),
            crate::ports::Queues::durable_id(&self.broker.store),
        )))
    }

    /// The promises that hold once everything drained.
    fn check_drained(&self) -> Result<(), Violation> {
        for sender in &self.users {
            for (client_id, id) in &sender.stored_as {
                let delivered = sender.receipts.get(&(*id, client::status_name(ReceiptStatus::Delivered))).map_or(0, |ids| ids.len());
                if delivered != 1 {
                    return Err(self.violation(format!(
                        "message {id} ({}'s client id {client_id}) was acknowledged and got {delivered} delivered receipts",
                        sender.phone
                    )));
                }
            }
        }
        if let Some(((user, id), _)) = self.broker.store.durable().queues.iter().next() {
            return Err(self.violation(format!("item {id} of {user} is still stored after everything was acknowledged")));
        }
        Ok(())
    }
}

/// The key each simulated user logs in with.
fn key_of(phone: &str) -> String {
    format!("key of {phone}")
}
