//! The traits a plugin implements: `Plugin` (lifecycle, every slot) and one slot trait each
//! for `Router`, `Registrar`, `Receipts` and `Notifier`, with sensible defaults.

use crate::host::Host;
use crate::types::{Command, Decision, MessageMeta, Queued, ReceiptMeta, Refusal, Route};

/// What every slot does: take its config and answer commands from clients.
///
/// A plugin value is made with `Default` for each call from the broker, so keep it cheap
/// (usually a unit struct) and keep state in the host's key-value store, which outlives hot
/// swaps and restarts.
pub trait Plugin {
    /// Called when the broker loads this version, with the slot's config (TOML text, may be
    /// empty). An error refuses the version. Default: accept anything.
    fn init(&self, host: &dyn Host, config: &str) -> Result<(), String> {
        let _ = (host, config);
        Ok(())
    }

    /// A command from a client; the `Ok` text or the error reaches the client. Default:
    /// every command is unknown.
    fn handle_command(&self, host: &dyn Host, cmd: Command) -> Result<String, String> {
        let _ = host;
        Err(format!("unknown command `{}`", cmd.name))
    }
}

/// The router slot: decides where each message goes.
pub trait Router: Plugin {
    /// Where one message goes.
    fn route(&self, host: &dyn Host, message: MessageMeta) -> Route;

    /// Several messages at once (the broker batches pipelined sends); one answer each, in
    /// order. Default: `route` for each.
    fn route_batch(&self, host: &dyn Host, messages: Vec<MessageMeta>) -> Vec<Route> {
        messages.into_iter().map(|m| self.route(host, m)).collect()
    }
}

/// The registrar slot: decides registration by SMS code.
pub trait Registrar: Plugin {
    /// A code was asked for `phone`: send it (with [`Host::sms_send`]) and answer how long it
    /// is valid, in seconds, or refuse.
    fn request_code(&self, host: &dyn Host, phone: &str) -> Result<u32, Refusal>;

    /// `code` was sent back for `phone`: accept or refuse.
    fn verify_code(&self, host: &dyn Host, phone: &str, code: &str) -> Result<(), Refusal>;
}

/// The receipts slot: decides which receipts reach the message's sender.
pub trait Receipts: Plugin {
    /// Whether this receipt reaches the message's sender. Default: always.
    fn allow(&self, host: &dyn Host, receipt: ReceiptMeta) -> bool {
        let _ = (host, receipt);
        true
    }
}

/// The notifier slot (contract 0.2.0): decides whether to wake the device of a number with
/// no connected session when an item is queued for it, and with what payload (the broker
/// posts it to the configured push gateway; never put the body there: the plugin never
/// sees it anyway).
pub trait Notifier: Plugin {
    /// An item was queued for `queued.number`, which has no connection. Default: skip.
    fn notify(&self, host: &dyn Host, queued: Queued) -> Decision {
        let _ = (host, queued);
        Decision::Skip
    }
}
