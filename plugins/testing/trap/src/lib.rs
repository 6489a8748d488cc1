//! `hotline-test-trap`: a misbehaving router for the broker's hot-swap tests — `init`
//! succeeds, every `route` and `route_batch` call panics (a trap in the component).

use hotline_plugin::{Host, MessageMeta, Plugin, Route, Router};

#[derive(Default)]
pub struct Trap;

impl Plugin for Trap {}

impl Router for Trap {
    fn route(&self, _host: &dyn Host, message: MessageMeta) -> Route {
        panic!(
            "hotline-test-trap: route traps on purpose (to {:?})",
            message.to
        )
    }
}

hotline_plugin::export_router!(Trap);

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    #[test]
    fn init_succeeds() {
        assert_eq!(Trap.init(&TestHost::new(), ""), Ok(()));
    }

    #[test]
    #[should_panic(expected = "traps on purpose")]
    fn route_panics() {
        Trap.route(
            &TestHost::new(),
            MessageMeta::new("+15550000001", "+15550000002"),
        );
    }
}
