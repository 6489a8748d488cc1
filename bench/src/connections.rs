//! `hotline-bench connections`: connection churn against the real broker. Registers N
//! numbers, then per round logs all N in (at most C logins in flight; a login is connect
//! with its QUIC handshake, `Hello` and `Login` answered), holds them, closes them all at
//! once and waits until the broker's `hotline_sessions` is 0. Reports logins/s, login
//! latency, broker memory idle / held / per held connection / after close, how long the
//! sessions took to drain, UDP drops at the broker's socket, and both processes' CPU time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use hotline_client::{Client, ClientError, ConnectOptions};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::sys;
use crate::target::{Admin, BrokerArgs, Target};

/// Logged-in sessions, and connections the broker's QUIC endpoint holds (closing ones too).
const SESSIONS: &str = "hotline_sessions";
const QUIC_CONNECTIONS: &str = "hotline_quic_connections";

/// A login not answered within this long counts as timed out.
const LOGIN_LIMIT: Duration = Duration::from_secs(30);
/// How long to wait for the sessions to drain after the closes: longer than the broker's
/// default idle timeout (60 s), so a close the broker never saw shows as a drain of ~60 s
/// rather than as a hang.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);
/// After the drain, the broker's RSS is read every this long until it stops falling (the
/// allocator returns freed pages over about a second)…
const SETTLE_STEP: Duration = Duration::from_millis(500);
/// …for at most this long.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// Flags of the `connections` workload.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Numbers registered and logged in each round (one connection each).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Logins in flight at most.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Rounds of log in all, hold, close all.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds the connections are held (idle, authenticated) before they are closed.
    #[arg(long, default_value_t = 2)]
    pub hold_secs: u64,
    /// QUIC endpoints (UDP sockets) the clients share, client i on endpoint i mod N; 0: one
    /// per client, as phones have (the benchmark then spends more CPU per login than the
    /// broker: a socket, a task and a receive buffer of a few MiB per client).
    #[arg(long, default_value_t = 16)]
    pub endpoints: usize,
    /// A TLS config made anew for every login, as `Client::connect` without a kept config
    /// does, so that every login is a full handshake. By default each number keeps its own
    /// config across rounds, as an app keeps it, so its logins from round 2 on resume the
    /// TLS session with the ticket the broker sent in the round before.
    #[arg(long)]
    pub fresh_tls: bool,
    /// A small run that checks the workload works (CI): 300 connections, concurrency 64,
    /// 2 rounds, no hold.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The broker (started here by default: its config allows a registrar call 2 s, so
    /// that registering many numbers survives a busy machine; logins and closes call no
    /// plugin). With --addr, --data, --admin and --broker-pid are needed.
    #[command(flatten)]
    pub broker: BrokerArgs,
}

/// The figures of a run (the `--json` output).
#[derive(Serialize)]
struct Report {
    connections: usize,
    concurrency: usize,
    rounds: usize,
    hold_secs: u64,
    /// Endpoints the clients share (0: one per client).
    endpoints: usize,
    /// Whether each number kept its TLS config (and so its session tickets) across rounds.
    tls_kept: bool,
    /// `debug` or `release` (of the benchmark; the broker beside it is the same profile).
    profile: &'static str,
    /// Soft open-file limit of the benchmark after raising it to the hard limit.
    open_file_limit: u64,
    registration_secs: f64,
    broker_rss_start_bytes: u64,
    /// Broker RSS after registration, with no session, before round 1.
    broker_rss_idle_bytes: u64,
    round: Vec<Round>,
    bench_cpu_secs: f64,
    broker_cpu_secs: f64,
}

/// The figures of one round.
#[derive(Serialize, Default)]
struct Round {
    round: usize,
    logged_in: usize,
    failed: usize,
    timed_out: usize,
    first_error: Option<String>,
    /// Wall time of the login burst.
    login_secs: f64,
    logins_per_sec: f64,
    login_p50_ms: f64,
    login_p99_ms: f64,
    login_p999_ms: f64,
    login_max_ms: f64,
    /// `hotline_sessions` at the end of the hold.
    sessions_held: u64,
    /// Logged-in clients whose connection had ended by the end of the hold.
    lost_while_held: usize,
    /// Why the first of those ended.
    first_lost_reason: Option<String>,
    broker_rss_round_start_bytes: u64,
    broker_rss_held_bytes: u64,
    /// (held - idle before round 1) / logged in.
    broker_kib_per_connection: f64,
    /// Broker RSS as soon as `hotline_sessions` reached 0.
    broker_rss_closed_bytes: u64,
    /// From the start of the closes until the broker's QUIC endpoint held no connection
    /// (`hotline_quic_connections` 0: closing and draining ones gone too). None: a broker
    /// without that figure, or not within `DRAIN_LIMIT` (then `quic_connections_left`).
    quic_released_secs: Option<f64>,
    quic_connections_left: u64,
    /// Broker RSS once it stopped falling after that.
    broker_rss_settled_bytes: u64,
    /// How long the RSS took to stop falling after the QUIC connections were gone.
    settle_secs: f64,
    bench_rss_held_bytes: u64,
    /// From the start of the closes until `hotline_sessions` was 0 (None: not within
    /// `DRAIN_LIMIT`).
    drain_secs: Option<f64>,
    /// Sessions left when the drain gave up (0 if it drained).
    sessions_left: u64,
    /// From the start of the closes until every `Client::close` returned.
    clients_closed_secs: f64,
    /// Packets dropped at the broker's UDP socket during the round (/proc/net/udp).
    broker_udp_drops: u64,
    /// Of those, dropped during the login burst.
    broker_udp_drops_logins: u64,
    /// Packets dropped at the benchmark's shared endpoints' sockets during the login burst
    /// (/proc/net/udp; 0 with `--endpoints 0`, whose sockets come and go).
    bench_udp_drops_logins: u64,
    /// UDP datagrams of one login (handshake, `Hello`, `Login` and their answers) from the
    /// benchmark to the broker and back, averaged over the logins (the client's counters).
    datagrams_to_broker_per_login: f64,
    datagrams_from_broker_per_login: f64,
    /// UDP receive-buffer errors of the whole system during the round (/proc/net/snmp):
    /// the broker's and the clients' sockets.
    system_udp_rcvbuf_errors: u64,
    bench_cpu_login_secs: f64,
    broker_cpu_login_secs: f64,
    bench_cpu_secs: f64,
    broker_cpu_secs: f64,
    round_secs: f64,
}

/// Runs the workload, prints a table and fails if any login failed.
pub async fn run(mut args: Args) -> Result<()> {
    if args.quick {
        (args.connections, args.concurrency, args.rounds, args.hold_secs) = (300, 64, 2, 0);
    }
    if args.connections == 0 || args.concurrency == 0 {
        bail!("--connections and --concurrency must be at least 1");
    }
    sys::keep_large_allocations_mapped();
    let (soft_before, open_file_limit) = sys::raise_open_file_limit()?;
    eprintln!("open-file limit: {open_file_limit} (soft limit was {soft_before}); with --endpoints 0 each client holds one UDP socket");
    if args.connections + 256 > open_file_limit as usize {
        eprintln!("warning: {} connections may not fit in {open_file_limit} open files", args.connections);
    }

    let target = Target::new(&args.broker)?;
    let pid = target.pid.context("connections reads the broker's memory: --broker-pid PID")?.to_string();
    let admin = target.admin();
    let broker_rss_start = sys::rss_bytes(&pid)?;
    let (bench_cpu_start, broker_cpu_start) = (sys::cpu_secs("self")?, sys::cpu_secs(&pid)?);

    eprintln!("registering {} numbers...", args.connections);
    let started = Instant::now();
    let phones = target.phones(3, args.connections);
    let keys = target.register(&phones, args.concurrency.min(64)).await?;
    let registration_secs = started.elapsed().as_secs_f64();
    let accounts: Arc<Vec<(String, String)>> = Arc::new(phones.into_iter().zip(keys).collect());
    let devices = Arc::new(Devices::new(&args, &target, accounts.len())?);
    if let Some(left) = until_zero(admin, SESSIONS, Instant::now() + DRAIN_LIMIT).await?.err() {
        bail!("{left} sessions still open {DRAIN_LIMIT:?} after registration");
    }
    let (broker_rss_idle, _) = settled_rss(&pid).await?;

    let mut rounds = Vec::new();
    for n in 1..=args.rounds {
        eprintln!("round {n}: {} logins, {} in flight...", args.connections, args.concurrency);
        let round = run_round(n, &args, &target, &pid, &accounts, &devices, broker_rss_idle).await?;
        eprintln!(
            "round {n}: {:.0} logins/s, p99 {:.1} ms, {} failed, drained in {}",
            round.logins_per_sec,
            round.login_p99_ms,
            round.failed + round.timed_out,
            round.drain_secs.map_or("(not drained)".into(), |s| format!("{s:.2} s"))
        );
        rounds.push(round);
    }

    let report = Report {
        connections: args.connections,
        concurrency: args.concurrency,
        rounds: args.rounds,
        hold_secs: args.hold_secs,
        endpoints: args.endpoints,
        tls_kept: !args.fresh_tls,
        profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        open_file_limit,
        registration_secs,
        broker_rss_start_bytes: broker_rss_start,
        broker_rss_idle_bytes: broker_rss_idle,
        bench_cpu_secs: sys::cpu_secs("self")? - bench_cpu_start,
        broker_cpu_secs: sys::cpu_secs(&pid)? - broker_cpu_start,
        round: rounds,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", path.display()))?;
    }
    let failed: usize = report.round.iter().map(|r| r.failed + r.timed_out).sum();
    if failed > 0 {
        let first = report.round.iter().find_map(|r| r.first_error.clone()).unwrap_or_default();
        bail!("{failed} of {} logins failed or timed out; the first: {first}", args.connections * args.rounds);
    }
    Ok(())
}

/// One round: log in all, hold, close all at once, wait for the drain.
async fn run_round(
    n: usize,
    args: &Args,
    target: &Target,
    pid: &str,
    accounts: &Arc<Vec<(String, String)>>,
    devices: &Arc<Devices>,
    broker_rss_idle: u64,
) -> Result<Round> {
    let mut round = Round { round: n, ..Round::default() };
    let port = target.addr.port();
    let round_started = Instant::now();
    round.broker_rss_round_start_bytes = sys::rss_bytes(pid)?;
    let (drops_start, rcvbuf_start) = (sys::udp_drops(port)?, sys::udp_rcvbuf_errors()?);
    let bench_drops_start = devices.udp_drops()?;
    let (bench_cpu_start, broker_cpu_start) = (sys::cpu_secs("self")?, sys::cpu_secs(pid)?);

    // Log in all, at most `concurrency` in flight.
    let login_started = Instant::now();
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let mut logins = JoinSet::new();
    let bar = crate::figures::progress(accounts.len() as u64, args.quick, &format!("round {n}"));
    for i in 0..accounts.len() {
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (options, accounts, bar) = (devices.options(i), accounts.clone(), bar.clone());
        logins.spawn(async move {
            let started = Instant::now();
            let (phone, key) = &accounts[i];
            // The counters as the login ends, before keep-alives add to them.
            let result = tokio::time::timeout(LOGIN_LIMIT, login(&options, phone, key)).await.map(|r| r.map(|c| {
                let stats = c.stats();
                (c, stats)
            }));
            drop(permit);
            bar.inc(1);
            (started.elapsed(), result)
        });
    }
    let mut latency = Histogram::<u64>::new(3)?;
    let mut clients = Vec::with_capacity(accounts.len());
    let (mut datagrams_out, mut datagrams_in) = (0u64, 0u64);
    while let Some(joined) = logins.join_next().await {
        match joined? {
            (took, Ok(Ok((client, stats)))) => {
                latency.record(took.as_micros() as u64)?;
                datagrams_out += stats.udp_tx.datagrams;
                datagrams_in += stats.udp_rx.datagrams;
                clients.push(client);
            }
            (_, Ok(Err(e))) => {
                round.failed += 1;
                round.first_error.get_or_insert_with(|| e.to_string());
            }
            (_, Err(_)) => {
                round.timed_out += 1;
                round.first_error.get_or_insert_with(|| format!("login not answered within {LOGIN_LIMIT:?}"));
            }
        }
    }
    bar.finish_and_clear();
    round.login_secs = login_started.elapsed().as_secs_f64();
    round.bench_cpu_login_secs = sys::cpu_secs("self")? - bench_cpu_start;
    round.broker_cpu_login_secs = sys::cpu_secs(pid)? - broker_cpu_start;
    round.broker_udp_drops_logins = sys::udp_drops(port)? - drops_start;
    round.bench_udp_drops_logins = devices.udp_drops()?.saturating_sub(bench_drops_start);
    round.logged_in = clients.len();
    if !clients.is_empty() {
        round.datagrams_to_broker_per_login = datagrams_out as f64 / clients.len() as f64;
        round.datagrams_from_broker_per_login = datagrams_in as f64 / clients.len() as f64;
    }
    round.logins_per_sec = clients.len() as f64 / round.login_secs;
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    (round.login_p50_ms, round.login_p99_ms, round.login_p999_ms) = (ms(0.5), ms(0.99), ms(0.999));
    round.login_max_ms = latency.max() as f64 / 1000.0;

    // Hold.
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    round.sessions_held = metric(target.admin(), SESSIONS).await? as u64;
    let lost: Vec<_> = clients.iter().filter_map(Client::close_reason).collect();
    round.lost_while_held = lost.len();
    round.first_lost_reason = lost.first().map(ToString::to_string);
    round.broker_rss_held_bytes = sys::rss_bytes(pid)?;
    round.bench_rss_held_bytes = sys::rss_bytes("self")?;
    if !clients.is_empty() {
        round.broker_kib_per_connection =
            (round.broker_rss_held_bytes as f64 - broker_rss_idle as f64) / 1024.0 / clients.len() as f64;
    }

    // Close all at once, and wait for the broker to let go of every session.
    let close_started = Instant::now();
    let closes: Vec<_> = clients.into_iter().map(|c| tokio::spawn(c.close())).collect();
    let all_closed = tokio::spawn(async move {
        for close in closes {
            let _ = close.await;
        }
        close_started.elapsed()
    });
    match until_zero(target.admin(), SESSIONS, close_started + DRAIN_LIMIT).await? {
        Ok(took) => round.drain_secs = Some(took.as_secs_f64()),
        Err(left) => round.sessions_left = left,
    }
    round.broker_rss_closed_bytes = sys::rss_bytes(pid)?;
    round.clients_closed_secs = all_closed.await?.as_secs_f64();
    // A session ends before its connection: QUIC keeps a closed connection, its buffers
    // and keys, for three probe timeouts. What is left after that is what the broker keeps.
    // (A broker without the figure is not waited for.)
    if metric(target.admin(), QUIC_CONNECTIONS).await.is_ok() {
        match until_zero(target.admin(), QUIC_CONNECTIONS, close_started + DRAIN_LIMIT).await? {
            Ok(_) => round.quic_released_secs = Some(close_started.elapsed().as_secs_f64()),
            Err(left) => round.quic_connections_left = left,
        }
    }
    (round.broker_rss_settled_bytes, round.settle_secs) = settled_rss(pid).await?;

    round.broker_udp_drops = sys::udp_drops(port)? - drops_start;
    round.system_udp_rcvbuf_errors = sys::udp_rcvbuf_errors()?.saturating_sub(rcvbuf_start);
    round.bench_cpu_secs = sys::cpu_secs("self")? - bench_cpu_start;
    round.broker_cpu_secs = sys::cpu_secs(pid)? - broker_cpu_start;
    round.round_secs = round_started.elapsed().as_secs_f64();
    Ok(round)
}

/// What the clients connect with: the shared endpoints, and each number's TLS config.
struct Devices {
    base: ConnectOptions,
    endpoints: Vec<quinn::Endpoint>,
    /// One per number (empty with `--fresh-tls`).
    configs: Vec<quinn::ClientConfig>,
}

impl Devices {
    fn new(args: &Args, target: &Target, n: usize) -> Result<Devices> {
        let base = target.options();
        let bind: std::net::SocketAddr = if base.server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse()?;
        let endpoints = (0..args.endpoints).map(|_| shared_endpoint(bind)).collect::<Result<_>>()?;
        let configs = if args.fresh_tls {
            Vec::new()
        } else {
            (0..n).map(|_| hotline_client::client_config(&base.ca).context("the client TLS config")).collect::<Result<_>>()?
        };
        Ok(Devices { base, endpoints, configs })
    }

    /// Datagrams dropped so far at the shared endpoints' sockets.
    fn udp_drops(&self) -> Result<u64> {
        let mut total = 0;
        for endpoint in &self.endpoints {
            total += sys::udp_drops(endpoint.local_addr()?.port())?;
        }
        Ok(total)
    }

    /// How client `i` connects.
    fn options(&self, i: usize) -> ConnectOptions {
        ConnectOptions {
            endpoint: (!self.endpoints.is_empty()).then(|| self.endpoints[i % self.endpoints.len()].clone()),
            config: self.configs.get(i).cloned(),
            ..self.base.clone()
        }
    }
}

/// Receive buffer asked for each shared endpoint's socket: the default (about 208 KiB)
/// overflows with hundreds of handshakes in flight on a few sockets.
const SHARED_RECEIVE_BUFFER: libc::c_int = 16 << 20;

/// A client endpoint for many connections, its socket's receive buffer sized for a burst.
fn shared_endpoint(bind: std::net::SocketAddr) -> Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(bind).context("binding a client endpoint")?;
    let size = &SHARED_RECEIVE_BUFFER as *const libc::c_int as *const libc::c_void;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and a pointer to a c_int of the given length.
    let forced = unsafe { libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size, len) };
    if forced != 0 {
        // Without CAP_NET_ADMIN: capped at net.core.rmem_max.
        unsafe { libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, size, len) };
    }
    let runtime = quinn::default_runtime().context("no async runtime for quinn")?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime).context("making a client endpoint")
}

/// One login as the app does it: connect (QUIC handshake), then `Hello` and `Login` in
/// one write (`Client::connect_and_login`).
async fn login(options: &ConnectOptions, phone: &str, key: &str) -> Result<Client, ClientError> {
    Client::connect_and_login(options, phone, key).await
}

/// One of the broker's metrics (a blocking HTTP request, kept off the async workers).
async fn metric(admin: Admin, name: &'static str) -> Result<f64> {
    tokio::task::spawn_blocking(move || admin.metric(name)).await?
}

/// Polls metric `name` every 10 ms until it is 0 (Ok: how long since this was called) or
/// `deadline` passes (Err: what is left).
async fn until_zero(admin: Admin, name: &'static str, deadline: Instant) -> Result<Result<Duration, u64>> {
    let started = Instant::now();
    loop {
        let left = metric(admin, name).await?;
        if left == 0.0 {
            return Ok(Ok(started.elapsed()));
        }
        if Instant::now() > deadline {
            return Ok(Err(left as u64));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The broker's RSS once it has stopped falling, and how long that took.
async fn settled_rss(pid: &str) -> Result<(u64, f64)> {
    let started = Instant::now();
    let mut last = sys::rss_bytes(pid)?;
    loop {
        tokio::time::sleep(SETTLE_STEP).await;
        let now = sys::rss_bytes(pid)?;
        let still_falling = last.saturating_sub(now) > 1 << 20;
        last = now;
        if !still_falling || started.elapsed() > SETTLE_LIMIT {
            return Ok((last, started.elapsed().as_secs_f64()));
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// Prints the figures: one row per figure, one column per round.
fn print_report(r: &Report) {
    println!(
        "hotline-bench connections: {} connections, {} in flight, {} rounds, held {} s ({} build)",
        r.connections, r.concurrency, r.rounds, r.hold_secs, r.profile
    );
    println!(
        "  clients on {}; {}",
        if r.endpoints == 0 { "an endpoint each".to_string() } else { format!("{} shared endpoints", r.endpoints) },
        if r.tls_kept { "each number keeps its TLS config (logins after the first resume)" } else { "a new TLS config per login (full handshakes)" }
    );
    println!(
        "  registration {:.1} s; broker RSS at start {} MiB, idle before round 1 {} MiB; open-file limit {}",
        r.registration_secs,
        mib(r.broker_rss_start_bytes),
        mib(r.broker_rss_idle_bytes),
        r.open_file_limit
    );
    type Cell = fn(&Round) -> String;
    let rows: [(&str, Cell); 29] = [
        ("logged in", |x| x.logged_in.to_string()),
        ("failed / timed out", |x| format!("{} / {}", x.failed, x.timed_out)),
        ("logins/s", |x| format!("{:.0}", x.logins_per_sec)),
        ("login p50 (ms)", |x| format!("{:.1}", x.login_p50_ms)),
        ("login p99 (ms)", |x| format!("{:.1}", x.login_p99_ms)),
        ("login p99.9 (ms)", |x| format!("{:.1}", x.login_p999_ms)),
        ("login max (ms)", |x| format!("{:.1}", x.login_max_ms)),
        ("sessions held", |x| x.sessions_held.to_string()),
        ("connections lost while held", |x| x.lost_while_held.to_string()),
        ("broker RSS round start (MiB)", |x| mib(x.broker_rss_round_start_bytes)),
        ("broker RSS held (MiB)", |x| mib(x.broker_rss_held_bytes)),
        ("broker per held conn (KiB)", |x| format!("{:.1}", x.broker_kib_per_connection)),
        ("broker RSS at 0 sessions (MiB)", |x| mib(x.broker_rss_closed_bytes)),
        ("QUIC connections gone in (s)", |x| match (x.quic_released_secs, x.quic_connections_left) {
            (Some(s), _) => format!("{s:.2}"),
            (None, 0) => "not reported".into(),
            (None, left) => format!("no, {left} left"),
        }),
        ("broker RSS settled (MiB)", |x| mib(x.broker_rss_settled_bytes)),
        ("  settled after (s)", |x| format!("{:.1}", x.settle_secs)),
        ("sessions drained in (s)", |x| x.drain_secs.map_or(format!("no, {} left", x.sessions_left), |s| format!("{s:.2}"))),
        ("all client closes done (s)", |x| format!("{:.2}", x.clients_closed_secs)),
        ("broker UDP drops in logins", |x| x.broker_udp_drops_logins.to_string()),
        ("broker UDP drops in round", |x| x.broker_udp_drops.to_string()),
        ("bench UDP drops in logins", |x| x.bench_udp_drops_logins.to_string()),
        ("datagrams per login, to / from broker", |x| format!("{:.1} / {:.1}", x.datagrams_to_broker_per_login, x.datagrams_from_broker_per_login)),
        ("system UDP RcvbufErrors", |x| x.system_udp_rcvbuf_errors.to_string()),
        ("bench CPU in logins (s)", |x| format!("{:.2} of {:.2}", x.bench_cpu_login_secs, x.login_secs)),
        ("broker CPU in logins (s)", |x| format!("{:.2} of {:.2}", x.broker_cpu_login_secs, x.login_secs)),
        ("bench CPU in round (s)", |x| format!("{:.2}", x.bench_cpu_secs)),
        ("broker CPU in round (s)", |x| format!("{:.2}", x.broker_cpu_secs)),
        ("bench RSS held (MiB)", |x| mib(x.bench_rss_held_bytes)),
        ("round wall time (s)", |x| format!("{:.1}", x.round_secs)),
    ];
    let width = 16;
    print!("  {:<32}", "");
    for x in &r.round {
        print!("{:>width$}", format!("round {}", x.round));
    }
    println!();
    for (label, cell) in rows {
        print!("  {label:<32}");
        for x in &r.round {
            print!("{:>width$}", cell(x));
        }
        println!();
    }
    if let Some(e) = r.round.iter().find_map(|x| x.first_error.as_deref()) {
        println!("  first login error: {e}");
    }
    if let Some(e) = r.round.iter().find_map(|x| x.first_lost_reason.as_deref()) {
        println!("  first connection lost while held: {e}");
    }
    println!("  CPU over the whole run: bench {:.1} s, broker {:.1} s", r.bench_cpu_secs, r.broker_cpu_secs);
}
