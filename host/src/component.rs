//! Loading handler components: compiled and linked once at start-up, then
//! instantiated per request from the resulting `HandlerPre`.

use crate::bindings::{Handler, HandlerPre};
use crate::config::{ComponentSource, Limits};
use crate::conn::Conn;
use crate::state::HostState;
use anyhow::{Context, Result, bail};
use std::path::Path;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig,
};

/// The export every handler component must have (world `wshost:websocket/handler`).
pub const HANDLER_EXPORT: &str = "handle";

/// Core wasm instances, memories and tables one component may hold: a Rust
/// guest has 3, 1 and 2; componentize-py and -js components a few more.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 8;

/// Up to 64 KiB of a freed slot's memory and table are reset with memset
/// and stay resident instead of being decommitted with madvise (each one
/// costs TLB-shootdown IPIs in a multi-threaded process). With the
/// `PAGEMAP_SCAN` ioctl (Linux 6.7+) those are the slot's dirty pages
/// wherever they are, so a small guest's reset needs no madvise at all:
/// connection set-up ~0.57x native with keep-resident alone, ~0.96x with
/// the scan. Decommitting in batches measured ~0.62x but left a freed memory
/// bomb's pages resident until 31 more slots were freed.
const KEEP_RESIDENT: usize = 64 << 10;

/// Wasm stack a guest may use (wasmtime's default is 512 KiB), and the fiber
/// stack that holds it and the host calls below it. Only touched pages cost
/// memory, but a smaller reservation keeps the pool's footprint small.
const MAX_WASM_STACK: usize = 256 << 10;
const ASYNC_STACK: usize = 512 << 10;

/// The engine every route's components run on: component model, epoch
/// interruption (see `sandbox`), and a pooling instance allocator sized for
/// `limits.max_connections` instances: instantiating takes a pre-reserved
/// slot, with copy-on-write memory images, instead of fresh mappings (which
/// also run into the kernel's map count limit near 10,000 connections).
///
/// With a `cache` directory, compiled components are kept there and a
/// restart loads them instead of compiling again (a Python or JavaScript
/// guest takes seconds to compile).
pub fn engine(limits: &Limits, cache: Option<&Path>) -> Result<Engine> {
    let slots = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    // Each slot reserves address space for the largest memory a guest may have.
    let memory = limits.guest_memory.next_multiple_of(64 << 10);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(slots.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(slots.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(slots)
        .max_memory_size(memory)
        .table_elements(limits.guest_table_elements)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .memory_reservation(memory as u64)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(dir) = cache {
        config.cache(Some(compile_cache(dir)?));
    }
    anyhow(Engine::new(&config)).with_context(|| {
        format!(
            "reserving room for --max-connections {slots} instances (each async stack is \
             two memory mappings: past ~30,000 raise vm.max_map_count)"
        )
    })
}

/// wasmtime's on-disk cache of compiled code in `dir`, keyed by the
/// component's bytes and the engine's settings.
fn compile_cache(dir: &Path) -> Result<Cache> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the compile cache {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("compile cache {}", dir.display()))?;
    let mut config = CacheConfig::new();
    config.with_directory(&dir);
    anyhow(Cache::new(config)).with_context(|| format!("compile cache {}", dir.display()))
}

/// The imports a handler may use: WASI p2 and the `handler` world's interfaces.
pub fn linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    anyhow(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
    anyhow(Handler::add_to_linker::<_, HasSelf<Conn>>(
        &mut linker,
        |state: &mut HostState| {
            // Every call into `connection` or `hub` restarts the CPU budget.
            state.limiter.host_called();
            &mut state.conn
        },
    ))?;
    Ok(linker)
}

/// Compile `source` and check it is a handler this host can run; every
/// error names the component and the problem.
pub fn load(
    engine: &Engine,
    linker: &Linker<HostState>,
    source: &ComponentSource,
) -> Result<HandlerPre<HostState>> {
    let component = match source {
        ComponentSource::File(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("{}: cannot read component file", path.display()))?;
            compile(engine, &bytes).with_context(|| format!("{}", path.display()))?
        }
        ComponentSource::Builtin { bytes, .. } => {
            compile(engine, bytes).with_context(|| source.to_string())?
        }
    };
    check_exports(engine, &component).with_context(|| source.to_string())?;
    let pre = anyhow(linker.instantiate_pre(&component))
        .with_context(|| format!("{source}: imports something wshost does not provide"))?;
    anyhow(HandlerPre::new(pre)).with_context(|| {
        format!("{source}: export `{HANDLER_EXPORT}` has the wrong type (built against another version of wit/?)")
    })
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    if !bytes.starts_with(b"\0asm") {
        bail!("not a WebAssembly file (no \\0asm header)");
    }
    // Byte 4..8 is the version/layer: core modules have layer 0, components 1.
    if bytes.get(6..8) == Some(&[0, 0]) {
        bail!(
            "a core WebAssembly module, not a component: build it for wasm32-wasip2 or wrap it with `wasm-tools component new`"
        );
    }
    anyhow(Component::new(engine, bytes)).context("not a valid WebAssembly component")
}

fn check_exports(engine: &Engine, component: &Component) -> Result<()> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    if !exports.contains(&HANDLER_EXPORT) {
        let found = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        bail!(
            "not a wshost handler: it does not export `{HANDLER_EXPORT}` (world wshost:websocket/handler); it exports {found}"
        );
    }
    Ok(())
}

/// `wasmtime::Error` converts into `anyhow::Error` but is not one, so
/// `anyhow::Context` needs the conversion first.
fn anyhow<T>(result: wasmtime::Result<T>) -> Result<T> {
    result.map_err(anyhow::Error::from)
}
