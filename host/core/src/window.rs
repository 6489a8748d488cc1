//! The delivery window of one online session, the only place that decides what is pushed:
//! the cursor (highest id pushed), the in-flight set (pushed, not yet acknowledged), its
//! capacity, and the durable watermark it reads below.
//!
//! Invariants it keeps: an item is pushed at most once per session, in id order, only when
//! durable, and never more than `capacity` at a time unacknowledged. A new session starts
//! at cursor 0, so whatever a broken connection left unacknowledged is pushed again under
//! the same id.

use std::collections::BTreeSet;

/// Which queue items to read next: ids in `after+1..=upto`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRead {
    pub after: u64,
    pub upto: u64,
    pub limit: usize,
}

/// One session's window.
#[derive(Debug)]
pub struct DeliveryWindow {
    /// Highest item id pushed.
    cursor: u64,
    /// Items pushed and not yet acknowledged.
    in_flight: BTreeSet<u64>,
    /// Most items in flight at once (`limits.delivery_window`).
    capacity: usize,
    /// Whether the queue may hold durable items after the cursor that were not looked for
    /// (set by a wake-up or a freed slot; cleared when a read comes back short).
    stale: bool,
}

impl DeliveryWindow {
    /// A window that has pushed nothing; its first read starts at the queue's head.
    pub fn new(capacity: usize) -> DeliveryWindow {
        DeliveryWindow { cursor: 0, in_flight: BTreeSet::new(), capacity, stale: true }
    }

    /// The next read, if the window has room and new items may be there: after the cursor,
    /// up to the durable watermark `durable`, at most `chunk` items.
    pub fn next_read(&self, durable: u64, chunk: usize) -> Option<QueueRead> {
        let room = self.capacity.saturating_sub(self.in_flight.len());
        if !self.stale || room == 0 || durable <= self.cursor {
            return None;
        }
        Some(QueueRead { after: self.cursor, upto: durable, limit: room.min(chunk) })
    }

    /// Records what `read` found: each item is pushed (cursor and in-flight), and a short
    /// read means the queue holds nothing more for now.
    pub fn pushed(&mut self, read: QueueRead, ids: impl IntoIterator<Item = u64>) {
        let mut found = 0;
        for id in ids {
            assert!(id > self.cursor && id <= read.upto, "item {id} outside the window's read {read:?}");
            self.cursor = id;
            self.in_flight.insert(id);
            found += 1;
        }
        if found < read.limit {
            self.stale = false;
        }
    }

    /// The user's queue gained durable items.
    pub fn woken(&mut self) {
        self.stale = true;
    }

    /// The client acknowledged `id`; frees its slot. Answers whether it was in flight.
    pub fn acked(&mut self, id: u64) -> bool {
        let freed = self.in_flight.remove(&id);
        if freed {
            self.stale = true;
        }
        freed
    }

    /// Highest item id pushed.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Items pushed and not yet acknowledged.
    pub fn in_flight(&self) -> &BTreeSet<u64> {
        &self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_below_the_durable_watermark_and_within_capacity() {
        let mut w = DeliveryWindow::new(3);
        assert_eq!(w.next_read(0, 32), None, "nothing durable yet");
        let read = w.next_read(10, 32).unwrap();
        assert_eq!(read, QueueRead { after: 0, upto: 10, limit: 3 });
        w.pushed(read, [2, 5, 7]);
        assert_eq!(w.next_read(10, 32), None, "window full");
        assert!(w.acked(5));
        let read = w.next_read(10, 32).unwrap();
        assert_eq!(read, QueueRead { after: 7, upto: 10, limit: 1 });
        w.pushed(read, []);
        assert_eq!(w.next_read(10, 32), None, "a short read means nothing more until woken");
        w.woken();
        assert_eq!(w.next_read(12, 32), Some(QueueRead { after: 7, upto: 12, limit: 1 }));
    }

    #[test]
    fn an_ack_of_an_item_not_in_flight_frees_nothing() {
        let mut w = DeliveryWindow::new(1);
        let read = w.next_read(5, 32).unwrap();
        w.pushed(read, [1]);
        assert!(!w.acked(4));
        assert_eq!(w.next_read(5, 32), None);
    }
}
