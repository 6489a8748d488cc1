//! {{name}}: a Hotline notifier plugin (contract 0.2.0 and later). It decides whether to
//! wake the device of a number that has no connection when a message is queued for it,
//! and with what payload (the broker posts it to the push gateway).
//!
//! This one wakes only for a new backlog (the first waiting item). Counter: `woken`.
//! Command: `hello`.
//!
//! How Rust maps to the contract (wit/plugin.wit, world `{{slot}}`):
//! - `wit_bindgen::generate!` reads the WIT at compile time and writes the bindings.
//! - What the broker provides (the world's imports) are plain functions, e.g.
//!   `hotline::plugin::metrics::counter_add("woken", 1)`.
//! - What the plugin provides (the exports) are traits named `Guest`, one per interface
//!   (`lifecycle`, `notifying`), implemented below on `Plugin` and registered with
//!   `export!`.
//! - A panic is a trap: the call fails and nobody is woken.

wit_bindgen::generate!({ world: "{{slot}}", path: "wit" });

use exports::hotline::plugin::notifying::{self, Decision, Queued};
use exports::hotline::plugin::lifecycle;
use hotline::plugin::log::{self, Level};
use hotline::plugin::metrics;
use hotline::plugin::types::Command;

struct Plugin;

impl lifecycle::Guest for Plugin {
    /// Called on every new instance (the broker keeps several) before any other call, with
    /// the slot's config text from the broker's config file. This plugin needs none.
    fn init(_config: String) -> Result<(), String> {
        log::log(Level::Info, "{{name}} started");
        Ok(())
    }

    /// A client's command: `hotline-chat command {{slot}} NAME ARGS...`.
    fn handle_command(command: Command) -> Result<String, String> {
        match command.name.as_str() {
            "hello" => Ok("hello from {{name}} ({{lang}} {{slot}})".to_string()),
            other => Err(format!("unknown command \"{other}\"; {{name}} knows: hello")),
        }
    }
}

impl notifying::Guest for Plugin {
    /// `item.number` has no connection and `item.waiting` items wait for it. Never put a
    /// message body in the payload (the plugin never sees one anyway).
    fn notify(item: Queued) -> Decision {
        if item.waiting == 1 {
            metrics::counter_add("woken", 1);
            Decision::Wake(["{\"waiting\":", &item.waiting.to_string(), "}"].concat())
        } else {
            Decision::Skip
        }
    }
}

export!(Plugin);
