//! Glue between the generated export traits and the SDK's traits: type conversions and the
//! functions the `export_*!` macros call. Hidden; only compiled for wasm32 with a slot feature.

use crate::host::WasmHost;
use crate::plugin::Plugin;
use crate::types as plain;

#[cfg(all(
    feature = "notifier",
    not(feature = "router"),
    not(feature = "registrar"),
    not(feature = "receipts")
))]
use crate::notifier_bindings as world;
#[cfg(all(
    feature = "receipts",
    not(feature = "router"),
    not(feature = "registrar")
))]
use crate::receipts_bindings as world;
#[cfg(all(feature = "registrar", not(feature = "router")))]
use crate::registrar_bindings as world;
#[cfg(feature = "router")]
use crate::router_bindings as world;

use world::hotline::plugin::types as wit;

#[cfg_attr(
    not(any(feature = "router", feature = "receipts", feature = "notifier")),
    allow(dead_code)
)]
fn kind(k: wit::MessageKind) -> plain::MessageKind {
    match k {
        wit::MessageKind::Text => plain::MessageKind::Text,
        wit::MessageKind::Media(mime) => plain::MessageKind::Media(mime),
    }
}

fn command(c: wit::Command) -> plain::Command {
    plain::Command {
        from: c.from,
        name: c.name,
        args: c.args,
    }
}

pub fn init<T: Plugin + Default>(config: String) -> Result<(), String> {
    T::default().init(&WasmHost, &config)
}

pub fn handle_command<T: Plugin + Default>(cmd: wit::Command) -> Result<String, String> {
    T::default().handle_command(&WasmHost, command(cmd))
}

#[cfg(feature = "router")]
mod router {
    use super::{plain, wit, WasmHost};
    use crate::plugin::Router;

    fn meta(m: wit::MessageMeta) -> plain::MessageMeta {
        plain::MessageMeta {
            from: m.from,
            to: m.to,
            size: m.size,
            at_ms: m.at_ms,
            kind: super::kind(m.kind),
        }
    }

    fn route_out(r: plain::Route) -> wit::Destination {
        match r {
            plain::Route::Deliver(to) => wit::Destination::Deliver(to),
            plain::Route::Reject(reason) => wit::Destination::Reject(reason),
        }
    }

    pub fn route<T: Router + Default>(m: wit::MessageMeta) -> wit::Destination {
        route_out(T::default().route(&WasmHost, meta(m)))
    }

    pub fn route_batch<T: Router + Default>(ms: Vec<wit::MessageMeta>) -> Vec<wit::Destination> {
        let n = ms.len();
        let routes = T::default().route_batch(&WasmHost, ms.into_iter().map(meta).collect());
        // The contract promises one answer per message; a plugin that breaks that would
        // make the broker misroute, so refuse the batch loudly instead.
        assert_eq!(
            routes.len(),
            n,
            "route_batch must answer once per message, in order"
        );
        routes.into_iter().map(route_out).collect()
    }
}
#[cfg(feature = "router")]
pub use router::*;

#[cfg(feature = "registrar")]
mod registrar {
    use super::{plain, wit, WasmHost};
    use crate::plugin::Registrar;

    fn refusal(r: plain::Refusal) -> wit::Refusal {
        use plain::RefusalKind as K;
        use wit::RefusalKind as W;
        wit::Refusal {
            kind: match r.kind {
                K::Rejected => W::Rejected,
                K::RateLimited => W::RateLimited,
                K::WrongCode => W::WrongCode,
                K::CodeExpired => W::CodeExpired,
                K::Unavailable => W::Unavailable,
            },
            reason: r.reason,
        }
    }

    pub fn request_code<T: Registrar + Default>(phone: String) -> Result<u32, wit::Refusal> {
        T::default()
            .request_code(&WasmHost, &phone)
            .map_err(refusal)
    }

    pub fn verify_code<T: Registrar + Default>(
        phone: String,
        code: String,
    ) -> Result<(), wit::Refusal> {
        T::default()
            .verify_code(&WasmHost, &phone, &code)
            .map_err(refusal)
    }
}
#[cfg(feature = "registrar")]
pub use registrar::*;

#[cfg(feature = "receipts")]
mod receipts {
    use super::{plain, wit, WasmHost};
    use crate::plugin::Receipts;

    pub fn allow<T: Receipts + Default>(r: wit::ReceiptMeta) -> bool {
        let receipt = plain::ReceiptMeta {
            message_id: r.message_id,
            by: r.by,
            to: r.to,
            status: match r.status {
                wit::ReceiptStatus::Delivered => plain::ReceiptStatus::Delivered,
                wit::ReceiptStatus::Read => plain::ReceiptStatus::Read,
            },
            kind: super::kind(r.kind),
        };
        T::default().allow(&WasmHost, receipt)
    }
}
#[cfg(feature = "receipts")]
pub use receipts::*;

#[cfg(feature = "notifier")]
mod notifier {
    use super::{plain, WasmHost};
    use crate::plugin::Notifier;

    use super::world::exports::hotline::plugin::notifying as wit;

    pub fn notify<T: Notifier + Default>(q: wit::Queued) -> wit::Decision {
        let queued = plain::Queued {
            number: q.number,
            waiting: q.waiting,
            kind: super::kind(q.kind),
            at_ms: q.at_ms,
        };
        match T::default().notify(&WasmHost, queued) {
            plain::Decision::Skip => wit::Decision::Skip,
            plain::Decision::Wake(payload) => wit::Decision::Wake(payload),
        }
    }
}
#[cfg(feature = "notifier")]
pub use notifier::*;
