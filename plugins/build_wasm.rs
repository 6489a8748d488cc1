// Shared by build scripts (`include!`d): builds plugin crates of this workspace as
// WebAssembly components with a nested cargo, into `<target>/plugins`.

/// Builds crate `package` for wasm32-wasip2 (release) and returns the component's path.
/// Each crate is built on its own so that the SDK is compiled with that crate's one slot
/// feature (a component must embed only its own world).
fn build_plugin(package: &str) -> std::path::PathBuf {
    use std::path::PathBuf;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out; share <target>/plugins.
    let target_root = out_dir.ancestors().nth(4).expect("OUT_DIR inside the target folder").to_path_buf();
    let plugin_target = target_root.join("plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p", package, "--target-dir"])
        .arg(&plugin_target)
        .current_dir(&workspace)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_LLVM_COV")
        // Small components compile faster on load: no debug info, size-optimised, one unit.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .status()
        .expect("running cargo to build a plugin");
    if !status.success() {
        panic!(
            "building plugin {package} for wasm32-wasip2 failed. Is the target installed? \
             Run `rustup target add wasm32-wasip2` (scripts/setup does)."
        );
    }
    plugin_target.join("wasm32-wasip2/release").join(format!("{}.wasm", package.replace('-', "_")))
}

/// Tells cargo to rebuild when plugin sources, the SDK or the WIT change.
fn rerun_if_plugin_sources_change() {
    let workspace = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Not all of plugins/: the examples' builds (node_modules, .wasm) must not rebuild the host.
    for dir in ["plugins/router", "plugins/registrar", "plugins/receipts", "plugins/notifier", "plugins/testing", "plugins/build_wasm.rs", "sdk/plugin", "wit"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
}
