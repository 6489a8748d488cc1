//! `hotline-receipts`: Hotline's default receipts plugin — delivered receipts always reach
//! the sender; read receipts do unless the reader or the sender turned them off (reciprocal,
//! as in WhatsApp: who hides their reads does not see others' either).
//!
//! Command: `read-receipts off` / `read-receipts on` sets it for the sender of the command;
//! `read-receipts` alone answers the current setting. Default: on.
//!
//! Counters: `read_receipts_suppressed`.

use hotline_plugin::{Command, Host, Plugin, ReceiptMeta, ReceiptStatus, Receipts};

/// The default receipts policy.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultReceipts;

hotline_plugin::export_receipts!(DefaultReceipts);

impl Plugin for DefaultReceipts {
    fn handle_command(&self, host: &dyn Host, cmd: Command) -> Result<String, String> {
        handle_command(host, &cmd)
    }
}

impl Receipts for DefaultReceipts {
    fn allow(&self, host: &dyn Host, receipt: ReceiptMeta) -> bool {
        allow(host, &receipt)
    }
}

/// Present (empty value) for each number that turned read receipts off.
fn off_key(phone: &str) -> Vec<u8> {
    format!("read-receipts-off/{phone}").into_bytes()
}

/// Whether `phone` has read receipts on.
pub fn read_receipts_on(host: &dyn Host, phone: &str) -> bool {
    host.kv_get(&off_key(phone)).is_none()
}

/// Whether a receipt reaches the message's sender.
pub fn allow(host: &dyn Host, receipt: &ReceiptMeta) -> bool {
    match receipt.status {
        ReceiptStatus::Delivered => true,
        ReceiptStatus::Read => {
            let allowed =
                read_receipts_on(host, &receipt.by) && read_receipts_on(host, &receipt.to);
            if !allowed {
                host.counter_add("read_receipts_suppressed", 1);
            }
            allowed
        }
    }
}

fn setting(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Runs a client command.
pub fn handle_command(host: &dyn Host, cmd: &Command) -> Result<String, String> {
    if cmd.name != "read-receipts" {
        return Err(format!(
            "unknown command {:?}; this plugin knows read-receipts",
            cmd.name
        ));
    }
    let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
    match args[..] {
        [] => Ok(format!(
            "read receipts are {}",
            setting(read_receipts_on(host, &cmd.from))
        )),
        ["on"] => {
            host.kv_delete(&off_key(&cmd.from));
            Ok("read receipts are on".into())
        }
        ["off"] => {
            host.kv_set(&off_key(&cmd.from), b"");
            Ok(
                "read receipts are off: you will not see when others read your messages either"
                    .into(),
            )
        }
        _ => Err("usage: read-receipts [on|off]".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    const ANN: &str = "+15550000001";
    const BOB: &str = "+15550000002";
    const CAT: &str = "+15550000003";

    fn receipt(by: &str, to: &str, status: ReceiptStatus) -> ReceiptMeta {
        ReceiptMeta {
            message_id: 7,
            by: by.into(),
            to: to.into(),
            status,
            kind: hotline_plugin::MessageKind::Text,
        }
    }

    fn cmd(h: &TestHost, from: &str, args: &[&str]) -> Result<String, String> {
        DefaultReceipts.handle_command(h, Command::new(from, "read-receipts", args.iter().copied()))
    }

    fn allowed(h: &TestHost, by: &str, to: &str, status: ReceiptStatus) -> bool {
        DefaultReceipts.allow(h, receipt(by, to, status))
    }

    #[test]
    fn everything_is_allowed_by_default() {
        let h = TestHost::new();
        assert!(allowed(&h, BOB, ANN, ReceiptStatus::Delivered));
        assert!(allowed(&h, BOB, ANN, ReceiptStatus::Read));
        assert_eq!(cmd(&h, ANN, &[]), Ok("read receipts are on".into()));
    }

    #[test]
    fn reader_turning_them_off_hides_their_reads() {
        let h = TestHost::new();
        assert!(cmd(&h, BOB, &["off"])
            .unwrap()
            .starts_with("read receipts are off"));
        assert!(!allowed(&h, BOB, ANN, ReceiptStatus::Read));
        assert!(allowed(&h, CAT, ANN, ReceiptStatus::Read));
        assert_eq!(h.counter("read_receipts_suppressed"), 1);
    }

    #[test]
    fn off_is_reciprocal_the_sender_sees_no_reads_either() {
        let h = TestHost::new();
        cmd(&h, ANN, &["off"]).unwrap();
        assert!(!allowed(&h, BOB, ANN, ReceiptStatus::Read));
        assert!(!allowed(&h, CAT, ANN, ReceiptStatus::Read));
        // Others still see reads among themselves.
        assert!(allowed(&h, CAT, BOB, ReceiptStatus::Read));
    }

    #[test]
    fn delivered_receipts_are_always_allowed() {
        let h = TestHost::new();
        cmd(&h, ANN, &["off"]).unwrap();
        cmd(&h, BOB, &["off"]).unwrap();
        assert!(allowed(&h, BOB, ANN, ReceiptStatus::Delivered));
        assert!(allowed(&h, ANN, BOB, ReceiptStatus::Delivered));
    }

    #[test]
    fn turning_them_back_on_restores_reads_and_queries_report_the_setting() {
        let h = TestHost::new();
        cmd(&h, BOB, &["off"]).unwrap();
        assert_eq!(cmd(&h, BOB, &[]), Ok("read receipts are off".into()));
        assert_eq!(cmd(&h, BOB, &["on"]), Ok("read receipts are on".into()));
        assert_eq!(cmd(&h, BOB, &[]), Ok("read receipts are on".into()));
        assert!(allowed(&h, BOB, ANN, ReceiptStatus::Read));
        // `on` twice, `off` twice: idempotent.
        cmd(&h, BOB, &["on"]).unwrap();
        cmd(&h, BOB, &["off"]).unwrap();
        cmd(&h, BOB, &["off"]).unwrap();
        assert_eq!(h.kv_snapshot().len(), 1);
    }

    #[test]
    fn bad_arguments_and_unknown_commands_are_errors() {
        let h = TestHost::new();
        assert_eq!(
            cmd(&h, ANN, &["maybe"]),
            Err("usage: read-receipts [on|off]".into())
        );
        assert_eq!(
            cmd(&h, ANN, &["on", "off"]),
            Err("usage: read-receipts [on|off]".into())
        );
        let e = DefaultReceipts
            .handle_command(&h, Command::new(ANN, "typing-indicators", ["off"]))
            .unwrap_err();
        assert!(e.contains("unknown command"), "{e}");
        assert!(h.kv_snapshot().is_empty());
    }
}
