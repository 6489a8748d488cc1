//! The simulated broker: the real core (sessions, jobs, `commit_group`) driven the way the
//! host drives it, over the in-memory journal, with a directory of online numbers and a
//! committer that runs when the schedule says. It can crash at any step, also between a
//! group's sync and its answers: sessions, queued jobs and everything not synced are lost.
//!
//! It keeps a ledger of what became durable (items wiped by an ack, receipts queued by an
//! ack or a read), read from each job's transaction before it runs: the invariants compare
//! what clients saw with it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use hotline_protocol::ServerFrame;

use crate::commit::{commit_group, Durability, Staged};
use crate::jobs::{AckedMessage, Job};
use crate::policy::{Policy, Question};
use crate::memory::{CountingKeys, MemoryStore, MemoryTxn};
use crate::ports::{Ports, StorageFailure};
use crate::session::{Input, Output, Session, SessionConfig, Ticket};
use crate::txn::Txn;
use crate::Millis;

use super::invariant;
use super::network::{ConnId, Network};
use super::policy::{Behaviour, SimPolicy};

/// What a job will do to storage if it commits, seen in its transaction before it runs.
#[derive(Debug, Default)]
struct Effect {
    /// The item an ack deletes.
    wiped: Option<(String, u64)>,
    /// The receipt it queues: (message id, status name).
    receipt: Option<(u64, &'static str)>,
}

impl Effect {
    fn of(job: &Job, txn: &MemoryTxn<'_>) -> Effect {
        match job {
            Job::Ack { user, id, message, .. } if txn.item(user, *id).ok().flatten().is_some() => Effect {
                wiped: Some((user.clone(), *id)),
                receipt: matches!(message, Some(AckedMessage { receipt: true, .. })).then_some((*id, "delivered")),
            },
            Job::Read { reader, id, receipt: true, .. } if txn.delivered(reader, *id).ok().flatten().is_some() => {
                Effect { wiped: None, receipt: Some((*id, "read")) }
            }
            _ => Effect::default(),
        }
    }
}

/// The broker side of the simulation.
pub struct SimBroker {
    pub store: MemoryStore,
    pub policy: SimPolicy,
    pub keys: CountingKeys,
    pub config: SessionConfig,
    /// Live sessions by connection.
    pub sessions: BTreeMap<ConnId, Session>,
    /// Online numbers: which connection holds each.
    pub directory: BTreeMap<String, ConnId>,
    /// Jobs submitted and not yet committed, in submission order.
    pub jobs: VecDeque<(ConnId, Ticket, Job)>,
    /// Questions asked and not yet answered (at most one per session), in asking order.
    pub questions: Vec<(ConnId, Ticket, Question)>,
    /// A sync failed since the last restart: no `Sent` may be answered.
    pub poisoned: bool,
    /// Promises the broker broke, as it broke them: (invariant, what).
    pub violations: Vec<(&'static str, String)>,
    /// Items whose ack is durable: never stored again.
    pub wiped: BTreeSet<(String, u64)>,
    /// Receipts made durable, by (message id, status name): how many.
    pub receipts: BTreeMap<(u64, &'static str), u32>,
}

impl SimBroker {
    pub fn new(config: SessionConfig) -> SimBroker {
        SimBroker {
            store: MemoryStore::new(),
            policy: SimPolicy::default(),
            keys: CountingKeys::default(),
            config,
            sessions: BTreeMap::new(),
            directory: BTreeMap::new(),
            jobs: VecDeque::new(),
            questions: Vec::new(),
            poisoned: false,
            violations: Vec::new(),
            wiped: BTreeSet::new(),
            receipts: BTreeMap::new(),
        }
    }

    /// A new connection's session.
    pub fn accept(&mut self, now: Millis, conn: ConnId) {
        self.sessions.insert(conn, Session::new(now, self.config.clone()));
    }

    /// Feeds `input` to `conn`'s session (if it still lives) and executes its outputs.
    pub fn input(&mut self, now: Millis, conn: ConnId, input: Input, net: &mut Network) {
        let Some(session) = self.sessions.get_mut(&conn) else { return };
        let ports = Ports { accounts: &self.store, queues: &self.store, keys: &self.keys };
        session.handle(now, input, &ports);
        self.pump(now, conn, net);
    }

    /// Whether `conn`'s session would read a frame now.
    pub fn wants_frames(&self, conn: ConnId) -> bool {
        self.sessions.get(&conn).is_some_and(Session::wants_frames)
    }

    fn pump(&mut self, now: Millis, conn: ConnId, net: &mut Network) {
        loop {
            let Some(session) = self.sessions.get_mut(&conn) else { return };
            let ports = Ports { accounts: &self.store, queues: &self.store, keys: &self.keys };
            let Some(output) = session.poll_output(now, &ports) else { return };
            match output {
                Output::Frame(frame) => {
                    if let (true, ServerFrame::Sent { client_id, .. }) = (self.poisoned, &frame) {
                        let what = format!("Sent for client id {client_id} after a failed fsync, before a restart");
                        self.violations.push((invariant::NO_SENT_AFTER_FAILED_FSYNC, what));
                    }
                    net.send_to_client(conn, frame)
                }
                Output::Submit { ticket, job } => self.jobs.push_back((conn, ticket, job)),
                Output::Ask { ticket, question } => self.questions.push((conn, ticket, question)),
                Output::Register { phone, replaces } => {
                    if let Some(old) = self.directory.insert(phone, conn) {
                        if old != conn {
                            self.input(now, old, Input::Kicked(replaces), net);
                        }
                    }
                    self.input(now, conn, Input::Registered, net);
                }
                Output::Unregister { phone } => {
                    if self.directory.get(&phone) == Some(&conn) {
                        self.directory.remove(&phone);
                    }
                }
                Output::Kick { phone, close } => {
                    if let Some(other) = self.directory.remove(&phone) {
                        self.input(now, other, Input::Kicked(close), net);
                    }
                }
                Output::Close(close) => {
                    self.sessions.remove(&conn);
                    if let Some(c) = net.conns.get_mut(&conn) {
                        c.closed_by_broker = Some(close.code);
                    }
                    return;
                }
            }
        }
    }

    /// Commits the next `n` queued jobs as one group and carries out the report as the
    /// committer thread does: publish the watermark, wake, complete in order. With
    /// `crash_before_answers`, the broker dies once the group is durable, before anyone
    /// hears of it.
    pub fn commit(&mut self, now: Millis, n: usize, net: &mut Network, crash_before_answers: bool) {
        let n = n.min(self.jobs.len());
        let group: Vec<_> = self.jobs.drain(..n).collect();
        let jobs = group.into_iter().map(|(conn, ticket, job)| {
            move |txn: &mut MemoryTxn<'_>| {
                let writes = job.writes();
                let effect = Effect::of(&job, txn);
                let result = job.apply(txn);
                let done = (conn, ticket, result.clone(), effect);
                if writes && matches!(&result, Ok(outcome) if !outcome.refused()) {
                    Staged::Writes(done)
                } else {
                    Staged::Nothing(done)
                }
            }
        });
        let report = commit_group(&mut self.store, Durability::Fsync, jobs);
        if !report.failures.is_empty() {
            self.poisoned = true;
        }
        // The ledger: what each job answered as done made durable.
        for ((_, _, result, effect), durable) in &report.completions {
            if result.is_ok() && durable.is_ok() {
                if let Some(item) = &effect.wiped {
                    self.wiped.insert(item.clone());
                }
                if let Some(receipt) = effect.receipt {
                    *self.receipts.entry(receipt).or_default() += 1;
                }
            }
        }
        if crash_before_answers {
            return self.crash(net);
        }
        if let Some(id) = report.durable_id {
            self.store.publish_durable(id);
            for user in &report.woken {
                if let Some(&conn) = self.directory.get(user) {
                    self.input(now, conn, Input::Wake, net);
                }
            }
        }
        for ((conn, ticket, result, _), durable) in report.completions {
            let result = result.and_then(|outcome| durable.map(|()| outcome)).map_err(StorageFailure::new);
            self.input(now, conn, Input::Committed { ticket, result }, net);
        }
    }

    /// The plugins answer question `i` of those waiting (of any session: the plugin host
    /// answers sessions in any order, each session's in order), with the behaviour they
    /// have now.
    pub fn answer(&mut self, now: Millis, i: usize, net: &mut Network) {
        if i >= self.questions.len() {
            return;
        }
        let (conn, ticket, question) = self.questions.remove(i);
        let reply = self.policy.ask(question);
        self.input(now, conn, Input::Answered { ticket, reply }, net);
    }

    /// The process dies and restarts: sessions, queued jobs and unsynced writes are gone,
    /// and so is every connection.
    pub fn crash(&mut self, net: &mut Network) {
        self.sessions.clear();
        self.directory.clear();
        self.jobs.clear();
        self.questions.clear();
        self.store.crash();
        self.poisoned = false;
        self.policy.set(Behaviour::Works);
        net.conns.clear();
    }
}
