//! `hotline-test-contract-receipts`: a receipts plugin built with the SDK against contract
//! 0.2.0, for the broker's contract tests. It sees the kind of the message a receipt is
//! about: receipts about text reach the sender, receipts about media never do (delivered
//! and read alike). It counts what it was asked in kv, `asked/<status>/<kind>`, and the
//! command `asked STATUS KIND` answers a count (`asked read media`, say).

use hotline_plugin::{Command, Host, MessageKind, Plugin, ReceiptMeta, ReceiptStatus, Receipts};

#[derive(Default)]
pub struct ContractReceipts;

/// `text`, or `media` (the MIME type is not part of the key).
fn kind_name(kind: &MessageKind) -> &'static str {
    match kind {
        MessageKind::Text => "text",
        MessageKind::Media(_) => "media",
    }
}

fn status_name(status: ReceiptStatus) -> &'static str {
    match status {
        ReceiptStatus::Delivered => "delivered",
        ReceiptStatus::Read => "read",
    }
}

fn asked_key(status: &str, kind: &str) -> Vec<u8> {
    format!("asked/{status}/{kind}").into_bytes()
}

impl Plugin for ContractReceipts {
    fn handle_command(&self, host: &dyn Host, cmd: Command) -> Result<String, String> {
        match (cmd.name.as_str(), cmd.args.as_slice()) {
            ("asked", [status, kind]) => {
                let count = host.kv_get(&asked_key(status, kind)).map_or(0, |b| {
                    i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
                });
                Ok(count.to_string())
            }
            _ => Err(format!("unknown command `{}` (asked STATUS KIND)", cmd.name)),
        }
    }
}

impl Receipts for ContractReceipts {
    fn allow(&self, host: &dyn Host, receipt: ReceiptMeta) -> bool {
        let kind = kind_name(&receipt.kind);
        // A failed count must not change the decision.
        let _ = host.kv_increment(&asked_key(status_name(receipt.status), kind), 1);
        matches!(receipt.kind, MessageKind::Text)
    }
}

hotline_plugin::export_receipts!(ContractReceipts);

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    fn receipt(status: ReceiptStatus, kind: MessageKind) -> ReceiptMeta {
        ReceiptMeta { message_id: 1, by: "+15550000002".into(), to: "+15550000001".into(), status, kind }
    }

    #[test]
    fn receipts_about_media_are_held_back_and_counted() {
        let host = TestHost::new();
        let p = ContractReceipts;
        assert!(p.allow(&host, receipt(ReceiptStatus::Delivered, MessageKind::Text)));
        assert!(!p.allow(&host, receipt(ReceiptStatus::Delivered, MessageKind::Media("image/png".into()))));
        assert!(!p.allow(&host, receipt(ReceiptStatus::Read, MessageKind::Media("audio/ogg".into()))));
        let asked = |s: &str, k: &str| {
            p.handle_command(&host, Command { name: "asked".into(), args: vec![s.into(), k.into()], from: "+15550000001".into() })
        };
        assert_eq!(asked("delivered", "media"), Ok("1".into()));
        assert_eq!(asked("read", "media"), Ok("1".into()));
        assert_eq!(asked("read", "text"), Ok("0".into()));
    }
}
