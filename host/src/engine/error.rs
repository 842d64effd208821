//! Errors of the engine layer: building a host and loading plugins.
//!
//! Every message is complete on its own (queues keep `to_string()` as a task's failure
//! message), so no variant also hands its cause out as [`source`](std::error::Error::source):
//! a chain printer would show it twice.

use std::path::PathBuf;

/// A plugin could not be loaded or a task could not be found in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin '{}': {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is over the host's plugin size limit.
    #[error("plugin '{}' is larger than the {} limit for plugin files", path.display(), crate::units::format_size(*limit as usize))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// A precompiled artifact (native code) and the host does not allow those.
    #[error(
        "plugin '{plugin}' is a precompiled artifact (native code), not a WebAssembly component; \
         precompiled artifacts are loaded only from trusted sources, with --allow-precompiled \
         (HostBuilder::allow_precompiled)"
    )]
    Precompiled {
        /// The plugin's name or path.
        plugin: String,
    },
    /// An output file could not be written.
    #[error("{message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The bytes are not WebAssembly that osiiso-host reads: no `\0asm` header, or one of a
    /// version or layer other than a component's or a core module's.
    #[error(
        "plugin '{plugin}' is not a WebAssembly file osiiso-host reads (it must start with \
         `\\0asm` and the version of a component or of a core module)"
    )]
    NotWasm {
        /// The plugin's name or path.
        plugin: String,
    },
    /// A core module that is not a WASI preview-1 program (it has no `_start`): only those
    /// run as core modules.
    #[error(
        "plugin '{plugin}' is a core WebAssembly module without a `_start` export, not a \
         component; only WASI preview-1 programs run as core modules: build it for \
         wasm32-wasip2 (or as a wasm32-wasip1 program), or wrap it with `wasm-tools component new`"
    )]
    CoreModule {
        /// The plugin's name or path.
        plugin: String,
    },
    /// Compilation or validation failed.
    #[error("plugin '{plugin}' cannot be compiled: {message}")]
    Compile {
        /// The plugin's name or path.
        plugin: String,
        /// The compiler's message.
        message: String,
    },
    /// Compiling the plugin took longer than the host's compile timeout.
    #[error(
        "plugin '{plugin}' did not compile within the compile timeout of {}; raise it with \
         --compile-timeout (HostBuilder::compile_timeout) if the plugin is trusted",
        humantime::format_duration(*limit)
    )]
    CompileTimeout {
        /// The plugin's name or path.
        plugin: String,
        /// The timeout.
        limit: std::time::Duration,
    },
    /// Compiling the plugin needed more memory than the host's compile memory limit.
    #[error(
        "plugin '{plugin}' needs more than the compile memory limit of {} to compile ({detail}); \
         raise it with --compile-memory (HostBuilder::compile_memory) if the plugin is trusted",
        crate::units::format_size(*limit as usize)
    )]
    CompileMemory {
        /// The plugin's name or path.
        plugin: String,
        /// The limit in bytes.
        limit: u64,
        /// How the compile process ended.
        detail: String,
    },
    /// The compile process could not compile the plugin (it could not start, is another build
    /// of the host, or died).
    #[error("plugin '{plugin}' cannot be compiled: {message}")]
    Compiler {
        /// The plugin's name or path.
        plugin: String,
        /// What happened.
        message: String,
    },
    /// The component exports nothing that can be a task: no `osiiso:task/tasks@0.1.0`, no
    /// function, no `wasi:cli/run`.
    #[error(
        "plugin '{plugin}' exports no task: no `osiiso:task/tasks@0.1.0`, no function and no \
         `wasi:cli/run`; it exports: {}",
        if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
    )]
    MissingExport {
        /// The plugin's name or path.
        plugin: String,
        /// What it does export.
        exports: Vec<String>,
    },
    /// The component imports something the host does not provide.
    #[error("plugin '{plugin}' imports {}, which the host does not provide", imports.join(", "))]
    UnsatisfiedImport {
        /// The plugin's name or path.
        plugin: String,
        /// The imports that cannot be satisfied.
        imports: Vec<String>,
    },
    /// The component's exports do not have the contract's types, or `list` failed.
    #[error("plugin '{plugin}' does not follow the osiiso:task contract: {message}")]
    Contract {
        /// The plugin's name or path.
        plugin: String,
        /// What is wrong.
        message: String,
    },
    /// No task of that name.
    #[error("plugin '{plugin}' has no task '{task}'; {}", its_tasks(known))]
    UnknownTask {
        /// The plugin's name.
        plugin: String,
        /// The name asked for.
        task: String,
        /// The names it has.
        known: Vec<String>,
    },
    /// The task is listed but cannot run (a function that takes or returns a resource).
    #[error("task '{task}' of plugin '{plugin}' cannot run: {reason}")]
    NotRunnable {
        /// The plugin's name.
        plugin: String,
        /// The task.
        task: String,
        /// Why.
        reason: String,
    },
    /// No task named, and the plugin has several that can run (or none).
    #[error("plugin '{plugin}' {}", name_one_of(known))]
    TaskNotNamed {
        /// The plugin's name.
        plugin: String,
        /// The names of the tasks that can run.
        known: Vec<String>,
    },
}

/// The host (engine) could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// wasmtime refused the configuration.
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    /// The compile process cannot be set up.
    #[error("cannot set up plugin compilation: {0}")]
    Compiler(String),
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
}

/// The end of an unknown-task message: the names to choose from, or that there are none.
fn its_tasks(known: &[String]) -> String {
    if known.is_empty() {
        "it has no task that can run (`osiiso-host list` shows why)".into()
    } else {
        format!("its tasks are: {}", known.join(", "))
    }
}

/// Why a task must be named: the plugin has several (listed), or none.
fn name_one_of(known: &[String]) -> String {
    if known.is_empty() {
        "has no task that can run (`osiiso-host list` shows why)".into()
    } else {
        format!(
            "has {} tasks; name one of: {}",
            known.len(),
            known.join(", ")
        )
    }
}
