//! `plugin-bench`: what plugins cost.
//!
//! 1. Swap: a new router file is written (rename into place) into a running broker's plugin
//!    folder; time until the admin API reports it current. Cold (a file never seen, so it is
//!    compiled) and cached (a file compiled before, loaded from the compile cache). A
//!    rename is complete, so the watcher loads it at once (no quiet period).
//! 2. Call: the per-message cost of the router call, through the same `Policy` the broker
//!    uses, one message per call and in batches of 64, and as a session asks it: from a
//!    tokio task, through the plugin threads (`PolicyThreads`), awaiting each reply.
//!
//! 3. Memory: the linear memory of an instance after the calls, and how many instances
//!    were recycled for outgrowing 3/4 of the memory cap.
//!
//! `--router FILE` measures any router component (e.g. one built from plugins/examples/)
//! instead of the built-in one. Figures: `cargo build --release --workspace --bins &&
//! target/release/plugin-bench [--router FILE --swaps 3]`. CI keeps it working with `--quick`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;
use hotline::config::PluginsConfig;
use hotline::plugins::PluginHost;
use hotline::broker::RegistrationLocks;
use hotline::policy::{MessageMeta, Policy, PolicyThreads, Question, Reply, Route};
use hotline::sms::{OutboxFile, SmsGateway};
use hotline::store::Store;
use hotline_tests::{install, version_of, with_marker, Broker};

#[derive(Parser)]
struct Args {
    /// Swaps measured per mode.
    #[arg(long, default_value_t = 20)]
    swaps: usize,
    /// Router calls measured.
    #[arg(long, default_value_t = 200_000)]
    calls: usize,
    /// A router component to measure instead of the built-in router.
    #[arg(long)]
    router: Option<PathBuf>,
    /// A small run that only checks the benchmark works (CI).
    #[arg(long)]
    quick: bool,
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.swaps = 2;
        args.calls = 2_000;
    }
    swaps(&args)?;
    calls(&args)?;
    Ok(())
}

fn current_router(admin: std::net::SocketAddr) -> Result<String> {
    let report: serde_json::Value = ureq::get(format!("http://{admin}/api/plugins")).call()?.body_mut().read_json()?;
    for v in report["versions"].as_array().into_iter().flatten() {
        if v["slot"] == "router" && (v["state"] == "current" || v["state"] == "probation") {
            return Ok(v["version"].as_str().unwrap_or_default().to_string());
        }
    }
    bail!("no current router")
}

/// Installs `bytes` as the router and returns the time until it serves.
fn swap_to(broker: &Broker, bytes: &[u8]) -> Result<Duration> {
    let want = version_of(bytes);
    let start = Instant::now();
    install(&broker.plugin_dir(), "router.wasm", bytes)?;
    while current_router(broker.admin)? != want {
        // A 12-18 MB Python or JS component compiles for tens of seconds.
        if start.elapsed() > Duration::from_secs(600) {
            bail!("version {want} never became current");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(start.elapsed())
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("  {name:<28} median {:>7.1} ms   worst {:>7.1} ms   ({} swaps)", ms(samples[samples.len() / 2]), ms(*samples.last().unwrap()), samples.len());
}

fn swaps(args: &Args) -> Result<()> {
    let broker = Broker::start()?;
    let (router, name) = match &args.router {
        Some(path) => (std::fs::read(path)?, path.display().to_string()),
        None => (std::fs::read(broker.plugin_dir().join("router.wasm"))?, "default router".to_string()),
    };
    println!("plugin-bench: file written -> new version serving ({name}, {} bytes)", router.len());
    let variants: Vec<Vec<u8>> = (0..args.swaps).map(|i| with_marker(&router, &format!("bench {i}"))).collect();
    let cold = variants.iter().map(|v| swap_to(&broker, v)).collect::<Result<Vec<_>>>()?;
    // Every variant is in the compile cache now; swap through them again.
    let cached = variants.iter().map(|v| swap_to(&broker, v)).collect::<Result<Vec<_>>>()?;
    summary("cold (compiled)", cold);
    summary("cached (compile cache)", cached);
    Ok(())
}

fn calls(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("store"))?;
    let sms = SmsGateway::start(Arc::new(OutboxFile::new(dir.path().join("sms.jsonl"))), Arc::default())?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let name = match &args.router {
        Some(path) => {
            std::fs::copy(path, plugins.join("router.wasm"))?;
            path.display().to_string()
        }
        None => "default router".to_string(),
    };
    let host = PluginHost::start(PluginsConfig::default(), plugins, dir.path().join("cache"), Arc::new(store), sms.clone())?;
    let meta = |i: usize| MessageMeta { from: "+15550000001".into(), to: format!("+1555{:07}", i % 1000 + 1_000_000), size: 100, at_ms: 0, kind: hotline_protocol::MessageKind::Text };
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!("plugin-bench: router call ({name}, direct messages; compiled in {:.1} ms)", router_info(&host).load.compile_us as f64 / 1000.0);
    host.route(vec![meta(0)])?;
    println!("  memory of an instance after one call: {:.2} MiB linear memory", mib(router_info(&host).instance_memory_bytes));
    for batch in [1usize, 64] {
        let start = Instant::now();
        let mut routed = 0;
        while routed < args.calls {
            let routes = host.route((0..batch).map(|i| meta(routed + i)).collect())?;
            assert!(matches!(routes[0], Route::Deliver(_)));
            routed += batch;
        }
        let per = start.elapsed().as_nanos() as f64 / routed as f64;
        println!("  batch {batch:>2}: {per:>8.0} ns per message ({routed} messages, plain thread)");
    }
    // As a session asks it: from a tokio task, handed to a plugin thread, the reply awaited.
    let host = Arc::new(host);
    let host_report = host.clone();
    let threads = PolicyThreads::start(1, host, Arc::new(RegistrationLocks::default()), sms)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
    let total = args.calls;
    let per = rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..total {
                let reply = threads.ask(Question::Route(vec![meta(i)])).await.expect("a reply");
                assert!(matches!(reply, Ok(Reply::Route(_))), "{reply:?}");
            }
            start.elapsed().as_nanos() as f64 / total as f64
        })
        .await
    })?;
    println!("  batch  1: {per:>8.0} ns per message (asked from a tokio task through the plugin threads, as in the broker)");
    let router = router_info(&host_report);
    println!(
        "  memory of an instance after all calls: {:.2} MiB linear memory; {} instances recycled (memory past 3/4 of the cap)",
        mib(router.instance_memory_bytes),
        router.recycled_instances
    );
    Ok(())
}

/// What the plugin host reports of the current router version (listed first).
fn router_info(host: &PluginHost) -> hotline::plugins::VersionInfo {
    host.report().versions.into_iter().find(|v| v.slot == hotline::policy::Slot::Router).expect("a router")
}
