//! Scenario tests of the session state machine, driven by a small world: sessions, an
//! in-memory journal, a directory of online numbers, and a committer that runs when told.

use std::collections::BTreeMap;

use hotline_protocol::{close_code, ClientFrame, ErrorCode, FrameError, MessageKind, ReceiptStatus, ServerFrame};

use super::*;
use crate::commit::{commit_group, Durability, Staged};
use crate::credentials::hash_key;
use crate::memory::{CountingKeys, DirectPolicy, MemoryStore};
use crate::records::{Account, StoredItem};

const ALICE: &str = "+15550000001";
const BOB: &str = "+15550000002";

struct Client {
    session: Session,
    received: Vec<ServerFrame>,
    closed: Option<Close>,
}

/// Sessions, storage and a directory; jobs wait until [`World::commit`].
struct World {
    store: MemoryStore,
    policy: DirectPolicy,
    keys: CountingKeys,
    now: Millis,
    clients: Vec<Client>,
    directory: BTreeMap<String, usize>,
    jobs: Vec<(usize, Ticket, Job)>,
    window: usize,
    /// `limits.max_queue_items` of new sessions.
    max_queue_items: u64,
    /// The protocol versions new sessions offer in `Hello`.
    versions: (u16, u16),
    /// Questions wait in `questions` until [`World::answer`] instead of being answered at once.
    hold_questions: bool,
    questions: Vec<(usize, Ticket, crate::policy::Question)>,
    /// Every question asked, in order.
    asked: Vec<crate::policy::Question>,
    /// Account reads fail (a storage outage under the `Accounts` port).
    accounts_fail: bool,
}

/// An `Accounts` port whose every read fails.
struct FailingAccounts;

impl crate::ports::Accounts for FailingAccounts {
    fn account(&self, _phone: &str) -> Result<Option<Account>, StorageFailure> {
        Err(StorageFailure::new(std::io::Error::other("accounts: timed out")))
    }
}

impl World {
    fn new() -> World {
        let mut store = MemoryStore::new();
        for phone in [ALICE, BOB] {
            store.put_account(phone, Account { key_hash: hash_key(&format!("key of {phone}")), registered_at_ms: 0 });
        }
        World {
            store,
            policy: DirectPolicy::default(),
            keys: CountingKeys::default(),
            now: 1_000,
            clients: Vec::new(),
            directory: BTreeMap::new(),
            jobs: Vec::new(),
            window: 256,
            max_queue_items: 100_000,
            versions: (1, 2),
            hold_questions: false,
            questions: Vec::new(),
            asked: Vec::new(),
            accounts_fail: false,
        }
    }

    fn connect(&mut self) -> usize {
        let config = SessionConfig {
            delivery_window: self.window,
            max_body_bytes: 64 * 1024,
            hello_timeout_ms: 10_000,
            max_queue_items: self.max_queue_items,
        };
        self.clients.push(Client { session: Session::new(self.now, config), received: Vec::new(), closed: None });
        let c = self.clients.len() - 1;
        let (min_version, max_version) = self.versions;
        self.frame(c, ClientFrame::Hello { min_version, max_version });
        assert_eq!(self.take(c), vec![ServerFrame::Welcome { version: max_version.min(PROTOCOL_VERSION) }]);
        c
    }

    /// A session logged in as `phone`, its `LoggedIn` (and anything pushed) taken.
    fn login(&mut self, phone: &str) -> usize {
        let c = self.connect();
        self.frame(c, ClientFrame::Login { phone: phone.into(), key: format!("key of {phone}") });
        let frames = self.take(c);
        assert_eq!(frames.first(), Some(&ServerFrame::LoggedIn { phone: phone.into() }));
        c
    }

    fn input(&mut self, c: usize, input: Input) {
        let accounts: &dyn crate::ports::Accounts = if self.accounts_fail { &FailingAccounts } else { &self.store };
        let ports = Ports { accounts, queues: &self.store, keys: &self.keys };
        self.clients[c].session.handle(self.now, input, &ports);
        self.pump(c);
    }

    fn frame(&mut self, c: usize, frame: ClientFrame) {
        assert!(self.clients[c].session.wants_frames(), "the driver would not read {frame:?} now");
        self.input(c, Input::Frame(frame));
    }

    fn send(&mut self, c: usize, client_id: u64, to: &str, body: &[u8]) {
        self.frame(c, ClientFrame::Send { client_id, to: to.into(), body: body.to_vec() });
    }

    /// Executes the session's outputs, as a driver does.
    fn pump(&mut self, c: usize) {
        loop {
            let accounts: &dyn crate::ports::Accounts = if self.accounts_fail { &FailingAccounts } else { &self.store };
        let ports = Ports { accounts, queues: &self.store, keys: &self.keys };
            let Some(output) = self.clients[c].session.poll_output(self.now, &ports) else { return };
            match output {
                Output::Frame(frame) => self.clients[c].received.push(frame),
                Output::Submit { ticket, job } => self.jobs.push((c, ticket, job)),
                Output::Ask { ticket, question } => {
                    self.asked.push(question.clone());
                    if self.hold_questions {
                        self.questions.push((c, ticket, question));
                    } else {
                        let reply = crate::policy::Policy::ask(&self.policy, question);
                        self.input(c, Input::Answered { ticket, reply });
                    }
                }
                Output::Register { phone, replaces } => {
                    if let Some(old) = self.directory.insert(phone, c) {
                        self.input(old, Input::Kicked(replaces));
                    }
                    self.input(c, Input::Registered);
                }
                Output::Unregister { phone } => {
                    if self.directory.get(&phone) == Some(&c) {
                        self.directory.remove(&phone);
                    }
                }
                Output::Kick { phone, close } => {
                    if let Some(other) = self.directory.remove(&phone) {
                        self.input(other, Input::Kicked(close));
                    }
                }
                Output::Close(close) => self.clients[c].closed = Some(close),
            }
        }
    }

    /// Runs every submitted job as one group, then carries out the report.
    fn commit(&mut self) {
        let jobs = std::mem::take(&mut self.jobs);
        let group = jobs.into_iter().map(|(c, ticket, job)| {
            move |txn: &mut crate::memory::MemoryTxn<'_>| {
                let writes = job.writes();
                let result = job.apply(txn);
                let done = (c, ticket, result.clone());
                if writes && matches!(&result, Ok(outcome) if !outcome.refused()) { Staged::Writes(done) } else { Staged::Nothing(done) }
            }
        });
        let report = commit_group(&mut self.store, Durability::Fsync, group);
        if let Some(id) = report.durable_id {
            self.store.publish_durable(id);
        }
        for user in report.woken {
            if let Some(&c) = self.directory.get(&user) {
                self.input(c, Input::Wake);
            }
        }
        for ((c, ticket, result), durable) in report.completions {
            let result = result.and_then(|outcome| durable.map(|()| outcome)).map_err(StorageFailure::new);
            self.input(c, Input::Committed { ticket, result });
        }
    }

    /// Answers the oldest question held.
    fn answer(&mut self) {
        let (c, ticket, question) = self.questions.remove(0);
        let reply = crate::policy::Policy::ask(&self.policy, question);
        self.input(c, Input::Answered { ticket, reply });
    }

    fn take(&mut self, c: usize) -> Vec<ServerFrame> {
        std::mem::take(&mut self.clients[c].received)
    }

    fn queued(&self, user: &str) -> Vec<u64> {
        self.store.visible().queues.keys().filter(|(u, _)| u == user).map(|(_, id)| *id).collect()
    }
}

fn message_ids(frames: &[ServerFrame]) -> Vec<u64> {
    frames.iter().filter_map(|f| if let ServerFrame::Message { id, .. } = f { Some(*id) } else { None }).collect()
}

fn receipts(frames: &[ServerFrame]) -> Vec<(u64, ReceiptStatus)> {
    frames
        .iter()
        .filter_map(|f| if let ServerFrame::Receipt { message_id, status, .. } = f { Some((*message_id, *status)) } else { None })
        .collect()
}

fn sent_id(frames: &[ServerFrame], client_id: u64) -> u64 {
    frames
        .iter()
        .find_map(|f| match f {
            ServerFrame::Sent { client_id: c, id } if *c == client_id => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Sent for {client_id} in {frames:?}"))
}

#[test]
fn sent_only_once_durable_then_pushed_acked_wiped_and_receipted() {
    let mut w = World::new();
    let (a, b) = (w.login(ALICE), w.login(BOB));
    w.send(a, 1, BOB, b"hi");
    assert!(w.take(a).is_empty(), "Sent before the commit");
    assert!(w.take(b).is_empty(), "pushed before durable");
    w.commit();
    let id = sent_id(&w.take(a), 1);
    let pushed = w.take(b);
    assert_eq!(pushed, vec![ServerFrame::Message { id, from: ALICE.into(), sent_at_ms: 1_000, body: b"hi".to_vec() }]);
    w.frame(b, ClientFrame::Ack { id });
    w.commit();
    assert!(w.queued(BOB).is_empty(), "kept after its ack");
    assert_eq!(receipts(&w.take(a)), vec![(id, ReceiptStatus::Delivered)]);
}

#[test]
fn duplicate_ack_makes_one_receipt() {
    let mut w = World::new();
    let (a, b) = (w.login(ALICE), w.login(BOB));
    w.send(a, 1, BOB, b"hi");
    w.commit();
    let id = sent_id(&w.take(a), 1);
    w.take(b);
    w.frame(b, ClientFrame::Ack { id });
    w.frame(b, ClientFrame::Ack { id });
    w.commit();
    w.frame(b, ClientFrame::Ack { id });
    w.commit();
    assert_eq!(receipts(&w.take(a)), vec![(id, ReceiptStatus::Delivered)]);
    assert!(w.queued(ALICE).len() == 1, "one receipt queued for the sender");
}

#[test]
fn fsync_failure_refuses_and_never_acks() {
    let mut w = World::new();
    let (a, b) = (w.login(ALICE), w.login(BOB));
    w.store.fail_fsync_at(1);
    w.send(a, 1, BOB, b"lost");
    w.commit();
    let frames = w.take(a);
    assert!(matches!(&frames[..], [ServerFrame::SendFailed { client_id: 1, error: ErrorCode::Retryable, .. }]), "{frames:?}");
    assert!(w.take(b).is_empty(), "an item whose fsync failed was pushed");
    // Until a restart every later write is refused too.
    w.send(a, 2, BOB, b"also refused");
    w.commit();
    assert!(matches!(&w.take(a)[..], [ServerFrame::SendFailed { client_id: 2, .. }]));
    w.store.crash();
    assert!(w.store.durable().queues.is_empty(), "a refused message survived the restart");
}

#[test]
fn a_send_whose_account_read_fails_refuses_every_later_send_and_closes() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.hold_questions = true;
    w.send(a, 1, BOB, b"first");
    w.send(a, 2, BOB, b"second");
    w.accounts_fail = true;
    w.answer();
    w.accounts_fail = false;
    // Storage is back, but a later send must not be stored ahead of the retry of the first;
    // and the session reads no more frames: it closes once its answers are out.
    assert!(!w.clients[a].session.wants_frames());
    while !w.questions.is_empty() {
        w.answer();
    }
    w.commit();
    let frames = w.take(a);
    assert!(
        matches!(&frames[..], [ServerFrame::SendFailed { client_id: 1, error: ErrorCode::Retryable, reason }, ServerFrame::SendFailed { client_id: 2, error: ErrorCode::Retryable, .. }] if reason.contains("timed out")),
        "{frames:?}"
    );
    assert!(w.queued(BOB).is_empty(), "a send stored after the refusal");
    assert_eq!(w.clients[a].closed.as_ref().map(|c| c.code), Some(hotline_protocol::close_code::INTERNAL));
}

#[test]
fn a_retry_with_the_same_client_id_is_stored_once() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.send(a, 7, BOB, b"once");
    w.commit();
    w.send(a, 7, BOB, b"once");
    w.commit();
    let frames = w.take(a);
    assert_eq!(sent_id(&frames[..1], 7), sent_id(&frames[1..], 7));
    assert_eq!(w.queued(BOB).len(), 1);
}

#[test]
fn answers_go_out_in_the_order_of_the_requests() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.send(a, 1, BOB, b"one");
    w.frame(a, ClientFrame::Ping { nonce: 9 });
    w.send(a, 2, "not a number\n", b"refused at once");
    assert!(w.take(a).is_empty(), "an answer overtook the pending Sent");
    w.commit();
    let frames = w.take(a);
    assert!(matches!(frames[0], ServerFrame::Sent { client_id: 1, .. }), "{frames:?}");
    assert_eq!(frames[1], ServerFrame::Pong { nonce: 9 });
    assert!(matches!(frames[2], ServerFrame::SendFailed { client_id: 2, error: ErrorCode::InvalidArgument, .. }));
}

#[test]
fn sends_handed_in_together_are_routed_in_one_batch_and_answered_in_order() {
    let mut w = World::new();
    let a = w.login(ALICE);
    let ports = Ports { accounts: &w.store, queues: &w.store, keys: &w.keys };
    for n in 0..10 {
        w.clients[a].session.handle(w.now, Input::Frame(ClientFrame::Send { client_id: n, to: BOB.into(), body: vec![n as u8] }), &ports);
    }
    assert_eq!(w.clients[a].session.pending_send_bytes(), 10);
    w.pump(a);
    assert_eq!(w.jobs.len(), 10);
    assert_eq!(w.policy.route_calls.load(std::sync::atomic::Ordering::Relaxed), 1, "one policy call for the batch");
    w.commit();
    let answered: Vec<u64> = w
        .take(a)
        .iter()
        .map(|f| match f {
            ServerFrame::Sent { client_id, .. } => *client_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(answered, (0..10).collect::<Vec<_>>());
    assert_eq!(w.clients[a].session.pending_send_bytes(), 0);
}

#[test]
fn crash_after_sent_before_push_delivers_once() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.send(a, 1, BOB, b"survives");
    w.commit();
    let id = sent_id(&w.take(a), 1);
    w.store.crash();
    let b = w.connect();
    w.frame(b, ClientFrame::Login { phone: BOB.into(), key: format!("key of {BOB}") });
    assert_eq!(message_ids(&w.take(b)), vec![id]);
    w.input(b, Input::Wake);
    assert!(w.take(b).is_empty(), "pushed twice in one session");
}

#[test]
fn unacknowledged_items_are_pushed_again_under_the_same_id_to_the_next_session() {
    let mut w = World::new();
    let (a, b) = (w.login(ALICE), w.login(BOB));
    w.send(a, 1, BOB, b"again");
    w.commit();
    let id = sent_id(&w.take(a), 1);
    assert_eq!(message_ids(&w.take(b)), vec![id]);
    w.input(b, Input::PeerStoppedReading);
    assert!(w.clients[b].closed.is_some());
    let b2 = w.connect();
    w.frame(b2, ClientFrame::Login { phone: BOB.into(), key: format!("key of {BOB}") });
    assert_eq!(message_ids(&w.take(b2)), vec![id]);
}

#[test]
fn the_window_bounds_items_in_flight_and_an_ack_refills_it() {
    let mut w = World::new();
    w.window = 2;
    let (a, b) = (w.login(ALICE), w.login(BOB));
    for n in 0..5 {
        w.send(a, n, BOB, b"m");
    }
    w.commit();
    let first = message_ids(&w.take(b));
    assert_eq!(first.len(), 2);
    w.frame(b, ClientFrame::Ack { id: first[0] });
    let next = message_ids(&w.take(b));
    assert_eq!(next.len(), 1);
    assert!(next[0] > first[1], "pushed out of order");
}

#[test]
fn a_read_needs_a_delivered_message_and_makes_one_read_receipt() {
    let mut w = World::new();
    let (a, b) = (w.login(ALICE), w.login(BOB));
    w.send(a, 1, BOB, b"read me");
    w.commit();
    let id = sent_id(&w.take(a), 1);
    w.take(b);
    w.frame(b, ClientFrame::Read { id, from: ALICE.into() });
    assert!(!w.clients[b].session.wants_frames(), "frames read before the check is back");
    w.commit();
    let refused = w.take(b);
    assert!(matches!(&refused[..], [ServerFrame::Error { error: ErrorCode::InvalidArgument, .. }]), "read before ack: {refused:?}");
    w.frame(b, ClientFrame::Ack { id });
    w.frame(b, ClientFrame::Read { id, from: ALICE.into() });
    w.commit(); // the ack and the check, in that order
    w.commit(); // the read receipt
    assert!(w.take(b).is_empty());
    w.frame(b, ClientFrame::Read { id, from: ALICE.into() });
    w.commit();
    assert!(matches!(&w.take(b)[..], [ServerFrame::Error { error: ErrorCode::InvalidArgument, .. }]), "a second Read was accepted");
    assert_eq!(receipts(&w.take(a)), vec![(id, ReceiptStatus::Delivered), (id, ReceiptStatus::Read)]);
}

#[test]
fn a_malformed_frame_answers_the_sends_before_it_then_closes() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.send(a, 1, BOB, b"before");
    w.input(a, Input::BadFrame(FrameError::Malformed("junk".into())));
    assert!(w.clients[a].closed.is_none(), "closed before answering");
    assert!(!w.clients[a].session.wants_frames());
    w.commit();
    assert!(matches!(&w.take(a)[..], [ServerFrame::Sent { client_id: 1, .. }]));
    assert_eq!(w.clients[a].closed.as_ref().map(|c| c.code), Some(close_code::MALFORMED_FRAME));
    assert!(!w.directory.contains_key(ALICE), "a closed session stayed in the directory");
}

#[test]
fn a_session_without_hello_times_out() {
    let mut w = World::new();
    let config = SessionConfig { delivery_window: 8, max_body_bytes: 1024, hello_timeout_ms: 10_000, max_queue_items: 100 };
    w.clients.push(Client { session: Session::new(w.now, config), received: Vec::new(), closed: None });
    assert_eq!(w.clients[0].session.poll_timeout(), Some(11_000));
    w.now = 10_999;
    w.input(0, Input::Timeout);
    assert!(w.clients[0].closed.is_none(), "closed early");
    w.now = 11_000;
    w.input(0, Input::Timeout);
    assert_eq!(w.clients[0].closed.as_ref().map(|c| c.code), Some(close_code::TIMEOUT));
}

#[test]
fn a_router_failure_answers_retryable_and_stores_nothing() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.policy.failing.store(true, std::sync::atomic::Ordering::Relaxed);
    w.send(a, 1, BOB, b"x");
    assert!(matches!(&w.take(a)[..], [ServerFrame::SendFailed { error: ErrorCode::Retryable, .. }]));
    assert!(w.jobs.is_empty());
}

#[test]
fn a_receipts_failure_keeps_the_acknowledged_message_queued() {
    let mut w = World::new();
    let (a, b) = (w.login(ALICE), w.login(BOB));
    w.send(a, 1, BOB, b"x");
    w.commit();
    let id = sent_id(&w.take(a), 1);
    w.policy.failing.store(true, std::sync::atomic::Ordering::Relaxed);
    w.frame(b, ClientFrame::Ack { id });
    w.commit();
    assert_eq!(w.queued(BOB), vec![id]);
}

#[test]
fn a_new_login_replaces_the_older_session_and_a_new_registration_revokes_it() {
    let mut w = World::new();
    let first = w.login(BOB);
    let second = w.login(BOB);
    assert_eq!(w.clients[first].closed.as_ref().map(|c| c.code), Some(close_code::SESSION_REPLACED));
    let other = w.connect();
    w.frame(other, ClientFrame::Verify { phone: BOB.into(), code: "123456".into() });
    assert!(!w.clients[other].session.wants_frames(), "frames read before the account is stored");
    w.commit();
    assert_eq!(w.take(other), vec![ServerFrame::Registered { phone: BOB.into(), key: "key-1".into() }]);
    assert_eq!(w.clients[second].closed.as_ref().map(|c| c.code), Some(close_code::KEY_REVOKED));
    let old_key = w.connect();
    w.frame(old_key, ClientFrame::Login { phone: BOB.into(), key: format!("key of {BOB}") });
    assert_eq!(w.clients[old_key].closed.as_ref().map(|c| c.code), Some(close_code::AUTH_FAILED));
}

#[test]
fn frames_out_of_place_close_at_once() {
    let mut w = World::new();
    let c = w.connect();
    w.frame(c, ClientFrame::Ack { id: 1 });
    let close = w.clients[c].closed.clone().unwrap();
    assert_eq!(close.code, close_code::UNEXPECTED_FRAME);
    assert_eq!(close.reason, "Ack is not allowed before Login");
}

/// Found by the simulator: a device registering again lost its connection while its new
/// account was being stored, and the old device logged in with the old key meanwhile; once
/// the account was durable nobody kicked it, so it stayed online with a revoked key.
#[test]
fn a_registration_whose_client_went_away_still_revokes_the_old_device() {
    let mut w = World::new();
    let registering = w.connect();
    w.frame(registering, ClientFrame::Verify { phone: BOB.into(), code: "123456".into() });
    w.input(registering, Input::PeerStoppedReading);
    assert_eq!(w.clients[registering].closed, None, "closes once the account is stored, not before");
    let old_device = w.login(BOB);
    w.commit();
    assert_eq!(w.clients[old_device].closed.as_ref().map(|c| c.code), Some(close_code::KEY_REVOKED));
    assert!(w.clients[registering].closed.is_some(), "the session closes once its registration is done");
}

#[test]
fn frames_that_come_while_a_question_is_out_wait_and_are_answered_in_order() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.hold_questions = true;
    w.send(a, 1, BOB, b"one");
    assert_eq!(w.questions.len(), 1, "the router is asked about the first send");
    w.frame(a, ClientFrame::Ping { nonce: 7 });
    w.send(a, 2, BOB, b"two");
    w.send(a, 3, BOB, b"three");
    assert_eq!(w.questions.len(), 1, "a second question while the first is out");
    assert!(w.take(a).is_empty(), "the Pong overtook the Sent it follows");
    assert_eq!(w.clients[a].session.pending_send_bytes(), 3 + 3 + 5, "bodies waiting are counted");
    w.answer();
    assert_eq!(w.questions.len(), 1, "the sends that waited are routed together");
    w.answer();
    assert_eq!(w.policy.route_calls.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(w.jobs.len(), 3);
    w.commit();
    let frames = w.take(a);
    assert!(matches!(frames[0], ServerFrame::Sent { client_id: 1, .. }), "{frames:?}");
    assert_eq!(frames[1], ServerFrame::Pong { nonce: 7 });
    assert!(matches!(frames[2], ServerFrame::Sent { client_id: 2, .. }), "{frames:?}");
    assert!(matches!(frames[3], ServerFrame::Sent { client_id: 3, .. }), "{frames:?}");
    assert_eq!(w.clients[a].session.pending_send_bytes(), 0);
}

#[test]
fn acks_handed_in_together_ask_about_their_receipts_once() {
    let mut w = World::new();
    let (a, b) = (w.login(ALICE), w.login(BOB));
    for n in 0..3 {
        w.send(a, n, BOB, b"m");
    }
    w.commit();
    let ids = message_ids(&w.take(b));
    assert_eq!(ids.len(), 3);
    w.hold_questions = true;
    let ports = Ports { accounts: &w.store, queues: &w.store, keys: &w.keys };
    for &id in &ids {
        w.clients[b].session.handle(w.now, Input::Frame(ClientFrame::Ack { id }), &ports);
    }
    w.pump(b);
    assert_eq!(w.questions.len(), 1, "one question for the batch");
    assert!(matches!(&w.questions[0].2, crate::policy::Question::Receipts(r) if r.len() == 3));
    assert!(w.jobs.is_empty(), "acks submitted before policy answered");
    w.answer();
    w.commit();
    assert!(w.queued(BOB).is_empty());
    let got = receipts(&w.take(a));
    assert_eq!(got, ids.iter().map(|&id| (id, ReceiptStatus::Delivered)).collect::<Vec<_>>());
}

#[test]
fn delivery_goes_on_while_the_recipients_own_question_is_out() {
    let mut w = World::new();
    let (a, b) = (w.login(ALICE), w.login(BOB));
    w.hold_questions = true;
    w.send(a, 1, BOB, b"alice asks the router");
    w.send(b, 1, ALICE, b"bob's message");
    assert_eq!(w.questions.len(), 2);
    let bobs = w.questions.iter().position(|(c, _, _)| *c == b).unwrap();
    let (c, ticket, question) = w.questions.remove(bobs);
    let reply = crate::policy::Policy::ask(&w.policy, question);
    w.input(c, Input::Answered { ticket, reply });
    w.commit();
    let frames = w.take(a);
    assert_eq!(message_ids(&frames).len(), 1, "a question out held up delivery: {frames:?}");
}

#[test]
fn a_session_kicked_while_its_question_is_out_closes_at_once_and_ignores_the_reply() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.hold_questions = true;
    w.send(a, 1, BOB, b"x");
    w.input(a, Input::Kicked(Close::new(close_code::SESSION_REPLACED, "replaced")));
    assert_eq!(w.clients[a].closed.as_ref().map(|c| c.code), Some(close_code::SESSION_REPLACED));
    w.answer();
    assert!(w.jobs.is_empty(), "a closed session submitted a job");
    assert!(w.take(a).is_empty());
}

#[test]
fn a_reply_to_another_question_is_not_taken_for_the_one_out() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.hold_questions = true;
    w.send(a, 1, BOB, b"x");
    let (_, ticket, _) = w.questions[0].clone();
    w.input(a, Input::Answered { ticket: Ticket(ticket.0 + 100), reply: Ok(crate::policy::Reply::Route(vec![])) });
    assert!(w.take(a).is_empty() && w.jobs.is_empty());
    w.answer();
    assert_eq!(w.jobs.len(), 1);
}

#[test]
fn the_end_of_the_stream_waits_for_the_question_before_it() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.hold_questions = true;
    w.send(a, 1, BOB, b"x");
    w.input(a, Input::StreamEnd);
    assert!(w.clients[a].closed.is_none(), "closed with a send unanswered");
    w.answer();
    w.commit();
    assert!(matches!(&w.take(a)[..], [ServerFrame::Sent { client_id: 1, .. }]));
    assert_eq!(w.clients[a].closed.as_ref().map(|c| c.code), Some(close_code::NORMAL));
}

/// The `SendFailed` of `client_id` in `frames`: its code and reason.
fn send_failed(frames: &[ServerFrame], client_id: u64) -> (ErrorCode, String) {
    frames
        .iter()
        .find_map(|f| match f {
            ServerFrame::SendFailed { client_id: c, error, reason } if *c == client_id => Some((*error, reason.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no SendFailed for {client_id} in {frames:?}"))
}

#[test]
fn hello_agrees_on_the_highest_common_version_or_closes_with_code_4() {
    for ((min_version, max_version), agreed) in [((1, 1), Some(1)), ((1, 2), Some(2)), ((2, 2), Some(2)), ((1, 3), Some(3)), ((1, 9), Some(4)), ((3, 9), Some(4)), ((4, 9), Some(4)), ((5, 9), None), ((0, 0), None), ((2, 1), None)] {
        let mut w = World::new();
        let config = SessionConfig { delivery_window: 8, max_body_bytes: 1024, hello_timeout_ms: 10_000, max_queue_items: 100 };
        w.clients.push(Client { session: Session::new(w.now, config), received: Vec::new(), closed: None });
        w.frame(0, ClientFrame::Hello { min_version, max_version });
        match agreed {
            Some(version) => {
                assert_eq!(w.take(0), vec![ServerFrame::Welcome { version }], "Hello{{{min_version},{max_version}}}");
                assert_eq!(w.clients[0].session.version(), version);
            }
            None => {
                let close = w.clients[0].closed.clone().expect("not closed");
                assert_eq!((close.code, close.reason.as_str()), (close_code::UNSUPPORTED_VERSION, "this broker speaks versions 1 to 4"));
            }
        }
    }
}

#[test]
fn a_send_to_a_full_queue_is_refused_as_queue_full_in_version_2_and_rate_limited_in_version_1() {
    let mut w = World::new();
    w.max_queue_items = 2;
    let a = w.login(ALICE);
    // Bob is offline: his queue fills.
    for client_id in 1..=2 {
        w.send(a, client_id, BOB, b"fits");
    }
    w.commit();
    let frames = w.take(a);
    let stored = vec![sent_id(&frames, 1), sent_id(&frames, 2)];
    w.send(a, 3, BOB, b"one too many");
    w.commit();
    let (error, reason) = send_failed(&w.take(a), 3);
    assert_eq!(error, ErrorCode::QueueFull);
    assert_eq!(reason, "the recipient's queue is full (2 items waiting); try again later");
    assert_eq!(w.queued(BOB), stored, "a refused send stored something or dropped something");
    assert!(!w.store.visible().idempotency.contains_key(&(ALICE.to_string(), 3)), "a refused send left an idempotency record");

    // A version-1 session of the same sender gets the code it knows: RateLimited.
    w.versions = (1, 1);
    let old = w.login(ALICE);
    w.send(old, 4, BOB, b"from an old client");
    w.commit();
    let (error, reason) = send_failed(&w.take(old), 4);
    assert_eq!(error, ErrorCode::RateLimited);
    assert!(error.is_retryable());
    assert_eq!(reason, "the recipient's queue is full (2 items waiting); try again later");
    assert_eq!(w.queued(BOB), stored);

    // Bob takes one: the same client id is accepted now, once.
    let b = w.login(BOB);
    w.frame(b, ClientFrame::Ack { id: stored[0] });
    w.commit();
    w.send(old, 4, BOB, b"from an old client");
    w.commit();
    let id = sent_id(&w.take(old), 4);
    assert_eq!(w.queued(BOB), vec![stored[1], id]);
}

#[test]
fn a_group_send_is_refused_whole_when_one_recipient_is_full_and_receipts_still_queue() {
    let mut w = World::new();
    w.max_queue_items = 1;
    // Bob fills Alice's queue; Alice is offline.
    let b = w.login(BOB);
    w.send(b, 1, ALICE, b"for alice");
    w.commit();
    let to_alice = sent_id(&w.take(b), 1);
    // A send whose route names Bob and Alice stores nothing at all.
    let job = Job::Send {
        from: BOB.into(),
        client_id: 2,
        recipients: vec![BOB.into(), ALICE.into()],
        sent_at_ms: 1,
        kind: MessageKind::Text,
        body: b"to both".to_vec(),
        max_queue_items: 1,
    };
    let (staged, _) = crate::commit::Journal::transact(&mut w.store, |txn| Staged::Nothing(job.apply(txn)));
    let (Staged::Nothing(outcome) | Staged::Writes(outcome)) = staged;
    let outcome = outcome.unwrap();
    assert_eq!(outcome, JobOutcome::QueueFull { recipient: ALICE.into(), items: 1 });
    assert!(w.queued(BOB).is_empty());
    assert_eq!(w.queued(ALICE), vec![to_alice]);
    // Alice's full queue still gets the broker's receipts: Bob acks a message from her.
    let a = w.login(ALICE);
    w.take(a);
    w.max_queue_items = 1;
    w.send(a, 7, BOB, b"for bob");
    w.commit();
    let to_bob = sent_id(&w.take(a), 7);
    w.take(b);
    w.frame(b, ClientFrame::Ack { id: to_bob });
    w.commit();
    assert_eq!(w.queued(ALICE).len(), 2, "the delivered receipt was not queued into the full queue");
}

fn png() -> MessageKind {
    MessageKind::Media { mime: "image/png".into() }
}

fn send_typed(w: &mut World, c: usize, client_id: u64, to: &str, kind: MessageKind, body: &[u8]) {
    w.frame(c, ClientFrame::SendTyped { client_id, to: to.into(), kind, body: body.to_vec() });
}

/// The kinds of the messages in route questions and of the receipts in receipts
/// questions, in the order asked.
fn asked_kinds(w: &World) -> (Vec<MessageKind>, Vec<(ReceiptStatus, MessageKind)>) {
    let (mut routed, mut receipts) = (Vec::new(), Vec::new());
    for question in &w.asked {
        match question {
            crate::policy::Question::Route(metas) => routed.extend(metas.iter().map(|m| m.kind.clone())),
            crate::policy::Question::Receipts(metas) => receipts.extend(metas.iter().map(|m| (m.status, m.kind.clone()))),
            _ => {}
        }
    }
    (routed, receipts)
}

#[test]
fn a_typed_message_reaches_policy_and_version_3_recipients_with_its_kind_and_its_receipts_carry_it() {
    let mut w = World::new();
    w.versions = (1, 3);
    let (a, b) = (w.login(ALICE), w.login(BOB));
    send_typed(&mut w, a, 1, BOB, png(), b"descriptor");
    w.send(a, 2, BOB, b"plain");
    send_typed(&mut w, a, 3, BOB, MessageKind::Text, b"typed text");
    w.commit();
    let frames = w.take(a);
    let ids = [sent_id(&frames, 1), sent_id(&frames, 2), sent_id(&frames, 3)];
    // One route question for the three, each with its kind (a plain Send is Text).
    assert_eq!(asked_kinds(&w).0, vec![png(), MessageKind::Text, MessageKind::Text]);
    // Stored: the media message as the new record variant, the text ones as before.
    let stored = |id: u64| w.store.visible().queues[&(BOB.to_string(), id)].clone();
    assert!(matches!(stored(ids[0]), StoredItem::TypedMessage { kind, .. } if kind == png()));
    assert!(matches!(stored(ids[1]), StoredItem::Message { .. }));
    assert!(matches!(stored(ids[2]), StoredItem::Message { .. }));
    // Pushed to the version-3 session as TypedMessage, every one of them.
    let typed = |id, kind, body: &[u8]| ServerFrame::TypedMessage { id, from: ALICE.into(), sent_at_ms: 1_000, kind, body: body.to_vec() };
    assert_eq!(
        w.take(b),
        vec![typed(ids[0], png(), b"descriptor"), typed(ids[1], MessageKind::Text, b"plain"), typed(ids[2], MessageKind::Text, b"typed text")]
    );
    // The delivered receipts' question names each message's kind, and so does the read's.
    for id in ids {
        w.frame(b, ClientFrame::Ack { id });
    }
    w.commit();
    assert_eq!(w.store.visible().delivered[&(BOB.to_string(), ids[0])].kind, png());
    w.frame(b, ClientFrame::Read { id: ids[0], from: ALICE.into() });
    w.commit();
    w.commit();
    let receipts_asked = asked_kinds(&w).1;
    assert_eq!(
        receipts_asked,
        vec![
            (ReceiptStatus::Delivered, png()),
            (ReceiptStatus::Delivered, MessageKind::Text),
            (ReceiptStatus::Delivered, MessageKind::Text),
            (ReceiptStatus::Read, png()),
        ]
    );
    assert_eq!(receipts(&w.take(a)).last(), Some(&(ids[0], ReceiptStatus::Read)));
}

#[test]
fn an_older_session_gets_a_typed_message_as_a_message_with_the_same_body() {
    let mut w = World::new();
    w.versions = (1, 3);
    let a = w.login(ALICE);
    send_typed(&mut w, a, 1, BOB, png(), b"descriptor");
    w.commit();
    let id = sent_id(&w.take(a), 1);
    for versions in [(1, 2), (1, 1)] {
        w.versions = versions;
        let b = w.connect();
        w.frame(b, ClientFrame::Login { phone: BOB.into(), key: format!("key of {BOB}") });
        let message = ServerFrame::Message { id, from: ALICE.into(), sent_at_ms: 1_000, body: b"descriptor".to_vec() };
        assert_eq!(w.take(b), vec![ServerFrame::LoggedIn { phone: BOB.into() }, message]);
    }
    // Its receipt still knows the kind, whatever the recipient's version.
    let b = w.login(BOB);
    w.take(b);
    w.frame(b, ClientFrame::Ack { id });
    w.commit();
    assert_eq!(asked_kinds(&w).1, vec![(ReceiptStatus::Delivered, png())]);
}

#[test]
fn send_typed_in_a_version_2_session_answers_the_sends_before_it_then_closes_as_malformed() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.send(a, 1, BOB, b"before");
    send_typed(&mut w, a, 2, BOB, png(), b"descriptor");
    assert!(w.clients[a].closed.is_none(), "closed before answering");
    assert!(!w.clients[a].session.wants_frames());
    w.commit();
    assert!(matches!(&w.take(a)[..], [ServerFrame::Sent { client_id: 1, .. }]));
    let close = w.clients[a].closed.clone().expect("not closed");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (close_code::MALFORMED_FRAME, "malformed frame: SendTyped is a frame of protocol version 3; this session speaks version 2")
    );
    assert_eq!(w.queued(BOB).len(), 1, "the SendTyped was stored");
    assert!(!w.store.visible().idempotency.contains_key(&(ALICE.to_string(), 2)));
}

#[test]
fn send_typed_held_behind_a_question_in_a_version_2_session_takes_nothing_after_it() {
    let mut w = World::new();
    let a = w.login(ALICE);
    w.hold_questions = true;
    w.send(a, 1, BOB, b"before");
    w.frame(a, ClientFrame::Ping { nonce: 1 });
    send_typed(&mut w, a, 2, BOB, png(), b"descriptor");
    w.send(a, 3, BOB, b"after");
    w.answer();
    w.commit();
    let frames = w.take(a);
    assert!(matches!(&frames[..], [ServerFrame::Sent { client_id: 1, .. }, ServerFrame::Pong { nonce: 1 }]), "{frames:?}");
    assert_eq!(w.clients[a].closed.as_ref().map(|c| c.code), Some(close_code::MALFORMED_FRAME));
    assert_eq!(w.queued(BOB).len(), 1, "a frame after the SendTyped was taken");
}

#[test]
fn a_media_kind_without_a_mime_type_is_invalid_argument_and_stores_nothing() {
    let mut w = World::new();
    w.versions = (1, 3);
    let a = w.login(ALICE);
    let long = format!("image/{}", "x".repeat(200));
    for (client_id, mime) in [(1, "image"), (2, "image/png; q=1"), (3, long.as_str()), (4, "")] {
        send_typed(&mut w, a, client_id, BOB, MessageKind::Media { mime: mime.into() }, b"descriptor");
    }
    w.commit();
    let frames = w.take(a);
    for client_id in 1..=4 {
        let (error, reason) = send_failed(&frames, client_id);
        assert_eq!(error, ErrorCode::InvalidArgument);
        assert!(reason.contains("is not a MIME type (type/subtype"), "{reason}");
        assert!(reason.len() < 200, "the reason quotes the whole field: {reason}");
    }
    assert_eq!(send_failed(&frames, 1).1, "\"image\" is not a MIME type (type/subtype, at most 127 bytes of letters, digits and !#$&-^_.+)");
    assert!(w.queued(BOB).is_empty());
    assert!(asked_kinds(&w).0.is_empty(), "a refused kind was routed");
}

fn set_push_token(w: &mut World, c: usize, token: &str) {
    w.frame(c, ClientFrame::SetPushToken { token: token.into() });
}

#[test]
fn a_push_token_is_answered_once_durable_in_request_order_and_an_empty_one_removes_it() {
    let mut w = World::new();
    w.versions = (1, 4);
    let a = w.login(ALICE);
    w.send(a, 1, BOB, b"hi");
    set_push_token(&mut w, a, "apns:0a1b2c");
    w.frame(a, ClientFrame::Ping { nonce: 7 });
    assert!(w.take(a).is_empty(), "answered before durable");
    w.commit();
    let frames = w.take(a);
    assert!(matches!(&frames[..], [ServerFrame::Sent { client_id: 1, .. }, ServerFrame::PushTokenSet, ServerFrame::Pong { nonce: 7 }]), "{frames:?}");
    let stored = w.store.durable().push[ALICE].clone();
    assert_eq!((stored.token.as_str(), stored.key_hash, stored.set_at_ms), ("apns:0a1b2c", hash_key(&format!("key of {ALICE}")), 1_000));
    // A new token replaces it; the empty one removes it.
    set_push_token(&mut w, a, "apns:ffff");
    w.commit();
    assert_eq!(w.store.durable().push[ALICE].token, "apns:ffff");
    set_push_token(&mut w, a, "");
    w.commit();
    assert_eq!(w.take(a), vec![ServerFrame::PushTokenSet, ServerFrame::PushTokenSet]);
    assert!(w.store.durable().push.is_empty());
}

#[test]
fn a_bad_push_token_or_one_before_login_gets_an_error_and_the_session_goes_on() {
    let mut w = World::new();
    w.versions = (1, 4);
    let c = w.connect();
    set_push_token(&mut w, c, "tok");
    let frames = w.take(c);
    assert!(
        matches!(&frames[..], [ServerFrame::Error { error: ErrorCode::Rejected, reason }] if reason == "SetPushToken is allowed only after Login; log in first"),
        "{frames:?}"
    );
    assert!(w.clients[c].closed.is_none());
    w.frame(c, ClientFrame::Login { phone: ALICE.into(), key: format!("key of {ALICE}") });
    assert_eq!(w.take(c), vec![ServerFrame::LoggedIn { phone: ALICE.into() }]);

    let too_long = "x".repeat(4097);
    set_push_token(&mut w, c, &too_long);
    set_push_token(&mut w, c, "line\nbreak");
    set_push_token(&mut w, c, &"y".repeat(4096));
    assert!(w.jobs.len() == 1, "a refused token was submitted");
    w.commit();
    let frames = w.take(c);
    let [ServerFrame::Error { error: e1, reason: r1 }, ServerFrame::Error { error: e2, reason: r2 }, ServerFrame::PushTokenSet] = &frames[..] else {
        panic!("{frames:?}")
    };
    assert_eq!((*e1, r1.as_str()), (ErrorCode::InvalidArgument, "the push token is 4097 bytes long; at most 4096 are allowed"));
    assert_eq!((*e2, r2.as_str()), (ErrorCode::InvalidArgument, "\"line\\nbreak\" is not a push token: it contains a control character"));
    assert!(w.clients[c].closed.is_none());
    assert_eq!(w.store.durable().push[ALICE].token.len(), 4096);
}

#[test]
fn set_push_token_in_a_version_3_session_answers_what_came_before_then_closes_as_malformed() {
    let mut w = World::new();
    w.versions = (1, 3);
    let a = w.login(ALICE);
    w.send(a, 1, BOB, b"before");
    set_push_token(&mut w, a, "tok");
    assert!(w.clients[a].closed.is_none(), "closed before answering");
    w.commit();
    assert!(matches!(&w.take(a)[..], [ServerFrame::Sent { client_id: 1, .. }]));
    let close = w.clients[a].closed.clone().expect("not closed");
    assert_eq!(
        (close.code, close.reason.as_str()),
        (close_code::MALFORMED_FRAME, "malformed frame: SetPushToken is a frame of protocol version 4; this session speaks version 3")
    );
    assert!(w.store.visible().push.is_empty());
}

#[test]
fn a_new_device_drops_the_old_token_and_the_old_key_cannot_set_one() {
    let mut w = World::new();
    w.versions = (1, 4);
    let old = w.login(ALICE);
    set_push_token(&mut w, old, "old phone");
    w.commit();
    assert_eq!(w.take(old), vec![ServerFrame::PushTokenSet]);
    // The old device's next token is in flight when the number is registered again.
    set_push_token(&mut w, old, "old phone again");
    let new = w.connect();
    w.frame(new, ClientFrame::Verify { phone: ALICE.into(), code: "123456".into() });
    w.commit();
    // Its job ran before the re-registration's, whose batch then removed the token.
    assert!(w.store.durable().push.is_empty(), "{:?}", w.store.durable().push);
    assert_eq!(w.clients[old].closed.as_ref().map(|c| c.code), Some(close_code::KEY_REVOKED));

    // A token of a key no longer the account's is refused in commit order, storing nothing.
    let stale = w.login(BOB);
    w.store.put_account(BOB, Account { key_hash: [7; 32], registered_at_ms: 5 });
    set_push_token(&mut w, stale, "stale");
    w.commit();
    let frames = w.take(stale);
    assert!(matches!(&frames[..], [ServerFrame::Error { error: ErrorCode::Rejected, reason }] if reason.contains("no longer holds the number")), "{frames:?}");
    assert!(w.store.durable().push.is_empty());
}

#[test]
fn a_push_token_whose_fsync_failed_is_answered_retryable() {
    let mut w = World::new();
    w.versions = (1, 4);
    let a = w.login(ALICE);
    w.store.fail_fsync_at(1);
    set_push_token(&mut w, a, "tok");
    w.commit();
    assert!(matches!(&w.take(a)[..], [ServerFrame::Error { error: ErrorCode::Retryable, .. }]));
    w.store.crash();
    assert!(w.store.durable().push.is_empty());
}
