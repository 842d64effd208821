//! A node's plugins: in memory, else its local copy, else the broker's plugin store, each
//! checked against the BLAKE3 name before it is loaded (and compiled through the compile
//! cache). Bytes from the broker are never taken as native code: a node's host refuses
//! precompiled artifacts. A stored object is read only if it has the size its attempt
//! names, and no more than that is buffered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::object_store::ObjectStore;
use parking_lot::Mutex;

use super::super::layout::{self, MAX_PLUGIN_BYTES};
use super::super::message::CachedPlugin;
use super::super::payload::{ObjectError, read_object};
use crate::backend::loaded::LoadedPlugins;
use crate::engine::{Host, Plugin};
use crate::failure::{FailureKind, TaskFailure};

/// Plugins kept loaded in memory at most (the least recently used is dropped first).
const LOADED: usize = 32;
/// Verified components kept on disk at most.
const KEPT: usize = 64;
/// Plugins that did not load, remembered at most: every task of a plugin that cannot be
/// compiled (a compile bomb up to its limit, say) must not cost the node a compilation.
const REMEMBERED_FAILURES: usize = 256;
/// How long a failed load is remembered (a load that ran out of time on a busy node may
/// succeed later).
const FAILURE_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);
/// The longest plugin name kept for display.
const NAME_BYTES: usize = 128;

/// Why a plugin is not there.
#[derive(Debug)]
pub(crate) enum PluginError {
    /// The stored object is not the component its name says (its submitter repairs it).
    Bad(String),
    /// Anything else: the failure to report.
    Failed(TaskFailure),
}

pub(crate) struct NodePlugins {
    host: Host,
    store: ObjectStore,
    /// Verified components, `blake3-<hex>.wasm`, when the node has a cache directory.
    dir: Option<PathBuf>,
    /// Loaded plugins by hash, with the name they first came with.
    loaded: Mutex<LoadedPlugins<(String, Plugin)>>,
    /// Plugins whose load failed, with when and why.
    failed: Mutex<HashMap<String, (std::time::Instant, TaskFailure)>>,
    /// One fetch per plugin at a time.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Plugins found, by where: [memory, disk, broker].
    found: [AtomicU64; 3],
    /// Time spent fetching plugins from the broker, in nanoseconds.
    fetch_nanos: AtomicU64,
}

/// Where a node found the plugins of its attempts, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FetchStats {
    /// Found loaded in memory, as a verified local copy, fetched from the broker.
    pub(crate) found: [u64; 3],
    /// Time spent fetching from the broker.
    pub(crate) fetch_seconds: f64,
}

const MEMORY: usize = 0;
const DISK: usize = 1;
const BROKER: usize = 2;

impl NodePlugins {
    pub(crate) fn new(host: Host, store: ObjectStore) -> Self {
        let dir = host.cache_root().map(|root| root.join("nats-plugins"));
        Self {
            host,
            store,
            dir,
            loaded: Mutex::new(LoadedPlugins::new(LOADED)),
            failed: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            found: std::array::from_fn(|_| AtomicU64::new(0)),
            fetch_nanos: AtomicU64::new(0),
        }
    }

    /// Where plugins were found so far.
    pub(crate) fn fetch_stats(&self) -> FetchStats {
        FetchStats {
            found: std::array::from_fn(|i| self.found[i].load(Ordering::Relaxed)),
            fetch_seconds: self.fetch_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    fn found(&self, place: usize) {
        self.found[place].fetch_add(1, Ordering::Relaxed);
    }

    /// The plugins loaded now.
    pub(crate) fn cached(&self) -> Vec<CachedPlugin> {
        let mut cached: Vec<CachedPlugin> = self
            .loaded
            .lock()
            .iter()
            .map(|(hash, (name, _))| CachedPlugin {
                name: name.clone(),
                hash: hash.clone(),
            })
            .collect();
        cached.sort();
        cached
    }

    /// The plugin whose component (of `size` bytes) hashes to `hash`.
    pub(crate) async fn get(
        &self,
        hash: &str,
        name: &str,
        size: u64,
    ) -> Result<Plugin, PluginError> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PluginError::Failed(TaskFailure::new(
                FailureKind::PluginLoad,
                "the attempt names a plugin hash that is not BLAKE3 hex",
            )));
        }
        if let Some((_, plugin)) = self.loaded.lock().get(hash) {
            self.found(MEMORY);
            return Ok(plugin.clone());
        }
        let lock = self
            .fetching
            .lock()
            .entry(hash.to_string())
            .or_default()
            .clone();
        let loaded = {
            let _fetching = lock.lock().await;
            self.load(hash, name, size).await
        };
        // Whatever the outcome: failures must not leave an entry per hash behind.
        self.fetching.lock().remove(hash);
        loaded
    }

    /// Loads the plugin (one caller per hash at a time).
    async fn load(&self, hash: &str, name: &str, size: u64) -> Result<Plugin, PluginError> {
        if let Some((_, plugin)) = self.loaded.lock().get(hash) {
            self.found(MEMORY);
            return Ok(plugin.clone());
        }
        if let Some(failure) = self.failed_before(hash) {
            return Err(PluginError::Failed(failure));
        }
        let bytes = match self.local(hash).await {
            Some(bytes) => {
                self.found(DISK);
                bytes
            }
            None => {
                let began = std::time::Instant::now();
                let object = layout::plugin_object(hash);
                let bytes = read_object(&self.store, &object, size, MAX_PLUGIN_BYTES, hash)
                    .await
                    .map_err(|error| match error {
                        ObjectError::Bad(why) => {
                            PluginError::Bad(format!("the stored plugin is wrong: {why}"))
                        }
                        ObjectError::Unreachable(why) => PluginError::Failed(TaskFailure::new(
                            FailureKind::WorkerStart,
                            format!("cannot fetch the plugin from NATS: {why}"),
                        )),
                    })?;
                self.found(BROKER);
                let nanos = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.fetch_nanos.fetch_add(nanos, Ordering::Relaxed);
                tracing::info!(object = %object, bytes = bytes.len(), "plugin fetched");
                self.keep(hash, &bytes).await;
                bytes
            }
        };
        let name = crate::text::truncate(name, NAME_BYTES).into_owned();
        let (host, load_name) = (self.host.clone(), name.clone());
        let loaded = tokio::task::spawn_blocking(move || host.load_bytes(&load_name, &bytes)).await;
        let failed = |message: String| {
            PluginError::Failed(TaskFailure::new(FailureKind::PluginLoad, message))
        };
        let plugin = match loaded {
            Ok(Ok(plugin)) => plugin,
            Ok(Err(error)) => {
                let failure = TaskFailure::new(FailureKind::PluginLoad, error.to_string());
                self.remember_failure(hash, &failure);
                return Err(PluginError::Failed(failure));
            }
            Err(error) => {
                return Err(failed(format!(
                    "loading the plugin did not finish: {error}"
                )));
            }
        };
        self.loaded.lock().insert(hash, (name, plugin.clone()));
        Ok(plugin)
    }

    /// Why the plugin did not load, if it failed recently.
    fn failed_before(&self, hash: &str) -> Option<TaskFailure> {
        let mut failed = self.failed.lock();
        match failed.get(hash) {
            Some((when, failure)) if when.elapsed() < FAILURE_MEMORY => Some(failure.clone()),
            Some(_) => {
                failed.remove(hash);
                None
            }
            None => None,
        }
    }

    fn remember_failure(&self, hash: &str, failure: &TaskFailure) {
        let mut failed = self.failed.lock();
        failed.retain(|_, (when, _)| when.elapsed() < FAILURE_MEMORY);
        if failed.len() >= REMEMBERED_FAILURES
            && let Some(oldest) = failed
                .iter()
                .min_by_key(|(_, (when, _))| *when)
                .map(|(hash, _)| hash.clone())
        {
            failed.remove(&oldest);
        }
        failed.insert(
            hash.to_string(),
            (std::time::Instant::now(), failure.clone()),
        );
    }

    /// The local copy, if there is one and it still hashes to its name.
    async fn local(&self, hash: &str) -> Option<Vec<u8>> {
        let path = self
            .dir
            .as_ref()?
            .join(format!("{}.wasm", layout::plugin_object(hash)));
        let bytes = tokio::task::spawn_blocking(move || {
            crate::engine::read_plugin_file(&path, MAX_PLUGIN_BYTES).ok()
        })
        .await
        .ok()??;
        (blake3::hash(&bytes).to_hex().as_str() == hash).then_some(bytes)
    }

    /// Keeps a verified component on disk for the next start (best effort).
    async fn keep(&self, hash: &str, bytes: &[u8]) {
        let Some(dir) = self.dir.clone() else { return };
        let (name, bytes) = (layout::plugin_object(hash), bytes.to_vec());
        let _ = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            evict_oldest(&dir, KEPT - 1);
            let mut file = tempfile::NamedTempFile::new_in(&dir)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.persist(dir.join(format!("{name}.wasm")))
                .map_err(|e| e.error)?;
            Ok(())
        })
        .await;
    }
}

/// Removes the oldest files of `dir` until at most `keep` are left.
fn evict_oldest(dir: &std::path::Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let meta = e.metadata().ok()?;
            meta.is_file()
                .then(|| (meta.modified().unwrap_or(std::time::UNIX_EPOCH), e.path()))
        })
        .collect();
    if files.len() <= keep {
        return;
    }
    files.sort();
    let excess = files.len() - keep;
    for (_, path) in files.into_iter().take(excess) {
        let _ = std::fs::remove_file(path);
    }
}
