//! Key layouts. Queue keys sort by user, then by id: `user 0x00 id(u64 big-endian)`.

/// Key of item `id` in `user`'s queue.
pub fn queue_key(user: &str, id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 9);
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The prefix of every key of `user`'s queue (also of its delivered records).
pub fn queue_prefix(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 1);
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k
}

/// The id part of a queue key.
pub fn queue_key_id(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[key.len() - 8..].try_into().expect("queue key ends in a u64"))
}

/// The user part of a queue key.
pub fn queue_key_user(key: &[u8]) -> &str {
    std::str::from_utf8(&key[..key.len() - 9]).unwrap_or("<invalid>")
}

/// Key of the idempotency record of `(sender, client_id)`.
pub fn idempotency_key(sender: &str, client_id: u64) -> Vec<u8> {
    queue_key(sender, client_id)
}

/// Key of `key` in a plugin's key-value `space`.
pub fn kv_key(space: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(space.len() + 1 + key.len());
    k.extend_from_slice(space.as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

/// Meta key holding the reserved upper bound of item ids.
pub const ID_HIGH_WATER: &[u8] = b"id_high_water";

/// Meta key holding when (Unix ms) storage maintenance last compacted something (written by
/// the maintenance thread: the write lets fjall release the tables the compaction replaced).
pub const LAST_COMPACTION: &[u8] = b"last_compaction_ms";
