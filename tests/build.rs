//! Builds the test plugins (plugins/testing/) as WebAssembly components and tells the tests
//! where they are (`HOTLINE_TEST_PLUGIN_TRAP`, `_SPIN`, `_HOG`, `_SLEEP`, `_ROUTER_0_1_0`, `_CONTRACT`,
//! `_CONTRACT_RECEIPTS`, `_NOTIFIER_TRAP`).

include!("../plugins/build_wasm.rs");

fn main() {
    rerun_if_plugin_sources_change();
    for (name, package) in [
        ("TRAP", "hotline-test-trap"), ("SPIN", "hotline-test-spin"), ("HOG", "hotline-test-hog"),
        ("SLEEP", "hotline-test-sleep"),
        ("ROUTER_0_1_0", "hotline-test-router-0-1-0"),
        ("CONTRACT", "hotline-test-contract"),
        ("CONTRACT_RECEIPTS", "hotline-test-contract-receipts"),
        ("NOTIFIER_TRAP", "hotline-test-notifier-trap"),
    ] {
        let wasm = build_plugin(package);
        println!("cargo:rustc-env=HOTLINE_TEST_PLUGIN_{name}={}", wasm.display());
    }
}
