//! The on-disk compile cache: precompiled components keyed by the component's content hash
//! and the engine's compatibility fingerprint.
//!
//! An entry is `MAGIC`, the BLAKE3 digest of the payload, then the payload (wasmtime's
//! serialized component). A file whose digest does not match, or that wasmtime refuses, is
//! treated as a miss and rewritten: an entry is never trusted blindly.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 16] = b"osiiso-cwasm-v1\0";
const HEADER: usize = MAGIC.len() + 32;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled, and the cache entry written.
    Miss,
    /// Compiled, replacing an entry that was corrupt or incompatible.
    Rebuilt,
    /// Compiled with the cache disabled.
    Disabled,
}

/// A directory of precompiled components for one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    /// `<root>/<engine fingerprint>/`, or `None` when disabled.
    dir: Option<PathBuf>,
}

impl CompileCache {
    pub(crate) fn new(root: Option<PathBuf>, engine: &Engine) -> Self {
        let dir = root.map(|root| root.join(engine_fingerprint(engine)));
        Self { dir }
    }

    /// The default location: `$XDG_CACHE_HOME/osiiso-host` (or the platform equivalent).
    pub(crate) fn default_root() -> Option<PathBuf> {
        directories::BaseDirs::new().map(|dirs| dirs.cache_dir().join("osiiso-host"))
    }

    /// Where the entry for a component with this content hash lives.
    pub(crate) fn entry_path(&self, component_hash: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{component_hash}.cwasm")))
    }

    /// Returns the compiled component, from the cache when a valid entry exists.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        component_hash: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(path) = self.entry_path(component_hash) else {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Disabled));
        };
        let mut outcome = CacheOutcome::Miss;
        match fs::read(&path) {
            Ok(bytes) => match deserialize_entry(engine, &bytes) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "discarding compile cache entry");
                    outcome = CacheOutcome::Rebuilt;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read compile cache entry")
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = write_entry(&path, &component.serialize()?) {
            tracing::warn!(path = %path.display(), %error, "cannot write compile cache entry");
        }
        Ok((component, outcome))
    }
}

/// Writes a precompiled component to `path` in the cache's entry format.
pub(crate) fn write_entry(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(blake3::hash(payload).as_bytes())?;
    tmp.write_all(payload)?;
    tmp.as_file().sync_data().ok();
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Validates an entry and deserializes it.
pub(crate) fn deserialize_entry(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not an osiiso-host compiled artifact".into());
    }
    let (digest, payload) = bytes[MAGIC.len()..].split_at(32);
    if blake3::hash(payload).as_bytes() != digest {
        return Err("digest mismatch (corrupt entry)".into());
    }
    // SAFETY: the payload was produced by `Component::serialize` of this crate (its digest
    // matches what we wrote), and wasmtime checks the engine compatibility header itself.
    unsafe { Component::deserialize(engine, payload) }.map_err(|e| format!("{e:#}"))
}

/// True when `bytes` look like an artifact written by [`write_entry`].
pub(crate) fn is_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
