//! Figures shared by the workloads: latency summaries (hdrhistogram, recorded in µs), the
//! CPU time and memory of the benchmark and of the broker over a phase, the progress bar,
//! the `--json` output and the plain-text table.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::sys::Process;

/// An empty histogram of µs from 1 µs to an hour (3 significant digits); values beyond
/// are recorded as an hour (`saturating_record`).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// Percentiles of a latency histogram recorded in µs, in ms.
#[derive(Serialize, Clone, Copy, Debug, Default)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency { count: h.len(), p50_ms: ms(0.5), p99_ms: ms(0.99), p999_ms: ms(0.999), max_ms: h.max() as f64 / 1000.0 }
    }

    /// "p50 / p99 / p99.9" in ms.
    pub fn cell(&self) -> String {
        if self.count == 0 {
            return "-".into();
        }
        format!("{} / {} / {}", ms(self.p50_ms), ms(self.p99_ms), ms(self.p999_ms))
    }
}

/// A duration in ms, with the precision it deserves.
pub fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// A count with thousands separators.
pub fn count(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// CPU time and memory of the benchmark and the broker from a phase's start: started with
/// [`Meter::start`], sampled (peak RSS) with [`Meter::sample`], read with [`Meter::usage`].
pub struct Meter {
    started: Instant,
    bench: Process,
    bench_cpu: f64,
    broker: Option<(Process, f64)>,
    broker_rss_peak: u64,
    bench_rss_peak: u64,
}

/// What [`Meter::usage`] reports. The broker's figures are absent when its process is not
/// known (`--addr` without `--broker-pid`).
#[derive(Serialize, Clone, Debug, Default)]
pub struct Usage {
    pub wall_secs: f64,
    /// The benchmark's own CPU time (user + system, all threads).
    pub bench_cpu_secs: f64,
    pub broker_cpu_secs: Option<f64>,
    pub bench_rss_peak_bytes: u64,
    pub broker_rss_bytes: Option<u64>,
    /// Highest broker RSS seen by [`Meter::sample`] (and at the end).
    pub broker_rss_peak_bytes: Option<u64>,
}

impl Meter {
    pub fn start(broker: Option<Process>) -> Result<Meter> {
        let bench = Process::this();
        let broker = match broker {
            Some(p) => {
                let cpu = p.cpu_secs()?;
                Some((p, cpu))
            }
            None => None,
        };
        Ok(Meter { started: Instant::now(), bench_cpu: bench.cpu_secs()?, bench, broker, broker_rss_peak: 0, bench_rss_peak: 0 })
    }

    /// Notes the current memory of both processes (for the peaks).
    pub fn sample(&mut self) {
        if let Some((p, _)) = &self.broker {
            self.broker_rss_peak = self.broker_rss_peak.max(p.rss_bytes().unwrap_or(0));
        }
        self.bench_rss_peak = self.bench_rss_peak.max(self.bench.rss_bytes().unwrap_or(0));
    }

    pub fn usage(&mut self) -> Result<Usage> {
        self.sample();
        let wall_secs = self.started.elapsed().as_secs_f64();
        let (broker_cpu_secs, broker_rss_bytes) = match &self.broker {
            Some((p, cpu)) => (Some(p.cpu_secs()? - cpu), Some(p.rss_bytes()?)),
            None => (None, None),
        };
        Ok(Usage {
            wall_secs,
            bench_cpu_secs: self.bench.cpu_secs()? - self.bench_cpu,
            broker_cpu_secs,
            bench_rss_peak_bytes: self.bench_rss_peak,
            broker_rss_bytes,
            broker_rss_peak_bytes: self.broker.as_ref().map(|_| self.broker_rss_peak),
        })
    }
}

impl Usage {
    /// "CPU s of wall s" for one process.
    pub fn cpu_cell(cpu: Option<f64>, wall: f64) -> String {
        cpu.map_or("-".into(), |c| format!("{c:.2} of {wall:.2}"))
    }
}

/// A progress bar of `len` steps, drawn on stderr only on long runs: hidden with
/// `--quick` and when stdout is not a terminal (CI, a file).
pub fn progress(len: u64, quick: bool, what: &str) -> ProgressBar {
    if quick || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec} {msg}")
            .expect("a valid template"),
    );
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Writes `value` as pretty JSON to `path`, if given.
pub fn write_json<T: Serialize>(path: Option<&Path>, value: &T) -> Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(value)?).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("figures written to {}", path.display());
    }
    Ok(())
}

/// Prints a table: a header row of column titles, then rows of a label and one cell per
/// column, right-aligned.
pub fn print_table(columns: &[String], rows: &[(String, Vec<String>)]) {
    let label_width = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0).max(8);
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter().filter_map(|(_, cells)| cells.get(i)).map(|c| c.chars().count()).chain([columns[i].chars().count()]).max().unwrap_or(0)
        })
        .collect();
    print!("  {:<label_width$}", "");
    for (c, w) in columns.iter().zip(&widths) {
        print!("  {c:>w$}");
    }
    println!();
    for (label, cells) in rows {
        print!("  {label:<label_width$}");
        for (c, w) in cells.iter().zip(&widths) {
            print!("  {c:>w$}");
        }
        println!();
    }
}

/// "debug" or "release": the build of the benchmark (the broker beside it is the same).
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_in_ms_and_counts_have_separators() {
        let mut h = histogram();
        for us in 1..=1000 {
            h.record(us * 1000).unwrap(); // 1..=1000 ms
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_ms - 500.0).abs() < 1.0 && (l.p99_ms - 990.0).abs() < 1.0, "{l:?}");
        assert_eq!(count(1_234_567.4), "1,234,567");
        assert_eq!(count(999.0), "999");
    }
}
