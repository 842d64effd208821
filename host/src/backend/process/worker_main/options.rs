//! The worker's command line: what the parent passes after the worker subcommand or marker.

use std::path::PathBuf;
use std::time::Duration;

use tracing::Level;

use crate::engine::CompileTier;

/// How a worker process is configured (from its command line).
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// The compile cache shared with the parent.
    pub cache_dir: Option<PathBuf>,
    /// Do not use the compile cache.
    pub no_cache: bool,
    /// OS address-space cap for this process (`RLIMIT_AS`), in bytes.
    pub memory_limit: Option<u64>,
    /// The most verbose `tracing` level to forward to the parent (none: forward nothing).
    pub log_level: Option<Level>,
    /// Load precompiled artifacts (the parent's host allows them).
    pub allow_precompiled: bool,
    /// The memory budget of this worker's live instances (its share of the parent's).
    pub total_memory: Option<usize>,
    /// Run guest code without fuel metering (the parent's host does not meter fuel).
    pub no_fuel: bool,
    /// How long compiling one plugin may take (the parent's compile timeout).
    pub compile_timeout: Option<Duration>,
    /// The memory compiling one plugin may use (the parent's compile memory limit).
    pub compile_memory: Option<u64>,
    /// The compiler of plugins (the parent's).
    pub compile_tier: CompileTier,
}

impl WorkerOptions {
    /// The arguments that reproduce these options after the worker subcommand or marker.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(dir) = &self.cache_dir {
            args.push("--cache-dir".into());
            args.push(dir.display().to_string());
        }
        if self.no_cache {
            args.push("--no-cache".into());
        }
        if let Some(limit) = self.memory_limit {
            args.push("--memory-limit".into());
            args.push(limit.to_string());
        }
        if let Some(level) = self.log_level {
            args.push("--log-level".into());
            args.push(level.to_string());
        }
        if self.allow_precompiled {
            args.push("--allow-precompiled".into());
        }
        if let Some(total) = self.total_memory {
            args.push("--total-memory".into());
            args.push(total.to_string());
        }
        if self.no_fuel {
            args.push("--no-fuel".into());
        }
        if let Some(timeout) = self.compile_timeout {
            args.push("--compile-timeout-ms".into());
            args.push(timeout.as_millis().min(u64::MAX.into()).to_string());
        }
        if let Some(memory) = self.compile_memory {
            args.push("--compile-memory".into());
            args.push(memory.to_string());
        }
        if self.compile_tier != CompileTier::default() {
            args.push("--compile-tier".into());
            args.push(self.compile_tier.name().into());
        }
        args
    }

    /// Parses the worker arguments the parent passes after the worker subcommand or marker.
    pub fn from_args(args: &[String]) -> Result<Self, String> {
        let mut options = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--cache-dir" => options.cache_dir = it.next().map(PathBuf::from),
                "--no-cache" => options.no_cache = true,
                "--memory-limit" => {
                    let value = it.next().ok_or("--memory-limit needs a value")?;
                    options.memory_limit = Some(value.parse().map_err(|_| "bad --memory-limit")?);
                }
                "--log-level" => {
                    let value = it.next().ok_or("--log-level needs a value")?;
                    options.log_level = Some(value.parse().map_err(|_| "bad --log-level")?);
                }
                "--allow-precompiled" => options.allow_precompiled = true,
                "--no-fuel" => options.no_fuel = true,
                "--compile-tier" => {
                    let value = it.next().ok_or("--compile-tier needs a value")?;
                    options.compile_tier =
                        CompileTier::from_name(value).ok_or("bad --compile-tier")?;
                }
                "--total-memory" => {
                    let value = it.next().ok_or("--total-memory needs a value")?;
                    options.total_memory = Some(value.parse().map_err(|_| "bad --total-memory")?);
                }
                "--compile-timeout-ms" => {
                    let value = it.next().ok_or("--compile-timeout-ms needs a value")?;
                    let millis = value.parse().map_err(|_| "bad --compile-timeout-ms")?;
                    options.compile_timeout = Some(Duration::from_millis(millis));
                }
                "--compile-memory" => {
                    let value = it.next().ok_or("--compile-memory needs a value")?;
                    options.compile_memory =
                        Some(value.parse().map_err(|_| "bad --compile-memory")?);
                }
                other => return Err(format!("unknown worker argument '{other}'")),
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_options_round_trip_with_the_compile_limits() {
        let options = WorkerOptions {
            cache_dir: Some("/tmp/cache".into()),
            memory_limit: Some(512 << 20),
            total_memory: Some(1 << 30),
            compile_timeout: Some(Duration::from_millis(2500)),
            compile_memory: Some(64 << 20),
            no_fuel: true,
            compile_tier: CompileTier::Baseline,
            ..WorkerOptions::default()
        };
        let parsed = WorkerOptions::from_args(&options.to_args()).unwrap();
        assert!(parsed.no_fuel);
        assert_eq!(parsed.compile_tier, CompileTier::Baseline);
        assert_eq!(
            WorkerOptions::from_args(&[]).unwrap().compile_tier,
            CompileTier::Tiered
        );
        assert!(!WorkerOptions::from_args(&[]).unwrap().no_fuel);
        assert_eq!(parsed.compile_timeout, options.compile_timeout);
        assert_eq!(parsed.compile_memory, options.compile_memory);
        assert_eq!(parsed.memory_limit, options.memory_limit);
        // A timeout too long for milliseconds still starts the worker.
        let forever = WorkerOptions {
            compile_timeout: Some(Duration::MAX),
            ..WorkerOptions::default()
        };
        assert!(WorkerOptions::from_args(&forever.to_args()).is_ok());
    }
}
