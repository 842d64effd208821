//! Compiling plugins: the one step where WebAssembly becomes native code, and what bounds it.
//!
//! Cranelift's time and memory follow what a component contains, not its size: a 4 MB file
//! of a million empty functions needs several GB, deeply nested blocks take minutes, and an
//! allocation that fails inside the compiler ends the process. Nothing inside a process can
//! stop a compilation half-way, so by default it runs in a **compile process**: the host's
//! own binary started with [`COMPILE_MARKER`], with no environment, no descriptors but its
//! pipes, `RLIMIT_DATA` at the compile memory limit, `RLIMIT_CPU` as a backstop, and a
//! wall-clock deadline after which the host kills it. It reads the component (or a WASI
//! preview-1 program, which it adapts into one first) on stdin and
//! answers with the serialized artifact, which the host writes to the compile cache (with
//! the cache's MAC, as for any entry) and loads. A cache hit never starts one.
//!
//! [`CompileStep::compile`] is the only entry point: WebAssembly in, an artifact for the
//! host's engine out.

mod child;
mod reply;
mod serve;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use wasmtime::Engine;
use wasmtime::component::Component;

use self::serve::ServeArgs;
use super::command::core_module;
use super::config::CompileTier;

/// The first argument that makes a binary serve as a compile process (see
/// [`maybe_run_compiler`]).
pub const COMPILE_MARKER: &str = "--osiiso-compile";

/// How long compiling one plugin may take by default (`--compile-timeout`): a 19 MB
/// componentize-py plugin compiles in about 10 s on 2 busy cores.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The memory compiling one plugin may use by default (`--compile-memory`): that 19 MB plugin
/// needs about 400 MiB.
pub const DEFAULT_COMPILE_MEMORY: u64 = 2 << 30;

/// The least compile memory a host accepts: the compile process itself needs some to start.
pub const MIN_COMPILE_MEMORY: u64 = 64 << 20;

/// Compile threads per core of a compilation in the background ([`CompileStep::in_background`]).
const BACKGROUND_THREADS_PER_CORE: usize = 4;

/// Set once this binary has shown that it serves [`COMPILE_MARKER`].
static SERVES_MARKER: AtomicBool = AtomicBool::new(false);

/// If this process was started as a compile process, compiles and exits; otherwise returns.
/// Call it first thing in `main` ([`maybe_run_worker`](crate::maybe_run_worker) calls it
/// too): a binary that does can then compile plugins in a child process of itself.
///
/// ```no_run
/// // First thing in `main`:
/// osiiso_host::maybe_run_compiler();
/// // ... the program's own work.
/// ```
pub fn maybe_run_compiler() {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|first| first == COMPILE_MARKER) {
        let rest: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
        std::process::exit(serve::serve(&rest));
    }
    SERVES_MARKER.store(true, Ordering::Relaxed);
}

/// Where a [`Host`](crate::Host) compiles plugins
/// ([`HostBuilder::compiler`](crate::HostBuilder::compiler)).
///
/// In a compile process, `--compile-timeout` and `--compile-memory`
/// ([`HostBuilder::compile_timeout`](crate::HostBuilder::compile_timeout),
/// [`compile_memory`](crate::HostBuilder::compile_memory)) bound what a hostile plugin file
/// can make the compiler spend. In this process nothing bounds it.
///
/// ```
/// use osiiso_host::{Compiler, Host};
/// use std::time::Duration;
///
/// let host = Host::builder()
///     .compiler(Compiler::Auto)
///     .compile_timeout(Duration::from_secs(30))
///     .compile_memory(1 << 30)
///     .build()?;
/// assert_eq!(host.compile_memory(), 1 << 30);
/// # Ok::<(), osiiso_host::HostError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compiler {
    /// A compile process of the first of: this executable, if it called
    /// [`maybe_run_compiler`] (or [`maybe_run_worker`](crate::maybe_run_worker)) or is
    /// `osiiso-host`; `$OSIISO_HOST_BIN`; an `osiiso-host` next to (or one directory above)
    /// this executable. When there is none, plugins compile **in this process**, unbounded,
    /// and the host warns once.
    #[default]
    Auto,
    /// A compile process of this program: `osiiso-host`, or a binary whose `main` calls
    /// [`maybe_run_compiler`]. It must be the same build as this host.
    Program(PathBuf),
    /// A compile process of this executable, whose `main` calls [`maybe_run_compiler`].
    CurrentExe,
    /// In this process: no limit applies. For plugins the user trusts.
    InProcess,
}

/// What one compilation may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompileLimits {
    /// Wall-clock time.
    pub(crate) timeout: Duration,
    /// The compile process's data limit (`RLIMIT_DATA`) in bytes.
    pub(crate) memory: u64,
}

/// Why a component did not compile.
#[derive(Debug)]
pub(crate) enum CompileError {
    /// It is not a valid component (the compiler's message).
    Invalid(String),
    /// It is a WASI preview-1 program that cannot be adapted into a component (why): no
    /// compiler would take it.
    Unadaptable(String),
    /// Compiling took longer than the timeout.
    Timeout { limit: Duration },
    /// Compiling needed more memory than the limit.
    Memory { limit: u64, detail: String },
    /// The compile process could not do its job.
    Process(String),
    /// The caller stopped the compilation (its plugin is gone): the compile process was
    /// killed.
    Stopped,
}

/// The `stop` of a compilation nobody stops.
pub(crate) fn never() -> bool {
    false
}

/// Where compilation happens, once resolved.
#[derive(Debug, Clone)]
enum Place {
    /// A compile process of `program`; `shown` names it in messages.
    Process { program: PathBuf, shown: PathBuf },
    /// In this process; `fallback` when `Auto` found no binary (the host warns once).
    InProcess { fallback: bool },
}

/// A host's compile step: where, under which limits, one compilation at a time.
pub(crate) struct CompileStep {
    place: Place,
    limits: CompileLimits,
    args: ServeArgs,
    /// One compilation at a time per step: together they stay within one compile memory
    /// limit, and each can use every core.
    slot: Mutex<()>,
    /// Compile threads per core: 1 in the foreground; more in the background, where the
    /// compilation shares the cores with running guests.
    threads_per_core: usize,
    warned: AtomicBool,
}

impl std::fmt::Debug for CompileStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileStep")
            .field("place", &self.place)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl CompileStep {
    /// The compile step of a host whose engine has this cache `fingerprint` and was built for
    /// `address_space_cap`, `fuel` metering and the compile `tier`; it compiles components of
    /// at most `max_input` bytes.
    pub(crate) fn new(
        compiler: &Compiler,
        limits: CompileLimits,
        fingerprint: String,
        address_space_cap: Option<u64>,
        fuel: bool,
        tier: CompileTier,
        max_input: u64,
    ) -> Result<Self, String> {
        Ok(Self {
            place: resolve(compiler)?,
            limits,
            args: ServeArgs {
                fingerprint,
                address_space_cap,
                fuel,
                tier,
                max_input,
            },
            slot: Mutex::new(()),
            threads_per_core: 1,
            warned: AtomicBool::new(false),
        })
    }

    /// The step of a compilation in the background: its compile process runs
    /// [`BACKGROUND_THREADS_PER_CORE`] threads per core (as many as the thread queue's default
    /// workers), so that against a run at its default width the scheduler gives it about half
    /// the CPU rather than a small share, and the run's plugin moves to its optimised code
    /// during the run.
    pub(crate) fn in_background(mut self) -> Self {
        self.threads_per_core = BACKGROUND_THREADS_PER_CORE;
        self
    }

    /// The limits of one compilation.
    pub(crate) fn limits(&self) -> CompileLimits {
        self.limits
    }

    /// The binary that compiles, when compilation runs in a compile process.
    pub(crate) fn program(&self) -> Option<&Path> {
        match &self.place {
            Place::Process { shown, .. } => Some(shown),
            Place::InProcess { .. } => None,
        }
    }

    /// Compiles `wasm` (a component, or a WASI preview-1 program, which is adapted first) for
    /// `engine`, returning the serialized artifact that [`load`] turns into a component. A
    /// compile process is killed as soon as `stop` says so (it is asked a few times a
    /// second; [`never`] for a compilation someone waits for); a compilation in this process
    /// cannot be stopped.
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, CompileError> {
        let _slot = self.slot.lock();
        if stop() {
            return Err(CompileError::Stopped);
        }
        match &self.place {
            Place::Process { program, .. } => child::compile(
                program,
                &self.args,
                wasm,
                &self.limits,
                self.limits.memory,
                self.threads_per_core,
                stop,
            ),
            Place::InProcess { fallback } => {
                if *fallback && !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "compiling plugins in this process, without the compile time and \
                         memory limits: no osiiso-host binary was found (set OSIISO_HOST_BIN, \
                         or HostBuilder::compiler)"
                    );
                }
                let component = component_of(wasm).map_err(CompileError::Unadaptable)?;
                engine
                    .precompile_component(&component)
                    .map_err(|e| CompileError::Invalid(format!("{e:#}")))
            }
        }
    }
}

/// The component to compile: `wasm` itself, or, for a WASI preview-1 program (a core
/// module), the component it is adapted into. Adapting costs time and memory that grow with
/// the module, so it belongs to the compile step and its limits.
fn component_of(wasm: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    if wasmparser::Parser::is_core_wasm(wasm) {
        core_module::adapt(wasm)
            .map(Cow::Owned)
            .map_err(|e| format!("{e:#}"))
    } else {
        Ok(Cow::Borrowed(wasm))
    }
}

/// Loads an artifact from [`CompileStep::compile`] (or a verified compile-cache entry).
pub(crate) fn load(engine: &Engine, artifact: &[u8]) -> Result<Component, CompileError> {
    // SAFETY: the artifact was made by `Engine::precompile_component` for an engine with this
    // engine's settings, in this process or in a compile process this host started from a
    // binary it chose, and came over a pipe only the two of them hold (or from a cache entry
    // whose MAC verified). wasmtime checks its own compatibility header as well.
    unsafe { Component::deserialize(engine, artifact) }.map_err(|e| {
        let message = format!("{e:#}");
        // Mapping the code needs address space: under a small cap (a process worker's
        // `--worker-memory`) this is where it runs out.
        let hint = if message.contains("Cannot allocate memory") {
            "; this process's address space is too small for the plugin's code (a process \
             worker's --worker-memory, ProcessQueue::worker_memory)"
        } else {
            ""
        };
        CompileError::Process(format!("cannot load the compiled code: {message}{hint}"))
    })
}

fn resolve(compiler: &Compiler) -> Result<Place, String> {
    match compiler {
        Compiler::Auto => Ok(auto()),
        Compiler::Program(program) => Ok(process(program)),
        Compiler::CurrentExe => {
            this_executable().ok_or_else(|| "cannot locate the current executable".to_string())
        }
        Compiler::InProcess => Ok(Place::InProcess { fallback: false }),
    }
}

fn auto() -> Place {
    let exe = std::env::current_exe().ok();
    let is_osiiso_host = exe
        .as_deref()
        .and_then(Path::file_name)
        .is_some_and(|name| name == HOST_BINARY);
    if (SERVES_MARKER.load(Ordering::Relaxed) || is_osiiso_host)
        && let Some(place) = this_executable()
    {
        return place;
    }
    match host_binary() {
        Some(program) => process(&program),
        None => Place::InProcess { fallback: true },
    }
}

/// The `osiiso-host` binary to start as a compile process or a worker: this executable when it
/// is `osiiso-host`, else `$OSIISO_HOST_BIN`, else an `osiiso-host` next to (or one directory
/// above) this executable. One order for both, so that they are the same binary.
pub(crate) fn host_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    if let Some(exe) = &exe
        && exe.file_name().is_some_and(|name| name == HOST_BINARY)
    {
        return Some(exe.clone());
    }
    if let Some(program) = std::env::var_os("OSIISO_HOST_BIN") {
        return Some(PathBuf::from(program));
    }
    exe.as_deref().and_then(sibling_binary)
}

/// A compile process of `program`. The process starts in `/` with no `PATH`, so the
/// program is found now: a path from here, a bare name on this process's `PATH`.
fn process(program: &Path) -> Place {
    let found = if program.components().count() > 1 || program.is_absolute() {
        std::path::absolute(program).ok()
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
    };
    Place::Process {
        program: found.unwrap_or_else(|| program.to_path_buf()),
        shown: program.to_path_buf(),
    }
}

/// This process's own executable: `/proc/self/exe`, which names the very file it runs even
/// after the file on disk was replaced.
fn this_executable() -> Option<Place> {
    let shown = std::env::current_exe().ok()?;
    let proc = Path::new("/proc/self/exe");
    let program = if proc.exists() {
        proc.to_path_buf()
    } else {
        shown.clone()
    };
    Some(Place::Process { program, shown })
}

/// The file name of the host's binary.
pub(crate) const HOST_BINARY: &str = "osiiso-host";

/// An `osiiso-host` next to `exe`, or one directory above it (tests and examples live in
/// `target/<profile>/{deps,examples}/`).
pub(crate) fn sibling_binary(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(HOST_BINARY))
        .find(|candidate| candidate.is_file())
}
