//! Capabilities granted to a plugin: deny by default.
//!
//! A guest sees no files, no environment variables and no network unless the sandbox grants
//! them. Clocks and random are always available. Stdout and stderr are captured per attempt
//! (bounded) unless `inherit_stdio` streams them to the host's.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::output::TailPipe;

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// The path the guest opens it by.
    pub guest: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

impl DirGrant {
    /// Parses `HOST[::GUEST]`; without `::GUEST` the guest sees the directory at `HOST`.
    ///
    /// ```
    /// use osiiso_host::DirGrant;
    /// let grant = DirGrant::parse("/srv/data::/data", true).unwrap();
    /// assert_eq!(grant.guest, "/data");
    /// assert!(grant.read_only);
    /// ```
    pub fn parse(spec: &str, read_only: bool) -> Result<Self, String> {
        let (host, guest) = match spec.split_once("::") {
            Some((host, guest)) => (host, guest),
            None => (spec, spec),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(format!(
                "invalid directory grant '{spec}' (expected HOST[::GUEST])"
            ));
        }
        Ok(Self {
            host: PathBuf::from(host),
            guest: guest.to_string(),
            read_only,
        })
    }
}

/// The capability policy of a plugin.
///
/// ```
/// use osiiso_host::Sandbox;
/// let sandbox = Sandbox::new().env("MODE", "fast").dir_read_only("/usr/share/dict", "/dict");
/// assert_eq!(sandbox.dirs().len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    dirs: Vec<DirGrant>,
    env: Vec<(String, String)>,
    inherit_env: bool,
    inherit_stdio: bool,
}

impl Sandbox {
    /// Nothing granted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants read-write access to `host` as `guest`.
    pub fn dir(mut self, host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        self.dirs.push(DirGrant {
            host: host.into(),
            guest: guest.into(),
            read_only: false,
        });
        self
    }

    /// Grants read-only access to `host` as `guest`.
    pub fn dir_read_only(mut self, host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        self.dirs.push(DirGrant {
            host: host.into(),
            guest: guest.into(),
            read_only: true,
        });
        self
    }

    /// Adds a directory grant.
    pub fn grant(mut self, grant: DirGrant) -> Self {
        self.dirs.push(grant);
        self
    }

    /// Sets an environment variable for the guest.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Passes the host's whole environment to the guest.
    pub fn inherit_env(mut self, yes: bool) -> Self {
        self.inherit_env = yes;
        self
    }

    /// Streams guest stdout/stderr to the host's instead of capturing them.
    pub fn inherit_stdio(mut self, yes: bool) -> Self {
        self.inherit_stdio = yes;
        self
    }

    /// The directory grants.
    pub fn dirs(&self) -> &[DirGrant] {
        &self.dirs
    }

    /// Checks that every granted host directory exists and is a directory.
    pub fn validate(&self) -> Result<(), String> {
        for grant in &self.dirs {
            if !grant.host.is_dir() {
                return Err(format!(
                    "directory '{}' does not exist or is not a directory",
                    grant.host.display()
                ));
            }
        }
        Ok(())
    }

    /// Builds the WASI context of one attempt.
    pub(crate) fn wasi_ctx(
        &self,
        stdout: &TailPipe,
        stderr: &TailPipe,
    ) -> std::io::Result<WasiCtx> {
        let mut builder = WasiCtxBuilder::new();
        builder.allow_blocking_current_thread(true);
        if self.inherit_env {
            builder.inherit_env();
        }
        for (key, value) in &self.env {
            builder.env(key, value);
        }
        if self.inherit_stdio {
            builder.inherit_stdout().inherit_stderr();
        } else {
            builder.stdout(stdout.clone()).stderr(stderr.clone());
        }
        for grant in &self.dirs {
            let perms = if grant.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            builder
                .preopened_dir(&grant.host, &grant.guest, perms)
                .map_err(|e| {
                    std::io::Error::other(format!(
                        "cannot open directory '{}': {e:#}",
                        grant.host.display()
                    ))
                })?;
        }
        Ok(builder.build())
    }
}
