//! Option groups shared by subcommands: the engine (cache) and the sandbox and limits.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use osiiso_host::units::{parse_duration, parse_size};
use osiiso_host::{DirGrant, Host, Limits, Plugin, Sandbox};

/// Where compiled plugins are cached.
#[derive(Args, Debug, Clone)]
pub(crate) struct CacheArgs {
    /// Compile-cache directory [default: $XDG_CACHE_HOME/osiiso-host].
    #[arg(long, env = "OSIISO_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the compile cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    pub(crate) fn host(&self, max_instances: u32) -> anyhow::Result<Host> {
        let mut builder = Host::builder()
            .cache(!self.no_cache)
            .max_instances(max_instances);
        if let Some(dir) = &self.cache_dir {
            builder = builder.cache_dir(dir);
        }
        Ok(builder.build()?)
    }
}

/// Resource limits and capabilities of the plugin.
#[derive(Args, Debug, Clone)]
pub(crate) struct SandboxArgs {
    /// Fuel budget per attempt (about one unit per wasm instruction).
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Linear-memory cap per attempt, e.g. 64MiB [default: 1GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<usize>,
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
    /// Stream guest stdout/stderr instead of capturing them into results.
    #[arg(long)]
    pub inherit_stdio: bool,
}

impl SandboxArgs {
    pub(crate) fn apply(&self, plugin: Plugin) -> anyhow::Result<Plugin> {
        let mut limits = Limits::new();
        if let Some(fuel) = self.fuel {
            limits = limits.fuel(fuel);
        }
        if let Some(bytes) = self.max_memory {
            limits = limits.max_memory(bytes);
        }
        let mut sandbox = Sandbox::new()
            .inherit_env(self.inherit_env)
            .inherit_stdio(self.inherit_stdio);
        for (specs, read_only, flag) in [
            (&self.dirs, false, "--dir"),
            (&self.dirs_ro, true, "--dir-ro"),
        ] {
            for spec in specs {
                let grant =
                    DirGrant::parse(spec, read_only).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
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
        Ok(plugin.with_limits(limits).with_sandbox(sandbox))
    }
}

/// A duration option value (`250ms`, `5s`, `2m`).
pub(crate) fn duration(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text)
}
