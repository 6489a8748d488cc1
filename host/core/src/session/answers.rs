//! The answers a session owes its client, in the order of the requests: each is written as
//! soon as it and every answer before it are known.

use std::collections::VecDeque;

use hotline_protocol::ServerFrame;

use super::Ticket;

/// One request's answer.
#[derive(Debug)]
pub(super) enum Answer {
    /// Known: the frame to write.
    Ready(ServerFrame),
    /// A `Send` to `to` whose job was submitted: `Sent` once durable. `bytes` of body are
    /// held until then.
    Sent { ticket: Ticket, client_id: u64, bytes: usize, to: String },
    /// A `Read` whose check (is message `id` from `sender` delivered and unread?) runs in
    /// commit order.
    ReadChecked { ticket: Ticket, id: u64, sender: String },
    /// A `Verify` whose new account is being stored: `Registered` with `key` once durable.
    Registered { ticket: Ticket, phone: String, key: String },
    /// A `SetPushToken` whose job was submitted: `PushTokenSet` once durable.
    PushTokenSet { ticket: Ticket },
    /// A request waiting for policy's reply to the question `ticket` (one per message of a
    /// routed batch, in order).
    Asked { ticket: Ticket },
}

impl Answer {
    fn ticket(&self) -> Option<Ticket> {
        match self {
            Answer::Ready(_) => None,
            Answer::Sent { ticket, .. }
            | Answer::ReadChecked { ticket, .. }
            | Answer::Registered { ticket, .. }
            | Answer::PushTokenSet { ticket }
            | Answer::Asked { ticket } => Some(*ticket),
        }
    }
}

/// The queue of answers, oldest first.
#[derive(Debug, Default)]
pub(super) struct Answers {
    queue: VecDeque<Answer>,
}

impl Answers {
    pub(super) fn push(&mut self, answer: Answer) {
        self.queue.push_back(answer);
    }

    pub(super) fn ready(&mut self, frame: ServerFrame) {
        self.queue.push_back(Answer::Ready(frame));
    }

    /// Takes the (first) answer waiting for `ticket` out of the queue, with its place, to be
    /// put back by [`Answers::put`] once its handler knows what it became.
    pub(super) fn take(&mut self, ticket: Ticket) -> Option<(usize, Answer)> {
        let at = self.queue.iter().position(|a| a.ticket() == Some(ticket))?;
        self.queue.remove(at).map(|answer| (at, answer))
    }

    /// Puts an answer back at its place (see [`Answers::take`]).
    pub(super) fn put(&mut self, at: usize, answer: Answer) {
        self.queue.insert(at, answer);
    }

    /// The frame at the front, if it is known.
    pub(super) fn pop_ready(&mut self) -> Option<ServerFrame> {
        match self.queue.front() {
            Some(Answer::Ready(_)) => match self.queue.pop_front() {
                Some(Answer::Ready(frame)) => Some(frame),
                _ => unreachable!("checked above"),
            },
            _ => None,
        }
    }

    /// Whether a `Verify`'s account is still being stored.
    pub(super) fn awaits_registration(&self) -> bool {
        self.queue.iter().any(|a| matches!(a, Answer::Registered { .. }))
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
