//! `hotline-bench swap`: the `online` workload at a fixed rate (half of a measured maximum,
//! or `--rate`) while the router plugin file in the broker's plugin folder is replaced
//! `--swaps` times, alternating between two builds that route the same way (the router the
//! broker runs, and a copy with a custom section added: a new hash, the same code). Reports
//! lost and refused messages (both must be 0), send→delivered p99 for messages sent within
//! ±1 s of a swap against the others, and how long each renamed file took to serve.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use hotline_tests::{install, version_of, with_marker};
use serde::Serialize;

use crate::figures::{self, count, histogram, ms, Latency};
use crate::load::{Load, Outcome};
use crate::online::{self, run_hotline_with};
use crate::target::{Admin, BrokerArgs, Target};

/// Messages sent within this long of a swap count as "during swaps".
const AROUND: Duration = Duration::from_secs(1);
/// A renamed file not serving within this long fails the run.
const SERVE_LIMIT: Duration = Duration::from_secs(30);

/// Flags of the `swap` workload. `--rate` (messages/s) is the pace; without it a first run
/// as fast as possible measures the maximum and the swaps run at half of it. `--messages`
/// is ignored: the run lasts (`--swaps` + 1) × `--interval-secs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub load: Load,
    /// Times the router file is replaced.
    #[arg(long, default_value_t = 10)]
    pub swaps: usize,
    /// Seconds between swaps (and before the first and after the last).
    #[arg(long, default_value_t = 3.0)]
    pub interval_secs: f64,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// A small run that checks the workload works (CI): 4 clients at 200 messages/s, 2 swaps
    /// 1 s apart.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// One replacement of the router file.
#[derive(Serialize, Clone, Debug)]
struct Swap {
    version: String,
    /// When the file was renamed into place, s since the run's start.
    at_secs: f64,
    /// From the rename until `GET /api/plugins` showed the version current (polled every
    /// 2 ms; includes the request's own time).
    serving_ms: f64,
    /// From the rename until the broker's `loaded` event for the version (its clock, ms).
    loaded_ms: Option<f64>,
    /// The `loaded` event's detail ("compiled in N ms", "loaded from the compile cache…").
    detail: Option<String>,
}

/// The `--json` output.
#[derive(Serialize)]
struct Report {
    load: Load,
    profile: &'static str,
    /// The rate the run was paced at, and the maximum it is half of (if measured here).
    rate: f64,
    measured_max_rate: Option<f64>,
    swaps: Vec<Swap>,
    run: Outcome,
    /// send→delivered of messages sent within ±1 s of a swap, and of the others.
    delivered_around_swaps: Latency,
    delivered_away_from_swaps: Latency,
    /// Router calls that failed, across all its versions (`GET /api/plugins`).
    router_errors: u64,
}

pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        (args.load.clients, args.load.rate, args.swaps, args.interval_secs) = (4, Some(200.0), 2, 1.0);
    }
    if args.swaps == 0 || args.interval_secs <= 0.0 {
        bail!("--swaps must be at least 1 and --interval-secs positive");
    }
    let target = Target::new(&args.broker)?;
    let plugins = target.data().context("swap replaces the router file in the broker's plugin folder")?.join("plugins");

    let mut measured_max_rate = None;
    let rate = match args.load.rate {
        Some(rate) => rate,
        None => {
            let calibration = Load { rate: None, messages: args.load.messages.min(500), ..args.load.clone() };
            calibration.check()?;
            eprintln!("measuring the maximum rate: {}...", calibration.describe());
            let max = online::run_hotline(&target, &calibration, args.quick, false).await?.outcome.messages_per_sec;
            measured_max_rate = Some(max);
            max / 2.0
        }
    };
    let duration = (args.swaps + 1) as f64 * args.interval_secs;
    args.load.rate = Some(rate);
    args.load.messages = ((rate * duration) / args.load.clients as f64).ceil() as usize;
    args.load.check()?;
    println!(
        "hotline-bench swap: {}; router replaced {} times, every {} s ({} build)",
        args.load.describe(),
        args.swaps,
        args.interval_secs,
        figures::profile()
    );

    // The two builds: the router the broker runs and a copy with a marker section. Each is
    // loaded once before the run, so every measured swap finds its compiled form cached.
    let a = std::fs::read(plugins.join("router.wasm")).context("reading the broker's router.wasm")?;
    let b = with_marker(&a, "hotline-bench swap");
    for bytes in [&b, &a] {
        install(&plugins, "router.wasm", bytes)?;
        wait_current(target.admin(), &version_of(bytes), SERVE_LIMIT)?;
    }

    let (epoch_tx, epoch_rx) = mpsc::channel::<Instant>();
    let swapper = {
        let (admin, plugins, swaps, interval) = (target.admin(), plugins.clone(), args.swaps, args.interval_secs);
        std::thread::spawn(move || -> Result<Vec<Swap>> {
            let epoch = epoch_rx.recv().context("the run never started")?;
            let mut done = Vec::new();
            for k in 0..swaps {
                let at = epoch + Duration::from_secs_f64((k + 1) as f64 * interval);
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let bytes = if k % 2 == 0 { &b } else { &a };
                let version = version_of(bytes);
                let renamed = Instant::now();
                install(&plugins, "router.wasm", bytes)?;
                let serving = wait_current(admin, &version, SERVE_LIMIT)?;
                let unix_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs_f64() * 1000.0
                    - renamed.elapsed().as_secs_f64() * 1000.0;
                done.push((
                    Swap { version, at_secs: (renamed - epoch).as_secs_f64(), serving_ms: serving.as_secs_f64() * 1000.0, loaded_ms: None, detail: None },
                    unix_ms,
                ));
            }
            // The broker's own record of each load.
            let report = admin.plugins()?;
            let history: Vec<&serde_json::Value> = report["history"].as_array().into_iter().flatten().collect();
            Ok(done
                .into_iter()
                .map(|(mut swap, unix_ms)| {
                    let loaded = history.iter().find(|e| {
                        e["slot"] == "router"
                            && e["event"] == "loaded"
                            && e["version"] == swap.version.as_str()
                            && e["at_ms"].as_f64().is_some_and(|t| t >= unix_ms.floor())
                    });
                    if let Some(e) = loaded {
                        swap.loaded_ms = e["at_ms"].as_f64().map(|t| t - unix_ms);
                        swap.detail = e["detail"].as_str().map(String::from);
                    }
                    swap
                })
                .collect())
        })
    };
    let run = run_hotline_with(&target, &args.load, args.quick, true, 1, |epoch| {
        let _ = epoch_tx.send(epoch);
    })
    .await?;
    let swaps = swapper.join().map_err(|_| anyhow::anyhow!("the swapping thread panicked"))??;

    // send→delivered around the swaps and away from them.
    let swap_ns: Vec<u64> = swaps.iter().map(|s| (s.at_secs * 1e9) as u64).collect();
    let (mut around, mut away) = (histogram(), histogram());
    for &(sent_ns, us) in run.samples.as_deref().unwrap_or_default() {
        let near = swap_ns.iter().any(|&s| sent_ns.abs_diff(s) <= AROUND.as_nanos() as u64);
        if near { &mut around } else { &mut away }.saturating_record(us as u64);
    }
    let report = target.admin().plugins()?;
    let router_errors = report["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["slot"] == "router")
        .filter_map(|v| v["errors"].as_u64())
        .sum();
    let report = Report {
        load: args.load.clone(),
        profile: figures::profile(),
        rate,
        measured_max_rate,
        swaps,
        run: run.outcome,
        delivered_around_swaps: Latency::of(&around),
        delivered_away_from_swaps: Latency::of(&away),
        router_errors,
    };
    print_report(&report);
    figures::write_json(args.json.as_deref(), &report)?;
    let r = &report.run;
    if r.lost + r.failed + r.receipts_missing > 0 {
        bail!("{} messages lost, {} refused, {} receipts missing across the swaps", r.lost, r.failed, r.receipts_missing);
    }
    Ok(())
}

/// Polls `GET /api/plugins` every 2 ms until `version` is the router's current version;
/// returns how long that took.
fn wait_current(admin: Admin, version: &str, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let report = admin.plugins()?;
        let current = report["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["slot"] == "router" && (v["state"] == "current" || v["state"] == "probation"));
        if current.is_some_and(|v| v["version"] == version) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("router {version} not current within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn print_report(r: &Report) {
    let serving: Vec<f64> = r.swaps.iter().map(|s| s.serving_ms).collect();
    let loaded: Vec<f64> = r.swaps.iter().filter_map(|s| s.loaded_ms).collect();
    let spread = |v: &[f64]| {
        if v.is_empty() {
            return "-".to_string();
        }
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        format!("{} / {} / {}", ms(v[0]), ms(v[v.len() / 2]), ms(v[v.len() - 1]))
    };
    let run = &r.run;
    let rows: Vec<(String, Vec<String>)> = vec![
        ("rate (messages/s)".into(), vec![match r.measured_max_rate {
            Some(max) => format!("{} (half of {} measured)", count(r.rate), count(max)),
            None => count(r.rate),
        }]),
        ("messages delivered / sent".into(), vec![format!("{} / {}", run.delivered, run.messages)]),
        ("lost / refused / no receipt".into(), vec![format!("{} / {} / {}", run.lost, run.failed, run.receipts_missing)]),
        ("router call errors".into(), vec![r.router_errors.to_string()]),
        ("send→delivered p50/p99/p99.9 ms, all".into(), vec![run.send_to_delivered.cell()]),
        ("  sent within ±1 s of a swap".into(), vec![r.delivered_around_swaps.cell()]),
        ("  sent away from swaps".into(), vec![r.delivered_away_from_swaps.cell()]),
        ("  p99 around / away".into(), vec![format!("{:.2}x", r.delivered_around_swaps.p99_ms / r.delivered_away_from_swaps.p99_ms)]),
        ("send→sent p50/p99/p99.9 ms".into(), vec![run.send_to_sent.cell()]),
        ("send→receipt p50/p99/p99.9 ms".into(), vec![run.send_to_receipt.cell()]),
        ("rename→serving (API) min/median/max ms".into(), vec![spread(&serving)]),
        ("rename→loaded event min/median/max ms".into(), vec![spread(&loaded)]),
        ("broker CPU µs/message".into(), vec![run.broker_cpu_us_per_message.map_or("-".into(), |v| format!("{v:.1}"))]),
        ("CPU s bench / broker (of wall)".into(), vec![format!(
            "{:.2} / {} of {:.2}",
            run.usage.bench_cpu_secs,
            run.usage.broker_cpu_secs.map_or("-".into(), |c| format!("{c:.2}")),
            run.wall_secs
        )]),
    ];
    figures::print_table(&["".into()], &rows);
    if let Some(detail) = r.swaps.iter().find_map(|s| s.detail.as_deref()) {
        println!("  first swap's load: {detail}");
    }
}
