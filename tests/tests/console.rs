//! The admin console at `/` in a real headless Chromium, driven through chromedriver
//! (WebDriver over HTTP): it shows the plugins with the router's current version and a
//! queue section, its rollback button rolls the router back (checked through
//! `GET /api/plugins`), and with `admin.token` it opens from `/?token=` and keeps working.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/setup console`); the paths can
//! be changed with `HOTLINE_CHROMEDRIVER` and `HOTLINE_CHROMIUM`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hotline_tests::{eventually, version_of, with_marker, Broker};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

/// A chromedriver process on a free loopback port, and one browser session in it.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Result<Browser> {
        let chromedriver = std::env::var_os("HOTLINE_CHROMEDRIVER").map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
        let chromium = std::env::var_os("HOTLINE_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| {
            // Debian's /usr/bin/chromium is a wrapper script around this binary.
            let binary = PathBuf::from("/usr/lib/chromium/chromium");
            if binary.exists() { binary } else { PathBuf::from("/usr/bin/chromium") }
        });
        if !chromedriver.exists() || !chromium.exists() {
            bail!("{} or {} not found: `scripts/setup console` installs them", chromedriver.display(), chromium.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let profile = tempfile::tempdir()?;
        let mut browser = Browser { driver, base: format!("http://127.0.0.1:{port}"), session: String::new(), profile };
        eventually(T, || browser.call("GET", "/status", None).ok().filter(|v| v["ready"] == true))
            .context("chromedriver did not become ready")?;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = browser.call("POST", "/session", Some(capabilities))?;
        browser.session = created["sessionId"].as_str().context("no session id")?.to_string();
        Ok(browser)
    }

    /// A WebDriver command; its `value`, or the WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => agent.get(&url).call(),
            "DELETE" => agent.delete(&url).call(),
            _ => agent.post(&url).send_json(body.unwrap_or_else(|| json!({}))),
        }?;
        let status = response.status();
        let answer: Value = response.into_body().read_json()?;
        if !status.is_success() {
            bail!("WebDriver {method} {path}: {status} {}", answer["value"]);
        }
        Ok(answer["value"].clone())
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) -> Result<()> {
        self.session_call("POST", "/url", Some(json!({"url": url}))).map(drop)
    }

    /// The element `css` selects, if there is one.
    fn find(&self, css: &str) -> Option<String> {
        let found = self.session_call("POST", "/element", Some(json!({"using": "css selector", "value": css}))).ok()?;
        found.as_object()?.values().next()?.as_str().map(String::from)
    }

    /// The visible text of the element `css` selects, if there is one.
    fn text(&self, css: &str) -> Option<String> {
        let element = self.find(css)?;
        self.session_call("GET", &format!("/element/{element}/text"), None).ok()?.as_str().map(String::from)
    }

    fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let element = self.find(css)?;
        self.session_call("GET", &format!("/element/{element}/attribute/{name}"), None).ok()?.as_str().map(String::from)
    }

    /// Waits until the element `css` selects shows `want`.
    fn wait_for_text(&self, css: &str, want: &str) -> Result<()> {
        eventually(T, || (self.text(css)? == want).then_some(()))
            .with_context(|| format!("{css} never showed {want:?} (it shows {:?}; page: {:?})", self.text(css), self.text("main")))
    }

    fn click(&self, css: &str) -> Result<()> {
        let element = self.find(css).with_context(|| format!("no {css} on the page"))?;
        self.session_call("POST", &format!("/element/{element}/click"), None).map(drop)
    }

    /// Accepts the confirmation dialog the page opens (waiting for it to appear); returns its text.
    fn accept_dialog(&self) -> Result<String> {
        let text = eventually(T, || self.session_call("GET", "/alert/text", None).ok()?.as_str().map(String::from))
            .context("no confirmation dialog")?;
        self.session_call("POST", "/alert/accept", None)?;
        Ok(text)
    }

    fn current_url(&self) -> Result<String> {
        Ok(self.session_call("GET", "/url", None)?.as_str().unwrap_or_default().to_string())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.session_call("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The router's current version as `GET /api/plugins` says (with `token` if given).
fn current_router(admin: SocketAddr, token: Option<&str>) -> Result<String> {
    let mut request = ureq::get(format!("http://{admin}/api/plugins"));
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let report: Value = request.call()?.body_mut().read_json()?;
    report["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["slot"] == "router" && (v["state"] == "current" || v["state"] == "probation"))
        .and_then(|v| v["version"].as_str().map(String::from))
        .with_context(|| format!("no current router in {report}"))
}

#[test]
fn the_console_shows_the_plugins_and_queues_and_rolls_the_router_back() -> Result<()> {
    let started = std::time::Instant::now();
    let broker = Broker::start()?;
    let first = broker.current_version("router")?;
    let original = std::fs::read(broker.plugin_dir().join("router.wasm"))?;
    let second = broker.load_plugin("router", &with_marker(&original, "console"), T)?;
    assert_eq!(second, version_of(&with_marker(&original, "console")));

    let browser = Browser::start()?;
    browser.open(&format!("http://{}/", broker.admin))?;
    // The plugins: the router's current version, the one before it kept for rollback.
    browser.wait_for_text("#router-current-version", &second)?;
    assert_eq!(browser.attribute(&format!("tr[data-slot=router][data-version='{first}']"), "data-state").as_deref(), Some("previous"));
    for slot in ["registrar", "receipts"] {
        assert!(browser.find(&format!("#rollback-{slot}")).is_some(), "no rollback button for {slot}");
    }
    // The queue section shows what /api/queues answers: "not available" while the broker
    // has no such route, one block per kind once it has.
    let (queues_status, _) = broker.admin_get("/api/queues")?;
    eventually(T, || (browser.attribute("#queues", "data-state")? != "loading").then_some(()))?;
    let queues = browser.text("#queues").unwrap_or_default();
    if queues_status == 404 {
        assert_eq!(browser.attribute("#queues", "data-state").as_deref(), Some("unavailable"), "{queues}");
        assert!(queues.contains("not available"), "{queues}");
    } else {
        assert_eq!(browser.attribute("#queues", "data-state").as_deref(), Some("ok"), "{queues}");
        for kind in ["stored", "mailbox", "plugin", "commit"] {
            assert!(browser.find(&format!("#queues [data-kind={kind}]")).is_some(), "no {kind} queues in {queues}");
        }
    }

    browser.click("#rollback-router")?;
    let question = browser.accept_dialog()?;
    assert!(question.contains("router"), "{question}");
    let now = eventually(T, || current_router(broker.admin, None).ok().filter(|v| *v != second))?;
    assert_eq!(now, first, "the rollback put back the version before");
    browser.wait_for_text("#router-current-version", &first)?;
    let message = browser.text("#message").unwrap_or_default();
    assert!(message.contains("router rolled back") && message.contains(&first), "{message}");
    eprintln!("console test took {:.1?}", started.elapsed());
    Ok(())
}

#[test]
fn with_a_token_the_console_opens_from_the_token_link_and_keeps_it_out_of_the_address_bar() -> Result<()> {
    const TOKEN: &str = "console-test-token-1";
    let broker = Broker::start_with_config(&format!("[admin]\ntoken = \"{TOKEN}\"\n"))?;
    let (status, page) = broker.admin_get("/")?;
    assert_eq!(status, 401);
    assert!(page.contains("id=\"token-form\""), "{page}");
    let current = current_router(broker.admin, Some(TOKEN))?;

    let browser = Browser::start()?;
    // A wrong token gets the form again, not the console.
    browser.open(&format!("http://{}/?token=wrong", broker.admin))?;
    eventually(T, || browser.find("#token-needed"))?;
    assert!(browser.find("#router-current-version").is_none());
    // The right one opens it; the page keeps the token for its API calls and drops it from
    // the address bar.
    browser.open(&format!("http://{}/?token={TOKEN}", broker.admin))?;
    browser.wait_for_text("#router-current-version", &current)?;
    let url = browser.current_url()?;
    assert!(!url.contains(TOKEN), "{url}");
    assert_eq!(browser.attribute("#plugins", "data-state").as_deref(), Some("ok"));
    Ok(())
}
