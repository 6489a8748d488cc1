//! Builds the misbehaving test plugins (plugins/testing/) as WebAssembly components and
//! tells the tests where they are (`HOTLINE_TEST_PLUGIN_TRAP`, `_SPIN`, `_HOG`).

include!("../plugins/build_wasm.rs");

fn main() {
    rerun_if_plugin_sources_change();
    for (name, package) in [("TRAP", "hotline-test-trap"), ("SPIN", "hotline-test-spin"), ("HOG", "hotline-test-hog")] {
        let wasm = build_plugin(package);
        println!("cargo:rustc-env=HOTLINE_TEST_PLUGIN_{name}={}", wasm.display());
    }
}
