//! Generated bindings (wit-bindgen) of the `receipts` world: its imports, and the export macro
//! `export_receipts_world!` that `export_receipts!` drives. Only compiled for wasm32 with
//! the `receipts` feature.

wit_bindgen::generate!({
    world: "receipts",
    path: "../../wit/0.2.0",
    pub_export_macro: true,
    export_macro_name: "export_receipts_world",
    default_bindings_module: "hotline_plugin::receipts_bindings",
});
