//! `Read`: the user read a message; queue a read receipt for its sender if policy says so.
//!
//! A `Read{id, from}` must name a message that was delivered to the reader (acknowledged)
//! from `from` and not yet reported read: the `Ack` stored that fact (a delivered record)
//! and the first `Read` consumes it. The check runs in commit order ([`Job::CheckDelivered`]),
//! so the session's own `Ack` just before counts; anything else is refused, so no one can
//! make anyone receive a receipt for a message never delivered, or receive it twice.

use hotline_protocol::{is_e164, ErrorCode, ReceiptStatus};

use super::ask::{expect, Asked};
use super::{Answer, Session, Stage, Ticket};
use crate::jobs::{Job, JobOutcome};
use crate::policy::{PolicyError, Question, ReceiptMeta, Reply};
use crate::ports::StorageFailure;
use crate::text::{error, quote};
use crate::Millis;

impl Session {
    /// Starts the check; no frame is read until it is back. Answers only on refusal.
    pub(super) fn read(&mut self, id: u64, sender: String) {
        let Stage::Online { phone, .. } = &self.stage else { return };
        if !is_e164(&sender) {
            return self.answers.ready(error(ErrorCode::InvalidArgument, format!("{} is not an E.164 number", quote(&sender))));
        }
        let reader = phone.clone();
        let ticket = self.submit(Job::CheckDelivered { reader, id });
        self.barrier = Some(ticket);
        self.answers.push(Answer::ReadChecked { ticket, id, sender });
    }

    /// The check came back: refuse, or ask policy whether the sender gets a read receipt.
    /// The answer owed: a refusal, or one waiting for policy.
    pub(super) fn read_checked(&mut self, id: u64, sender: String, result: Result<JobOutcome, StorageFailure>) -> Option<Answer> {
        let Stage::Online { phone, .. } = &self.stage else { return None };
        let reader = phone.clone();
        let record = match result {
            Ok(JobOutcome::Delivered(record)) => record,
            Ok(other) => unreachable!("a delivered check answered {other:?}"),
            Err(e) => return Some(Answer::Ready(error(ErrorCode::Retryable, format!("{e}; retry")))),
        };
        let Some(record) = record.filter(|r| r.from == sender) else {
            return Some(Answer::Ready(error(
                ErrorCode::InvalidArgument,
                format!("no message {id} from {sender} was delivered to you and left unread; acknowledge a message before reporting it read, once"),
            )));
        };
        let meta = ReceiptMeta { message_id: id, by: reader.clone(), to: sender.clone(), status: ReceiptStatus::Read, kind: record.kind };
        let ticket = self.next_ticket();
        self.ask_as(ticket, Question::Receipts(vec![meta]), Asked::Read { reader, id, sender });
        Some(Answer::Asked { ticket })
    }

    /// Policy said whether the sender gets the read receipt: submit it (checked again in
    /// the job: of two `Read`s racing, only the first makes a receipt). Answers only if
    /// policy failed.
    pub(super) fn read_answered(&mut self, now: Millis, ticket: Ticket, reader: String, id: u64, sender: String, reply: Result<Reply, PolicyError>) {
        let (at, _) = self.answers.take(ticket).expect("the read's answer waits");
        match expect(reply, |r| if let Reply::Receipts(allowed) = r { Ok(allowed) } else { Err(r) }).as_deref() {
            Some(&[receipt]) => {
                self.submit(Job::Read { reader, id, sender, receipt, at_ms: now });
            }
            _ => self.answers.put(at, Answer::Ready(error(ErrorCode::Retryable, "receipts are unavailable right now; retry"))),
        }
    }
}
