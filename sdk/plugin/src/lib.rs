//! probe
#[cfg(feature = "router")]
pub mod router_bindings {
    wit_bindgen::generate!({ world: "router", path: "../../wit/0.1.0", pub_export_macro: true, export_macro_name: "export_router_world", default_bindings_module: "hotline_plugin::router_bindings" });
}
#[cfg(feature = "registrar")]
pub mod registrar_bindings {
    wit_bindgen::generate!({ world: "registrar", path: "../../wit/0.1.0", pub_export_macro: true, export_macro_name: "export_registrar_world", default_bindings_module: "hotline_plugin::registrar_bindings" });
}
