//! The wasmtime engine shared by all plugins: configuration (component model, epoch
//! interruption for time limits), one linker per slot world, and compilation with an
//! on-disk cache of precompiled components.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{receipts::Receipts, registrar::Registrar, router::Router};
use super::state::PluginState;
use crate::policy::Slot;

/// How often the epoch advances; the unit of the per-call time limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine and linkers.
pub struct Runtime {
    pub engine: Engine,
    pub router: Linker<PluginState>,
    pub registrar: Linker<PluginState>,
    pub receipts: Linker<PluginState>,
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

        let mut router = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut router)?;
        Router::add_to_linker::<_, HasSelf<_>>(&mut router, |s| s)?;
        let mut registrar = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut registrar)?;
        Registrar::add_to_linker::<_, HasSelf<_>>(&mut registrar, |s| s)?;
        let mut receipts = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut receipts)?;
        Receipts::add_to_linker::<_, HasSelf<_>>(&mut receipts, |s| s)?;

        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cache_tag = format!("{:016x}", hasher.finish());
        std::fs::create_dir_all(&cache_dir)?;
        Ok(Runtime { engine, router, registrar, receipts, cache_dir, cache_tag })
    }

    /// The linker for a slot's world.
    pub fn linker(&self, slot: Slot) -> &Linker<PluginState> {
        match slot {
            Slot::Router => &self.router,
            Slot::Registrar => &self.registrar,
            Slot::Receipts => &self.receipts,
        }
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

/// Runs `f`, which may block (WASI's synchronous bindings block on tokio futures, e.g. when
/// a plugin writes to stderr), outside the async context of a tokio worker thread.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
