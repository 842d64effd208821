//! Loading a plugin: reading its file (bounded), telling a component from a WASI preview-1
//! program or a precompiled artifact, finding or compiling its code through the compile cache
//! (on the tier the host starts plugins on), and naming the plugin in every error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::Component;

use super::cache::{self, CacheOutcome};
use super::compile::{self, CompileError};
use super::limits::Limits;
use super::plugin::Plugin;
use super::tiers::{Compiled, TierEngine};
use super::{Host, LoadError, command};

/// Reads a plugin file of at most `limit` bytes.
pub(crate) fn read_plugin_file(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    cache::read_bounded(path, limit).map_err(|error| {
        if error.kind() == std::io::ErrorKind::FileTooLarge {
            LoadError::TooLarge {
                path: path.to_path_buf(),
                limit,
            }
        } else {
            LoadError::Read {
                path: path.to_path_buf(),
                error,
            }
        }
    })
}

impl Host {
    /// Loads a plugin from a `.wasm` component, through the compile cache. A precompiled
    /// artifact is refused unless the host [allows precompiled
    /// input](HostBuilder::allow_precompiled). The plugin's `list` runs under default
    /// [`Limits`]; see [`load_with_limits`](Self::load_with_limits).
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Plugin, LoadError> {
        self.load_with_limits(path, Limits::default())
    }

    /// Loads a plugin whose attempts, and whose `list` call at load time, run under
    /// `limits`.
    pub fn load_with_limits(
        &self,
        path: impl AsRef<Path>,
        limits: Limits,
    ) -> Result<Plugin, LoadError> {
        self.load_file(path.as_ref(), limits, Purpose::Run)
    }

    /// Reads a plugin file and loads it, named by its file stem.
    fn load_file(
        &self,
        path: &Path,
        limits: Limits,
        purpose: Purpose,
    ) -> Result<Plugin, LoadError> {
        let bytes = read_plugin_file(path, self.inner.max_plugin_bytes)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load_inner(&name, Some(path), &bytes, limits, purpose)
    }

    /// Loads a plugin from bytes; `name` is used in messages and task identities.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        self.load_inner(name, None, bytes, Limits::default(), Purpose::Run)
    }

    fn load_inner(
        &self,
        name: &str,
        path: Option<&Path>,
        bytes: &[u8],
        limits: Limits,
        purpose: Purpose,
    ) -> Result<Plugin, LoadError> {
        let shown = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| name.to_string());
        // Bytes handed over by an embedder are held to the plugin-file limit too.
        if bytes.len() as u64 > self.inner.max_plugin_bytes {
            return Err(LoadError::TooLarge {
                path: PathBuf::from(&shown),
                limit: self.inner.max_plugin_bytes,
            });
        }
        let began = std::time::Instant::now();
        let hash = blake3::hash(bytes).to_hex().to_string();
        // The compile cache keeps compiled code under the hash of the bytes compiled (of a
        // preview-1 program: of the module and its adaptation, below).
        let mut cache_key = hash.clone();
        let compiled = if cache::is_precompiled(bytes) {
            if !self.inner.allow_precompiled {
                return Err(LoadError::Precompiled { plugin: shown });
            }
            let (tier, component) =
                self.open_precompiled(bytes)
                    .map_err(|message| LoadError::Compile {
                        plugin: shown.clone(),
                        message: format!("precompiled artifact rejected: {message}"),
                    })?;
            Compiled {
                tier,
                component,
                outcome: CacheOutcome::Precompiled,
            }
        } else {
            // A WASI preview-1 program: the compile step adapts it into a component.
            if let Wasm::CoreModule = check_component_header(&shown, bytes)? {
                command::core_module::check(&shown, bytes)?;
                cache_key = command::core_module::cache_key(bytes);
            }
            self.compile(&cache_key, bytes, purpose)
                .map_err(|e| compile_failure(e, &shown))?
        };
        let (tier, outcome) = (compiled.tier.clone(), compiled.outcome);
        tracing::debug!(plugin = name, cache = ?outcome, tier = tier.tier.name(), "plugin compiled");
        self.inner.loads.loaded(outcome, began.elapsed());
        let plugin = Plugin::load(self, name, path, hash, compiled, limits)
            .map(|plugin| plugin.with_cache_key(cache_key))
            .map_err(|e| rename(e, &shown))?;
        if let Some(optimized) = &self.inner.optimized
            && !Arc::ptr_eq(&tier, optimized)
            && outcome != CacheOutcome::Precompiled
            && !self.inner.optimizations.failed_before(plugin.cache_key())
        {
            plugin.optimize_later(optimized.clone(), bytes.to_vec());
        }
        Ok(plugin)
    }

    /// Compiled code of `wasm` (whose compile-cache key is `key`), and the engine it is for.
    ///
    /// A tiered host loads the optimised code when the cache has it, and otherwise compiles
    /// with Winch (unless `purpose` is precompiling); a component that Winch refuses (it
    /// lacks tail calls, exceptions and GC) is compiled by Cranelift at once.
    fn compile(&self, key: &str, wasm: &[u8], purpose: Purpose) -> Result<Compiled, CompileError> {
        let with = |tier: &Arc<TierEngine>| {
            tier.cache
                .load_or_compile(&tier.engine, &tier.compile, key, wasm, &compile::never)
                .map(|(component, outcome)| Compiled {
                    tier: tier.clone(),
                    component,
                    outcome,
                })
        };
        let first = &self.inner.first;
        let Some(optimized) = &self.inner.optimized else {
            return with(first);
        };
        if purpose == Purpose::Precompile {
            return with(optimized);
        }
        if let Some(component) = optimized.cache.lookup(&optimized.engine, key) {
            return Ok(Compiled {
                tier: optimized.clone(),
                component,
                outcome: CacheOutcome::Hit,
            });
        }
        match with(first) {
            Err(CompileError::Invalid(message)) => {
                tracing::debug!(%message, "the baseline compiler refused the plugin; optimising");
                with(optimized)
            }
            other => other,
        }
    }

    /// A precompiled artifact opened by the engine it was made for.
    fn open_precompiled(&self, bytes: &[u8]) -> Result<(Arc<TierEngine>, Component), String> {
        let mut failure = String::new();
        for tier in self.inner.optimized.iter().chain([&self.inner.first]) {
            match cache::open_artifact(&tier.engine, bytes) {
                Ok(component) => return Ok((tier.clone(), component)),
                Err(message) => failure = message,
            }
        }
        Err(failure)
    }

    /// Compiles a component and writes the artifact to `out`, or into the compile cache when
    /// `out` is `None`. Returns where it was written. Only a regular file is replaced at
    /// `out`; a FIFO, device, directory or symbolic link there is refused and left as it is.
    pub fn precompile(
        &self,
        wasm: impl AsRef<Path>,
        out: Option<&Path>,
    ) -> Result<PathBuf, LoadError> {
        let wasm = wasm.as_ref();
        let plugin = self.load_file(wasm, Limits::default(), Purpose::Precompile)?;
        let Some(out) = out else {
            return plugin
                .code()
                .tier_engine()
                .cache
                .entry_path(plugin.cache_key())
                .ok_or_else(|| LoadError::Compile {
                    plugin: wasm.display().to_string(),
                    message: "the compile cache is disabled or not trusted; pass an output file"
                        .into(),
                });
        };
        let serialized = plugin
            .code()
            .component()
            .serialize()
            .map_err(|e| LoadError::Compile {
                plugin: wasm.display().to_string(),
                message: format!("{e:#}"),
            })?;
        cache::write_artifact(out, &serialized).map_err(|message| LoadError::Write {
            path: out.to_path_buf(),
            message,
        })?;
        Ok(out.to_path_buf())
    }
}

/// Why a plugin is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// To run it.
    Run,
    /// To write its optimised code out ([`Host::precompile`]).
    Precompile,
}

/// What kind of WebAssembly a plugin file holds.
enum Wasm {
    Component,
    CoreModule,
}

/// Distinguishes "not wasm" and "a core module" from a component before compiling.
fn check_component_header(plugin: &str, bytes: &[u8]) -> Result<Wasm, LoadError> {
    if wasmparser::Parser::is_component(bytes) {
        Ok(Wasm::Component)
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        Ok(Wasm::CoreModule)
    } else {
        Err(LoadError::NotWasm {
            plugin: plugin.to_string(),
        })
    }
}

/// The load error of a compilation that failed.
pub(super) fn compile_failure(error: CompileError, plugin: &str) -> LoadError {
    let plugin = plugin.to_string();
    match error {
        CompileError::Invalid(message) | CompileError::Unadaptable(message) => {
            LoadError::Compile { plugin, message }
        }
        CompileError::Timeout { limit } => LoadError::CompileTimeout { plugin, limit },
        CompileError::Memory { limit, detail } => LoadError::CompileMemory {
            plugin,
            limit,
            detail,
        },
        CompileError::Process(message) => LoadError::Compiler { plugin, message },
        CompileError::Stopped => LoadError::Compiler {
            plugin,
            message: "the compilation was stopped".to_string(),
        },
    }
}

/// Uses the path the user gave in messages instead of the bare plugin name.
fn rename(error: LoadError, shown: &str) -> LoadError {
    match error {
        LoadError::MissingExport { exports, .. } => LoadError::MissingExport {
            plugin: shown.to_string(),
            exports,
        },
        LoadError::UnsatisfiedImport { imports, .. } => LoadError::UnsatisfiedImport {
            plugin: shown.to_string(),
            imports,
        },
        LoadError::Contract { message, .. } => LoadError::Contract {
            plugin: shown.to_string(),
            message,
        },
        LoadError::Compile { message, .. } => LoadError::Compile {
            plugin: shown.to_string(),
            message,
        },
        other => other,
    }
}
