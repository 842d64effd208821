//! Objects of the broker's object stores, read back bounded: a plugin's component, or a body
//! (an input, a report) too large for one broker message. An object's size is checked
//! against what its reader expects *before* anything is read, no more than that is ever
//! buffered, and the bytes must have the BLAKE3 hash the reader was told.

use async_nats::jetstream::object_store::{InfoErrorKind, ObjectStore};
use tokio::io::AsyncReadExt;

use super::timing::OBJECT_PATIENCE;

/// Why an object could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ObjectError {
    /// The broker did not answer (or the object is not there yet): try again later.
    Unreachable(String),
    /// The object is not what it should be (size, digest or hash): someone replaced it, or
    /// it is not there at all.
    Bad(String),
}

impl std::fmt::Display for ObjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(message) | Self::Bad(message) => f.write_str(message),
        }
    }
}

/// Reads object `name` of `store`: exactly `size` bytes (at most `max`) hashing to `blake3`
/// (hex).
pub(crate) async fn read_object(
    store: &ObjectStore,
    name: &str,
    size: u64,
    max: u64,
    blake3: &str,
) -> Result<Vec<u8>, ObjectError> {
    if size > max {
        return Err(ObjectError::Bad(format!(
            "object {name} would be {size} bytes, over the {max} byte limit"
        )));
    }
    let read = async {
        let info = match store.info(name).await {
            Ok(info) => info,
            Err(error) if error.kind() == InfoErrorKind::NotFound => {
                return Err(ObjectError::Bad(format!(
                    "object {name} is not in the store"
                )));
            }
            Err(error) => {
                return Err(ObjectError::Unreachable(format!(
                    "cannot look up object {name}: {error}"
                )));
            }
        };
        if info.deleted || info.size as u64 != size {
            return Err(ObjectError::Bad(format!(
                "object {name} is {} bytes in the store, not {size}",
                info.size
            )));
        }
        let object = store
            .get(name)
            .await
            .map_err(|e| ObjectError::Unreachable(format!("cannot fetch object {name}: {e}")))?;
        let capacity = usize::try_from(size).unwrap_or(usize::MAX);
        let mut bytes = Vec::with_capacity(capacity);
        match object.take(size + 1).read_to_end(&mut bytes).await {
            Ok(_) => Ok(bytes),
            // The client checks the writer's digest as it reads.
            Err(error) if error.to_string().contains("digest") => Err(ObjectError::Bad(format!(
                "object {name} does not match its digest: {error}"
            ))),
            Err(error) => Err(ObjectError::Unreachable(format!(
                "cannot fetch object {name}: {error}"
            ))),
        }
    };
    let bytes = tokio::time::timeout(OBJECT_PATIENCE, read)
        .await
        .map_err(|_| ObjectError::Unreachable(format!("fetching object {name} timed out")))??;
    if bytes.len() as u64 != size {
        return Err(ObjectError::Bad(format!(
            "object {name} holds {} bytes or more, not {size}",
            bytes.len()
        )));
    }
    let actual = blake3::hash(&bytes);
    if actual.to_hex().as_str() != blake3 {
        return Err(ObjectError::Bad(format!(
            "object {name} does not match its hash (its BLAKE3 is {}): corrupted or replaced \
             in the object store",
            actual.to_hex()
        )));
    }
    Ok(bytes)
}

/// Stores `sections`, one after the other, as object `name`; returns their BLAKE3 (hex).
pub(crate) async fn write_object(
    store: &ObjectStore,
    name: &str,
    sections: &[&[u8]],
) -> Result<String, String> {
    let mut hasher = blake3::Hasher::new();
    let mut bytes = Vec::with_capacity(sections.iter().map(|s| s.len()).sum());
    for section in sections {
        hasher.update(section);
        bytes.extend_from_slice(section);
    }
    let mut reader = bytes.as_slice();
    let put = store.put(name, &mut reader);
    match tokio::time::timeout(OBJECT_PATIENCE, put).await {
        Ok(Ok(_)) => Ok(hasher.finalize().to_hex().to_string()),
        Ok(Err(error)) => Err(format!("cannot store object {name}: {error}")),
        Err(_) => Err(format!("storing object {name} timed out")),
    }
}

/// Deletes object `name` of `store`, awaited by whoever no longer needs it (a process that
/// exits drops the tasks of its runtime). Best effort: the payload store's max age removes
/// whatever is left.
pub(crate) async fn delete_object(store: &ObjectStore, name: &str) {
    match tokio::time::timeout(OBJECT_PATIENCE, store.delete(name)).await {
        Ok(Ok(())) => tracing::debug!(object = %name, "payload deleted"),
        Ok(Err(error)) => tracing::debug!(object = %name, %error, "cannot delete a payload"),
        Err(_) => tracing::debug!(object = %name, "deleting a payload timed out"),
    }
}
