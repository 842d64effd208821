//! Option groups shared by subcommands: the engine (cache) and the sandbox and limits.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use osiiso_host::units::{parse_duration, parse_size};
use osiiso_host::{
    CompileTier, DirGrant, GuestStdio, Host, HostBuilder, Limits, MIN_COMPILE_MEMORY, Plugin,
    Sandbox,
};

/// The engine: where compiled plugins are cached, what may be loaded, memory in aggregate.
#[derive(Args, Debug, Clone)]
pub(crate) struct CacheArgs {
    /// Compile-cache directory [default: $XDG_CACHE_HOME/osiiso-host].
    #[arg(long, env = "OSIISO_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the compile cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Accept a precompiled artifact (from `compile -o`) as PLUGIN. It is native code: use
    /// this only for files from a trusted source.
    #[arg(long)]
    pub allow_precompiled: bool,
    /// The most linear memory all running attempts may hold together; attempts wait for
    /// room beyond it [default: half of the machine's memory].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub total_memory: Option<usize>,
    #[command(flatten)]
    pub compile: CompileLimitArgs,
}

/// What compiling a plugin may spend (a cache hit compiles nothing).
#[derive(Args, Debug, Clone)]
pub(crate) struct CompileLimitArgs {
    /// How long compiling a plugin may take before the load fails [default: 2m].
    #[arg(long, env = "OSIISO_COMPILE_TIMEOUT", value_name = "DUR", value_parser = compile_timeout)]
    pub compile_timeout: Option<std::time::Duration>,
    /// The memory compiling a plugin may use before the load fails, at least 64MiB
    /// [default: 2GiB].
    #[arg(long, value_name = "SIZE", value_parser = compile_memory)]
    pub compile_memory: Option<usize>,
    /// The compiler of plugins. `tiered` runs a never-seen plugin on baseline code (wasmtime's
    /// Winch, compiled several times faster) while Cranelift compiles its optimised code in
    /// the background, then switches between attempts; each tier has its own compile-cache
    /// entries.
    #[arg(
        long,
        value_enum,
        env = "OSIISO_COMPILE_TIER",
        value_name = "TIER",
        default_value = "tiered"
    )]
    pub compile_tier: TierArg,
}

/// A `--compile-tier` value.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TierArg {
    /// Baseline code first, optimised code once compiled in the background.
    Tiered,
    /// Cranelift: the fastest code, compiled slowly.
    Optimized,
    /// Winch: compiled several times faster, runs slower.
    Baseline,
}

impl From<TierArg> for CompileTier {
    fn from(tier: TierArg) -> Self {
        match tier {
            TierArg::Tiered => CompileTier::Tiered,
            TierArg::Optimized => CompileTier::Optimized,
            TierArg::Baseline => CompileTier::Baseline,
        }
    }
}

impl CompileLimitArgs {
    /// Applies the limits to a host builder.
    pub(crate) fn apply(&self, mut builder: HostBuilder) -> HostBuilder {
        if let Some(timeout) = self.compile_timeout {
            builder = builder.compile_timeout(timeout);
        }
        if let Some(bytes) = self.compile_memory {
            builder = builder.compile_memory(bytes as u64);
        }
        builder.compile_tier(self.compile_tier.into())
    }
}

/// A `--compile-timeout` value: a duration above zero.
fn compile_timeout(text: &str) -> Result<std::time::Duration, String> {
    match parse_duration(text).map_err(|e| e.to_string())? {
        std::time::Duration::ZERO => Err("must be more than 0".into()),
        timeout => Ok(timeout),
    }
}

/// A `--compile-memory` value: a size of at least [`MIN_COMPILE_MEMORY`].
fn compile_memory(text: &str) -> Result<usize, String> {
    let bytes = parse_size(text).map_err(|e| e.to_string())?;
    if (bytes as u64) < MIN_COMPILE_MEMORY {
        return Err(format!(
            "at least {} (the compile process needs some to start)",
            osiiso_host::units::format_size(MIN_COMPILE_MEMORY as usize)
        ));
    }
    Ok(bytes)
}

impl CacheArgs {
    /// The host, with guest code counting fuel when `fuel_metering` (for `--fuel`, and for
    /// the async queue, whose guests yield by fuel).
    pub(crate) fn host(&self, max_instances: u32, fuel_metering: bool) -> anyhow::Result<Host> {
        let mut builder = Host::builder()
            .cache(!self.no_cache)
            .max_instances(max_instances)
            .allow_precompiled(self.allow_precompiled)
            .fuel_metering(fuel_metering);
        if let Some(dir) = &self.cache_dir {
            builder = builder.cache_dir(dir);
        }
        if let Some(total) = self.total_memory {
            builder = builder.total_memory(total);
        }
        Ok(self.compile.apply(builder).build()?)
    }
}

/// Per-attempt resource limits; they apply from the plugin's load (its `list`) onwards.
#[derive(Args, Debug, Clone)]
pub(crate) struct LimitArgs {
    /// Fuel budget per attempt (about one unit per wasm instruction). Guest code then
    /// counts fuel, which makes it slower, and results report `fuel_consumed`; without it
    /// only the async queue counts fuel (to yield).
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Linear-memory cap per attempt, e.g. 64MiB [default: 1GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<usize>,
    /// Largest input of one task [default: 16MiB]. A larger one fails `invalid_input`; a
    /// longer line of --inputs/--jobs is refused before it is parsed (lines up to 256MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_input_bytes: Option<usize>,
    /// Let one instance serve up to N attempts of the plugin (warm instances; default 1,
    /// a fresh instance per attempt). Faster, but a task can see what an earlier task of the
    /// same plugin left in memory; a trap, timeout or cancel discards the instance.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub reuse: Option<u32>,
    /// Files, directories, directory listings and HTTP connections the host may hold open
    /// for one attempt at a time [default: 256]; beyond it the guest's call fails, and an
    /// attempt that then fails is `resource_limit`.
    #[arg(long, value_name = "N")]
    pub max_open_files: Option<u32>,
}

impl LimitArgs {
    pub(crate) fn limits(&self) -> Limits {
        let mut limits = Limits::new();
        if let Some(fuel) = self.fuel {
            limits = limits.fuel(fuel);
        }
        if let Some(bytes) = self.max_memory {
            limits = limits.max_memory(bytes);
        }
        if let Some(bytes) = self.max_input_bytes {
            limits = limits.max_input_bytes(bytes);
        }
        if let Some(attempts) = self.reuse {
            limits = limits.reuse(attempts);
        }
        if let Some(descriptors) = self.max_open_files {
            limits = limits.max_open_files(descriptors);
        }
        limits
    }

    /// Loads `path` under these limits.
    pub(crate) fn load(&self, host: &Host, path: &Path) -> anyhow::Result<Plugin> {
        Ok(host.load_with_limits(path, self.limits())?)
    }
}

/// Capabilities of the plugin.
#[derive(Args, Debug, Clone)]
pub(crate) struct SandboxArgs {
    /// Grant a host directory read-write, as HOST or HOST::GUEST (repeatable).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,
    /// Grant a host directory read-only, as HOST or HOST::GUEST (repeatable).
    #[arg(long = "dir-ro", value_name = "HOST[::GUEST]")]
    pub dirs_ro: Vec<String>,
    /// Set an environment variable for the guest (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Pass the whole host environment to the guest.
    #[arg(long)]
    pub inherit_env: bool,
    /// Stream guest stdout and stderr to this process's stderr instead of capturing them
    /// into results (stdout carries only result rows).
    #[arg(long)]
    pub inherit_stdio: bool,
}

impl SandboxArgs {
    /// The sandbox these flags grant. A grant of the compile cache (or of a directory that
    /// holds it) is refused: a guest that can write there could plant native code.
    pub(crate) fn sandbox(&self, host: &Host) -> anyhow::Result<Sandbox> {
        let mut sandbox = Sandbox::new().inherit_env(self.inherit_env);
        if self.inherit_stdio {
            sandbox = sandbox.stdio(GuestStdio::InheritToStderr);
        }
        for (specs, read_only, flag) in [
            (&self.dirs, false, "--dir"),
            (&self.dirs_ro, true, "--dir-ro"),
        ] {
            for spec in specs {
                let grant =
                    DirGrant::parse(spec, read_only).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
                refuse_cache_grant(host, &grant, flag)?;
                sandbox = sandbox.grant(grant);
            }
        }
        for pair in &self.env {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--env '{pair}': expected K=V"))?;
            sandbox = sandbox.env(key, value);
        }
        sandbox
            .validate()
            .map_err(|e| anyhow::anyhow!("--dir: {e}"))?;
        Ok(sandbox)
    }
}

fn refuse_cache_grant(host: &Host, grant: &DirGrant, flag: &str) -> anyhow::Result<()> {
    if let Some(cache) = host.cache_root()
        && grant.reaches(&cache)
    {
        anyhow::bail!(
            "{flag}: '{}' holds the compile cache ({}); a guest must never reach it, since \
             compiled code there runs natively",
            grant.host.display(),
            cache.display()
        );
    }
    Ok(())
}
