//! Capabilities granted to a plugin: deny by default.
//!
//! A guest sees no files, no environment variables and no network unless the sandbox grants
//! them. Outgoing HTTP (`wasi:http`) is allowed only to the `HOST[:PORT]` destinations listed
//! with [`Sandbox::allow_http`]. Clocks and random are always available. Stdout and stderr are captured per attempt
//! (bounded) unless `inherit_stdio` streams them to the host's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::http::HttpGrant;
use super::output::TailPipe;

/// Filesystem calls run on the calling thread (wasmtime-wasi's `allow_blocking_current_thread`)
/// rather than on a blocking pool: cheaper, and safe because a guest can open only regular
/// files and directories (see `fs_guard`), whose calls return on their own.
pub(crate) const BLOCKING_FS_INLINE: bool = true;

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

    /// Whether a guest given this grant could reach `dir`: the grant holds `dir`, or `dir`
    /// holds the grant. Paths are compared once resolved (symbolic links, `..`); a path that
    /// does not resolve reaches nothing.
    ///
    /// ```
    /// use osiiso_host::DirGrant;
    /// let tmp = std::env::temp_dir();
    /// let grant = DirGrant::parse(tmp.to_str().unwrap(), true).unwrap();
    /// assert!(grant.reaches(&tmp));
    /// assert!(!grant.reaches(std::path::Path::new("/proc/self")));
    /// ```
    pub fn reaches(&self, dir: &Path) -> bool {
        match (self.host.canonicalize(), dir.canonicalize()) {
            (Ok(granted), Ok(dir)) => dir.starts_with(&granted) || granted.starts_with(&dir),
            _ => false,
        }
    }
}

/// Where a guest's stdout and stderr go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestStdio {
    /// Captured per attempt (the last bytes of each) and attached to the result.
    #[default]
    Capture,
    /// Streamed to the host's stdout and stderr.
    Inherit,
    /// Both streamed to the host's stderr: for a host whose stdout carries results (the CLI's
    /// `--inherit-stdio`), so that guest output can never pass for a result row.
    InheritToStderr,
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
    #[serde(default)]
    stdio: GuestStdio,
    /// `HOST[:PORT]` destinations the guest may send HTTP requests to.
    #[serde(default)]
    allow_http: Vec<String>,
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

    /// Streams guest stdout/stderr to the host's instead of capturing them
    /// ([`GuestStdio::Inherit`]).
    pub fn inherit_stdio(mut self, yes: bool) -> Self {
        self.stdio = if yes {
            GuestStdio::Inherit
        } else {
            GuestStdio::Capture
        };
        self
    }

    /// Where guest output goes.
    pub fn stdio(mut self, stdio: GuestStdio) -> Self {
        self.stdio = stdio;
        self
    }

    /// Whether the whole host environment is passed to the guest.
    pub fn inherits_env(&self) -> bool {
        self.inherit_env
    }

    /// The explicit environment variables.
    pub fn env_vars(&self) -> &[(String, String)] {
        &self.env
    }

    /// Allows outgoing HTTP (`wasi:http`) to `HOST[:PORT]`; without a port, to every port of
    /// the host. An IPv6 address is written `[ADDR]` or `[ADDR]:PORT`. Every other destination
    /// is denied: the guest's request fails with `http-request-denied`.
    ///
    /// ```
    /// use osiiso_host::Sandbox;
    /// let sandbox = Sandbox::new().allow_http("api.example.com").allow_http("127.0.0.1:8080");
    /// assert_eq!(sandbox.http_allowed().len(), 2);
    /// assert!(sandbox.validate().is_ok());
    /// assert!(Sandbox::new().allow_http("http://x/").validate().is_err());
    /// ```
    pub fn allow_http(mut self, host_port: impl Into<String>) -> Self {
        self.allow_http.push(host_port.into());
        self
    }

    /// The directory grants.
    pub fn dirs(&self) -> &[DirGrant] {
        &self.dirs
    }

    /// The `HOST[:PORT]` destinations allowed for outgoing HTTP.
    pub fn http_allowed(&self) -> &[String] {
        &self.allow_http
    }

    /// Checks that every [`allow_http`](Self::allow_http) entry is a valid `HOST[:PORT]`.
    pub fn validate_http(&self) -> Result<(), String> {
        self.http_grants().map(drop)
    }

    /// The parsed HTTP allow-list.
    pub(crate) fn http_grants(&self) -> Result<Arc<[HttpGrant]>, String> {
        self.allow_http
            .iter()
            .map(|spec| HttpGrant::parse(spec))
            .collect()
    }

    /// Checks that every granted host directory exists and is a directory (and that the HTTP
    /// allow-list parses, see [`validate_http`](Self::validate_http)).
    pub fn validate(&self) -> Result<(), String> {
        self.validate_http()?;
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

    /// The builder of an attempt's WASI context (the store adds a program's arguments, stdin
    /// and environment to it).
    pub(crate) fn wasi_builder(
        &self,
        stdout: &TailPipe,
        stderr: &TailPipe,
    ) -> std::io::Result<WasiCtxBuilder> {
        let mut builder = WasiCtxBuilder::new();
        builder.allow_blocking_current_thread(BLOCKING_FS_INLINE);
        if self.inherit_env {
            builder.inherit_env();
        }
        for (key, value) in &self.env {
            builder.env(key, value);
        }
        match self.stdio {
            GuestStdio::Capture => {
                builder.stdout(stdout.clone()).stderr(stderr.clone());
            }
            GuestStdio::Inherit => {
                builder.inherit_stdout().inherit_stderr();
            }
            GuestStdio::InheritToStderr => {
                builder
                    .stdout(wasmtime_wasi::cli::stderr())
                    .inherit_stderr();
            }
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
        Ok(builder)
    }
}
