//! The host interfaces plugins import, one file per WIT interface of the newest contract,
//! implemented on [`PluginState`](super::state::PluginState); `v0_1_0.rs` implements the
//! older contract's by delegating to them. Plugins get these capabilities and nothing else.

mod clock;
pub mod kv;
mod log;
mod metrics;
mod random;
mod sms;
mod v0_1_0;

use super::bindings::types;
use super::state::PluginState;

impl types::Host for PluginState {}
