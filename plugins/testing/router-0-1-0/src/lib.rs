//! `hotline-test-router-0-1-0`: a router built against the frozen contract `wit/0.1.0` with
//! wit-bindgen directly, as a plugin written before 0.2.0 was: the broker must keep loading
//! and serving it. E.164 numbers route to themselves, anything else is rejected (the reason
//! names this plugin); commands `note KEY VALUE` (kv set), `recall KEY` (kv get, through
//! 0.1.0's kv, which the broker delegates to the newest) and `contract`.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "router", path: "../../../wit/0.1.0" });

    use exports::hotline::plugin::{lifecycle, routing};
    use hotline::plugin::types::{Command, Destination, MessageMeta};
    use hotline::plugin::{kv, metrics};

    struct Router010;

    impl lifecycle::Guest for Router010 {
        fn init(_config: String) -> Result<(), String> {
            Ok(())
        }

        fn handle_command(command: Command) -> Result<String, String> {
            match (command.name.as_str(), command.args.as_slice()) {
                ("note", [key, value]) => {
                    kv::set(format!("note/{key}").as_bytes(), value.as_bytes());
                    Ok(format!("noted {key}"))
                }
                ("recall", [key]) => kv::get(format!("note/{key}").as_bytes())
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .ok_or_else(|| format!("nothing noted as {key}")),
                ("contract", []) => Ok("0.1.0".to_string()),
                _ => Err(format!("unknown command `{}`", command.name)),
            }
        }
    }

    impl routing::Guest for Router010 {
        fn route(message: MessageMeta) -> Destination {
            route_one(message)
        }

        fn route_batch(messages: Vec<MessageMeta>) -> Vec<Destination> {
            messages.into_iter().map(route_one).collect()
        }
    }

    fn route_one(message: MessageMeta) -> Destination {
        if message.to.starts_with('+') {
            metrics::counter_add("routed_0_1_0", 1);
            Destination::Deliver(vec![message.to])
        } else {
            Destination::Reject(format!("router-0-1-0 routes E.164 numbers only, not {:?}", message.to))
        }
    }

    export!(Router010);
}
