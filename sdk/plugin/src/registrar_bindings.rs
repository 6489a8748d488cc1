//! Generated bindings (wit-bindgen) of the `registrar` world: its imports, and the export macro
//! `export_registrar_world!` that `export_registrar!` drives. Only compiled for wasm32 with
//! the `registrar` feature.

wit_bindgen::generate!({
    world: "registrar",
    path: "../../wit/0.2.0",
    pub_export_macro: true,
    export_macro_name: "export_registrar_world",
    default_bindings_module: "hotline_plugin::registrar_bindings",
});
