//! The `hotline` binary's command line: broken config, log settings and missing storage get
//! clear errors (each said once); help shows the defaults; flags sit where users put them.

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

/// Runs `cmd` to its end; fails the test if it is still running after 60 s (a `serve` that
/// should have refused to start and started instead).
fn run_to_end(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after 60 s: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `hotline serve` on free ports in `data`.
fn serve(data: &std::path::Path) -> Command {
    let mut cmd = hotline();
    cmd.arg("serve").arg("--data").arg(data).args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
    cmd
}

#[test]
fn a_config_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[limits]\nmax_body_bytes = \"big\"\n").unwrap();
    let out = run_to_end(serve(dir.path()).arg("--config").arg(&config));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("invalid config") && err.contains("broken.toml"), "{err}");
    assert_eq!(err.matches("invalid type").count(), 1, "{err}");

    let missing = dir.path().join("missing.toml");
    let out = run_to_end(serve(dir.path()).arg("--config").arg(&missing));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot read config") && err.contains("missing.toml"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn serve_help_shows_the_defaults() {
    let out = hotline().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for default in ["hotline-data", "127.0.0.1:4433", "127.0.0.1:9464", "[default: none", "[default: text]", "HOTLINE_LOG"] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }
}

#[test]
fn an_invalid_log_filter_stops_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_end(serve(&dir.path().join("data")).env("HOTLINE_LOG", "info,hotline=loud"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("HOTLINE_LOG") && err.contains("hotline=loud"), "{err}");
    assert_eq!(err.matches("expected one of").count(), 1, "the reason said once: {err}");
    assert!(!dir.path().join("data").exists(), "the broker started before checking its log filter");
}

#[test]
fn an_unknown_log_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_end(serve(&dir.path().join("data")).env("HOTLINE_LOG_FORMAT", "xml"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("xml") && err.contains("json"), "{err}");
}

#[test]
fn plugins_takes_admin_before_or_after_its_subcommand() {
    // Nothing listens on port 1: the error names the address given, wherever it was given.
    for args in [["plugins", "--admin", "127.0.0.1:1", "list"], ["plugins", "list", "--admin", "127.0.0.1:1"]] {
        let out = run_to_end(hotline().args(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("cannot reach the broker's admin endpoint at 127.0.0.1:1"), "{args:?}: {err}");
    }
    let out = run_to_end(hotline().args(["plugins", "rollback", "router", "--admin", "127.0.0.1:1"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at 127.0.0.1:1"));
}
