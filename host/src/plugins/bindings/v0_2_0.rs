//! Host-side bindings of contract `wit/0.2.0` (the newest), one module per served slot
//! world. The registrar world imports every host interface, so its bindings define them; the
//! other worlds reuse those (`with`), so each host interface has one Rust trait, implemented
//! once in `host_api/`. The key-value imports may trap (a key or value over the limits).
//! The `notifier` world is new in this version: 0.1.0 has no notifier.

pub mod registrar {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "registrar",
        imports: { "hotline:plugin/kv": trappable },
    });
}

pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
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
        path: "../wit/0.2.0",
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

pub mod notifier {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "notifier",
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
