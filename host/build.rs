//! Builds the default plugins (router, registrar, receipts, notifier) from `plugins/` as WebAssembly
//! components and puts them in OUT_DIR, where `src/plugins/defaults.rs` embeds them.

include!("../plugins/build_wasm.rs");

fn main() {
    rerun_if_plugin_sources_change();
    // `hotline plugins new` embeds these (include_dir! does not track them itself).
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=../wit");
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for (slot, package) in [("router", "hotline-router"), ("registrar", "hotline-registrar"), ("receipts", "hotline-receipts"), ("notifier", "hotline-notifier")] {
        let wasm = build_plugin(package);
        std::fs::copy(&wasm, out_dir.join(format!("{slot}.wasm")))
            .unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
    }
}
