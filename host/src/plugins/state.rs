//! What a plugin instance's store holds: its slot, its key-value space, WASI with nothing
//! granted, its memory limit and its call's deadline. Host interface implementations
//! (`host_api/`) act on it.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::metrics::PluginCounters;
use crate::policy::Slot;
use crate::sms::Text;
use super::kv_backend::PluginKv;

/// Data of one plugin instance's wasmtime store.
pub struct PluginState {
    pub(crate) slot: Slot,
    /// The version's short hash, for log lines.
    pub(crate) version: String,
    /// Where the slot's key-value space lives.
    pub(crate) kv: Arc<dyn PluginKv>,
    /// The text the running call asked to send (`sms.send`, at most one per call): the
    /// host sends it once the call returned (see [`crate::sms`]).
    pub(crate) text: Option<Text>,
    pub(crate) counters: Arc<PluginCounters>,
    pub(crate) limits: MemoryLimiter,
    /// When the running call (or `init`) reaches its time limit: a WASI call that blocks
    /// (`wasi:io/poll`) is cut off there, since the epoch deadline cannot interrupt a host
    /// call (see `runtime::add_bounded_poll`).
    pub(crate) deadline: Option<Instant>,
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
}

/// A guest blocked in a WASI call (a sleep, a poll) until its call's time limit: the call
/// fails as a time-out, like one that runs past the epoch deadline.
#[derive(Debug, thiserror::Error)]
#[error("blocked in a WASI call (wasi:io/poll) until the time limit")]
pub struct BlockedPastDeadline;

impl PluginState {
    /// State for a new instance: no files, no network, no environment, no stdio.
    pub fn new(
        slot: Slot,
        version: String,
        kv: Arc<dyn PluginKv>,
        counters: Arc<PluginCounters>,
        memory_limit: usize,
    ) -> Self {
        PluginState {
            slot,
            version,
            kv,
            text: None,
            counters,
            limits: MemoryLimiter {
                limits: StoreLimitsBuilder::new().memory_size(memory_limit).instances(64).tables(64).memories(16).build(),
                memory_bytes: 0,
                refused_growth: false,
            },
            deadline: None,
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The memory cap of an instance (wasmtime's `StoreLimits`), counting the linear memory
/// the instance holds so the pool can recycle instances that keep growing.
pub struct MemoryLimiter {
    limits: StoreLimits,
    /// Bytes of linear memory of all the instance's memories.
    pub(crate) memory_bytes: usize,
    /// Set when the cap refused a growth (reset before each call): a call that then fails
    /// failed for want of memory.
    pub(crate) refused_growth: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        match allowed {
            Ok(true) => self.memory_bytes += desired.saturating_sub(current),
            Ok(false) | Err(_) => self.refused_growth = true,
        }
        allowed
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
