//! The `hotline` binary's command line: broken config and missing storage get clear errors.

use std::process::Command;

fn hotline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
}

#[test]
fn a_broken_config_file_is_refused_with_its_name_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n[storage]\ndurabilty = \"fsync\"\n").unwrap();
    let out = hotline().arg("serve").arg("--config").arg(&config).arg("--data").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.toml") && err.contains("durabilty"), "{err}");
    // Nothing was created: a refused config starts nothing.
    assert!(!dir.path().join("store").exists());
}

#[test]
fn inspect_without_storage_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = hotline().arg("inspect").arg("--data").arg(dir.path().join("nowhere")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no storage at"));
}
