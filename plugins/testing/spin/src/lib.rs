//! `hotline-test-spin`: a misbehaving router for the broker's hot-swap tests — `init`
//! succeeds, every `route` and `route_batch` call loops forever (until the host's time
//! limit interrupts it).

use hotline_plugin::{Host, MessageMeta, Plugin, Route, Router};

#[derive(Default)]
pub struct Spin;

impl Plugin for Spin {}

impl Router for Spin {
    fn route(&self, _host: &dyn Host, _message: MessageMeta) -> Route {
        let mut n: u64 = 0;
        loop {
            // Opaque to the optimizer, so the loop stays a real loop.
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

hotline_plugin::export_router!(Spin);

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    #[test]
    fn init_succeeds() {
        assert_eq!(Spin.init(&TestHost::new(), "anything"), Ok(()));
    }
}
