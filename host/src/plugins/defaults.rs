//! The built-in plugins, built from `plugins/` for wasm32-wasip2 by `build.rs` and embedded
//! in the binary. They are written into the plugin folder on first start.

use crate::policy::Slot;

const ROUTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/router.wasm"));
const REGISTRAR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/registrar.wasm"));
const RECEIPTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/receipts.wasm"));
const NOTIFIER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/notifier.wasm"));

/// The built-in component for `slot`.
pub fn bytes(slot: Slot) -> &'static [u8] {
    match slot {
        Slot::Router => ROUTER,
        Slot::Registrar => REGISTRAR,
        Slot::Receipts => RECEIPTS,
        Slot::Notifier => NOTIFIER,
    }
}
