//! What a plugin instance's store holds: its slot, its key-value space, WASI with nothing
//! granted, and its memory limit. Host interface implementations (`host_api/`) act on it.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::metrics::PluginCounters;
use crate::policy::Slot;
use crate::sms::SmsSender;
use crate::store::Store;

/// Data of one plugin instance's wasmtime store.
pub struct PluginState {
    pub(crate) slot: Slot,
    /// The version's short hash, for log lines.
    pub(crate) version: String,
    pub(crate) store: Store,
    pub(crate) sms: Arc<dyn SmsSender>,
    pub(crate) counters: Arc<PluginCounters>,
    pub(crate) limits: StoreLimits,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl PluginState {
    /// State for a new instance: no files, no network, no environment, no stdio.
    pub fn new(
        slot: Slot,
        version: String,
        store: Store,
        sms: Arc<dyn SmsSender>,
        counters: Arc<PluginCounters>,
        memory_limit: usize,
    ) -> Self {
        PluginState {
            slot,
            version,
            store,
            sms,
            counters,
            limits: StoreLimitsBuilder::new().memory_size(memory_limit).instances(64).tables(64).memories(16).build(),
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
