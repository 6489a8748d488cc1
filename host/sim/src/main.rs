//! `hotline-sim`: runs the delivery core's seeded simulator (`hotline_core::sim`) over a range
//! of seeds on every core, prints what it did, and on the first violation prints the seed,
//! the invariant and the command that replays it with its whole schedule.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use hotline_core::sim::{run, run_traced, SimConfig, SimReport, Violation};

/// Runs the Hotline delivery core through seeded schedules with faults and checks its
/// promises after every step.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000, conflicts_with = "seed")]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Run this one seed (with --verbose: print its schedule).
    #[arg(long)]
    seed: Option<u64>,
    /// Print every step of the schedule (one seed only).
    #[arg(long, requires = "seed")]
    verbose: bool,
    /// Random steps per seed before the drain.
    #[arg(long, default_value_t = SimConfig::default().steps)]
    steps: usize,
    /// Simulated users.
    #[arg(long, default_value_t = SimConfig::default().users as u64, value_parser = clap::value_parser!(u64).range(2..))]
    users: u64,
    /// The sessions' delivery window.
    #[arg(long, default_value_t = SimConfig::default().delivery_window)]
    window: usize,
    /// No crashes, fsync failures or plugin faults.
    #[arg(long)]
    no_faults: bool,
    /// Threads running seeds (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
}

impl Args {
    fn config(&self) -> SimConfig {
        SimConfig { users: self.users as usize, steps: self.steps, delivery_window: self.window, faults: !self.no_faults }
    }

    /// The options that shape a schedule, as given on the command line.
    fn shape(&self) -> String {
        let default = SimConfig::default();
        let mut s = String::new();
        if self.steps != default.steps {
            s += &format!(" --steps {}", self.steps);
        }
        if self.users as usize != default.users {
            s += &format!(" --users {}", self.users);
        }
        if self.window != default.delivery_window {
            s += &format!(" --window {}", self.window);
        }
        if self.no_faults {
            s += " --no-faults";
        }
        s
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = args.config();
    if let Some(seed) = args.seed {
        let result = if args.verbose {
            run_traced(seed, &config, Some(&mut |line: &str| println!("{line}")))
        } else {
            run(seed, &config)
        };
        return match result {
            Ok(report) => {
                println!("seed {seed}: ok: {report:?}");
                ExitCode::SUCCESS
            }
            Err(v) => violated(&v, &args),
        };
    }
    let started = Instant::now();
    let (total, ran, violation) = run_seeds(&args, &config);
    let secs = started.elapsed().as_secs_f64();
    if let Some(v) = violation {
        return violated(&v, &args);
    }
    println!(
        "seeds run: {ran} ({}..{}), steps: {}, messages: {}, crashes: {}, fsync failures: {}, policy swaps: {}, registrations: {}, violations: 0, {:.1} s, {:.0} seeds/s",
        args.from,
        args.from + ran,
        total.steps,
        total.messages,
        total.crashes,
        total.fsync_failures,
        total.policy_swaps,
        total.registrations,
        secs,
        ran as f64 / secs.max(1e-9),
    );
    ExitCode::SUCCESS
}

fn violated(v: &Violation, args: &Args) -> ExitCode {
    println!("violation: {v}");
    let planted: Vec<&str> = [
        (cfg!(feature = "mutation-ack-before-fsync"), "mutation-ack-before-fsync"),
        (cfg!(feature = "mutation-push-before-durable"), "mutation-push-before-durable"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let build = if planted.is_empty() { String::new() } else { format!("  (a build with --features {})", planted.join(",")) };
    println!("replay: hotline-sim --seed {}{} --verbose{build}", v.seed, args.shape());
    ExitCode::FAILURE
}

/// Runs `args.seeds` seeds from `args.from` on `args.jobs` threads. Answers the totals, the
/// seeds run, and the violation of the lowest failing seed (seeds below it all ran).
fn run_seeds(args: &Args, config: &SimConfig) -> (SimReport, u64, Option<Violation>) {
    let end = args.from.saturating_add(args.seeds);
    let next = AtomicU64::new(args.from);
    let done = AtomicU64::new(0);
    // The lowest failing seed so far: seeds above it need not run.
    let stop = AtomicU64::new(u64::MAX);
    let violation: Mutex<Option<Violation>> = Mutex::new(None);
    let totals = Mutex::new(SimReport::default());
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                let mut mine = SimReport::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end || seed > stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match run(seed, config) {
                        Ok(r) => add(&mut mine, &r),
                        Err(v) => {
                            stop.fetch_min(seed, Ordering::Relaxed);
                            let mut found = violation.lock().expect("no panics while held");
                            if found.as_ref().is_none_or(|f| f.seed > v.seed) {
                                *found = Some(v);
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                add(&mut totals.lock().expect("no panics while held"), &mine);
            });
        }
        progress(&done, args.seeds, &stop);
    });
    let ran = done.load(Ordering::Relaxed);
    (totals.into_inner().expect("no panics while held"), ran, violation.into_inner().expect("no panics while held"))
}

/// Shows how far a long run is, until it ends: a line updated in place on a terminal,
/// else a line every 15 seconds.
fn progress(done: &AtomicU64, seeds: u64, stop: &AtomicU64) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty { Duration::from_millis(500) } else { Duration::from_secs(15) };
    let started = Instant::now();
    let mut last = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let n = done.load(Ordering::Relaxed);
        if n >= seeds || stop.load(Ordering::Relaxed) != u64::MAX {
            break;
        }
        if last.elapsed() >= every {
            last = Instant::now();
            let rate = n as f64 / started.elapsed().as_secs_f64();
            let line = format!("{n}/{seeds} seeds, {rate:.0} seeds/s");
            if tty {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
        }
    }
    if tty && started.elapsed() >= every {
        eprint!("\r\x1b[K");
    }
}

fn add(total: &mut SimReport, r: &SimReport) {
    total.steps += r.steps;
    total.messages += r.messages;
    total.crashes += r.crashes;
    total.fsync_failures += r.fsync_failures;
    total.policy_swaps += r.policy_swaps;
    total.registrations += r.registrations;
}
