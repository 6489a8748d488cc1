//! `hotline-test-sleep`: a misbehaving router for the broker's time-limit tests — `init`
//! succeeds, every `route` and `route_batch` call sleeps for a minute with
//! `std::thread::sleep`, i.e. blocks inside WASI (`wasi:clocks/monotonic-clock`
//! `subscribe-duration`, then `wasi:io/poll`), where the epoch deadline cannot interrupt
//! it; the broker must cut it off all the same.

use std::time::Duration;

use hotline_plugin::{Host, MessageMeta, Plugin, Route, Router};

#[derive(Default)]
pub struct Sleep;

impl Plugin for Sleep {}

impl Router for Sleep {
    fn route(&self, _host: &dyn Host, message: MessageMeta) -> Route {
        std::thread::sleep(Duration::from_secs(60));
        Route::Deliver(vec![message.to])
    }
}

hotline_plugin::export_router!(Sleep);

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    #[test]
    fn init_succeeds() {
        assert_eq!(Sleep.init(&TestHost::new(), "anything"), Ok(()));
    }
}
