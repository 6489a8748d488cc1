//! A component instantiated for one slot's world of one contract version, and the guest
//! calls over versions: each method takes and answers the newest contract's types, and
//! converts for a component built against an older one (`bindings/v0_1_0.rs`).

use wasmtime::component::InstancePre;
use wasmtime::Store;

use super::bindings::{latest, types, v0_1_0, ContractVersion};
use latest::notifier::exports::hotline::plugin::notifying;
use super::state::PluginState;
use crate::policy::Slot;

/// A component instantiated for one slot's world, by contract version.
pub enum Instance {
    Router(latest::router::Router),
    Registrar(latest::registrar::Registrar),
    Receipts(latest::receipts::Receipts),
    Notifier(latest::notifier::Notifier),
    RouterV0_1_0(v0_1_0::router::Router),
    RegistrarV0_1_0(v0_1_0::registrar::Registrar),
    ReceiptsV0_1_0(v0_1_0::receipts::Receipts),
}

/// A component linked for one slot's world of one contract version, ready to instantiate.
pub enum Pre {
    Router(latest::router::RouterPre<PluginState>),
    Registrar(latest::registrar::RegistrarPre<PluginState>),
    Receipts(latest::receipts::ReceiptsPre<PluginState>),
    Notifier(latest::notifier::NotifierPre<PluginState>),
    RouterV0_1_0(v0_1_0::router::RouterPre<PluginState>),
    RegistrarV0_1_0(v0_1_0::registrar::RegistrarPre<PluginState>),
    ReceiptsV0_1_0(v0_1_0::receipts::ReceiptsPre<PluginState>),
}

impl Pre {
    /// Checks the component exports `slot`'s world of `contract`.
    pub fn new(slot: Slot, contract: ContractVersion, pre: InstancePre<PluginState>) -> wasmtime::Result<Pre> {
        Ok(match (contract, slot) {
            (ContractVersion::V0_2_0, Slot::Router) => Pre::Router(latest::router::RouterPre::new(pre)?),
            (ContractVersion::V0_2_0, Slot::Registrar) => Pre::Registrar(latest::registrar::RegistrarPre::new(pre)?),
            (ContractVersion::V0_2_0, Slot::Receipts) => Pre::Receipts(latest::receipts::ReceiptsPre::new(pre)?),
            (ContractVersion::V0_2_0, Slot::Notifier) => Pre::Notifier(latest::notifier::NotifierPre::new(pre)?),
            (ContractVersion::V0_1_0, Slot::Router) => Pre::RouterV0_1_0(v0_1_0::router::RouterPre::new(pre)?),
            (ContractVersion::V0_1_0, Slot::Registrar) => Pre::RegistrarV0_1_0(v0_1_0::registrar::RegistrarPre::new(pre)?),
            (ContractVersion::V0_1_0, Slot::Receipts) => Pre::ReceiptsV0_1_0(v0_1_0::receipts::ReceiptsPre::new(pre)?),
            (ContractVersion::V0_1_0, Slot::Notifier) => {
                return Err(wasmtime::Error::msg("contract 0.1.0 has no notifier world: build a notifier against 0.2.0"))
            }
        })
    }

    pub fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Router(pre) => Instance::Router(pre.instantiate(store)?),
            Pre::Registrar(pre) => Instance::Registrar(pre.instantiate(store)?),
            Pre::Receipts(pre) => Instance::Receipts(pre.instantiate(store)?),
            Pre::Notifier(pre) => Instance::Notifier(pre.instantiate(store)?),
            Pre::RouterV0_1_0(pre) => Instance::RouterV0_1_0(pre.instantiate(store)?),
            Pre::RegistrarV0_1_0(pre) => Instance::RegistrarV0_1_0(pre.instantiate(store)?),
            Pre::ReceiptsV0_1_0(pre) => Instance::ReceiptsV0_1_0(pre.instantiate(store)?),
        })
    }
}

fn wrong_slot<T>() -> wasmtime::Result<T> {
    Err(wasmtime::Error::msg("instance is for another slot"))
}

impl Instance {
    /// The `lifecycle.init` export, whatever the world.
    pub fn init(&self, store: &mut Store<PluginState>, config: &str) -> wasmtime::Result<Result<(), String>> {
        match self {
            Instance::Router(i) => i.hotline_plugin_lifecycle().call_init(store, config),
            Instance::Registrar(i) => i.hotline_plugin_lifecycle().call_init(store, config),
            Instance::Receipts(i) => i.hotline_plugin_lifecycle().call_init(store, config),
            Instance::Notifier(i) => i.hotline_plugin_lifecycle().call_init(store, config),
            Instance::RouterV0_1_0(i) => i.hotline_plugin_lifecycle().call_init(store, config),
            Instance::RegistrarV0_1_0(i) => i.hotline_plugin_lifecycle().call_init(store, config),
            Instance::ReceiptsV0_1_0(i) => i.hotline_plugin_lifecycle().call_init(store, config),
        }
    }

    /// The `lifecycle.handle-command` export, whatever the world.
    pub fn handle_command(&self, store: &mut Store<PluginState>, command: &types::Command) -> wasmtime::Result<Result<String, String>> {
        let old = || v0_1_0::types::Command::from(command.clone());
        match self {
            Instance::Router(i) => i.hotline_plugin_lifecycle().call_handle_command(store, command),
            Instance::Registrar(i) => i.hotline_plugin_lifecycle().call_handle_command(store, command),
            Instance::Receipts(i) => i.hotline_plugin_lifecycle().call_handle_command(store, command),
            Instance::Notifier(i) => i.hotline_plugin_lifecycle().call_handle_command(store, command),
            Instance::RouterV0_1_0(i) => i.hotline_plugin_lifecycle().call_handle_command(store, &old()),
            Instance::RegistrarV0_1_0(i) => i.hotline_plugin_lifecycle().call_handle_command(store, &old()),
            Instance::ReceiptsV0_1_0(i) => i.hotline_plugin_lifecycle().call_handle_command(store, &old()),
        }
    }

    /// `routing.route` for one message, `routing.route-batch` for several.
    pub fn route(&self, store: &mut Store<PluginState>, mut metas: Vec<types::MessageMeta>) -> wasmtime::Result<Vec<types::Destination>> {
        match self {
            Instance::Router(router) => {
                let routing = router.hotline_plugin_routing();
                if metas.len() == 1 {
                    Ok(vec![routing.call_route(store, &metas.pop().unwrap())?])
                } else {
                    routing.call_route_batch(store, &metas)
                }
            }
            Instance::RouterV0_1_0(router) => {
                let routing = router.hotline_plugin_routing();
                let mut metas: Vec<v0_1_0::types::MessageMeta> = metas.into_iter().map(Into::into).collect();
                let routes = if metas.len() == 1 {
                    vec![routing.call_route(store, &metas.pop().unwrap())?]
                } else {
                    routing.call_route_batch(store, &metas)?
                };
                Ok(routes.into_iter().map(Into::into).collect())
            }
            _ => wrong_slot(),
        }
    }

    /// `registration.request-code`.
    pub fn request_code(&self, store: &mut Store<PluginState>, phone: &str) -> wasmtime::Result<Result<u32, types::Refusal>> {
        match self {
            Instance::Registrar(i) => i.hotline_plugin_registration().call_request_code(store, phone),
            Instance::RegistrarV0_1_0(i) => Ok(i.hotline_plugin_registration().call_request_code(store, phone)?.map_err(Into::into)),
            _ => wrong_slot(),
        }
    }

    /// `registration.verify-code`.
    pub fn verify_code(&self, store: &mut Store<PluginState>, phone: &str, code: &str) -> wasmtime::Result<Result<(), types::Refusal>> {
        match self {
            Instance::Registrar(i) => i.hotline_plugin_registration().call_verify_code(store, phone, code),
            Instance::RegistrarV0_1_0(i) => Ok(i.hotline_plugin_registration().call_verify_code(store, phone, code)?.map_err(Into::into)),
            _ => wrong_slot(),
        }
    }

    /// `receipting.allow`.
    pub fn allow(&self, store: &mut Store<PluginState>, receipt: &types::ReceiptMeta) -> wasmtime::Result<bool> {
        match self {
            Instance::Receipts(i) => i.hotline_plugin_receipting().call_allow(store, receipt),
            Instance::ReceiptsV0_1_0(i) => i.hotline_plugin_receipting().call_allow(store, &receipt.clone().into()),
            _ => wrong_slot(),
        }
    }

    /// `notifying.notify` (contract 0.2.0 and later).
    pub fn notify(&self, store: &mut Store<PluginState>, item: &notifying::Queued) -> wasmtime::Result<notifying::Decision> {
        match self {
            Instance::Notifier(i) => i.hotline_plugin_notifying().call_notify(store, item),
            _ => wrong_slot(),
        }
    }
}
