//! A channel bounded in bytes as well as in items, between a connection's tasks: the
//! session's mailbox (encoded frames for the writer). A sender waits while the bytes in the channel would pass the budget, so a
//! client that stops reading (or floods) holds up its own session, never the broker's
//! memory.
//!
//! Each channel also counts what waits in it ([`Load`]: items and bytes), which the
//! connection registry reads for the admin API and the queue gauges.

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
    /// Items and bytes in this channel alone.
    load: Arc<Load>,
}

/// What waits in one channel: items sent and not yet taken, and their bytes.
#[derive(Debug, Default)]
pub struct Load {
    items: AtomicU64,
    bytes: AtomicU64,
}

impl Load {
    /// Items waiting.
    pub fn items(&self) -> u64 {
        self.items.load(Ordering::Relaxed)
    }

    /// Bytes waiting (as the sender counted them).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
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
    load: Arc<Load>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.fetch_sub(self.bytes, Ordering::Relaxed);
        self.load.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        self.load.items.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The receiver was dropped.
#[derive(Debug)]
pub struct Closed;

/// A channel of at most `items` items and `bytes` bytes (as the sender counts them); the
/// bytes waiting in it are added to `gauge`, and items and bytes counted in `load`.
pub fn channel<T>(items: usize, bytes: usize, gauge: Arc<AtomicU64>, load: Arc<Load>) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel(items);
    let max_permits = u32::try_from(bytes).unwrap_or(u32::MAX).min(Semaphore::MAX_PERMITS as u32);
    let budget = Arc::new(Semaphore::new(max_permits as usize));
    (Sender { tx, budget, max_permits, gauge, load }, Receiver { rx })
}

impl<T> Sender<T> {
    /// Sends `item` of `bytes` bytes, waiting for room.
    pub async fn send(&self, item: T, bytes: usize) -> Result<(), Closed> {
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.max_permits);
        let permit = self.budget.clone().acquire_many_owned(permits).await.map_err(|_| Closed)?;
        self.gauge.fetch_add(bytes as u64, Ordering::Relaxed);
        self.load.items.fetch_add(1, Ordering::Relaxed);
        self.load.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let held = Held { _permit: permit, bytes: bytes as u64, gauge: self.gauge.clone(), load: self.load.clone() };
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_full_budget_holds_the_sender_until_the_receiver_takes_bytes() {
        let gauge = Arc::new(AtomicU64::new(0));
        let load = Arc::new(Load::default());
        let (tx, mut rx) = channel::<Vec<u8>>(100, 1000, gauge.clone(), load.clone());
        tx.send(vec![0; 600], 600).await.unwrap();
        assert_eq!((load.items(), load.bytes()), (1, 600));
        // 600 + 600 > 1000: the second send waits although the channel has item room.
        let blocked = tokio::time::timeout(Duration::from_millis(100), tx.send(vec![1; 600], 600)).await;
        assert!(blocked.is_err(), "a send past the byte budget went through");
        assert_eq!(gauge.load(Ordering::Relaxed), 600);
        assert_eq!(rx.recv().await.unwrap().len(), 600);
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
        assert_eq!((load.items(), load.bytes()), (0, 0));
        tokio::time::timeout(Duration::from_millis(100), tx.send(vec![1; 600], 600)).await.unwrap().unwrap();
        // An item larger than the whole budget still goes through, alone.
        let (tx, mut rx) = channel::<Vec<u8>>(100, 1000, gauge.clone(), Arc::default());
        let big = tokio::spawn(async move { tx.send(vec![2; 5000], 5000).await });
        assert_eq!(rx.recv().await.unwrap().len(), 5000);
        big.await.unwrap().unwrap();
    }
}
