//! {{name}}: a Hotline router plugin. It decides where each message goes.
//!
//! This one delivers a message addressed to an E.164 number (like +15551234567) to that
//! number, and rejects anything else. Counters: `routed`, `rejected`. Command: `hello`.
//!
//! How Rust maps to the contract (wit/plugin.wit, world `{{slot}}`):
//! - `wit_bindgen::generate!` reads the WIT at compile time and writes the bindings.
//! - What the broker provides (the world's imports) are plain functions, e.g.
//!   `hotline::plugin::metrics::counter_add("routed", 1)`. WIT `list<u8>` is `&[u8]` /
//!   `Vec<u8>`, `option` is `Option`, `result` is `Result`, `u64` is `u64`.
//! - What the plugin provides (the exports) are traits named `Guest`, one per interface
//!   (`lifecycle`, `routing`), implemented below on `Plugin` and registered with `export!`.
//! - WIT records and variants become Rust structs and enums with the same fields
//!   (`message-meta` is `MessageMeta`, its field `at-ms` is `at_ms`).
//! - A panic is a trap: the call fails (see README.md for what the broker does then).

wit_bindgen::generate!({ world: "{{slot}}", path: "wit" });

use exports::hotline::plugin::{lifecycle, routing};
use hotline::plugin::log::{self, Level};
use hotline::plugin::metrics;
use hotline::plugin::types::{Command, Destination, MessageMeta};

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

impl routing::Guest for Plugin {
    fn route(message: MessageMeta) -> Destination {
        route_one(message)
    }

    /// The broker batches messages a client sends back to back: one answer each, in order.
    fn route_batch(messages: Vec<MessageMeta>) -> Vec<Destination> {
        messages.into_iter().map(route_one).collect()
    }
}

fn route_one(message: MessageMeta) -> Destination {
    if is_e164(&message.to) {
        metrics::counter_add("routed", 1);
        // The broker stores the message for each listed number that is registered.
        Destination::Deliver(vec![message.to])
    } else {
        metrics::counter_add("rejected", 1);
        // The sender sees this reason.
        Destination::Reject(format!(
            "cannot deliver to \"{}\": {{name}} routes E.164 numbers only",
            message.to
        ))
    }
}

/// `+`, then 7 to 15 digits, the first not 0.
fn is_e164(s: &str) -> bool {
    match s.strip_prefix('+') {
        Some(digits) => {
            (7..=15).contains(&digits.len())
                && !digits.starts_with('0')
                && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

export!(Plugin);
