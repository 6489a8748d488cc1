//! One loaded version of a plugin: its compiled component ready to instantiate, a pool of
//! idle instances so calls run in parallel, and its counters. A call checks an instance out,
//! runs under a deadline and a memory cap, and returns it; an instance that failed is dropped.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::bindings::ContractVersion;
pub use super::instance::Instance;
use super::instance::Pre;
use super::runtime::{Runtime, EPOCH_TICK};
use super::state::{BlockedPastDeadline, PluginState};
use super::PluginContext;
use crate::policy::Slot;

/// Why a plugin call failed: each kind is counted apart (`hotline_plugin_errors_total{kind}`)
/// and becomes its own [`PolicyError`](crate::policy::PolicyError) variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// It ran past the time limit per call (the epoch deadline interrupted it, or it was
    /// blocked in a WASI call until the limit).
    Timeout,
    /// It trapped: a panic, `unreachable`, a stack overflow, a failed host call.
    Trap,
    /// No instance could be made for the call (instantiation or `init` failed).
    Instantiation,
    /// It failed after its memory cap refused it more memory.
    Memory,
}

impl FailureKind {
    pub const ALL: [FailureKind; 4] = [FailureKind::Timeout, FailureKind::Trap, FailureKind::Instantiation, FailureKind::Memory];

    /// The `kind` label.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Trap => "trap",
            FailureKind::Instantiation => "instantiation",
            FailureKind::Memory => "memory",
        }
    }
}

/// A failed call: its kind and a readable cause.
#[derive(Debug, Clone)]
pub struct CallFailure {
    pub kind: FailureKind,
    pub detail: String,
}

/// An instance with its store, checked out of the pool for one call.
pub struct Loaded {
    store: Store<PluginState>,
    instance: Instance,
}

/// How a version came to be loaded, for the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadInfo {
    /// Unix milliseconds.
    pub loaded_at_ms: u64,
    /// Compile (or cache load) time in microseconds.
    pub compile_us: u64,
    pub from_cache: bool,
    /// Where it came from: a file path or "built-in".
    pub source: String,
    /// The plugin contract version it was built against (`0.1.0`, `0.2.0`).
    pub contract_version: ContractVersion,
}

/// One version of one slot's plugin.
pub struct Version {
    pub slot: Slot,
    /// Full SHA-256 of the file, hex.
    pub hash: String,
    /// The component file, kept on disk by hash (not in memory), to put back in the
    /// folder after a rollback or a promotion.
    pub file: super::sources::KeptSource,
    pub info: LoadInfo,
    pre: Pre,
    pool: Mutex<Vec<Loaded>>,
    /// Set once the version is no longer current: instances are dropped, not pooled.
    retired: AtomicBool,
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    /// Failed calls by kind, indexed by `FailureKind as usize`.
    pub errors_by_kind: [AtomicU64; 4],
    /// Linear memory of the instance that last finished a call, in bytes.
    pub instance_memory: AtomicU64,
    /// Instances dropped after a call because their memory passed the recycle mark.
    pub recycled: AtomicU64,
    pub consecutive_errors: AtomicU32,
    /// Call durations, for the canary comparison and `hotline_plugin_call_duration_seconds`.
    pub latency: super::canary::Latency,
    config: String,
}

impl Version {
    /// Links a compiled component against the slot's world and instantiates it once, calling
    /// `init(config)`. Any failure means the file is refused.
    pub fn load(
        ctx: &PluginContext,
        slot: Slot,
        hash: String,
        bytes: Vec<u8>,
        compiled: super::runtime::Compiled,
        source: String,
    ) -> anyhow::Result<Arc<Version>> {
        let rt: &Runtime = &ctx.runtime;
        let contract = ContractVersion::detect(&compiled.component, &rt.engine)?;
        if slot == Slot::Notifier && contract < ContractVersion::V0_2_0 {
            anyhow::bail!("built against contract {contract}, which has no notifier world: build a notifier against 0.2.0 or later");
        }
        let instance_pre = rt.linker(slot, contract).instantiate_pre(&compiled.component).map_err(|e| {
            anyhow::anyhow!("imports something the {slot} world of contract {contract} does not offer (wrong world?): {e:#}")
        })?;
        let pre = Pre::new(slot, contract, instance_pre)
            .map_err(|e| anyhow::anyhow!("does not export the {slot} world of contract {contract}: {e:#}"))?;
        let file = ctx.sources.keep(&hash, &bytes).map_err(|e| anyhow::anyhow!("cannot keep its file in the compile cache: {e}"))?;
        drop(bytes);
        let version = Arc::new(Version {
            slot,
            hash,
            file,
            info: LoadInfo {
                loaded_at_ms: crate::broker::now_ms(),
                compile_us: compiled.duration.as_micros() as u64,
                from_cache: compiled.from_cache,
                source,
                contract_version: contract,
            },
            pre,
            pool: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            errors_by_kind: Default::default(),
            instance_memory: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            consecutive_errors: AtomicU32::new(0),
            latency: Default::default(),
            config: ctx.config_for(slot),
        });
        // The probe instance proves it instantiates and accepts its config; keep it pooled.
        let probe = super::runtime::blocking(|| version.instantiate(ctx))?;
        version.pool.lock().unwrap_or_else(|p| p.into_inner()).push(probe);
        Ok(version)
    }

    /// The first 12 hex digits of the hash: the version's name.
    pub fn short(&self) -> &str {
        &self.hash[..12]
    }

    fn instantiate(&self, ctx: &PluginContext) -> anyhow::Result<Loaded> {
        let state = PluginState::new(
            self.slot,
            self.short().to_string(),
            ctx.kv.clone(),
            ctx.counters(self.slot),
            ctx.limits.memory_bytes,
        );
        let mut store = Store::new(&ctx.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(ctx.limits.call_timeout));
        store.data_mut().deadline = Some(Instant::now() + ctx.limits.call_timeout);
        let instance = self.pre.instantiate(&mut store)?;
        store.set_epoch_deadline(ticks(ctx.limits.call_timeout));
        store.data_mut().deadline = Some(Instant::now() + ctx.limits.call_timeout);
        instance.init(&mut store, &self.config)?.map_err(|e| anyhow::anyhow!("init refused its config: {e}"))?;
        Ok(Loaded { store, instance })
    }

    /// Runs `f` on an instance of this version under the call time limit. Counts the call;
    /// on failure counts the error and drops the instance.
    pub fn call<R>(
        &self,
        ctx: &PluginContext,
        f: impl FnOnce(&mut Store<PluginState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let started = std::time::Instant::now();
        let result = super::runtime::blocking(|| self.call_here(ctx, f));
        self.latency.record(started.elapsed());
        result
    }

    fn call_here<R>(
        &self,
        ctx: &PluginContext,
        f: impl FnOnce(&mut Store<PluginState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut loaded = match pooled {
            Some(loaded) => loaded,
            None => match self.instantiate(ctx) {
                Ok(loaded) => loaded,
                Err(e) => return Err(self.failed(FailureKind::Instantiation, format!("instantiation failed: {e:#}"))),
            },
        };
        loaded.store.set_epoch_deadline(ticks(ctx.limits.call_timeout));
        loaded.store.data_mut().deadline = Some(Instant::now() + ctx.limits.call_timeout);
        loaded.store.data_mut().limits.refused_growth = false;
        loaded.store.data_mut().text = None;
        match f(&mut loaded.store, &loaded.instance) {
            Ok(result) => {
                self.consecutive_errors.store(0, Ordering::Relaxed);
                let memory = loaded.store.data().limits.memory_bytes;
                self.instance_memory.store(memory as u64, Ordering::Relaxed);
                if memory > ctx.limits.recycle_above_bytes {
                    // An instance that keeps growing (componentize-js's does, ~0.5 KiB per
                    // call) is replaced before it hits the cap and fails a call.
                    self.recycled.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(slot = %self.slot, version = self.short(), memory, "recycling a plugin instance");
                } else if !self.retired.load(Ordering::Acquire) {
                    let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                    if pool.len() < ctx.limits.max_idle_instances {
                        pool.push(loaded);
                    }
                }
                Ok(result)
            }
            Err(e) => {
                let refused_growth = loaded.store.data().limits.refused_growth;
                let (kind, detail) = describe_trap(&e, &ctx.limits, refused_growth);
                Err(self.failed(kind, detail))
            }
        }
    }

    fn failed(&self, kind: FailureKind, detail: String) -> CallFailure {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.errors_by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
        self.consecutive_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(slot = %self.slot, version = self.short(), kind = kind.name(), "plugin call failed: {detail}");
        CallFailure { kind, detail }
    }

    /// Stops pooling: idle instances are freed now, busy ones when their call ends.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Makes the version poolable again (after a rollback to it).
    pub fn revive(&self) {
        self.retired.store(false, Ordering::Release);
        self.consecutive_errors.store(0, Ordering::Relaxed);
    }

    /// Idle instances in the pool.
    pub fn idle_instances(&self) -> usize {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn ticks(limit: Duration) -> u64 {
    (limit.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

/// The kind and a readable cause of a failed call: time limit, memory (the call failed
/// after the cap refused it memory), or the guest's own trap.
fn describe_trap(e: &wasmtime::Error, limits: &super::Limits, refused_growth: bool) -> (FailureKind, String) {
    if e.downcast_ref::<BlockedPastDeadline>().is_some() {
        let limit = limits.call_timeout.as_millis();
        return (FailureKind::Timeout, format!("exceeded the time limit of {limit} ms per call (blocked in a WASI call)"));
    }
    let cause = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            return (FailureKind::Timeout, format!("exceeded the time limit of {} ms per call", limits.call_timeout.as_millis()))
        }
        Some(trap) => format!("trapped: {trap}"),
        None => format!("{e:#}"),
    };
    if refused_growth {
        (FailureKind::Memory, format!("ran out of memory (its cap of {} MiB refused more), then {cause}", limits.memory_bytes >> 20))
    } else {
        (FailureKind::Trap, cause)
    }
}
