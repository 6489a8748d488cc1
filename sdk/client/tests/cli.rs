//! `hotline-chat` without a registered profile or with a bad CA file says what to do.

use std::process::Command;

fn chat(profile: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotline-chat"));
    cmd.arg("--profile").arg(profile);
    cmd
}

#[test]
fn send_without_registration_explains_how_to_register() {
    let dir = tempfile::tempdir().unwrap();
    let out = chat(dir.path()).args(["send", "+15550000002", "hi"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("register PHONE"));
}

#[test]
fn a_missing_ca_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("missing.pem");
    let out = chat(dir.path()).arg("--ca").arg(&ca).args(["register", "+15550000001", "--code", "12345"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pem"));
}
