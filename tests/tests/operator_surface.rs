//! What an operator sees of a running broker: who can read its files, its logs on a pipe
//! or to a log collector, `hotline plugins list` in a shell pipeline, and `hotline inspect`
//! pointed at a broker that is still running.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Result;
use hotline_tests::{bin, Broker};

/// Every file and folder under `dir`, with its permission bits.
#[cfg(unix)]
fn modes(dir: &Path, out: &mut Vec<(std::path::PathBuf, u32, bool)>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        out.push((entry.path(), meta.permissions().mode() & 0o777, meta.is_dir()));
        if meta.is_dir() {
            modes(&entry.path(), out);
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_folder_and_everything_the_broker_writes_are_private() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut broker = Broker::start()?;
    broker.register("+15551230001").await?;
    assert_eq!(std::fs::metadata(&broker.data)?.permissions().mode() & 0o777, 0o700, "data folder");
    let mut all = Vec::new();
    modes(&broker.data, &mut all);
    let names: Vec<String> = all.iter().map(|(p, _, _)| p.strip_prefix(&broker.data).unwrap().display().to_string()).collect();
    // The files that hold secrets are there to be checked: the journal, the codes, the key.
    for needed in ["store", "sms-outbox.jsonl", "tls/key.pem"] {
        assert!(names.iter().any(|n| n == needed), "{needed} not among {names:?}");
    }
    assert!(all.iter().any(|(p, _, dir)| !dir && p.starts_with(broker.data.join("store"))), "no journal files in {names:?}");
    for (path, mode, dir) in &all {
        let want = if *dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
    broker.stop()?;
    Ok(())
}

/// Starts a broker logging at `info` with its stderr on a pipe and `args`; stops it and
/// returns everything it wrote to stderr.
fn stderr_of_a_run(args: &[&str]) -> Result<String> {
    let mut broker = Broker::start_capturing_stderr(args, &[("HOTLINE_LOG", "info")])?;
    let mut stderr = broker.take_stderr().expect("stderr pipe");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    broker.stop()?;
    Ok(reader.join().unwrap()?)
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() -> Result<()> {
    let log = stderr_of_a_run(&[])?;
    assert!(log.contains("serving") && log.contains("shutting down"), "{log}");
    assert!(!log.contains('\u{1b}'), "ESC in the log: {log:?}");
    Ok(())
}

#[test]
fn json_logs_are_one_object_per_line() -> Result<()> {
    let log = stderr_of_a_run(&["--log-format", "json"])?;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}")))
        .collect();
    let serving = lines.iter().find(|l| l["message"] == "serving").unwrap_or_else(|| panic!("no serving line in {log}"));
    assert_eq!(serving["level"], "INFO");
    assert!(serving["timestamp"].is_string() && serving["addr"].is_string(), "{serving}");
    assert!(lines.iter().any(|l| l["message"] == "shutting down"), "{log}");
    Ok(())
}

#[test]
fn plugins_list_to_a_closed_pipe_exits_quietly() -> Result<()> {
    let broker = Broker::start()?;
    let mut child = Command::new(bin("hotline"))
        .args(["plugins", "list", "--admin", &broker.admin.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The reader is gone before the command writes anything (as with `| head -0`, or
    // `| head` once it has its lines): every write meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    Ok(())
}

#[tokio::test]
async fn plugins_list_takes_admin_after_the_subcommand_and_its_columns_line_up() -> Result<()> {
    let broker = Broker::start()?;
    broker.register("+15551230001").await?;
    let out = Command::new(bin("hotline")).args(["plugins", "list", "--admin", &broker.admin.to_string()]).output()?;
    let text = hotline_tests::ok(out);
    let table: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).collect();
    let header = table[0];
    assert!(table.len() >= 4, "a row per slot: {text}");
    // Right-aligned number columns end where their titles end; every row is as wide as the
    // header.
    let calls_end = header.find("CALLS").unwrap() + "CALLS".len();
    let loaded_at = header.find("LOADED AT").unwrap();
    for row in &table[1..] {
        assert_eq!(row.len(), header.len(), "row {row:?} under {header:?}");
        assert!(row.as_bytes()[calls_end - 1].is_ascii_digit(), "CALLS column of {row:?} under {header:?}");
        assert!(row[loaded_at..].starts_with("20"), "LOADED AT column of {row:?} under {header:?}");
        assert!(row.ends_with(|c: char| c.is_ascii_digit()), "ERRORS column of {row:?}");
    }
    // The registrar was called: its row counts the calls.
    let registrar = table.iter().find(|r| r.starts_with("registrar")).unwrap();
    let calls: u64 = registrar[..calls_end].split_whitespace().last().unwrap().parse()?;
    assert!(calls >= 1, "{registrar}");
    Ok(())
}

#[test]
fn inspect_on_a_running_broker_says_it_is_running_and_where_to_look() -> Result<()> {
    let mut broker = Broker::start()?;
    let out = Command::new(bin("hotline")).arg("inspect").arg("--data").arg(&broker.data).output()?;
    let err = hotline_tests::refused(out);
    assert!(err.contains("a broker is running on"), "{err}");
    assert!(err.contains("/metrics") && err.contains("/api/plugins"), "{err}");
    assert!(!err.contains("FjallError"), "{err}");
    broker.stop()?;
    // Stopped, the same command reports.
    assert!(broker.inspect()?["queued_items"].is_u64());
    Ok(())
}
