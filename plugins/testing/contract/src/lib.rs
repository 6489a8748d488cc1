//! `hotline-test-contract`: a router built with the SDK against contract 0.2.0, for the
//! broker's contract tests. It sees each message's kind: text to an E.164 number is
//! delivered, media is rejected with its MIME type in the reason. Commands count in kv:
//! `incr KEY` (`kv.increment`), `cas-incr KEY SPIN` (read, spin, compare-and-swap, retry),
//! `naive-incr KEY SPIN` (read, spin, set: the race the atomics exist for) and `get KEY`;
//! SPIN host calls between read and write widen the window another instance can race in.

use hotline_plugin::{Command, Host, MessageKind, MessageMeta, Plugin, Route, Router};

#[derive(Default)]
pub struct Contract;

fn counter(bytes: Option<Vec<u8>>) -> i64 {
    bytes.map_or(0, |b| i64::from_le_bytes(b.try_into().expect("a counter is 8 bytes")))
}

/// Calls the host `n` times (the clock), keeping the instance busy between read and write.
fn spin(host: &dyn Host, n: u32) {
    let mut x = 0u64;
    for _ in 0..n {
        x = x.wrapping_add(host.now_ms());
    }
    std::hint::black_box(x);
}

impl Plugin for Contract {
    fn handle_command(&self, host: &dyn Host, cmd: Command) -> Result<String, String> {
        let spin_of = |s: &String| s.parse::<u32>().map_err(|e| format!("bad spin {s:?}: {e}"));
        match (cmd.name.as_str(), cmd.args.as_slice()) {
            ("incr", [key]) => host.kv_increment(key.as_bytes(), 1).map(|v| v.to_string()),
            ("cas-incr", [key, n]) => {
                let n = spin_of(n)?;
                let mut tries = 0u32;
                loop {
                    tries += 1;
                    let old = host.kv_get(key.as_bytes());
                    spin(host, n);
                    let new = (counter(old.clone()) + 1).to_le_bytes();
                    if host.kv_compare_and_swap(key.as_bytes(), old.as_deref(), Some(&new)) {
                        return Ok(format!("{} after {tries} tries", counter(Some(new.to_vec()))));
                    }
                }
            }
            ("naive-incr", [key, n]) => {
                let n = spin_of(n)?;
                let value = counter(host.kv_get(key.as_bytes())) + 1;
                spin(host, n);
                host.kv_set(key.as_bytes(), &value.to_le_bytes());
                Ok(value.to_string())
            }
            ("get", [key]) => Ok(counter(host.kv_get(key.as_bytes())).to_string()),
            _ => Err(format!("unknown command `{}`", cmd.name)),
        }
    }
}

impl Router for Contract {
    fn route(&self, _host: &dyn Host, m: MessageMeta) -> Route {
        match m.kind {
            MessageKind::Media(mime) => Route::Reject(format!("no media here ({mime})")),
            MessageKind::Text if m.to.starts_with('+') => Route::Deliver(vec![m.to]),
            MessageKind::Text => Route::Reject(format!("cannot route to {:?}", m.to)),
        }
    }
}

hotline_plugin::export_router!(Contract);

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    #[test]
    fn media_is_rejected_with_its_mime_and_text_delivered() {
        let host = TestHost::new();
        let m = MessageMeta::new("+15550000001", "+15550000002");
        assert_eq!(Contract.route(&host, m.clone()), Route::Deliver(vec!["+15550000002".into()]));
        let media = m.with_kind(MessageKind::Media("image/png".into()));
        assert_eq!(Contract.route(&host, media), Route::Reject("no media here (image/png)".into()));
    }

    #[test]
    fn the_counting_commands_count() {
        let host = TestHost::new();
        let run = |name: &str, args: &[&str]| Contract.handle_command(&host, Command::new("+15550000001", name, args.iter().copied()));
        assert_eq!(run("incr", &["n"]), Ok("1".into()));
        assert_eq!(run("cas-incr", &["n", "3"]), Ok("2 after 1 tries".into()));
        assert_eq!(run("naive-incr", &["n", "3"]), Ok("3".into()));
        assert_eq!(run("get", &["n"]), Ok("3".into()));
    }
}
