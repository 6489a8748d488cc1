//! `hotline-test-notifier-trap`: a misbehaving notifier for the broker's push tests —
//! `init` succeeds, every `notify` call panics (a trap in the component).

use hotline_plugin::{Decision, Host, Notifier, Plugin, Queued};

#[derive(Default)]
pub struct NotifierTrap;

impl Plugin for NotifierTrap {}

impl Notifier for NotifierTrap {
    fn notify(&self, _host: &dyn Host, queued: Queued) -> Decision {
        panic!(
            "hotline-test-notifier-trap: notify traps on purpose ({} waiting)",
            queued.waiting
        )
    }
}

hotline_plugin::export_notifier!(NotifierTrap);

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    #[test]
    #[should_panic(expected = "traps on purpose")]
    fn notify_panics() {
        NotifierTrap.notify(&TestHost::new(), Queued::new("+15550000002", 1));
    }
}
