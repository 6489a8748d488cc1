//! `hotline-plugin`: the Rust guest SDK for Hotline plugins — traits, plain types, export
//! macros over the wit-bindgen bindings of contract `hotline:plugin@0.2.0` (the newest,
//! [`CONTRACT_VERSION`]), and a native test host.
//!
//! A Hotline plugin is a WebAssembly component that fills one slot of the broker: **router**
//! (where messages go), **registrar** (registration by SMS code), **receipts** (which
//! receipts reach the sender) or **notifier** (whether to wake a device that is not
//! connected, contract 0.2.0). With this crate a plugin is a plain Rust type implementing
//! [`Plugin`] plus one slot trait ([`Router`], [`Registrar`], [`Receipts`] or [`Notifier`]), written and
//! unit-tested natively against [`testing::TestHost`], then exported with one macro line and
//! built for `wasm32-wasip2`.
//!
//! # A complete router
//!
//! `Cargo.toml`: a `cdylib` (the component) that is also an `rlib` (so `cargo test` works),
//! depending on this crate with **exactly one** slot feature:
//!
//! ```toml
//! [package]
//! name = "my-router"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! hotline-plugin = { version = "0.1", features = ["router"] }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use hotline_plugin::{Command, Host, Level, MessageMeta, Plugin, Route, Router};
//!
//! /// Delivers to E.164 numbers, refuses everything else, and lets users block senders.
//! #[derive(Default)]
//! pub struct MyRouter;
//!
//! impl Plugin for MyRouter {
//!     // `init` keeps its default (accept any config). Commands: `block +NUMBER`.
//!     fn handle_command(&self, host: &dyn Host, cmd: Command) -> Result<String, String> {
//!         match (cmd.name.as_str(), cmd.args.as_slice()) {
//!             ("block", [who]) => {
//!                 host.kv_set(format!("block/{}/{who}", cmd.from).as_bytes(), b"");
//!                 Ok(format!("blocked {who}"))
//!             }
//!             _ => Err(format!("unknown command `{}`", cmd.name)),
//!         }
//!     }
//! }
//!
//! impl Router for MyRouter {
//!     fn route(&self, host: &dyn Host, m: MessageMeta) -> Route {
//!         if !m.to.starts_with('+') {
//!             return Route::Reject(format!("cannot route to {:?}", m.to));
//!         }
//!         if host.kv_get(format!("block/{}/{}", m.to, m.from).as_bytes()).is_some() {
//!             host.log(Level::Debug, "blocked message dropped");
//!             return Route::Reject("you are blocked".into());
//!         }
//!         host.counter_add("routed", 1);
//!         Route::Deliver(vec![m.to])
//!     }
//! }
//!
//! // The component's exports: calls `MyRouter::default()` with the real host.
//! hotline_plugin::export_router!(MyRouter);
//!
//! // Unit tests run natively with `cargo test`, no wasm runtime:
//! # fn main() {
//! use hotline_plugin::testing::TestHost;
//! let host = TestHost::new();
//! let r = MyRouter;
//! let m = MessageMeta::new("+15550000001", "+15550000002");
//! assert_eq!(r.route(&host, m.clone()), Route::Deliver(vec!["+15550000002".into()]));
//! r.handle_command(&host, Command::new("+15550000002", "block", ["+15550000001"])).unwrap();
//! assert_eq!(r.route(&host, m), Route::Reject("you are blocked".into()));
//! assert_eq!(host.counter("routed"), 1);
//! # }
//! ```
//!
//! Build the component and drop it into the broker's plugin folder under its slot's name
//! (write a temporary file, then rename, so the broker never sees half a file):
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p my-router
//! cp target/wasm32-wasip2/release/my_router.wasm hotline-data/plugins/.router.tmp
//! mv hotline-data/plugins/.router.tmp hotline-data/plugins/router.wasm
//! ```
//!
//! # Features and targets
//!
//! The features `router`, `registrar`, `receipts` and `notifier` each generate the bindings
//! of one WIT world (modules `router_bindings`, `registrar_bindings`, `receipts_bindings`,
//! `notifier_bindings`). A plugin
//! enables exactly one: a wasm build with two slot features is refused at compile time (the
//! worlds' generated export macros would clash, and a component must carry only its own
//! world). The generated bindings exist only when compiling for `wasm32`; on a native target
//! the `export_*!` macros only check that the type implements the slot trait and
//! [`Default`], and [`WasmHost`] panics, so plugin crates build and test natively with any
//! combination of features (as a workspace-wide `cargo test` unifies them).
//!
//! A plugin value is made with `Default` for every call from the broker; keep it cheap and
//! keep state in the key-value store ([`Host::kv_get`] …), which outlives hot swaps and
//! restarts.
//!
//! # What contract 0.2.0 adds
//!
//! - [`MessageMeta::kind`] and [`ReceiptMeta::kind`]: a [`MessageKind`], `Text` or
//!   `Media(mime)`, as the sender declared it (the body stays unseen).
//! - Atomic key-value operations, safe when the broker runs several instances of the plugin
//!   at once: [`Host::kv_increment`] (a signed 64-bit counter stored as 8 bytes,
//!   little-endian) and [`Host::kv_compare_and_swap`] (read, compute, swap, retry on
//!   `false`); [`Host::kv_keys_after`] pages through keys.
//! - The key-value [`limits`]: the broker traps a call over them, [`testing::TestHost`]
//!   panics.
//! - The notifier slot: [`Notifier`] (`notify(queued) -> Decision`), [`Queued`],
//!   [`Decision`], the `notifier` feature and [`export_notifier!`].

// Lets the generated code and macros name this crate `hotline_plugin` from inside it too.
extern crate self as hotline_plugin;

mod host;
mod plugin;
pub mod testing;
mod types;

pub use host::{Host, WasmHost};
pub use plugin::{Notifier, Plugin, Receipts, Registrar, Router};
pub use types::{
    Command, Decision, Level, MessageKind, MessageMeta, Queued, ReceiptMeta, ReceiptStatus,
    Refusal, RefusalKind, Route,
};

/// The newest version of the WIT contract (`hotline:plugin`), `wit/<CONTRACT_VERSION>/`: the
/// one this SDK builds components against, the one `hotline plugins new` writes into new
/// projects, and the newest the broker serves (it also serves the older ones). Defined
/// here only; the broker and its templates use this constant.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// The contract version this SDK builds against (the name before 0.2.0).
#[deprecated(note = "use CONTRACT_VERSION")]
pub const API_VERSION: &str = CONTRACT_VERSION;

/// Limits of the key-value store, as the contract states them and the broker enforces them
/// (a call over one traps; [`testing::TestHost`] panics).
pub mod limits {
    /// Longest key, prefix or `after` argument, in bytes.
    pub const KV_MAX_KEY_BYTES: usize = 1024;
    /// Longest value, in bytes.
    pub const KV_MAX_VALUE_BYTES: usize = 65536;
    /// Most keys one `kv_keys` or `kv_keys_after` call answers, whatever its `limit`.
    pub const KV_MAX_KEYS_PER_CALL: u32 = 1024;
}

#[cfg(all(
    target_arch = "wasm32",
    any(
        all(feature = "router", feature = "registrar"),
        all(feature = "router", feature = "receipts"),
        all(feature = "registrar", feature = "receipts"),
        all(feature = "notifier", feature = "router"),
        all(feature = "notifier", feature = "registrar"),
        all(feature = "notifier", feature = "receipts"),
    )
))]
compile_error!(
    "hotline-plugin: a wasm build must enable exactly one of the features `router`, \
     `registrar`, `receipts`, `notifier` (build each plugin crate in its own cargo invocation, so that \
     feature unification does not merge them)"
);

#[cfg(all(target_arch = "wasm32", feature = "router"))]
pub mod router_bindings;

#[cfg(all(target_arch = "wasm32", feature = "registrar"))]
pub mod registrar_bindings;

#[cfg(all(target_arch = "wasm32", feature = "receipts"))]
pub mod receipts_bindings;

#[cfg(all(target_arch = "wasm32", feature = "notifier"))]
pub mod notifier_bindings;

#[doc(hidden)]
#[cfg(all(
    target_arch = "wasm32",
    any(
        feature = "router",
        feature = "registrar",
        feature = "receipts",
        feature = "notifier"
    )
))]
#[path = "glue.rs"]
pub mod __private;

/// Implements the `lifecycle` export of world module `$world` for `$export` by calling
/// `$plugin`. Used by the `export_*!` macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __hotline_lifecycle {
    ($world:ident, $export:ident, $plugin:ty) => {
        impl $crate::$world::exports::hotline::plugin::lifecycle::Guest for $export {
            fn init(
                config: ::std::string::String,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::__private::init::<$plugin>(config)
            }
            fn handle_command(
                command: $crate::$world::hotline::plugin::types::Command,
            ) -> ::core::result::Result<::std::string::String, ::std::string::String> {
                $crate::__private::handle_command::<$plugin>(command)
            }
        }
    };
}

/// On native targets the export macros only check the plugin type.
#[doc(hidden)]
#[macro_export]
macro_rules! __hotline_check {
    ($plugin:ty, $slot:path) => {
        const _: () = {
            fn __hotline_check<T: $slot + ::core::default::Default>() {}
            let _ = __hotline_check::<$plugin>;
        };
    };
}

/// Exports `T: Router + Default` as this component's router: every call from the broker
/// makes a `T::default()` and calls it with [`WasmHost`]. Use once, in the plugin crate's
/// `lib.rs`: `hotline_plugin::export_router!(MyRouter);`. Needs the `router` feature.
#[cfg(all(target_arch = "wasm32", feature = "router"))]
#[macro_export]
macro_rules! export_router {
    ($plugin:ty $(,)?) => {
        const _: () = {
            struct __HotlineRouter;
            $crate::__hotline_lifecycle!(router_bindings, __HotlineRouter, $plugin);
            impl $crate::router_bindings::exports::hotline::plugin::routing::Guest for __HotlineRouter {
                fn route(
                    message: $crate::router_bindings::hotline::plugin::types::MessageMeta,
                ) -> $crate::router_bindings::hotline::plugin::types::Destination {
                    $crate::__private::route::<$plugin>(message)
                }
                fn route_batch(
                    messages: ::std::vec::Vec<$crate::router_bindings::hotline::plugin::types::MessageMeta>,
                ) -> ::std::vec::Vec<$crate::router_bindings::hotline::plugin::types::Destination> {
                    $crate::__private::route_batch::<$plugin>(messages)
                }
            }
            $crate::router_bindings::export_router_world!(
                __HotlineRouter with_types_in $crate::router_bindings
            );
        };
    };
}

/// Exports `T: Router + Default` as this component's router (native build: checks the type).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_router {
    ($plugin:ty $(,)?) => {
        $crate::__hotline_check!($plugin, $crate::Router);
    };
}

/// Exports a router (this wasm build lacks the `router` feature).
#[cfg(all(target_arch = "wasm32", not(feature = "router")))]
#[macro_export]
macro_rules! export_router {
    ($($t:tt)*) => {
        ::core::compile_error!("export_router! needs hotline-plugin's `router` feature");
    };
}

/// Exports `T: Registrar + Default` as this component's registrar: every call from the broker
/// makes a `T::default()` and calls it with [`WasmHost`]. Use once, in the plugin crate's
/// `lib.rs`: `hotline_plugin::export_registrar!(MyRegistrar);`. Needs the `registrar` feature.
#[cfg(all(target_arch = "wasm32", feature = "registrar"))]
#[macro_export]
macro_rules! export_registrar {
    ($plugin:ty $(,)?) => {
        const _: () = {
            struct __HotlineRegistrar;
            $crate::__hotline_lifecycle!(registrar_bindings, __HotlineRegistrar, $plugin);
            impl $crate::registrar_bindings::exports::hotline::plugin::registration::Guest
                for __HotlineRegistrar
            {
                fn request_code(
                    phone: ::std::string::String,
                ) -> ::core::result::Result<
                    u32,
                    $crate::registrar_bindings::hotline::plugin::types::Refusal,
                > {
                    $crate::__private::request_code::<$plugin>(phone)
                }
                fn verify_code(
                    phone: ::std::string::String,
                    code: ::std::string::String,
                ) -> ::core::result::Result<
                    (),
                    $crate::registrar_bindings::hotline::plugin::types::Refusal,
                > {
                    $crate::__private::verify_code::<$plugin>(phone, code)
                }
            }
            $crate::registrar_bindings::export_registrar_world!(
                __HotlineRegistrar with_types_in $crate::registrar_bindings
            );
        };
    };
}

/// Exports `T: Registrar + Default` as this component's registrar (native build: checks the type).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_registrar {
    ($plugin:ty $(,)?) => {
        $crate::__hotline_check!($plugin, $crate::Registrar);
    };
}

/// Exports a registrar (this wasm build lacks the `registrar` feature).
#[cfg(all(target_arch = "wasm32", not(feature = "registrar")))]
#[macro_export]
macro_rules! export_registrar {
    ($($t:tt)*) => {
        ::core::compile_error!("export_registrar! needs hotline-plugin's `registrar` feature");
    };
}

/// Exports `T: Receipts + Default` as this component's receipts policy: every call from the
/// broker makes a `T::default()` and calls it with [`WasmHost`]. Use once, in the plugin
/// crate's `lib.rs`: `hotline_plugin::export_receipts!(MyReceipts);`. Needs the `receipts`
/// feature.
#[cfg(all(target_arch = "wasm32", feature = "receipts"))]
#[macro_export]
macro_rules! export_receipts {
    ($plugin:ty $(,)?) => {
        const _: () = {
            struct __HotlineReceipts;
            $crate::__hotline_lifecycle!(receipts_bindings, __HotlineReceipts, $plugin);
            impl $crate::receipts_bindings::exports::hotline::plugin::receipting::Guest
                for __HotlineReceipts
            {
                fn allow(
                    receipt: $crate::receipts_bindings::hotline::plugin::types::ReceiptMeta,
                ) -> bool {
                    $crate::__private::allow::<$plugin>(receipt)
                }
            }
            $crate::receipts_bindings::export_receipts_world!(
                __HotlineReceipts with_types_in $crate::receipts_bindings
            );
        };
    };
}

/// Exports `T: Receipts + Default` as this component's receipts policy (native build: checks
/// the type).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_receipts {
    ($plugin:ty $(,)?) => {
        $crate::__hotline_check!($plugin, $crate::Receipts);
    };
}

/// Exports a receipts policy (this wasm build lacks the `receipts` feature).
#[cfg(all(target_arch = "wasm32", not(feature = "receipts")))]
#[macro_export]
macro_rules! export_receipts {
    ($($t:tt)*) => {
        ::core::compile_error!("export_receipts! needs hotline-plugin's `receipts` feature");
    };
}

/// Exports `T: Notifier + Default` as this component's notifier: every call from the
/// broker makes a `T::default()` and calls it with [`WasmHost`]. Use once, in the plugin
/// crate's `lib.rs`: `hotline_plugin::export_notifier!(MyNotifier);`. Needs the `notifier`
/// feature.
#[cfg(all(target_arch = "wasm32", feature = "notifier"))]
#[macro_export]
macro_rules! export_notifier {
    ($plugin:ty $(,)?) => {
        const _: () = {
            struct __HotlineNotifier;
            $crate::__hotline_lifecycle!(notifier_bindings, __HotlineNotifier, $plugin);
            impl $crate::notifier_bindings::exports::hotline::plugin::notifying::Guest
                for __HotlineNotifier
            {
                fn notify(
                    item: $crate::notifier_bindings::exports::hotline::plugin::notifying::Queued,
                ) -> $crate::notifier_bindings::exports::hotline::plugin::notifying::Decision {
                    $crate::__private::notify::<$plugin>(item)
                }
            }
            $crate::notifier_bindings::export_notifier_world!(
                __HotlineNotifier with_types_in $crate::notifier_bindings
            );
        };
    };
}

/// Exports `T: Notifier + Default` as this component's notifier (native build: checks the
/// type).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_notifier {
    ($plugin:ty $(,)?) => {
        $crate::__hotline_check!($plugin, $crate::Notifier);
    };
}

/// Exports a notifier (this wasm build lacks the `notifier` feature).
#[cfg(all(target_arch = "wasm32", not(feature = "notifier")))]
#[macro_export]
macro_rules! export_notifier {
    ($($t:tt)*) => {
        ::core::compile_error!("export_notifier! needs hotline-plugin's `notifier` feature");
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestHost;

    #[derive(Default)]
    struct Minimal;
    impl Plugin for Minimal {}
    impl Router for Minimal {
        fn route(&self, _host: &dyn Host, m: MessageMeta) -> Route {
            Route::Deliver(vec![m.to])
        }
    }
    impl Receipts for Minimal {}
    impl Notifier for Minimal {}

    // The native export macros type-check and expand to nothing callable.
    export_router!(Minimal);
    export_receipts!(Minimal);
    export_notifier!(Minimal);

    #[test]
    fn defaults_accept_config_refuse_commands_batch_routes_and_allow_receipts() {
        let host = TestHost::new();
        assert_eq!(Minimal.init(&host, ""), Ok(()));
        assert_eq!(Minimal.init(&host, "anything = 1"), Ok(()));
        let err = Minimal
            .handle_command(&host, Command::new("+15550000001", "frobnicate", ["x"]))
            .unwrap_err();
        assert!(err.contains("frobnicate"), "{err}");

        let batch = vec![
            MessageMeta::new("+15550000001", "+15550000002"),
            MessageMeta::new("+15550000001", "+15550000003"),
        ];
        assert_eq!(
            Minimal.route_batch(&host, batch),
            vec![
                Route::Deliver(vec!["+15550000002".into()]),
                Route::Deliver(vec!["+15550000003".into()]),
            ]
        );

        let receipt = ReceiptMeta {
            message_id: 1,
            by: "+15550000002".into(),
            to: "+15550000001".into(),
            status: ReceiptStatus::Read,
            kind: MessageKind::Media("image/png".into()),
        };
        assert!(Minimal.allow(&host, receipt));
        assert_eq!(
            Minimal.notify(&host, Queued::new("+15550000002", 1)),
            Decision::Skip
        );
    }

    #[test]
    #[should_panic(expected = "TestHost")]
    fn wasm_host_panics_natively() {
        WasmHost.now_ms();
    }

    #[test]
    fn contract_version_matches_the_contract_folder_the_bindings_read() {
        assert_eq!(CONTRACT_VERSION, "0.2.0");
        let wit = include_str!("../../../wit/0.2.0/plugin.wit");
        assert!(wit.contains(&format!("package hotline:plugin@{CONTRACT_VERSION};")));
        for bindings in [
            include_str!("router_bindings.rs"),
            include_str!("registrar_bindings.rs"),
            include_str!("receipts_bindings.rs"),
            include_str!("notifier_bindings.rs"),
        ] {
            assert!(bindings.contains(&format!("\"../../wit/{CONTRACT_VERSION}\"")));
        }
        // The limits the SDK states are the contract's (its doc comments read as prose,
        // whatever their line breaks).
        let prose = wit.replace("\n    /// ", " ").replace("\n/// ", " ");
        assert!(prose.contains(&format!(
            "a key is at most {} bytes",
            limits::KV_MAX_KEY_BYTES
        )));
        assert!(prose.contains(&format!(
            "a value at most {} bytes",
            limits::KV_MAX_VALUE_BYTES
        )));
        assert!(prose.contains(&format!(
            "at most {} keys per call",
            limits::KV_MAX_KEYS_PER_CALL
        )));
    }

    #[test]
    fn refusal_displays_kind_and_reason() {
        let r = Refusal::new(RefusalKind::RateLimited, "slow down");
        assert_eq!(r.to_string(), "rate-limited: slow down");
    }
}
