//! Host-side bindings of the plugin contract `wit/0.1.0`, one module per slot world.
//!
//! The registrar world imports every host interface, so its bindings define them; the other
//! worlds reuse those (`with`), so each host interface has one Rust trait, implemented once
//! in `host_api/`.

pub mod registrar {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "registrar",
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

pub use registrar::hotline::plugin::types;
