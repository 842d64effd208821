//! A node's plugins: in memory, else its local copy, else the broker's object store, each
//! checked against the BLAKE3 name before it is loaded (and compiled through the compile
//! cache). Bytes from the broker are never taken as native code: a node's host refuses
//! precompiled artifacts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_nats::jetstream::object_store::ObjectStore;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;

use super::super::layout::{self, MAX_PLUGIN_BYTES};
use crate::engine::{Host, Plugin};
use crate::failure::{FailureKind, TaskFailure};

/// Plugins kept loaded in memory at most.
const LOADED: usize = 32;
/// Verified components kept on disk at most.
const KEPT: usize = 64;
/// How long downloading one component may take.
const FETCH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);
/// Plugins that did not load, remembered at most: every task of a plugin that cannot be
/// compiled (a compile bomb up to its limit, say) must not cost the node a compilation.
const REMEMBERED_FAILURES: usize = 256;
/// How long a failed load is remembered (a load that ran out of time on a busy node may
/// succeed later).
const FAILURE_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

pub(crate) struct NodePlugins {
    host: Host,
    store: ObjectStore,
    /// Verified components, `blake3-<hex>.wasm`, when the node has a cache directory.
    dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, Plugin>>,
    /// Plugins whose load failed, with when and why.
    failed: Mutex<HashMap<String, (std::time::Instant, TaskFailure)>>,
    /// One fetch per plugin at a time.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl NodePlugins {
    pub(crate) fn new(host: Host, store: ObjectStore) -> Self {
        let dir = host.cache_root().map(|root| root.join("nats-plugins"));
        Self {
            host,
            store,
            dir,
            loaded: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
        }
    }

    /// The hashes of the plugins loaded now.
    pub(crate) fn cached(&self) -> Vec<String> {
        let mut hashes: Vec<String> = self.loaded.lock().keys().cloned().collect();
        hashes.sort();
        hashes
    }

    /// The plugin whose component hashes to `hash`. A component that does not match its
    /// name or does not load is `PluginLoad`; a fetch that fails is `WorkerStart`
    /// (retryable).
    pub(crate) async fn get(&self, hash: &str, name: &str) -> Result<Plugin, TaskFailure> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TaskFailure::new(
                FailureKind::PluginLoad,
                "the attempt names a plugin hash that is not BLAKE3 hex",
            ));
        }
        if let Some(plugin) = self.loaded.lock().get(hash) {
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
            self.load(hash, name).await
        };
        // Whatever the outcome: failures must not leave an entry per hash behind.
        self.fetching.lock().remove(hash);
        loaded
    }

    /// Loads the plugin (one caller per hash at a time).
    async fn load(&self, hash: &str, name: &str) -> Result<Plugin, TaskFailure> {
        if let Some(plugin) = self.loaded.lock().get(hash) {
            return Ok(plugin.clone());
        }
        if let Some(failure) = self.failed_before(hash) {
            return Err(failure);
        }
        let bytes = match self.local(hash).await {
            Some(bytes) => bytes,
            None => {
                let bytes = self.fetch(hash).await?;
                self.keep(hash, &bytes).await;
                bytes
            }
        };
        let (host, name) = (self.host.clone(), name.to_string());
        let loaded = tokio::task::spawn_blocking(move || host.load_bytes(&name, &bytes)).await;
        let plugin = match loaded {
            Ok(Ok(plugin)) => plugin,
            Ok(Err(error)) => {
                let failure = TaskFailure::new(FailureKind::PluginLoad, error.to_string());
                self.remember_failure(hash, &failure);
                return Err(failure);
            }
            Err(error) => {
                return Err(TaskFailure::new(
                    FailureKind::PluginLoad,
                    format!("loading the plugin did not finish: {error}"),
                ));
            }
        };
        let mut loaded = self.loaded.lock();
        if loaded.len() >= LOADED
            && let Some(evicted) = loaded.keys().next().cloned()
        {
            loaded.remove(&evicted);
        }
        loaded.insert(hash.to_string(), plugin.clone());
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

    /// Downloads the component and checks it against its name.
    async fn fetch(&self, hash: &str) -> Result<Vec<u8>, TaskFailure> {
        let name = layout::plugin_object(hash);
        let unreachable = |e: &dyn std::fmt::Display| {
            TaskFailure::new(
                FailureKind::WorkerStart,
                format!("cannot fetch plugin {name} from NATS: {e}"),
            )
        };
        let download = async {
            let object = self
                .store
                .get(name.as_str())
                .await
                .map_err(|e| unreachable(&e))?;
            let mut bytes = Vec::new();
            object
                .take(MAX_PLUGIN_BYTES + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| unreachable(&e))?;
            Ok(bytes)
        };
        let bytes = tokio::time::timeout(FETCH_PATIENCE, download)
            .await
            .map_err(|_| unreachable(&"timed out"))??;
        if bytes.len() as u64 > MAX_PLUGIN_BYTES {
            return Err(TaskFailure::new(
                FailureKind::PluginLoad,
                format!("stored plugin {name} is larger than {MAX_PLUGIN_BYTES} bytes"),
            ));
        }
        let actual = blake3::hash(&bytes);
        if actual.to_hex().as_str() != hash {
            return Err(TaskFailure::new(
                FailureKind::PluginLoad,
                format!(
                    "stored plugin {name} does not match its name (its BLAKE3 is {}): \
                     corrupted or replaced in the object store",
                    actual.to_hex()
                ),
            ));
        }
        tracing::info!(object = %name, bytes = bytes.len(), "plugin fetched");
        Ok(bytes)
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
