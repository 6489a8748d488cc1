//! Questions to policy: the session asks ([`Output::Ask`]) and goes on; the driver feeds
//! the reply back ([`Input::Answered`]). One question is out at a time, so replies come in
//! the order the questions were asked and jobs are submitted in the order of the frames
//! that caused them.
//!
//! [`Output::Ask`]: super::Output::Ask
//! [`Input::Answered`]: super::Input::Answered

use hotline_protocol::MessageKind;

use super::send::Outgoing;
use super::{Answer, Output, Session};
use crate::policy::{PolicyError, Question, Reply};
use crate::ports::Ports;
use crate::Millis;

/// What the question out is for: what its reply completes.
#[derive(Debug)]
pub(super) enum Asked {
    /// A batch of sends from `from` that passed the checks, one `Answer::Asked` each.
    Route { from: String, batch: Vec<Outgoing> },
    /// Acks of `user`'s items, in order: each item's id and, for a message, its sender
    /// (whose receipt was asked about) and kind; receipts need no question.
    Acks { user: String, items: Vec<(u64, Option<(String, MessageKind)>)> },
    /// An accepted `Read`: submit its receipt (or refuse, if policy failed).
    Read { reader: String, id: u64, sender: String },
    RequestCode { phone: String },
    Verify { phone: String },
    Command { request_id: u64 },
}

impl Session {
    /// Asks `question`; `owes` answers wait for its reply (an [`Answer::Asked`] each).
    pub(super) fn ask(&mut self, question: Question, asked: Asked, owes: usize) {
        let ticket = self.next_ticket();
        for _ in 0..owes {
            self.answers.push(Answer::Asked { ticket });
        }
        self.ask_as(ticket, question, asked);
    }

    /// Asks `question` under `ticket`, whose answers the caller queued.
    pub(super) fn ask_as(&mut self, ticket: super::Ticket, question: Question, asked: Asked) {
        debug_assert!(self.asking.is_none(), "one question at a time");
        self.outputs.push_back(Output::Ask { ticket, question });
        self.asking = Some((ticket, asked));
    }

    /// Policy replied to the question out: finish what it was for.
    pub(super) fn answered(&mut self, now: Millis, ticket: super::Ticket, reply: Result<Reply, PolicyError>, ports: &Ports<'_>) {
        let Some((out, asked)) = self.asking.take() else { return };
        if out != ticket {
            // Not the question out (a driver's mistake): keep waiting for the right one.
            self.asking = Some((out, asked));
            return;
        }
        if let Err(e) = &reply {
            tracing::warn!(error = %e, "policy failed");
        }
        match asked {
            Asked::Route { from, batch } => self.routed(now, ticket, from, batch, reply, ports),
            Asked::Acks { user, items } => self.acks_answered(now, user, items, reply),
            Asked::Read { reader, id, sender } => self.read_answered(now, ticket, reader, id, sender, reply),
            Asked::RequestCode { phone } => {
                let frame = super::register::code_requested(phone, reply);
                self.replace(ticket, Answer::Ready(frame));
            }
            Asked::Verify { phone } => {
                let answer = self.verified(now, phone, reply, ports);
                self.replace(ticket, answer);
            }
            Asked::Command { request_id } => {
                let frame = super::command::result(request_id, reply);
                self.replace(ticket, Answer::Ready(frame));
            }
        }
    }

    /// Puts `answer` in the place of the first answer waiting for `ticket`.
    pub(super) fn replace(&mut self, ticket: super::Ticket, answer: Answer) {
        let (at, _) = self.answers.take(ticket).expect("an answer waits for the question");
        self.answers.put(at, answer);
    }
}

/// The reply as the variant `want` expects, or `None` for a failed call or a reply of the
/// wrong kind (a driver's mistake, logged).
pub(super) fn expect<T>(reply: Result<Reply, PolicyError>, want: impl FnOnce(Reply) -> Result<T, Reply>) -> Option<T> {
    match want(reply.ok()?) {
        Ok(value) => Some(value),
        Err(other) => {
            tracing::error!(reply = ?other, "policy answered a different question");
            None
        }
    }
}
