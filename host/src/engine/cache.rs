//! Compiled code from disk: the compile cache and precompiled artifacts. Deserializing
//! compiled code runs whatever native code the bytes contain, so this module is where the
//! host decides what it trusts (see `SECURITY.md`):
//!
//! - **Cache entries** are trusted only in a directory that is the user's own (owned by the
//!   current user, not writable by group or others), and only when their authentication tag
//!   verifies: a BLAKE3 MAC, keyed with the cache's own secret key (`<root>/key`, mode 0600),
//!   over the component's content hash, the engine fingerprint and the compiled payload. An
//!   entry planted by someone without the key, copied from another plugin's entry, written
//!   for another engine configuration or corrupted fails the check and is rebuilt, never run.
//! - **Precompiled artifacts** (`osiiso-host compile -o`, or a wasmtime `.cwasm`) carry only
//!   a digest that whoever wrote the file computed, which proves nothing. They are loaded
//!   only when the host was built with [`allow_precompiled`](super::HostBuilder::allow_precompiled),
//!   for files from a trusted source.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::compile::{self, CompileError, CompileStep};

/// First bytes of a compile-cache entry.
const ENTRY_MAGIC: &[u8; 16] = b"osiiso-cache-v2\0";
/// First bytes of a precompiled artifact written by `compile -o`.
const ARTIFACT_MAGIC: &[u8; 16] = b"osiiso-cwasm-v2\0";
/// Artifacts and entries of earlier versions start with one of these.
const LEGACY_PREFIXES: &[&[u8]] = &[b"osiiso-cwasm-", b"osiiso-cache-"];
/// Magic plus a 32-byte tag or digest.
const HEADER: usize = 16 + 32;
/// The secret key's file name in the cache root.
const KEY_FILE: &str = "key";
/// Domain separation for the entry MAC.
const MAC_CONTEXT: &[u8] = b"osiiso-host compile cache entry v2";
/// How often a load waiting for another process's compilation of the same entry looks again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// The largest cache entry read back (compiled code of a plugin under the plugin size limit).
const MAX_ENTRY_BYTES: u64 = 2 << 30;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled, and the cache entry written.
    Miss,
    /// Compiled, replacing an entry that did not verify (corrupt, swapped, planted or
    /// incompatible).
    Rebuilt,
    /// Compiled without the cache (disabled, or its directory is not trusted).
    Disabled,
    /// Deserialized from a precompiled artifact the host was allowed to load.
    Precompiled,
}

/// A directory of compiled components for one engine configuration, and the key that
/// authenticates its entries.
#[derive(Clone)]
pub(crate) struct CompileCache {
    /// Present when the cache is enabled and its directory is trusted.
    store: Option<TrustedDir>,
}

#[derive(Clone)]
struct TrustedDir {
    /// The root the user chose (holds the key).
    root: PathBuf,
    /// `<root>/<engine fingerprint>/`.
    dir: PathBuf,
    fingerprint: String,
    key: [u8; 32],
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.store.as_ref().map(|s| &s.dir))
            .finish_non_exhaustive()
    }
}

impl CompileCache {
    /// Opens the cache under `root`, creating it private to this user. A directory that is
    /// not the user's own is not used: the host warns, naming it, and compiles in memory.
    pub(crate) fn open(root: Option<PathBuf>, fingerprint: &str) -> Self {
        let Some(root) = root else {
            return Self { store: None };
        };
        match TrustedDir::open(&root, fingerprint) {
            Ok(store) => Self { store: Some(store) },
            Err(reason) => {
                tracing::warn!(
                    directory = %root.display(),
                    "not using the compile cache: {reason}"
                );
                Self { store: None }
            }
        }
    }

    /// The default location: `$XDG_CACHE_HOME/osiiso-host` (or the platform equivalent).
    pub(crate) fn default_root() -> Option<PathBuf> {
        directories::BaseDirs::new().map(|dirs| dirs.cache_dir().join("osiiso-host"))
    }

    /// The cache root, when the cache is in use.
    pub(crate) fn root(&self) -> Option<&Path> {
        self.store.as_ref().map(|s| s.root.as_path())
    }

    /// Where the entry for a component with this content hash lives.
    pub(crate) fn entry_path(&self, component_hash: &str) -> Option<PathBuf> {
        self.store.as_ref().map(|s| s.entry_path(component_hash))
    }

    /// The compiled component from the cache, when an entry for exactly these bytes and this
    /// engine verifies. Never compiles.
    pub(crate) fn lookup(&self, engine: &Engine, component_hash: &str) -> Option<Component> {
        match self.store.as_ref()?.read_quietly(engine, component_hash) {
            Entry::Valid(component) => Some(component),
            Entry::Missing | Entry::Invalid => None,
        }
    }

    /// Returns the compiled component, from the cache when an entry for exactly these bytes
    /// and this engine verifies; otherwise compiled by `compile` (and the entry written).
    /// A hit never compiles. While another process of this user compiles the same entry,
    /// this waits for it (at most one compile timeout) and reads what it wrote. A compilation
    /// ends early, as [`CompileError::Stopped`], once `stop` says so.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        compile: &CompileStep,
        component_hash: &str,
        wasm: &[u8],
        stop: &dyn Fn() -> bool,
    ) -> Result<(Component, CacheOutcome), CompileError> {
        let Some(store) = &self.store else {
            let artifact = compile.compile(engine, wasm, stop)?;
            return Ok((compile::load(engine, &artifact)?, CacheOutcome::Disabled));
        };
        let mut outcome = match store.read(engine, component_hash) {
            Entry::Valid(component) => return Ok((component, CacheOutcome::Hit)),
            Entry::Missing => CacheOutcome::Miss,
            Entry::Invalid => CacheOutcome::Rebuilt,
        };
        let _lock = store.lock(component_hash, compile.limits().timeout, stop)?;
        // Another process may have written (or rebuilt) the entry while this one waited.
        match store.read_quietly(engine, component_hash) {
            Entry::Valid(component) => return Ok((component, CacheOutcome::Hit)),
            Entry::Missing => {}
            Entry::Invalid => outcome = CacheOutcome::Rebuilt,
        }
        let path = store.entry_path(component_hash);
        let artifact = compile.compile(engine, wasm, stop)?;
        if let Err(error) = store.write_entry(&path, component_hash, &artifact) {
            tracing::warn!(path = %path.display(), %error, "cannot write compile cache entry");
        }
        Ok((compile::load(engine, &artifact)?, outcome))
    }
}

/// What the cache holds for a component.
enum Entry {
    Valid(Component),
    Missing,
    /// Unreadable, or an entry that does not verify: it is rebuilt.
    Invalid,
}

impl TrustedDir {
    fn open(root: &Path, fingerprint: &str) -> Result<Self, String> {
        private_dir(root)?;
        let key = read_or_create_key(&root.join(KEY_FILE))?;
        let dir = root.join(fingerprint);
        private_dir(&dir)?;
        Ok(Self {
            root: root.to_path_buf(),
            dir,
            fingerprint: fingerprint.to_string(),
            key,
        })
    }

    fn entry_path(&self, component_hash: &str) -> PathBuf {
        self.dir.join(format!("{component_hash}.cwasm"))
    }

    /// The entry for `component_hash`, read and verified; an entry that does not verify is
    /// logged (it is about to be rebuilt).
    fn read(&self, engine: &Engine, component_hash: &str) -> Entry {
        self.read_logged(engine, component_hash, true)
    }

    /// [`read`](Self::read) that logs nothing about an invalid entry.
    fn read_quietly(&self, engine: &Engine, component_hash: &str) -> Entry {
        self.read_logged(engine, component_hash, false)
    }

    fn read_logged(&self, engine: &Engine, component_hash: &str, log: bool) -> Entry {
        let path = self.entry_path(component_hash);
        match read_bounded(&path, MAX_ENTRY_BYTES) {
            Ok(bytes) => match self.open_entry(engine, component_hash, &bytes) {
                Ok(component) => Entry::Valid(component),
                Err(reason) => {
                    if log {
                        tracing::warn!(path = %path.display(), %reason, "rebuilding compile cache entry");
                    }
                    Entry::Invalid
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Entry::Missing,
            Err(error) => {
                if log {
                    tracing::warn!(path = %path.display(), %error, "cannot read compile cache entry");
                }
                Entry::Invalid
            }
        }
    }

    /// An exclusive lock on the entry for `component_hash` (a `.lock` file next to it),
    /// waited for at most `patience`; `None` when it cannot be had, and the caller compiles
    /// anyway. Released when dropped.
    /// The lock of the entry of `component_hash`, waited for at most `patience` (`None`: no
    /// lock, and the caller goes on without one); [`CompileError::Stopped`] as soon as `stop`
    /// says so while it waits.
    fn lock(
        &self,
        component_hash: &str,
        patience: std::time::Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<fs::File>, CompileError> {
        let path = self.dir.join(format!("{component_hash}.lock"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            // Never a link, and never waits on a FIFO planted there.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path);
        let Ok(file) = file else {
            return Ok(None);
        };
        let give_up = std::time::Instant::now() + patience;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < give_up => {
                    if stop() {
                        return Err(CompileError::Stopped);
                    }
                    std::thread::sleep(LOCK_POLL);
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// The tag that binds an entry to its component, this engine and this cache.
    fn tag(&self, component_hash: &str, payload: &[u8]) -> blake3::Hash {
        let mut mac = blake3::Hasher::new_keyed(&self.key);
        for part in [
            MAC_CONTEXT,
            component_hash.as_bytes(),
            self.fingerprint.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.update(payload);
        mac.finalize()
    }

    fn write_entry(
        &self,
        path: &Path,
        component_hash: &str,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let tag = self.tag(component_hash, payload);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(ENTRY_MAGIC)?;
        tmp.write_all(tag.as_bytes())?;
        tmp.write_all(payload)?;
        tmp.as_file().sync_data().ok();
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    fn open_entry(
        &self,
        engine: &Engine,
        component_hash: &str,
        bytes: &[u8],
    ) -> Result<Component, String> {
        if bytes.len() < HEADER || &bytes[..16] != ENTRY_MAGIC {
            return Err("not a compile cache entry of this version".into());
        }
        let (tag, payload) = bytes[16..].split_at(32);
        // blake3::Hash compares in constant time.
        if self.tag(component_hash, payload)
            != blake3::Hash::from_bytes(tag.try_into().unwrap_or([0; 32]))
        {
            return Err("authentication tag does not verify (corrupt, or not written for this plugin, engine and cache)".into());
        }
        // SAFETY: the tag proves this cache wrote the payload from `Component::serialize` of
        // exactly this component for this engine configuration; wasmtime checks its own
        // compatibility header as well.
        unsafe { Component::deserialize(engine, payload) }.map_err(|e| format!("{e:#}"))
    }
}

/// Creates `dir` (mode 0700) if needed and checks it is the current user's own: owned by
/// them and not writable by group or others.
fn private_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let meta = fs::metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    owned_and_private(dir, &meta, 0o022)
}

fn owned_and_private(path: &Path, meta: &fs::Metadata, forbidden: u32) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "{} is owned by uid {}, not by this user (uid {me})",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & forbidden != 0 {
        return Err(format!(
            "{} is accessible to other users (mode {mode:04o})",
            path.display()
        ));
    }
    Ok(())
}

/// Reads the cache's 32-byte secret key, creating it (mode 0600, from the OS's random
/// source) if there is none. A key that others can read or that another user owns is refused.
fn read_or_create_key(path: &Path) -> Result<[u8; 32], String> {
    for _ in 0..3 {
        match fs::symlink_metadata(path) {
            Ok(meta) => {
                if !meta.file_type().is_file() {
                    return Err(format!("{} is not a regular file", path.display()));
                }
                owned_and_private(path, &meta, 0o077)?;
                let bytes =
                    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                return bytes
                    .try_into()
                    .map_err(|_| format!("{} is not a 32-byte key", path.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or(Path::new("."));
                let mut key = [0u8; 32];
                fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut key))
                    .map_err(|e| format!("cannot read random bytes for the cache key: {e}"))?;
                let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
                    format!("cannot create the cache key in {}: {e}", dir.display())
                })?;
                tmp.as_file()
                    .set_permissions(fs::Permissions::from_mode(0o600))
                    .and_then(|()| tmp.write_all(&key))
                    .and_then(|()| tmp.as_file().sync_all())
                    .map_err(|e| format!("cannot write the cache key: {e}"))?;
                match tmp.persist_noclobber(path) {
                    Ok(_) => return Ok(key),
                    // Another process made one first: use theirs.
                    Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(format!("cannot store the cache key: {}", e.error)),
                }
            }
            Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
        }
    }
    Err(format!("cannot settle the cache key {}", path.display()))
}

/// Reads at most `limit` bytes of `path`; a longer file is an error.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {}", crate::units::format_size(limit as usize)),
        ));
    }
    Ok(bytes)
}

/// Writes a precompiled artifact (`compile -o`): magic, a BLAKE3 digest of the payload (it
/// detects corruption; it does not make the file trustworthy), the payload. Only a regular
/// file is replaced, atomically; anything else at `path` is refused and left untouched.
pub(crate) fn write_artifact(path: &Path, payload: &[u8]) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => {}
        Ok(meta) => {
            return Err(format!(
                "refusing to replace {}: it is {}, not a regular file",
                path.display(),
                describe_file_type(&meta.file_type())
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(ARTIFACT_MAGIC)?;
        tmp.write_all(blake3::hash(payload).as_bytes())?;
        tmp.write_all(payload)?;
        tmp.as_file().sync_data()?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn describe_file_type(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Whether `bytes` are compiled code rather than a component: an artifact of ours (any
/// version), a cache entry, or a wasmtime precompiled module or component.
pub(crate) fn is_precompiled(bytes: &[u8]) -> bool {
    LEGACY_PREFIXES.iter().any(|p| bytes.starts_with(p))
        || Engine::detect_precompiled(bytes).is_some()
}

/// Deserializes a precompiled artifact. The caller has established that the user trusts it
/// (the host allows precompiled input); the digest only catches corruption.
pub(crate) fn open_artifact(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    let payload = if bytes.starts_with(ARTIFACT_MAGIC) {
        if bytes.len() < HEADER {
            return Err("truncated artifact".into());
        }
        let (digest, payload) = bytes[16..].split_at(32);
        if blake3::hash(payload).as_bytes() != digest {
            return Err("digest mismatch (corrupt artifact)".into());
        }
        payload
    } else if Engine::detect_precompiled(bytes).is_some() {
        bytes
    } else {
        return Err("an artifact of another osiiso-host version; compile the plugin again".into());
    };
    // SAFETY: the user opted in to loading precompiled code from a trusted source
    // (`allow_precompiled`); wasmtime checks the engine compatibility header itself.
    unsafe { Component::deserialize(engine, payload) }.map_err(|e| format!("{e:#}"))
}

/// What an engine's compiled code must match: this crate's version and wasmtime's
/// compatibility hash of the engine's settings.
pub(crate) fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
