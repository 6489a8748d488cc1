//! WebAssembly plugins: the runtime that loads components into slots, swaps them while the
//! broker runs, and answers the core's [`Policy`] calls with them (and the push worker's
//! [`PluginHost::notify`], the notifier slot, which the core never asks).
//!
//! Code map: `bindings/` (the WIT contract, host side: one module per served contract
//! version and the conversions into the newest), `host_api/` (one file per host interface),
//! `state` (an instance's store data), `kv_backend` (where the kv interface keeps its data:
//! the [`PluginKv`] trait, implemented by the node's store) and `cluster_kv` (its NATS
//! JetStream bucket in a cluster), `runtime` (engine, linkers, compile cache),
//! `instance` (an instance of any version, called with the newest types), `version` (one
//! loaded version and its instance pool), `slot` (current and earlier versions, swap and
//! rollback), `canary` (canary rollouts: the user hash, latency, the comparison),
//! `watcher` (the plugin folder), `defaults` (built-in plugins).

mod bindings;
mod canary;
pub mod cluster_kv;
pub mod defaults;
mod host_api;
mod instance;
pub mod kv_backend;
pub mod metrics;
mod runtime;
mod slot;
mod sources;
mod state;
mod version;
mod watcher;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hotline_protocol::{ErrorCode, MessageKind, ReceiptStatus};
use serde::Serialize;
use sha2::{Digest, Sha256};

use bindings::types;
pub use bindings::{ContractVersion, CONTRACT_VERSION};
pub use canary::{bucket, CanaryInfo, LatencySnapshot, METRIC_BOUNDS_US};
use canary::{Baseline, Canary};
pub use host_api::kv::{MAX_KEYS_PER_CALL, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use kv_backend::PluginKv;
pub use metrics::PluginCounters;
use runtime::Runtime;
pub use runtime::blocking;
pub use slot::{SwapEvent, SwapEventKind};
use slot::SlotState;
pub use version::FailureKind;
use version::{CallFailure, Instance, Version};
pub use watcher::Watcher;

use crate::config::PluginsConfig;
use crate::policy::{HostPolicy, MessageMeta, Policy, PolicyError, ReceiptMeta, Refusal, Route, Slot};
use crate::sms::{SmsGateway, Text};

/// Limits every plugin instance runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    pub call_timeout: Duration,
    pub memory_bytes: usize,
    /// An instance holding more linear memory than this after a call is recycled (3/4 of
    /// `memory_bytes`).
    pub recycle_above_bytes: usize,
    pub max_idle_instances: usize,
}

/// What versions need to instantiate: engine, key-value backend, SMS, counters, limits, configs.
pub struct PluginContext {
    runtime: Runtime,
    /// Component files of the loaded versions, on disk (`<cache>/versions/`).
    sources: Arc<sources::Sources>,
    /// Where the plugins' key-value spaces live (the node's store, or the cluster's bucket).
    kv: Arc<dyn PluginKv>,
    /// Where texts of calls other than `request-code` go (nobody waits for them).
    sms: SmsGateway,
    counters: [Arc<PluginCounters>; 4],
    limits: Limits,
    config: PluginsConfig,
}

impl PluginContext {
    fn counters(&self, slot: Slot) -> Arc<PluginCounters> {
        self.counters[slot as usize].clone()
    }

    fn config_for(&self, slot: Slot) -> String {
        match slot {
            Slot::Router => self.config.router_config.clone(),
            Slot::Registrar => self.config.registrar_config.clone(),
            Slot::Receipts => self.config.receipts_config.clone(),
            Slot::Notifier => self.config.notifier_config.clone(),
        }
    }
}

/// The plugin runtime: four slots, each with its current version.
pub struct PluginHost {
    ctx: PluginContext,
    slots: [SlotState; 4],
    dir: PathBuf,
    /// Held while a file is set aside and the serving bytes put back (the watcher and an
    /// automatic rollback may both do it).
    folder: Mutex<()>,
    /// Held while a canary starts, changes or ends and its file is written (the API and
    /// the watcher may both do it); taken before `folder`.
    canary_lock: Mutex<()>,
    /// Files refused since start (every slot), for `hotline_plugin_refused_total`.
    refused_total: AtomicU64,
    /// Automatic rollbacks since start, for `hotline_plugin_rollbacks_total`.
    rollbacks_total: AtomicU64,
}

/// One version as the operator sees it (`hotline plugins list`).
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub slot: Slot,
    /// First 12 hex digits of the file's SHA-256.
    pub version: String,
    /// `current`, `probation` (current, still in its first minutes), `canary` (serving a
    /// share of the users), `previous` (kept for rollback) or `rolled-back`.
    pub state: &'static str,
    pub calls: u64,
    pub errors: u64,
    /// Failed calls by kind (`timeout`, `trap`, `instantiation`, `memory`).
    pub error_kinds: std::collections::BTreeMap<&'static str, u64>,
    pub idle_instances: usize,
    /// Linear memory of the instance that last finished a call, in bytes.
    pub instance_memory_bytes: u64,
    /// Instances replaced because their memory passed 3/4 of `plugins.memory_limit_mib`.
    pub recycled_instances: u64,
    /// Call durations since it was loaded (for `/metrics`).
    #[serde(skip)]
    pub latency: LatencySnapshot,
    #[serde(flatten)]
    pub load: version::LoadInfo,
}

/// Everything about the plugins, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct PluginsReport {
    pub versions: Vec<VersionInfo>,
    pub history: Vec<SwapEvent>,
    /// Running canaries compared with their slot's current version.
    pub canaries: Vec<CanaryInfo>,
    pub counters: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PluginHost {
    /// Prepares the plugin folder (writing the built-in plugins on first start), compiles
    /// and loads one version per slot. A slot whose file cannot be loaded starts with its
    /// built-in plugin, and the refusal is logged and listed. `kv` keeps the plugins'
    /// key-value state: the node's [`crate::store::Store`], or in a cluster the bucket of
    /// [`cluster_kv::NatsPluginKv`].
    pub fn start(config: PluginsConfig, dir: PathBuf, cache_dir: PathBuf, kv: Arc<dyn PluginKv>, sms: SmsGateway) -> anyhow::Result<PluginHost> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating plugin folder {}", dir.display()))?;
        let limits = Limits {
            call_timeout: Duration::from_millis(config.call_timeout_ms),
            memory_bytes: (config.memory_limit_mib as usize) << 20,
            recycle_above_bytes: ((config.memory_limit_mib as usize) << 20) / 4 * 3,
            max_idle_instances: config.max_idle_instances,
        };
        let sources = sources::Sources::open(cache_dir.join("versions"))
            .with_context(|| format!("opening {}", cache_dir.join("versions").display()))?;
        let ctx = PluginContext {
            runtime: Runtime::new(cache_dir)?,
            sources,
            kv,
            sms,
            counters: Default::default(),
            limits,
            config,
        };
        let mut refusals = Vec::new();
        let mut load_slot = |slot: Slot| -> anyhow::Result<SlotState> {
            let path = dir.join(format!("{slot}.wasm"));
            if !path.exists() {
                std::fs::write(&path, defaults::bytes(slot)).with_context(|| format!("writing {}", path.display()))?;
                tracing::info!(file = %path.display(), "wrote the built-in {slot} plugin");
            }
            match Self::load_path(&ctx, slot, &path) {
                Ok(v) => Ok(SlotState::new(v)),
                Err((hash, e)) => {
                    tracing::error!(file = %path.display(), "refused {slot} plugin: {e:#}; starting with the built-in one");
                    refusals.push((slot, hash, format!("{e:#}")));
                    let bytes = defaults::bytes(slot);
                    let hash = sha256_hex(bytes);
                    let compiled = ctx.runtime.compile(bytes, &hash)?;
                    Ok(SlotState::new(Version::load(&ctx, slot, hash, bytes.to_vec(), compiled, "built-in".into())?))
                }
            }
        };
        let slots = [load_slot(Slot::Router)?, load_slot(Slot::Registrar)?, load_slot(Slot::Receipts)?, load_slot(Slot::Notifier)?];
        let host = PluginHost {
            ctx,
            slots,
            dir,
            folder: Mutex::new(()),
            canary_lock: Mutex::new(()),
            refused_total: AtomicU64::new(0),
            rollbacks_total: AtomicU64::new(0),
        };
        for slot in Slot::ALL {
            let v = host.slot(slot).current();
            host.event(slot, v.short(), SwapEventKind::Loaded, format!("from {}", v.info.source));
        }
        for (slot, hash, detail) in refusals {
            // A file refused at start stays in place (the next start tries it again, say
            // after a config fix); the watcher does not try it again while it is unchanged.
            if let Some(hash) = &hash {
                host.slot(slot).mark_refused(hash);
            }
            let short = hash.as_deref().map_or("-", |h| &h[..12]);
            host.event(slot, short, SwapEventKind::Refused, detail);
        }
        // A canary persists as its file: start it again.
        for slot in Slot::ALL {
            host.sync_canary(slot);
        }
        Ok(host)
    }

    /// The plugin folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn slot(&self, slot: Slot) -> &SlotState {
        &self.slots[slot as usize]
    }

    /// Files refused since start, every slot (a counter that only grows).
    pub fn refused_total(&self) -> u64 {
        self.refused_total.load(Ordering::Relaxed)
    }

    /// Automatic rollbacks since start, every slot (a counter that only grows).
    pub fn rollbacks_total(&self) -> u64 {
        self.rollbacks_total.load(Ordering::Relaxed)
    }

    fn event(&self, slot: Slot, version: &str, event: SwapEventKind, detail: String) {
        let counter = match event {
            SwapEventKind::Refused => Some(&self.refused_total),
            SwapEventKind::RolledBack => Some(&self.rollbacks_total),
            SwapEventKind::Loaded | SwapEventKind::Rollback | SwapEventKind::Canary | SwapEventKind::Promoted => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.slot(slot).record(SwapEvent {
            at_ms: crate::broker::now_ms(),
            slot: slot.name().into(),
            version: version.chars().take(12).collect(),
            event,
            detail,
        });
    }

    /// Reads, hashes, compiles (or loads from cache) and instantiates a plugin file. The
    /// error carries the file's full hash (`None` if unreadable).
    fn load_path(ctx: &PluginContext, slot: Slot, path: &Path) -> Result<Arc<Version>, (Option<String>, anyhow::Error)> {
        let bytes = std::fs::read(path).map_err(|e| (None, anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
        let hash = sha256_hex(&bytes);
        Self::load_bytes(ctx, slot, bytes, hash.clone(), path).map_err(|e| (Some(hash), e))
    }

    /// Compiles (or loads from cache) and instantiates a plugin file's bytes.
    fn load_bytes(ctx: &PluginContext, slot: Slot, bytes: Vec<u8>, hash: String, path: &Path) -> anyhow::Result<Arc<Version>> {
        if bytes.is_empty() {
            anyhow::bail!("the file is empty");
        }
        let compiled = ctx.runtime.compile(&bytes, &hash).map_err(|e| anyhow::anyhow!("not a valid component: {e:#}"))?;
        Version::load(ctx, slot, hash, bytes, compiled, path.display().to_string())
    }

    /// Loads `path` into `slot` and makes it current, unless it is the current version
    /// already. A refusal is logged, recorded and counted once per file content: a file
    /// refused before is not compiled again. `complete` says no writer has the file open;
    /// a complete refused file is set aside as `<slot>.wasm.refused-<version>` and the
    /// serving version's bytes are put back. Called by the watcher.
    pub fn load_file(&self, slot: Slot, path: &Path, complete: bool) {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Perhaps passing (permissions, a file being replaced): logged each time the
                // file changes, never set aside.
                tracing::error!(%slot, file = %path.display(), "refused plugin: cannot read it: {e}; the current version stays");
                self.event(slot, "-", SwapEventKind::Refused, format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        let hash = sha256_hex(&bytes);
        let state = self.slot(slot);
        if hash == state.current().hash {
            return;
        }
        if state.canary().is_some_and(|c| c.version.hash == hash) {
            // The canary's bytes installed as the slot's file: a promotion.
            if let Err(e) = self.promote(slot) {
                tracing::warn!(%slot, "cannot promote the canary: {e}");
            }
            return;
        }
        if !state.was_refused(&hash) {
            match Self::load_bytes(&self.ctx, slot, bytes, hash.clone(), path) {
                Ok(version) => {
                    let detail = format!(
                        "{} in {} ms",
                        if version.info.from_cache { "loaded from the compile cache" } else { "compiled" },
                        version.info.compile_us / 1000
                    );
                    tracing::info!(%slot, version = version.short(), "plugin is now current ({detail})");
                    self.event(slot, version.short(), SwapEventKind::Loaded, detail);
                    state.swap_in(version, self.ctx.config.keep_versions);
                    return;
                }
                Err(e) => {
                    tracing::error!(%slot, file = %path.display(), "refused plugin: {e:#}; the current version stays");
                    state.mark_refused(&hash);
                    self.event(slot, &hash, SwapEventKind::Refused, format!("{e:#}"));
                }
            }
        } else {
            tracing::debug!(%slot, version = &hash[..12], "this file was refused before; not tried again");
        }
        if complete {
            self.set_aside(slot, &hash, "refused", &state.current());
        }
    }

    /// Makes the folder say what serves after a refusal or a rollback: the file with hash
    /// `bad` is kept beside it as `<slot>.wasm.<why>-<version>` (which the watcher ignores)
    /// and the serving version's bytes are put back as `<slot>.wasm` (written to a
    /// temporary file, then renamed), so a restart serves what serves now. Skipped if the
    /// file no longer holds `bad` (replaced again meanwhile).
    fn set_aside(&self, slot: Slot, bad: &str, why: &str, now: &Version) {
        let _folder = self.folder.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.dir.join(format!("{slot}.wasm"));
        match std::fs::read(&path) {
            Ok(bytes) if sha256_hex(&bytes) == bad => {}
            _ => return,
        }
        let aside = self.dir.join(format!("{slot}.wasm.{why}-{}", &bad[..12]));
        let tmp = self.dir.join(format!(".{slot}.wasm.restore"));
        let result = std::fs::rename(&path, &aside)
            .and_then(|()| now.file.copy_to(&tmp))
            .and_then(|()| std::fs::rename(&tmp, &path));
        match result {
            Ok(()) => tracing::info!(%slot, file = %aside.display(), "kept the {why} file aside; {} is back in place", now.short()),
            Err(e) => tracing::error!(%slot, error = %e, "cannot put the serving version back in the plugin folder"),
        }
    }

    /// Puts the previous version of `slot` back (operator's rollback).
    /// While a canary runs, ends it instead (the current version stays).
    pub fn rollback(&self, slot: Slot) -> Result<String, String> {
        if let Some(canary) = self.slot(slot).canary() {
            let now = self.end_canary(slot, &canary, SwapEventKind::Rollback, "operator ended the canary".into());
            return Ok(now);
        }
        let (bad, now) = self.slot(slot).roll_back()?;
        self.set_aside(slot, &bad.hash, "rolled-back", &now);
        let detail = format!("operator rolled back from {}", bad.short());
        tracing::warn!(%slot, version = now.short(), "{detail}");
        self.event(slot, now.short(), SwapEventKind::Rollback, detail);
        Ok(now.short().to_string())
    }

    /// Versions, history and counters of every slot.
    pub fn report(&self) -> PluginsReport {
        let mut versions = Vec::new();
        let mut history = Vec::new();
        let mut counters = std::collections::BTreeMap::new();
        let mut canaries = Vec::new();
        let probation = Duration::from_secs(self.ctx.config.probation_secs);
        for slot in Slot::ALL {
            let state = self.slot(slot);
            let info = |v: &Arc<Version>, state: &'static str| VersionInfo {
                slot,
                version: v.short().to_string(),
                state,
                calls: v.calls.load(Ordering::Relaxed),
                errors: v.errors.load(Ordering::Relaxed),
                error_kinds: FailureKind::ALL
                    .into_iter()
                    .map(|kind| (kind.name(), v.errors_by_kind[kind as usize].load(Ordering::Relaxed)))
                    .collect(),
                idle_instances: v.idle_instances(),
                instance_memory_bytes: v.instance_memory.load(Ordering::Relaxed),
                recycled_instances: v.recycled.load(Ordering::Relaxed),
                latency: v.latency.snapshot(),
                load: v.info.clone(),
            };
            let current = state.current();
            let in_probation = state.has_earlier() && state.current_for() < probation;
            versions.push(info(&current, if in_probation { "probation" } else { "current" }));
            if let Some(canary) = state.canary() {
                versions.push(info(&canary.version, "canary"));
                canaries.push(CanaryInfo::of(slot, &canary, &current));
            }
            let (earlier, rolled_back) = state.others();
            versions.extend(earlier.iter().rev().map(|v| info(v, "previous")));
            versions.extend(rolled_back.iter().rev().map(|v| info(v, "rolled-back")));
            history.extend(state.events());
            counters.insert(slot.name().to_string(), self.ctx.counters(slot).snapshot());
        }
        history.sort_by_key(|e| e.at_ms);
        PluginsReport { versions, history, canaries, counters }
    }

    /// Calls the version of `slot` that serves the user `number`: the canary if one runs
    /// and the number's bucket is in its share, else the current version.
    fn call<R>(
        &self,
        slot: Slot,
        number: &str,
        f: impl Fn(&mut wasmtime::Store<state::PluginState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        match self.slot(slot).canary() {
            Some(canary) if canary.serves(number) => self.call_canary(slot, &canary, &f),
            _ => self.call_current(slot, &f),
        }
    }

    /// Calls the current version of `slot`; after a failure, rolls back a version that keeps
    /// failing in its probation.
    fn call_current<R>(
        &self,
        slot: Slot,
        f: &impl Fn(&mut wasmtime::Store<state::PluginState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let version = self.slot(slot).current();
        version.call(&self.ctx, f).map_err(|CallFailure { kind, detail }| {
            self.after_failure(slot, &version, &detail);
            match kind {
                FailureKind::Timeout => PolicyError::Timeout { slot, detail },
                FailureKind::Trap => PolicyError::Trap { slot, detail },
                FailureKind::Instantiation => PolicyError::Instantiation { slot, detail },
                FailureKind::Memory => PolicyError::Memory { slot, detail },
            }
        })
    }

    /// Calls the canary of `slot`. A failed call is counted against the canary (which is
    /// rolled back after `probation_failures` failures in a row) and asked again of the
    /// current version, so the user sees no failure and nothing is lost.
    fn call_canary<R>(
        &self,
        slot: Slot,
        canary: &Arc<Canary>,
        f: &impl Fn(&mut wasmtime::Store<state::PluginState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        match canary.version.call(&self.ctx, f) {
            Ok(answer) => Ok(answer),
            Err(CallFailure { detail, .. }) => {
                let config = &self.ctx.config;
                let failures = canary.version.consecutive_errors.load(Ordering::Relaxed);
                if config.probation_failures != 0 && failures >= config.probation_failures {
                    let detail = format!("canary {} rolled back after {failures} consecutive failures (last: {detail})", canary.version.short());
                    self.end_canary(slot, canary, SwapEventKind::RolledBack, detail);
                }
                self.call_current(slot, f)
            }
        }
    }

    /// Starts a canary of `bytes` in `slot` serving `percent` (1-99) of the users, or
    /// changes the share of the running canary if it has these bytes. A canary of other
    /// bytes is replaced. The folder then holds the canary as `<slot>.canary-<percent>.wasm`
    /// (so a restart starts it again). Returns the canary's version.
    pub fn start_canary(&self, slot: Slot, bytes: Vec<u8>, percent: u8) -> Result<String, String> {
        if !(1..=99).contains(&percent) {
            return Err(format!("a canary serves 1 to 99 percent of the users, not {percent}"));
        }
        let hash = sha256_hex(&bytes);
        let state = self.slot(slot);
        if hash == state.current().hash {
            return Err(format!("{} is the current {slot} version already", &hash[..12]));
        }
        let version = match state.canary().filter(|c| c.version.hash == hash) {
            Some(canary) => canary.version.clone(),
            None => {
                let source = format!("canary upload ({} bytes)", bytes.len());
                Self::load_bytes(&self.ctx, slot, bytes, hash.clone(), Path::new(&source)).map_err(|e| {
                    tracing::error!(%slot, version = &hash[..12], "refused canary: {e:#}");
                    self.event(slot, &hash, SwapEventKind::Refused, format!("canary refused: {e:#}"));
                    format!("refused {}: {e:#}", &hash[..12])
                })?
            }
        };
        let _canary = lock(&self.canary_lock);
        self.install_canary(slot, version, percent, true);
        Ok(hash[..12].to_string())
    }

    /// Makes `version` the canary of `slot` at `percent` (keeping the counts of a running
    /// canary of the same version), then makes the folder say so. Called under `canary_lock`.
    fn install_canary(&self, slot: Slot, version: Arc<Version>, percent: u8, write_file: bool) {
        let state = self.slot(slot);
        let current = state.current();
        let canary = match state.canary().filter(|c| c.version.hash == version.hash) {
            Some(old) => Canary {
                version: old.version.clone(),
                percent,
                started_ms: old.started_ms,
                baseline: old.baseline.clone(),
                current_baseline: old.current_baseline.clone(),
                current_hash: old.current_hash.clone(),
            },
            None => {
                if let Some(old) = state.end_canary(None, false) {
                    self.event(slot, old.version.short(), SwapEventKind::Rollback, format!("canary replaced by {}", version.short()));
                }
                Canary {
                    baseline: Baseline::of(&version),
                    version,
                    percent,
                    started_ms: crate::broker::now_ms(),
                    current_baseline: Baseline::of(&current),
                    current_hash: current.hash.clone(),
                }
            }
        };
        let short = canary.version.short().to_string();
        let version = canary.version.clone();
        state.set_canary(Arc::new(canary));
        let detail = format!("canary serving {percent}% of the users (buckets 0-{}) beside {}", percent - 1, current.short());
        tracing::info!(%slot, version = %short, "{detail}");
        self.event(slot, &short, SwapEventKind::Canary, detail);
        let name = canary::file_name(slot, percent);
        if write_file {
            let tmp = self.dir.join(format!(".{slot}.canary.tmp"));
            if let Err(e) = version.file.copy_to(&tmp).and_then(|()| std::fs::rename(&tmp, self.dir.join(&name))) {
                tracing::error!(%slot, error = %e, "cannot write the canary file {name}; a restart will not start the canary again");
            }
        }
        for (path, _) in self.canary_files(slot) {
            if path.file_name().is_some_and(|n| n != name.as_str()) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Ends the canary `canary` of `slot` if it still runs: its file is kept aside as
    /// `<file>.<why>-<version>` (which the watcher ignores), the event recorded. Returns
    /// the current version.
    fn end_canary(&self, slot: Slot, canary: &Arc<Canary>, kind: SwapEventKind, detail: String) -> String {
        let _canary = lock(&self.canary_lock);
        let state = self.slot(slot);
        let current = state.current().short().to_string();
        if state.end_canary(Some(canary), false).is_none() {
            return current;
        }
        let why = if kind == SwapEventKind::RolledBack { "rolled-back" } else { "ended" };
        for (path, _) in self.canary_files(slot) {
            if std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == canary.version.hash) {
                let aside = path.with_file_name(format!("{}.{why}-{}", path.file_name().unwrap_or_default().to_string_lossy(), canary.version.short()));
                if let Err(e) = std::fs::rename(&path, &aside) {
                    tracing::error!(%slot, error = %e, "cannot set the canary file aside");
                }
            }
        }
        if kind == SwapEventKind::RolledBack {
            tracing::error!(%slot, version = canary.version.short(), "{detail}");
        } else {
            tracing::warn!(%slot, version = canary.version.short(), "{detail}");
        }
        self.event(slot, canary.version.short(), kind, detail);
        current
    }

    /// Makes the canary of `slot` its current version (on probation, the old current kept
    /// for rollback, as for any swap); the folder's `<slot>.wasm` then holds it.
    pub fn promote(&self, slot: Slot) -> Result<String, String> {
        let _canary = lock(&self.canary_lock);
        let state = self.slot(slot);
        let canary = state.canary().ok_or_else(|| format!("no canary runs in the {slot} slot"))?;
        let before = state.current();
        state.end_canary(Some(&canary), true).ok_or_else(|| "the canary ended meanwhile".to_string())?;
        state.swap_in(canary.version.clone(), self.ctx.config.keep_versions);
        {
            let _folder = lock(&self.folder);
            let tmp = self.dir.join(format!(".{slot}.wasm.promote"));
            let path = self.dir.join(format!("{slot}.wasm"));
            if let Err(e) = canary.version.file.copy_to(&tmp).and_then(|()| std::fs::rename(&tmp, &path)) {
                tracing::error!(%slot, error = %e, "cannot write the promoted version to {}", path.display());
            }
            for (path, _) in self.canary_files(slot) {
                let _ = std::fs::remove_file(&path);
            }
        }
        let detail = format!("canary promoted from {}% of the users; {} kept for rollback", canary.percent, before.short());
        tracing::info!(%slot, version = canary.version.short(), "{detail}");
        self.event(slot, canary.version.short(), SwapEventKind::Promoted, detail);
        Ok(canary.version.short().to_string())
    }

    /// The canary files of `slot` in the folder and their shares, oldest (by modification
    /// time, then name) first.
    fn canary_files(&self, slot: Slot) -> Vec<(PathBuf, u8)> {
        let mut files: Vec<(std::time::SystemTime, PathBuf, u8)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let (of, percent) = canary::parse_file_name(entry.file_name().to_str()?)?;
                let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                (of == slot).then(|| (modified, entry.path(), percent))
            })
            .collect();
        files.sort();
        files.into_iter().map(|(_, path, percent)| (path, percent)).collect()
    }

    /// Makes the canary of `slot` what the folder says: the newest `<slot>.canary-<P>.wasm`
    /// starts (or changes the share of) the canary, older ones are removed; no canary file
    /// ends a running canary (the operator removed it). A refused file is logged, listed
    /// and not tried again while unchanged. Called at start and by the watcher.
    pub fn sync_canary(&self, slot: Slot) {
        let state = self.slot(slot);
        let (path, percent, hash) = {
            let _canary = lock(&self.canary_lock);
            let Some((path, percent)) = self.canary_files(slot).pop() else {
                drop(_canary);
                if let Some(canary) = state.canary() {
                    self.end_canary(slot, &canary, SwapEventKind::Rollback, "canary file removed; the canary ended".into());
                }
                return;
            };
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!(%slot, file = %path.display(), "cannot read the canary file: {e}");
                    return;
                }
            };
            let hash = sha256_hex(&bytes);
            if hash == state.current().hash {
                tracing::warn!(%slot, file = %path.display(), "the canary file holds the current version; ignored");
                return;
            }
            if let Some(canary) = state.canary().filter(|c| c.version.hash == hash) {
                if canary.percent != percent {
                    self.install_canary(slot, canary.version.clone(), percent, false);
                }
                return;
            }
            if state.was_refused(&hash) {
                return;
            }
            (path, percent, hash)
        };
        // Compiled without the lock: a big component takes tens of seconds.
        let version = match Self::load_path(&self.ctx, slot, &path) {
            Ok(version) => version,
            Err((_, e)) => {
                tracing::error!(%slot, file = %path.display(), "refused canary: {e:#}; the file stays, not tried again while unchanged");
                state.mark_refused(&hash);
                self.event(slot, &hash, SwapEventKind::Refused, format!("canary file {}: {e:#}", path.display()));
                return;
            }
        };
        let _canary = lock(&self.canary_lock);
        // Still the newest canary file, with the same bytes?
        let same = self.canary_files(slot).pop().is_some_and(|(p, _)| p == path)
            && std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == hash);
        if same && version.hash == hash {
            self.install_canary(slot, version, percent, false);
        }
    }

    /// Rolls back a version that failed `probation_failures` calls in a row in its
    /// probation; never when `probation_failures` is 0.
    fn after_failure(&self, slot: Slot, version: &Arc<Version>, detail: &str) {
        let config = &self.ctx.config;
        let state = self.slot(slot);
        let failures = version.consecutive_errors.load(Ordering::Relaxed);
        if !rolls_back(config, failures, state.current_for()) {
            return;
        }
        if let Ok((bad, now)) = state.roll_back_if_current(version) {
            self.set_aside(slot, &bad.hash, "rolled-back", &now);
            let detail = format!("{} rolled back after {failures} consecutive failures in probation (last: {detail})", bad.short());
            tracing::error!(%slot, version = now.short(), "{detail}");
            self.event(slot, bad.short(), SwapEventKind::RolledBack, detail);
        }
    }
}

/// Whether a version that has failed `failures` calls in a row, current for `current_for`,
/// is rolled back automatically.
fn rolls_back(config: &PluginsConfig, failures: u32, current_for: Duration) -> bool {
    config.probation_failures != 0
        && failures >= config.probation_failures
        && current_for <= Duration::from_secs(config.probation_secs)
}

fn to_wit_kind(kind: MessageKind) -> types::MessageKind {
    match kind {
        MessageKind::Text => types::MessageKind::Text,
        MessageKind::Media { mime } => types::MessageKind::Media(mime),
    }
}

fn to_wit_meta(m: MessageMeta) -> types::MessageMeta {
    types::MessageMeta { from: m.from, to: m.to, size: m.size, at_ms: m.at_ms, kind: to_wit_kind(m.kind) }
}

fn from_wit_route(r: types::Destination) -> Route {
    match r {
        types::Destination::Deliver(to) => Route::Deliver(to),
        types::Destination::Reject(reason) => Route::Reject(reason),
    }
}

fn from_wit_refusal(r: types::Refusal) -> Refusal {
    let error = match r.kind {
        types::RefusalKind::Rejected => ErrorCode::Rejected,
        types::RefusalKind::RateLimited => ErrorCode::RateLimited,
        types::RefusalKind::WrongCode => ErrorCode::WrongCode,
        types::RefusalKind::CodeExpired => ErrorCode::CodeExpired,
        types::RefusalKind::Unavailable => ErrorCode::Retryable,
    };
    Refusal { error, reason: r.reason }
}

/// What the notifier is told about an item queued for a number with no connection:
/// metadata only, never the body nor the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The number the item waits for.
    pub number: String,
    /// How many items wait for it now, this one included.
    pub waiting: u32,
    /// The kind of the queued message.
    pub kind: MessageKind,
    /// When the item was queued, Unix milliseconds.
    pub at_ms: u64,
}

/// The notifier's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    /// Do nothing.
    Skip,
    /// Wake the device with this payload.
    Wake(String),
}

impl PluginHost {
    /// Asks the notifier (its canary for the numbers in the canary's share) whether to wake
    /// the device of `item.number`. Called by the push worker, on its own thread, under the
    /// per-call time limit; a failure is counted and rolled back like any slot's.
    pub fn notify(&self, item: Queued) -> Result<Notify, PolicyError> {
        use bindings::latest::notifier::exports::hotline::plugin::notifying;
        let queued = notifying::Queued { number: item.number, waiting: item.waiting, kind: to_wit_kind(item.kind), at_ms: item.at_ms };
        let decision = self.call(Slot::Notifier, &queued.number, |store, instance| instance.notify(store, &queued))?;
        Ok(match decision {
            notifying::Decision::Skip => Notify::Skip,
            notifying::Decision::Wake(payload) => Notify::Wake(payload),
        })
    }
}

impl Policy for PluginHost {
    fn route(&self, messages: Vec<MessageMeta>) -> Result<Vec<Route>, PolicyError> {
        let metas: Vec<types::MessageMeta> = messages.into_iter().map(to_wit_meta).collect();
        let canary = self.slot(Slot::Router).canary();
        let Some(canary) = canary.filter(|c| metas.iter().any(|m| c.serves(&m.from))) else {
            let routes = self.call_current(Slot::Router, &|store, instance| instance.route(store, metas.clone()))?;
            return Ok(routes.into_iter().map(from_wit_route).collect());
        };
        // A batch mixes senders: each version routes its own senders' messages.
        let (to_canary, to_current): (Vec<usize>, Vec<usize>) = (0..metas.len()).partition(|&i| canary.serves(&metas[i].from));
        let part = |indexes: &[usize]| indexes.iter().map(|&i| metas[i].clone()).collect::<Vec<_>>();
        let mut routes: Vec<Option<Route>> = vec![None; metas.len()];
        if !to_current.is_empty() {
            let part = part(&to_current);
            let answer = self.call_current(Slot::Router, &|store, instance| instance.route(store, part.clone()))?;
            for (i, route) in to_current.iter().zip(answer) {
                routes[*i] = Some(from_wit_route(route));
            }
        }
        let part = part(&to_canary);
        let answer = self.call_canary(Slot::Router, &canary, &|store, instance| instance.route(store, part.clone()))?;
        for (i, route) in to_canary.iter().zip(answer) {
            routes[*i] = Some(from_wit_route(route));
        }
        routes
            .into_iter()
            .map(|r| r.ok_or_else(|| PolicyError::Failed { slot: Slot::Router, detail: "the router answered fewer routes than messages".into() }))
            .collect()
    }

    /// The text is sent without waiting for it; the plugin threads ask
    /// [`HostPolicy::request_code_texts`] instead, to answer once it is sent.
    fn request_code(&self, phone: &str) -> Result<Result<u32, Refusal>, PolicyError> {
        let (answer, text) = self.request_code_texts(phone)?;
        self.send_unwatched(text);
        Ok(answer)
    }

    fn verify_code(&self, phone: &str, code: &str) -> Result<Result<(), Refusal>, PolicyError> {
        let (answer, text) = self.call(Slot::Registrar, phone, |store, instance| {
            let answer = instance.verify_code(store, phone, code)?;
            Ok((answer, store.data_mut().text.take()))
        })?;
        self.send_unwatched(text);
        Ok(answer.map_err(from_wit_refusal))
    }

    fn receipt(&self, receipt: ReceiptMeta) -> Result<bool, PolicyError> {
        let meta = types::ReceiptMeta {
            message_id: receipt.message_id,
            by: receipt.by,
            to: receipt.to,
            status: match receipt.status {
                ReceiptStatus::Delivered => types::ReceiptStatus::Delivered,
                ReceiptStatus::Read => types::ReceiptStatus::Read,
            },
            kind: to_wit_kind(receipt.kind),
        };
        // The user whose client sends the receipt (who received or read the message).
        self.call(Slot::Receipts, &meta.by, |store, instance| instance.allow(store, &meta))
    }

    fn command(&self, slot: Slot, from: &str, name: &str, args: Vec<String>) -> Result<Result<String, String>, PolicyError> {
        let command = types::Command { from: from.to_string(), name: name.to_string(), args };
        let (answer, text) = self.call(slot, from, |store, instance| {
            let answer = instance.handle_command(store, &command)?;
            Ok((answer, store.data_mut().text.take()))
        })?;
        self.send_unwatched(text);
        Ok(answer)
    }
}

impl HostPolicy for PluginHost {
    fn request_code_texts(&self, phone: &str) -> Result<(Result<u32, Refusal>, Option<Text>), PolicyError> {
        let (answer, text) = self.call(Slot::Registrar, phone, |store, instance| {
            let answer = instance.request_code(store, phone)?;
            Ok((answer, store.data_mut().text.take()))
        })?;
        Ok((answer.map_err(from_wit_refusal), text))
    }
}

impl PluginHost {
    /// Sends a text no client waits for (one recorded outside `request-code`, or by a
    /// refused request); its result is logged and counted.
    fn send_unwatched(&self, text: Option<Text>) {
        if let Some(text) = text {
            self.ctx.sms.send(text, |_| {});
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probation_failures_zero_never_rolls_back() {
        let mut config = PluginsConfig::default();
        let now = Duration::ZERO;
        assert!(!rolls_back(&config, 2, now));
        assert!(rolls_back(&config, 3, now));
        assert!(!rolls_back(&config, 3, Duration::from_secs(config.probation_secs + 1)), "after probation");
        config.probation_failures = 0;
        for failures in [0, 1, 3, 1000] {
            assert!(!rolls_back(&config, failures, now), "{failures} failures");
        }
    }
}
