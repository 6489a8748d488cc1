//! A channel bounded in bytes as well as in items, between a connection's tasks: the
//! session's mailbox (encoded frames for the writer) and its inbox (decoded frames from the
//! reader). A sender waits while the bytes in the channel would pass the budget, so a
//! client that stops reading (or floods) holds up its own session, never the broker's
//! memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The sending side.
pub struct Sender<T> {
    tx: mpsc::Sender<(T, Held)>,
    budget: Arc<Semaphore>,
    /// Most permits one item takes: an item larger than the budget takes all of it.
    max_permits: u32,
    /// Bytes in this channel, added into a gauge shared by every channel of its kind.
    gauge: Arc<AtomicU64>,
}

/// The receiving side.
pub struct Receiver<T> {
    rx: mpsc::Receiver<(T, Held)>,
}

/// The bytes an item holds in its channel, released when the item is taken (or dropped).
struct Held {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    gauge: Arc<AtomicU64>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The receiver was dropped.
#[derive(Debug)]
pub struct Closed;

/// A channel of at most `items` items and `bytes` bytes (as the sender counts them); the
/// bytes waiting in it are added to `gauge`.
pub fn channel<T>(items: usize, bytes: usize, gauge: Arc<AtomicU64>) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel(items);
    let max_permits = u32::try_from(bytes).unwrap_or(u32::MAX).min(Semaphore::MAX_PERMITS as u32);
    let budget = Arc::new(Semaphore::new(max_permits as usize));
    (Sender { tx, budget, max_permits, gauge }, Receiver { rx })
}

impl<T> Sender<T> {
    /// Sends `item` of `bytes` bytes, waiting for room.
    pub async fn send(&self, item: T, bytes: usize) -> Result<(), Closed> {
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.max_permits);
        let permit = self.budget.clone().acquire_many_owned(permits).await.map_err(|_| Closed)?;
        self.gauge.fetch_add(bytes as u64, Ordering::Relaxed);
        let held = Held { _permit: permit, bytes: bytes as u64, gauge: self.gauge.clone() };
        self.tx.send((item, held)).await.map_err(|_| Closed)
    }

    /// Resolves once the receiver is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

impl<T> Receiver<T> {
    /// The next item; its bytes leave the budget now.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await.map(|(item, _held)| item)
    }

    /// The next item if one is waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok().map(|(item, _held)| item)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_full_budget_holds_the_sender_until_the_receiver_takes_bytes() {
        let gauge = Arc::new(AtomicU64::new(0));
        let (tx, mut rx) = channel::<Vec<u8>>(100, 1000, gauge.clone());
        tx.send(vec![0; 600], 600).await.unwrap();
        // 600 + 600 > 1000: the second send waits although the channel has item room.
        let blocked = tokio::time::timeout(Duration::from_millis(100), tx.send(vec![1; 600], 600)).await;
        assert!(blocked.is_err(), "a send past the byte budget went through");
        assert_eq!(gauge.load(Ordering::Relaxed), 600);
        assert_eq!(rx.recv().await.unwrap().len(), 600);
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
        tokio::time::timeout(Duration::from_millis(100), tx.send(vec![1; 600], 600)).await.unwrap().unwrap();
        // An item larger than the whole budget still goes through, alone.
        let (tx, mut rx) = channel::<Vec<u8>>(100, 1000, gauge.clone());
        let big = tokio::spawn(async move { tx.send(vec![2; 5000], 5000).await });
        assert_eq!(rx.recv().await.unwrap().len(), 5000);
        big.await.unwrap().unwrap();
    }
}
