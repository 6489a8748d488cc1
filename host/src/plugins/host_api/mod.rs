//! The host interfaces plugins import, one file per WIT interface, implemented on
//! [`PluginState`](super::state::PluginState). Plugins get these capabilities and nothing else.

mod clock;
mod kv;
mod log;
mod metrics;
mod random;
mod sms;

use super::bindings::types;
use super::state::PluginState;

impl types::Host for PluginState {}
