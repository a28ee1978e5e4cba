//! Loading components: compiled and linked once at start-up, then
//! instantiated from the resulting `HandlerPre` (per request) or
//! `EventsPre` (per route, again after a failure). Which world a component
//! implements is read off its exports.

use crate::bindings::coro::{Coro, CoroPre};
use crate::bindings::events::{Events, EventsPre};
use crate::bindings::{Handler, HandlerPre};
use crate::world::conn::Conn;
use crate::world::coro::route::coro_instances;
use crate::world::coro::state::{CoroHost, CoroState};
use crate::world::events::state::{EventHost, EventState};
use crate::world::handler::HostState;
use anyhow::{Context, Result, bail};
use std::borrow::Cow;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig,
};
use wshost_config::{ComponentSource, Limits};

/// The export every handler component must have (world `wshost:websocket/handler`).
pub const HANDLER_EXPORT: &str = "handle";

/// The export of the `coro` world.
pub const CORO_EXPORT: &str = "serve";

/// The exports of the `events` world.
pub const EVENT_EXPORTS: [&str; 5] = [
    "on-request",
    "on-open",
    "on-message",
    "on-close",
    "on-drain",
];

/// A component, compiled and linked for the world it implements.
pub enum Loaded {
    Handler(HandlerPre<HostState>),
    Events(EventsPre<EventState>),
    Coro(CoroPre<CoroState>),
}

/// The engines routes run on, and a linker per world (their stores hold
/// different state). wasmtime's concurrent event loop
/// (`Config::concurrency_support`), which the coro world runs on, costs
/// every other call into a guest of its engine (echo at 64 connections on
/// one engine: server CPU a message 9.6 against 8.2 µs in the event world,
/// 9.3-9.8 against 8.5-9.0 in the handler world), so coro routes get an
/// engine of their own and the other worlds keep one without it.
pub struct Engines {
    /// The handler and event worlds'.
    plain: Engine,
    handler: Linker<HostState>,
    events: Linker<EventState>,
    /// The coro world's, on a server with a coro route.
    coro: Option<(Engine, Linker<CoroState>)>,
}

impl Engines {
    /// Engines for routes of `worlds` (each with its tasks per coro
    /// instance), each engine's pool sized for its own routes' instances
    /// (see [`instances_needed`]) and every slot for `pool`'s largest guest.
    pub fn new(pool: &Limits, cache: Option<&Path>, worlds: &[(World, usize)]) -> Result<Self> {
        let (plain_slots, coro_slots) = instances_needed(worlds, pool.max_connections);
        let plain = engine(pool, cache, (plain_slots, false))?;
        let handler = linker(&plain, |l| {
            Handler::add_to_linker::<_, HasSelf<Conn>>(l, |state: &mut HostState| &mut state.conn)
        })?;
        // Event imports never block: the CPU budget is per event, not per call.
        let events = linker(&plain, |l| {
            Events::add_to_linker::<_, HasSelf<EventHost>>(l, |state: &mut EventState| {
                &mut state.host
            })
        })?;
        let coro = match coro_slots {
            0 => None,
            slots => {
                let engine = engine(pool, cache, (slots, true))?;
                let linker = linker(&engine, |l| {
                    Coro::add_to_linker::<_, HasSelf<CoroHost>>(l, |state: &mut CoroState| {
                        &mut state.host
                    })
                })?;
                Some((engine, linker))
            }
        };
        Ok(Engines {
            plain,
            handler,
            events,
            coro,
        })
    }

    /// The engine of the handler and event worlds.
    pub fn plain(&self) -> &Engine {
        &self.plain
    }

    /// The coro world's engine, on a server with a coro route.
    pub fn coro(&self) -> Option<&Engine> {
        self.coro.as_ref().map(|(engine, _)| engine)
    }

    /// Every engine (for their epoch ticks and pool gauges).
    pub fn all(&self) -> impl Iterator<Item = &Engine> {
        std::iter::once(&self.plain).chain(self.coro())
    }
}

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

/// An engine for routes' components: component model, epoch
/// interruption (see `sandbox`), and a pooling instance allocator sized for
/// `instances` (see [`instances_needed`]): instantiating takes a
/// pre-reserved slot, with copy-on-write memory images, instead of fresh
/// mappings (which also run into the kernel's map count limit near 10,000
/// connections).
///
/// With a `cache` directory, compiled components are kept there and a
/// restart loads them instead of compiling again (a Python or JavaScript
/// guest takes seconds to compile).
fn engine(
    limits: &Limits,
    cache: Option<&Path>,
    (instances, concurrent): (usize, bool),
) -> Result<Engine> {
    let slots = u32::try_from(instances).unwrap_or(u32::MAX);
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
        // The coro world's `async func`s (many tasks in one instance): on
        // its engine only (see [`Engines`]).
        .wasm_component_model_async(concurrent)
        .concurrency_support(concurrent)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .memory_reservation(memory as u64)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(dir) = cache {
        config.cache(Some(open_cache(dir)?));
    }
    // For profiling (`bench/profile/run`): compiled guest functions named
    // in /tmp/perf-PID.map, so `perf report` shows them by name.
    if std::env::var_os("WSHOST_PERF_MAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    anyhow(Engine::new(&config)).with_context(|| {
        format!(
            "reserving room for {slots} instances (--max-connections for handler-world \
             routes; each async stack is two memory mappings: past ~30,000 raise \
             vm.max_map_count)"
        )
    })
}

/// The folder of an on-disk cache of compiled code (wasmtime's, keyed by
/// the component's bytes and the engine's settings), made private if
/// missing, resolved and checked ([`trusted`]).
fn compile_cache(dir: &Path) -> Result<std::path::PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the compile cache {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("compile cache {}", dir.display()))?;
    trusted(&dir)?;
    Ok(dir)
}

/// wasmtime's cache over [`compile_cache`]'s checked folder.
fn open_cache(dir: &Path) -> Result<Cache> {
    let dir = compile_cache(dir)?;
    let mut config = CacheConfig::new();
    config.with_directory(&dir);
    anyhow(Cache::new(config)).with_context(|| format!("compile cache {}", dir.display()))
}

/// Copy the compiled code the compile cache `from` holds into the compile
/// cache `into` (made if missing, and refused as any cache is if another
/// user could write to it), leaving what `into` has; how many files were
/// copied. `wshost check` compiles into a private cache of its own, then
/// leaves its work where `serve` finds it.
///
/// Only compiled code is copied (`modules/<compiler>/<hash>`: no
/// extension, no wasmtime lock or statistics file), never through a
/// symlink, each file written to a fresh private temporary file beside its
/// place and renamed in only if none is there (two checks at once, or a
/// `serve` reading meanwhile, never see half a file).
pub fn keep_compiled(from: &Path, into: &Path) -> Result<usize> {
    let into = compile_cache(into)?;
    let mut copied = 0;
    let modules = from.join("modules");
    let Ok(compilers) = std::fs::read_dir(&modules) else {
        return Ok(0);
    };
    for compiler in compilers {
        let compiler = compiler?;
        if !compiler.file_type()?.is_dir() {
            continue;
        }
        let folder = into.join("modules").join(compiler.file_name());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        trusted(&folder)?;
        if std::fs::symlink_metadata(&folder)?.file_type().is_symlink() {
            bail!("{}: a symbolic link, not a folder", folder.display());
        }
        for file in std::fs::read_dir(compiler.path())? {
            let file = file?;
            let name = file.file_name();
            let compiled = name.to_str().is_some_and(|n| !n.contains('.'));
            if !compiled || !file.file_type()?.is_file() {
                continue;
            }
            let target = folder.join(&name);
            if std::fs::symlink_metadata(&target).is_ok() {
                continue;
            }
            let mut beside = tempfile::NamedTempFile::new_in(&folder)
                .with_context(|| format!("writing into {}", folder.display()))?;
            let mut source = match std::fs::File::open(file.path()) {
                Ok(source) => source,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            std::io::copy(&mut source, beside.as_file_mut())?;
            beside.as_file().sync_all()?;
            match beside.persist_noclobber(&target) {
                Ok(_) => copied += 1,
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.error).with_context(|| format!("{}", target.display())),
            }
        }
    }
    Ok(copied)
}

/// The cache holds native code wasmtime runs: refuse one that another user
/// owns or may write to (they could put code there to run as us).
fn trusted(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(dir).with_context(|| format!("compile cache {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        bail!(
            "compile cache {}: owned by uid {} with mode {:o}; it must be ours and writable by no one else \
             (it holds native code wasmtime runs): fix it (chmod go-w) or pass --no-cache",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// A linker with WASI p2 and what `add` puts in it (one world's imports).
fn linker<T: wasmtime_wasi::WasiView + 'static>(
    engine: &Engine,
    add: impl FnOnce(&mut Linker<T>) -> wasmtime::Result<()>,
) -> Result<Linker<T>> {
    let mut linker = Linker::new(engine);
    anyhow(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
    anyhow(add(&mut linker))?;
    Ok(linker)
}

/// Instance slots a server needs, on its plain engine and on its coro
/// engine: one per connection (`max_connections`) when it has a
/// handler-world route, plus [`EVENT_GENERATIONS`] per event-world route;
/// and [`coro_instances`] per coro route (the coro scheduler's rule) (given with its tasks per
/// instance). An event-world socket holds no instance, so a server of event
/// routes only reserves almost nothing, whatever its connection limit.
pub fn instances_needed(routes: &[(World, usize)], max_connections: usize) -> (usize, usize) {
    let (mut handlers, mut events, mut coro) = (false, 0, 0);
    for &(world, coro_tasks) in routes {
        match world {
            World::Handler => handlers = true,
            World::Events => events += EVENT_GENERATIONS,
            World::Coro => coro += coro_instances(max_connections, coro_tasks),
        }
    }
    let plain = if handlers {
        max_connections + events
    } else {
        events
    };
    (plain, coro)
}

/// Instances of one event route that may live at once: after a reload the
/// route's old instance serves its open sockets until they close, beside
/// the new one (so up to three reloads in a row while old sockets stay).
pub const EVENT_GENERATIONS: usize = 4;

/// The world a component implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    Handler,
    Events,
    Coro,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::Handler => "handler",
            World::Events => "events",
            World::Coro => "coro",
        }
    }
}

/// A component's bytes, checked to be a component, and its world.
pub struct Inspected<'a> {
    bytes: Cow<'a, [u8]>,
    pub world: World,
}

impl Inspected<'_> {
    /// What tells these bytes from others ([`crate::server::reload::fingerprint`]).
    pub fn fingerprint(&self) -> u64 {
        crate::server::reload::fingerprint(&self.bytes)
    }
}

/// Read `source` and find its world from its exports, before any engine
/// exists (the instance pool is sized by the worlds served); every error
/// names the component and the problem.
pub fn inspect(source: &ComponentSource) -> Result<Inspected<'_>> {
    let bytes = match source {
        ComponentSource::File(path) => Cow::Owned(
            std::fs::read(path)
                .with_context(|| format!("{}: cannot read component file", path.display()))?,
        ),
        ComponentSource::Builtin { bytes, .. } => Cow::Borrowed(*bytes),
    };
    let world = world_of(&bytes).with_context(|| source.to_string())?;
    Ok(Inspected { bytes, world })
}

/// A component this large is logged as it is compiled (JavaScript and
/// Python guests are 10 MiB and more, and take seconds).
const LARGE: usize = 1 << 20;

/// Compile an inspected component and link it for its world.
pub fn load(engines: &Engines, source: &ComponentSource, inspected: &Inspected) -> Result<Loaded> {
    let coro = || {
        engines.coro.as_ref().with_context(|| {
            format!("{source}: a coro-world component on a server started without one")
        })
    };
    let engine = match inspected.world {
        World::Coro => &coro()?.0,
        World::Handler | World::Events => &engines.plain,
    };
    let size = inspected.bytes.len();
    if size >= LARGE {
        // A JavaScript or Python guest: seconds of compiling, the first time.
        tracing::info!(
            "{source}: loading {:.1} MiB: compiling it to native code takes seconds the first time, then the compile cache has it",
            size as f64 / f64::from(1 << 20)
        );
    }
    let started = std::time::Instant::now();
    let component = anyhow(Component::new(engine, &inspected.bytes))
        .context("not a valid WebAssembly component")
        .with_context(|| source.to_string())?;
    if size >= LARGE {
        let ms = started.elapsed().as_millis();
        tracing::info!("{source}: ready in {ms} ms");
    }
    let world = inspected.world.name();
    let wrong_types = || {
        format!(
            "{source}: the {world} world's exports have the wrong types (built against another version of wit/?)"
        )
    };
    let imports = || format!("{source}: imports something wshost does not provide");
    Ok(match inspected.world {
        World::Handler => {
            let pre = anyhow(engines.handler.instantiate_pre(&component)).with_context(imports)?;
            Loaded::Handler(anyhow(HandlerPre::new(pre)).with_context(wrong_types)?)
        }
        World::Events => {
            let pre = anyhow(engines.events.instantiate_pre(&component)).with_context(imports)?;
            Loaded::Events(anyhow(EventsPre::new(pre)).with_context(wrong_types)?)
        }
        World::Coro => {
            let pre = anyhow(coro()?.1.instantiate_pre(&component)).with_context(imports)?;
            Loaded::Coro(anyhow(CoroPre::new(pre)).with_context(wrong_types)?)
        }
    })
}

/// The world of a component, from the names of its top-level exports
/// (the types are checked when it is linked).
fn world_of(bytes: &[u8]) -> Result<World> {
    if !bytes.starts_with(b"\0asm") {
        bail!("not a WebAssembly file (no \\0asm header)");
    }
    // Byte 4..8 is the version/layer: core modules have layer 0, components 1.
    if bytes.get(6..8) == Some(&[0, 0]) {
        bail!(
            "a core WebAssembly module, not a component: build it for wasm32-wasip2 or wrap it with `wasm-tools component new`"
        );
    }
    let exports = top_level_exports(bytes).context("not a valid WebAssembly component")?;
    let has = |name: &str| exports.iter().any(|e| e == name);
    let handler = has(HANDLER_EXPORT);
    let events = EVENT_EXPORTS.iter().any(|e| has(e));
    let coro = has(CORO_EXPORT);
    match (handler, events, coro) {
        (true, false, false) => Ok(World::Handler),
        (false, true, false) => Ok(World::Events),
        (false, false, true) => Ok(World::Coro),
        (false, false, false) => {
            let found = if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            };
            bail!(
                "not a wshost handler: it does not export `{HANDLER_EXPORT}` (world wshost:websocket/handler) nor `on-request`, `on-open`, ... (world wshost:websocket/events) nor `{CORO_EXPORT}` (world wshost:websocket/coro); it exports {found}"
            )
        }
        _ => bail!(
            "exports the functions of more than one world (`{HANDLER_EXPORT}`: handler, `on-*`: events, `{CORO_EXPORT}`: coro): build it for one world"
        ),
    }
}

/// The names a component exports at its top level (not those of the
/// components and modules nested in it).
fn top_level_exports(bytes: &[u8]) -> Result<Vec<String>> {
    use wasmparser::{Parser, Payload};
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(exports)
}

/// `wasmtime::Error` converts into `anyhow::Error` but is not one, so
/// `anyhow::Context` needs the conversion first.
fn anyhow<T>(result: wasmtime::Result<T>) -> Result<T> {
    result.map_err(anyhow::Error::from)
}
