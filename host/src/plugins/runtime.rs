//! The wasmtime engine shared by all plugins: configuration (component model, epoch
//! interruption for time limits), one linker per slot world and contract version (WASI's
//! blocking poll bounded by the call's deadline), and compilation with an on-disk cache of
//! precompiled components.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, Resource};
use wasmtime::{Config, Engine, StoreContextMut};

use super::bindings::{latest, v0_1_0, ContractVersion};
use super::state::{BlockedPastDeadline, PluginState};
use crate::policy::Slot;

/// How often the epoch advances; the unit of the per-call time limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine and linkers.
pub struct Runtime {
    pub engine: Engine,
    /// One linker per contract version (index: `ContractVersion::ALL`) and slot (index:
    /// `Slot as usize`): WASI and that world's host interfaces.
    linkers: Vec<[Linker<PluginState>; 4]>,
    cache_dir: PathBuf,
    cache_tag: String,
}

/// A compiled component and how it was obtained.
pub struct Compiled {
    pub component: Component,
    pub duration: Duration,
    pub from_cache: bool,
}

impl Runtime {
    /// An engine with epoch interruption, a ticker thread, and linkers for each slot.
    pub fn new(cache_dir: PathBuf) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let ticker = engine.weak();
        std::thread::Builder::new().name("hotline-epoch".into()).spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;

        let wasi = || -> anyhow::Result<Linker<PluginState>> {
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
            add_bounded_poll(&mut linker)?;
            Ok(linker)
        };
        let mut linkers = Vec::new();
        for contract in ContractVersion::ALL {
            let (mut router, mut registrar, mut receipts, mut notifier) = (wasi()?, wasi()?, wasi()?, wasi()?);
            match contract {
                ContractVersion::V0_1_0 => {
                    v0_1_0::router::Router::add_to_linker::<_, HasSelf<_>>(&mut router, |s| s)?;
                    v0_1_0::registrar::Registrar::add_to_linker::<_, HasSelf<_>>(&mut registrar, |s| s)?;
                    v0_1_0::receipts::Receipts::add_to_linker::<_, HasSelf<_>>(&mut receipts, |s| s)?;
                    // 0.1.0 has no notifier world (`Version::load` refuses such a file).
                }
                ContractVersion::V0_2_0 => {
                    latest::router::Router::add_to_linker::<_, HasSelf<_>>(&mut router, |s| s)?;
                    latest::registrar::Registrar::add_to_linker::<_, HasSelf<_>>(&mut registrar, |s| s)?;
                    latest::receipts::Receipts::add_to_linker::<_, HasSelf<_>>(&mut receipts, |s| s)?;
                    latest::notifier::Notifier::add_to_linker::<_, HasSelf<_>>(&mut notifier, |s| s)?;
                }
            }
            linkers.push([router, registrar, receipts, notifier]);
        }

        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cache_tag = format!("{:016x}", hasher.finish());
        std::fs::create_dir_all(&cache_dir)?;
        Ok(Runtime { engine, linkers, cache_dir, cache_tag })
    }

    /// The linker for a slot's world of one contract version.
    pub fn linker(&self, slot: Slot, contract: ContractVersion) -> &Linker<PluginState> {
        let index = ContractVersion::ALL.iter().position(|c| *c == contract).expect("every contract version has linkers");
        &self.linkers[index][slot as usize]
    }

    /// Compiles `bytes` (SHA-256 `hash`), or loads the precompiled form from the cache.
    pub fn compile(&self, bytes: &[u8], hash: &str) -> anyhow::Result<Compiled> {
        let start = Instant::now();
        let cached = self.cache_dir.join(format!("{hash}-{}.cwasm", self.cache_tag));
        if cached.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine with the
            // same compatibility hash (part of its name), in a folder only the broker writes.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok(Compiled { component, duration: start.elapsed(), from_cache: true }),
                Err(e) => tracing::warn!(file = %cached.display(), error = %e, "ignoring unusable compile cache entry"),
            }
        }
        let precompiled = self.engine.precompile_component(bytes)?;
        // SAFETY: produced just now by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &precompiled)? };
        let tmp = cached.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, &precompiled).and_then(|()| std::fs::rename(&tmp, &cached)) {
            tracing::warn!(error = %e, "cannot write the compile cache");
        }
        Ok(Compiled { component, duration: start.elapsed(), from_cache: false })
    }
}

/// The `wasi:io/poll` instance `add_to_linker_sync` defines (wasmtime-wasi 48's WASI 0.2
/// version; guests importing any 0.2.x match it).
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";

/// Redefines the two functions of `wasi:io/poll` that block, `poll` and `pollable.block`,
/// to wait at most until the call's deadline ([`PluginState::deadline`]) and then fail the
/// call with [`BlockedPastDeadline`] (counted as a time-out). Epoch interruption stops
/// guest code only: a guest sleeping (`std::thread::sleep` is `subscribe-duration` then
/// `block`) would otherwise hold its thread for as long as it asked. With nothing granted
/// (no files, sockets that may connect nowhere, closed stdin, stdout a sink), a poll on a
/// clock is the only WASI call that can wait long; every wait goes through these two.
fn add_bounded_poll(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    use wasmtime_wasi::p2::bindings::io::poll::{Host, HostPollable};
    use wasmtime_wasi::p2::DynPollable;
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL)?;
    poll.func_wrap("poll", |mut cx: StoreContextMut<'_, PluginState>, (pollables,): (Vec<Resource<DynPollable>>,)| {
        let state = cx.data_mut();
        let ready = until(state.deadline, Host::poll(&mut state.table, pollables))??;
        Ok((ready,))
    })?;
    poll.func_wrap("[method]pollable.block", |mut cx: StoreContextMut<'_, PluginState>, (pollable,): (Resource<DynPollable>,)| {
        let state = cx.data_mut();
        until(state.deadline, HostPollable::block(&mut state.table, pollable))??;
        Ok(())
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs `wait` on WASI's tokio runtime until it ends or `deadline` passes.
fn until<F: Future>(deadline: Option<Instant>, wait: F) -> wasmtime::Result<F::Output> {
    let Some(deadline) = deadline else {
        return Ok(wasmtime_wasi::runtime::in_tokio(wait));
    };
    wasmtime_wasi::runtime::in_tokio(async { tokio::time::timeout_at(deadline.into(), wait).await })
        .map_err(|_elapsed| BlockedPastDeadline.into())
}

/// Runs `f`, which may block (WASI's synchronous bindings block on tokio futures, e.g. when
/// a plugin writes to stderr), outside the async context of a tokio worker thread.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
