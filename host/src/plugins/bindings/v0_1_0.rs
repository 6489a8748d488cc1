//! Host-side bindings of the frozen contract `wit/0.1.0`, one module per slot world, and
//! the conversions between its types and the newest ones: arguments go down (fields 0.1.0
//! lacks, such as the message's kind, are dropped), answers come up. Its host interfaces
//! delegate to the newest ones (`host_api/v0_1_0.rs`). The key-value imports may trap (a
//! key or value over the limits).

use super::latest;

pub mod registrar {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "registrar",
        imports: { "hotline:plugin/kv": trappable },
    });
}

pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "router",
        with: {
            "hotline:plugin/types": super::registrar::hotline::plugin::types,
            "hotline:plugin/kv": super::registrar::hotline::plugin::kv,
            "hotline:plugin/log": super::registrar::hotline::plugin::log,
            "hotline:plugin/clock": super::registrar::hotline::plugin::clock,
            "hotline:plugin/random": super::registrar::hotline::plugin::random,
            "hotline:plugin/metrics": super::registrar::hotline::plugin::metrics,
        },
    });
}

pub mod receipts {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "receipts",
        with: {
            "hotline:plugin/types": super::registrar::hotline::plugin::types,
            "hotline:plugin/kv": super::registrar::hotline::plugin::kv,
            "hotline:plugin/log": super::registrar::hotline::plugin::log,
            "hotline:plugin/clock": super::registrar::hotline::plugin::clock,
            "hotline:plugin/random": super::registrar::hotline::plugin::random,
            "hotline:plugin/metrics": super::registrar::hotline::plugin::metrics,
        },
    });
}

pub use registrar::hotline::plugin::{clock, kv, log, metrics, random, sms, types};

impl From<latest::types::MessageMeta> for types::MessageMeta {
    /// 0.1.0 has no kind: a router built against it sees every message as it always did.
    fn from(m: latest::types::MessageMeta) -> Self {
        types::MessageMeta { from: m.from, to: m.to, size: m.size, at_ms: m.at_ms }
    }
}

impl From<latest::types::ReceiptStatus> for types::ReceiptStatus {
    fn from(s: latest::types::ReceiptStatus) -> Self {
        match s {
            latest::types::ReceiptStatus::Delivered => types::ReceiptStatus::Delivered,
            latest::types::ReceiptStatus::Read => types::ReceiptStatus::Read,
        }
    }
}

impl From<latest::types::ReceiptMeta> for types::ReceiptMeta {
    fn from(r: latest::types::ReceiptMeta) -> Self {
        types::ReceiptMeta { message_id: r.message_id, by: r.by, to: r.to, status: r.status.into() }
    }
}

impl From<latest::types::Command> for types::Command {
    fn from(c: latest::types::Command) -> Self {
        types::Command { from: c.from, name: c.name, args: c.args }
    }
}

impl From<types::Destination> for latest::types::Destination {
    fn from(d: types::Destination) -> Self {
        match d {
            types::Destination::Deliver(to) => latest::types::Destination::Deliver(to),
            types::Destination::Reject(reason) => latest::types::Destination::Reject(reason),
        }
    }
}

impl From<types::Refusal> for latest::types::Refusal {
    fn from(r: types::Refusal) -> Self {
        use latest::types::RefusalKind as New;
        use types::RefusalKind as Old;
        let kind = match r.kind {
            Old::Rejected => New::Rejected,
            Old::RateLimited => New::RateLimited,
            Old::WrongCode => New::WrongCode,
            Old::CodeExpired => New::CodeExpired,
            Old::Unavailable => New::Unavailable,
        };
        latest::types::Refusal { kind, reason: r.reason }
    }
}

impl From<log::Level> for latest::log::Level {
    fn from(l: log::Level) -> Self {
        match l {
            log::Level::Debug => latest::log::Level::Debug,
            log::Level::Info => latest::log::Level::Info,
            log::Level::Warn => latest::log::Level::Warn,
            log::Level::Error => latest::log::Level::Error,
        }
    }
}
