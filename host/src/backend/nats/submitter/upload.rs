//! What goes into the object stores before an attempt is published: its plugin (once per
//! submitter, checked against the file and repaired when the stored copy is wrong) and an
//! input too large for one broker message.

use std::path::Path;
use std::sync::Arc;

use async_nats::jetstream::object_store::InfoErrorKind;

use super::super::frame::{AttemptKey, Body, frame_size};
use super::super::layout::{self, MAX_PAYLOAD_BYTES, MAX_PLUGIN_BYTES};
use super::super::message::AttemptHeader;
use super::super::payload::{ObjectError, read_object, write_object};
use super::super::timing::PUBLISH_RETRY;
use super::Submitter;
use crate::backend::remote::AttemptSpec;
use crate::engine::Plugin;
use crate::failure::{FailureKind, TaskFailure};

impl Submitter {
    /// The attempt's header and its inline body: the input travels in the message when it
    /// fits, else as an object of the payload store (uploaded here).
    pub(super) async fn prepare(
        self: &Arc<Self>,
        plugin: &Plugin,
        path: &Path,
        spec: AttemptSpec,
        input: String,
        name: &str,
    ) -> Result<(AttemptHeader, Vec<u8>), TaskFailure> {
        let plugin_size = self.ensure_plugin(plugin, path).await?;
        let size = input.len() as u64;
        let mut header = AttemptHeader {
            submitter: self.id.clone(),
            token: layout::random_id("a"),
            key: AttemptKey::random(),
            plugin_name: plugin.name().to_string(),
            plugin_size,
            body: Body::Inline {
                sections: vec![size],
            },
            spec,
        };
        let header_len = serde_json::to_vec(&header).map_or(usize::MAX, |h| h.len());
        if frame_size(header_len, input.len()) <= self.broker.max_payload {
            return Ok((header, input.into_bytes()));
        }
        if size > MAX_PAYLOAD_BYTES {
            return Err(TaskFailure::new(
                FailureKind::Serialization,
                format!(
                    "the input of task '{name}' is {size} bytes, over the {MAX_PAYLOAD_BYTES} \
                     bytes a node accepts"
                ),
            ));
        }
        let object = layout::input_object(&self.id, &header.token);
        loop {
            match write_object(&self.payloads, &object, &[input.as_bytes()]).await {
                Ok(blake3) => {
                    header.body = Body::Stored {
                        object,
                        blake3,
                        sections: vec![size],
                    };
                    return Ok((header, Vec::new()));
                }
                Err(error) => {
                    tracing::debug!(%error, "storing an input failed; trying again");
                    tokio::time::sleep(PUBLISH_RETRY).await;
                }
            }
        }
    }

    /// Makes sure the plugin is in the plugin store, once per hash per submitter (again after
    /// a node found it corrupted); returns its size. The file is read again and must still
    /// have the hash the queue loaded; a stored copy that is not the file is replaced.
    async fn ensure_plugin(&self, plugin: &Plugin, path: &Path) -> Result<u64, TaskFailure> {
        let cell = self
            .uploads
            .lock()
            .entry(plugin.hash().to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let bytes = read_plugin(path).await?;
            if blake3::hash(&bytes).to_hex().as_str() != plugin.hash() {
                return Err(TaskFailure::new(
                    FailureKind::PluginLoad,
                    format!(
                        "plugin '{}' changed on disk since the queue loaded it",
                        path.display()
                    ),
                ));
            }
            let thorough = self.suspect.lock().remove(plugin.hash());
            loop {
                match self.stored_plugin_is(plugin.hash(), &bytes, thorough).await {
                    Ok(true) => return Ok(bytes.len() as u64),
                    Ok(false) => match self.upload_plugin(plugin, &bytes).await {
                        Ok(()) => return Ok(bytes.len() as u64),
                        Err(error) => tracing::debug!(%error, "uploading a plugin failed"),
                    },
                    Err(error) => tracing::debug!(%error, "checking a stored plugin failed"),
                }
                tokio::time::sleep(PUBLISH_RETRY).await;
            }
        })
        .await
        .copied()
    }

    /// Whether the store holds exactly `bytes` under the plugin's name: by the size and
    /// digest it records, or (`thorough`, after a node found it corrupted) by reading it
    /// back. An error: the store did not answer.
    async fn stored_plugin_is(
        &self,
        hash: &str,
        bytes: &[u8],
        thorough: bool,
    ) -> Result<bool, String> {
        let name = layout::plugin_object(hash);
        if thorough {
            let size = bytes.len() as u64;
            return match read_object(&self.plugins, &name, size, MAX_PLUGIN_BYTES, hash).await {
                Ok(_) => Ok(true),
                Err(ObjectError::Bad(why)) => {
                    tracing::warn!(object = %name, "the stored plugin is wrong ({why}); uploading it again");
                    Ok(false)
                }
                Err(ObjectError::Unreachable(why)) => Err(why),
            };
        }
        match self.plugins.info(&name).await {
            Ok(info) => {
                let good = !info.deleted
                    && info.size == bytes.len()
                    && info.digest.as_deref() == Some(sha256_digest(bytes).as_str());
                if !good {
                    tracing::warn!(
                        object = %name,
                        "the stored plugin does not match the file; uploading it again"
                    );
                }
                Ok(good)
            }
            Err(error) if error.kind() == InfoErrorKind::NotFound => Ok(false),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn upload_plugin(&self, plugin: &Plugin, bytes: &[u8]) -> Result<(), String> {
        let name = layout::plugin_object(plugin.hash());
        write_object(&self.plugins, &name, &[bytes]).await?;
        tracing::debug!(plugin = plugin.name(), object = %name, "plugin uploaded");
        Ok(())
    }

    /// A node found the stored copy of plugin `hash` corrupted: the next attempt checks it
    /// byte by byte, and uploads it again if need be.
    pub(super) fn distrust_plugin(&self, hash: &str) {
        self.uploads.lock().remove(hash);
        self.suspect.lock().insert(hash.to_string());
    }
}

/// The digest the object store records: `SHA-256=` and the URL-safe base64 of the hash.
fn sha256_digest(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    format!(
        "SHA-256={}",
        base64::engine::general_purpose::URL_SAFE.encode(digest)
    )
}

/// Reads a plugin file, bounded like every plugin the host loads.
async fn read_plugin(path: &Path) -> Result<Vec<u8>, TaskFailure> {
    let path = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        crate::engine::read_plugin_file(&path, MAX_PLUGIN_BYTES)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(TaskFailure::new(FailureKind::PluginLoad, error.to_string())),
        Err(error) => Err(TaskFailure::new(FailureKind::PluginLoad, error.to_string())),
    }
}
