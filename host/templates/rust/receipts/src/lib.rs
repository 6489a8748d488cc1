//! {{name}}: a Hotline receipts plugin. It decides which receipts ("delivered", "read")
//! reach the sender of a message.
//!
//! This one lets every receipt through. Counter: `allowed`. Command: `hello`.
//!
//! How Rust maps to the contract (wit/plugin.wit, world `{{slot}}`):
//! - `wit_bindgen::generate!` reads the WIT at compile time and writes the bindings.
//! - What the broker provides (the world's imports) are plain functions, e.g.
//!   `hotline::plugin::metrics::counter_add("allowed", 1)`. WIT `list<u8>` is `&[u8]` /
//!   `Vec<u8>`, `option` is `Option`, `result` is `Result`, `u64` is `u64`.
//! - What the plugin provides (the exports) are traits named `Guest`, one per interface
//!   (`lifecycle`, `receipting`), implemented below on `Plugin` and registered with
//!   `export!`.
//! - WIT records and enums become Rust structs and enums (`receipt-meta` is
//!   `ReceiptMeta`, its field `message-id` is `message_id`).
//! - A panic is a trap: the call fails (see README.md for what the broker does then).

wit_bindgen::generate!({ world: "{{slot}}", path: "wit" });

use exports::hotline::plugin::{lifecycle, receipting};
use hotline::plugin::log::{self, Level};
use hotline::plugin::metrics;
use hotline::plugin::types::{Command, ReceiptMeta};

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

impl receipting::Guest for Plugin {
    /// Whether this receipt reaches the message's sender (`receipt.to`). Receipts have a
    /// `status` (`ReceiptStatus::Delivered` or `Read`), the message's id, and who read or
    /// received it (`receipt.by`).
    fn allow(_receipt: ReceiptMeta) -> bool {
        metrics::counter_add("allowed", 1);
        true
    }
}

export!(Plugin);
