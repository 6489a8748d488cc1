//! Names and partitioning: every stream, bucket, subject, key and deduplication id the
//! cluster uses, derived from `cluster.prefix`, and the cluster's message ids
//! (`partition << 48 | sequence`). Written once here; the rest of `cluster/` asks.

use crate::config::ClusterConfig;

/// Bits of a cluster message id that hold the item's sequence in its partition stream.
const SEQ_BITS: u32 = 48;

/// FNV-1a, 64 bits: the hash that maps a number to its partition. Stable across builds and
/// machines (never Rust's `DefaultHasher`), because every node must agree forever.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The partition (mailbox stream) that holds `user`'s items.
pub fn partition_of(user: &str, partitions: u16) -> u16 {
    (fnv1a64(user.as_bytes()) % u64::from(partitions.max(1))) as u16
}

/// A user's name as one subject token or key: an E.164 number without its `+` (digits),
/// any other name hex-encoded behind an `x` (so no `.`, `*`, `>` or space ever reaches a
/// subject, and two names never share a token).
pub fn token(user: &str) -> String {
    match user.strip_prefix('+') {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits.to_string(),
        _ => format!("x{}", hex::encode(user.as_bytes())),
    }
}

/// The cluster message id of the item at `seq` in partition `partition`.
pub fn message_id(partition: u16, seq: u64) -> u64 {
    (u64::from(partition) << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1))
}

/// The partition and sequence an id names.
pub fn split_id(id: u64) -> (u16, u64) {
    ((id >> SEQ_BITS) as u16, id & ((1 << SEQ_BITS) - 1))
}

/// Every name of one cluster (one prefix, one partition count) and this node's.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
    partitions: u16,
    node: String,
}

impl Names {
    pub fn new(config: &ClusterConfig) -> Names {
        Names { prefix: config.prefix.clone(), partitions: config.partitions, node: config.node().to_string() }
    }

    /// Number of mailbox partitions.
    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The mailbox stream of partition `n`: `<PREFIX>_MBOX_<n>`.
    pub fn stream(&self, n: u16) -> String {
        format!("{}_MBOX_{n}", self.prefix.to_uppercase())
    }

    /// The subjects of partition `n`'s stream: `<prefix>.mbox.<n>.>`.
    pub fn stream_subjects(&self, n: u16) -> String {
        format!("{}.mbox.{n}.>", self.prefix)
    }

    /// `user`'s mailbox subject: `<prefix>.mbox.<partition>.<token>`.
    pub fn subject(&self, user: &str) -> String {
        format!("{}.mbox.{}.{}", self.prefix, partition_of(user, self.partitions), token(user))
    }

    /// `user`'s partition.
    pub fn partition(&self, user: &str) -> u16 {
        partition_of(user, self.partitions)
    }

    /// A key-value bucket: `<prefix>_<what>` (`accounts`, `sessions`, `idem`, `delivered`,
    /// `push`).
    pub fn bucket(&self, what: &str) -> String {
        format!("{}_{what}", self.prefix)
    }

    /// The subject node `node` listens to for kicks.
    pub fn kick_subject(&self, node: &str) -> String {
        format!("{}.node.{node}.kick", self.prefix)
    }

    /// The key of `(from, client_id)` in the idempotency bucket.
    pub fn idem_key(from: &str, client_id: u64) -> String {
        format!("{}.{client_id}", token(from))
    }

    /// The key of `reader`'s delivered record of item `id`.
    pub fn delivered_key(reader: &str, id: u64) -> String {
        format!("{}.{id}", token(reader))
    }

    /// The deduplication id of the copy of `(from, client_id)` for `recipient`.
    pub fn send_msg_id(from: &str, client_id: u64, recipient: &str) -> String {
        format!("m:{}:{client_id}:{}", token(from), token(recipient))
    }

    /// The deduplication id of the receipt `reader` makes about item `id` (`d` delivered,
    /// `r` read).
    pub fn receipt_msg_id(reader: &str, id: u64, status: char) -> String {
        format!("r:{}:{id}:{status}", token(reader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_digits_for_numbers_and_hex_for_anything_else() {
        assert_eq!(token("+4915112345678"), "4915112345678");
        assert_eq!(token("+"), "x2b");
        assert_eq!(token("a.b"), "x612e62");
        assert_ne!(token("+12"), token("x3132"));
    }

    #[test]
    fn ids_round_trip_and_partitions_are_stable() {
        let id = message_id(5, 123_456);
        assert_eq!(split_id(id), (5, 123_456));
        assert!(message_id(0, 2) > message_id(0, 1));
        // FNV-1a of the empty input is its offset basis; pinned so nodes of different
        // builds agree.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert!(partition_of("+15550001", 8) < 8);
    }
}
