//! Generated bindings (wit-bindgen) of the `router` world: its imports, and the export macro
//! `export_router_world!` that `export_router!` drives. Only compiled for wasm32 with the `router`
//! feature.

wit_bindgen::generate!({
    world: "router",
    path: "../../wit/0.2.0",
    pub_export_macro: true,
    export_macro_name: "export_router_world",
    default_bindings_module: "hotline_plugin::router_bindings",
});
