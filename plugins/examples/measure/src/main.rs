//! `plugin-measure`: measures a router component outside the broker, with the broker's
//! wasmtime (48) and engine settings (component model, epoch interruption), host imports
//! backed by an in-memory kv, and WASI linked with nothing granted (as the broker does):
//! compile time, instantiate+init time, per-call cost of `route` (direct message, one kv
//! miss) in batches of 1 and 64, the linear memory an instance holds (tracked by a
//! ResourceLimiter), and process RSS growth for 50 live instances.
//!
//!   plugin-measure ROUTER.wasm [CALLS]         figures (default 20000 calls)
//!   plugin-measure ROUTER.wasm CALLS soak      CALLS calls on one instance, printing its
//!                                              memory each time it grows
//! It binds contract `wit/0.1.0` (the examples'), so it measures 0.1.0 routers only; the
//! default router is built against 0.2.0 now: measure it with `plugin-bench --router`.
//! Env: NOBLOCK=1 skips the block-list check (for routers without one);
//! MEMCAP_MIB=64 refuses memory growth beyond that (the broker's default cap), so a soak
//! shows the call at which an instance would fail in the broker.
use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({ path: "../../../wit/0.1.0", world: "router" });

use hotline::plugin::types::{Destination, MessageMeta};

struct St {
    wasi: WasiCtx,
    table: ResourceTable,
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    mem: usize,
}
impl WasiView for St {
    fn ctx(&mut self) -> WasiCtxView<'_> { WasiCtxView { ctx: &mut self.wasi, table: &mut self.table } }
}
impl ResourceLimiter for St {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let cap = std::env::var("MEMCAP_MIB").ok().and_then(|s| s.parse::<usize>().ok()).map(|m| m << 20);
        if let Some(cap) = cap { if desired > cap { return Ok(false); } }
        self.mem += desired - current;
        Ok(true)
    }
    fn table_growing(&mut self, _c: usize, _d: usize, _m: Option<usize>) -> wasmtime::Result<bool> { Ok(true) }
}
impl hotline::plugin::types::Host for St {}
impl hotline::plugin::kv::Host for St {
    fn get(&mut self, key: Vec<u8>) -> Option<Vec<u8>> { self.kv.get(&key).cloned() }
    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) { self.kv.insert(key, value); }
    fn delete(&mut self, key: Vec<u8>) { self.kv.remove(&key); }
    fn keys(&mut self, prefix: Vec<u8>, limit: u32) -> Vec<Vec<u8>> {
        self.kv.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).take(limit as usize).map(|(k, _)| k.clone()).collect()
    }
}
impl hotline::plugin::log::Host for St {
    fn log(&mut self, _level: hotline::plugin::log::Level, _message: String) {}
}
impl hotline::plugin::clock::Host for St { fn now_ms(&mut self) -> u64 { 0 } }
impl hotline::plugin::random::Host for St { fn next_u64(&mut self) -> u64 { 4 } }
impl hotline::plugin::metrics::Host for St { fn counter_add(&mut self, _name: String, _value: u64) {} }

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn new_store(engine: &Engine) -> Store<St> {
    let mut store = Store::new(engine, St { wasi: WasiCtx::builder().build(), table: ResourceTable::new(), kv: BTreeMap::new(), mem: 0 });
    store.limiter(|s| s as &mut dyn ResourceLimiter);
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

fn main() -> Result<()> {
    let path = std::env::args().nth(1).expect("usage: plugin-measure ROUTER.wasm [CALLS] [soak]");
    let soak = std::env::args().nth(3).is_some();
    let calls: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(20_000);
    let bytes = std::fs::read(&path)?;
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;

    let t = Instant::now();
    let pre = engine.precompile_component(&bytes)?;
    let compile = t.elapsed();
    let t = Instant::now();
    let component = unsafe { Component::deserialize(&engine, &pre)? };
    let load = t.elapsed();

    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Router::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    let pre_inst = linker.instantiate_pre(&component)?;
    let pre_inst = RouterPre::new(pre_inst)?;

    // Instantiate + init, a few times.
    let n_inst = 20;
    let t = Instant::now();
    let mut mem_after_init = 0;
    for _ in 0..n_inst {
        let mut store = new_store(&engine);
        let r = pre_inst.instantiate(&mut store)?;
        r.hotline_plugin_lifecycle().call_init(&mut store, "")?.map_err(anyhow::Error::msg)?;
        mem_after_init = store.data().mem;
    }
    let inst = t.elapsed() / n_inst;

    // Calls on one instance.
    let mut store = new_store(&engine);
    let r = pre_inst.instantiate(&mut store)?;
    r.hotline_plugin_lifecycle().call_init(&mut store, "")?.map_err(anyhow::Error::msg)?;
    store.data_mut().kv.insert(b"block/+15550000002/+15550000009".to_vec(), vec![]);
    let meta = |i: usize| MessageMeta { from: "+15550000001".into(), to: format!("+1555{:07}", i % 1000 + 1_000_000), size: 100, at_ms: 0 };
    // sanity: a block is honoured
    let d = r.hotline_plugin_routing().call_route(&mut store, &MessageMeta { from: "+15550000009".into(), to: "+15550000002".into(), size: 1, at_ms: 0 })?;
    if std::env::var_os("NOBLOCK").is_none() {
        assert!(matches!(&d, Destination::Reject(s) if s == "+15550000002 does not accept your messages"), "{d:?}");
    }
    let d = r.hotline_plugin_routing().call_route(&mut store, &meta(0))?;
    assert!(matches!(&d, Destination::Deliver(v) if v == &vec!["+15551000000".to_string()]), "{d:?}");
    if soak {
        // Many calls on one instance, as a pooled instance gets them: report memory as it grows
        // and the first failing call (with MEMCAP_MIB set, memory.grow fails beyond it).
        let mut last = 0;
        for i in 0..calls {
            match r.hotline_plugin_routing().call_route(&mut store, &meta(i)) {
                Ok(_) => {}
                Err(e) => { println!("call {i} failed at {} KiB: {e:?}", store.data().mem / 1024); return Ok(()); }
            }
            let m = store.data().mem;
            if m != last { println!("after {} calls: {} KiB", i + 1, m / 1024); last = m; }
        }
        println!("{calls} calls ok, {} KiB", store.data().mem / 1024);
        return Ok(());
    }
    // warm up
    for i in 0..200 { r.hotline_plugin_routing().call_route(&mut store, &meta(i))?; }
    let t = Instant::now();
    for i in 0..calls { r.hotline_plugin_routing().call_route(&mut store, &meta(i))?; }
    let per1 = t.elapsed().as_nanos() as f64 / calls as f64;
    let t = Instant::now();
    let mut done = 0;
    while done < calls {
        let batch: Vec<_> = (0..64).map(|i| meta(done + i)).collect();
        let out = r.hotline_plugin_routing().call_route_batch(&mut store, &batch)?;
        assert_eq!(out.len(), 64);
        done += 64;
    }
    let per64 = t.elapsed().as_nanos() as f64 / done as f64;
    let mem_after_calls = store.data().mem;

    // RSS growth for 50 live instances (each initialised and called once).
    let before = rss_kib();
    let mut live = Vec::new();
    for i in 0..50 {
        let mut store = new_store(&engine);
        let r = pre_inst.instantiate(&mut store)?;
        r.hotline_plugin_lifecycle().call_init(&mut store, "")?.map_err(anyhow::Error::msg)?;
        r.hotline_plugin_routing().call_route(&mut store, &meta(i))?;
        live.push((store, r));
    }
    let after = rss_kib();

    println!("file                {path} ({} bytes)", bytes.len());
    println!("compile             {:.1} ms (precompiled form {} bytes)", compile.as_secs_f64() * 1e3, pre.len());
    println!("load precompiled    {:.2} ms", load.as_secs_f64() * 1e3);
    println!("instantiate+init    {:.2} ms per instance (mean of {n_inst})", inst.as_secs_f64() * 1e3);
    println!("route, batch 1      {:.0} ns per message ({calls} calls)", per1);
    println!("route, batch 64     {:.0} ns per message", per64);
    println!("linear memory       {} KiB after init, {} KiB after the calls", mem_after_init / 1024, mem_after_calls / 1024);
    println!("RSS growth          {} KiB per live instance (50 instances)", (after.saturating_sub(before)) / 50);
    drop(live);
    Ok(())
}
