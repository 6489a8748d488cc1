//! Generated bindings (wit-bindgen) of the `notifier` world: its imports, and the export macro
//! `export_notifier_world!` that `export_notifier!` drives. Only compiled for wasm32 with
//! the `notifier` feature.

wit_bindgen::generate!({
    world: "notifier",
    path: "../../wit/0.2.0",
    pub_export_macro: true,
    export_macro_name: "export_notifier_world",
    default_bindings_module: "hotline_plugin::notifier_bindings",
});
