//! Resumable fan-outs (docs/queues.md §11): a SQLite file that remembers which inputs of a
//! fan-out succeeded, so that a rerun restores them instead of running them again.
//!
//! The file has one table, `completions`, keyed by `(namespace, key)`: the namespace names the
//! fan-out (a task identity, or a name the caller gives), the key names one input (its canonical
//! JSON unless the caller derives it). It is opened in WAL mode with `synchronous = NORMAL`, so
//! a process killed in the middle of a run keeps every completion recorded before the kill.
//!
//! A checkpoint is input like any other file: its rows are claims made by whoever could write
//! it. It is opened defensively ([`file`]), and refused to a plugin whose sandbox could reach it
//! ([`reach`]).

mod file;
mod reach;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::Value;

use self::file::Db;
use super::error::{CheckpointError, Error};
use crate::engine::{DirGrant, Sandbox};
use crate::json::Json;

/// Keys looked up per SQL statement.
const LOOKUP_BATCH: usize = 500;
/// Sandboxes remembered as unable to reach the checkpoint.
const CLEARED_SANDBOXES: usize = 16;

/// A stored completion found by [`Checkpoint::lookup`].
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The stored value, as the JSON text it was stored as (`None` when values are not
    /// retained).
    pub value: Option<Json>,
    /// Whether a value was stored (`false` for a checkpoint opened without storing values).
    pub has_value: bool,
}

/// A checkpoint file, shared by the queues and callbacks that use it. Cloning is cheap; the
/// connection sits behind one lock.
///
/// ```
/// use osiiso_host::queue::Checkpoint;
/// use serde_json::json;
///
/// let checkpoint = Checkpoint::open(":memory:")?;
/// assert!(checkpoint.record("scores", "1", &json!(2), Some("double"))?);
/// let hits = checkpoint.lookup("scores", &["1".to_string(), "2".to_string()])?;
/// assert_eq!(hits["1"].value, Some(json!(2).into()));
/// assert!(!hits.contains_key("2"));
/// assert_eq!(checkpoint.count(None)?, 1);
/// checkpoint.close();
/// assert!(checkpoint.count(None).is_err());
/// # Ok::<(), osiiso_host::queue::Error>(())
/// ```
#[derive(Clone)]
pub struct Checkpoint {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The canonical directories SQLite works in for this file, judged at open.
    homes: Vec<PathBuf>,
    store_values: bool,
    connection: Mutex<Option<Db>>,
    /// Sandboxes already found unable to reach the file.
    cleared: Mutex<Vec<Sandbox>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.inner.path)
            .field("store_values", &self.inner.store_values)
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Opens (or creates) the checkpoint at `path`; `":memory:"` is a checkpoint that does not
    /// persist. Anything but a new file or a checkpoint exactly as osiiso creates it is an
    /// error naming the file, and the file is left as it is: not a regular file, not a
    /// database, or a database with anything besides its one table (a trigger, a view, an
    /// index, another table). SQLite runs in defensive mode with an untrusted schema, and
    /// every operation under a step budget and a busy timeout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(path, true)
    }

    /// Like [`open`](Self::open); with `store_values = false` only the fact that an input
    /// succeeded is kept (restored tasks then have no value).
    pub fn open_with(path: impl AsRef<Path>, store_values: bool) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let db = file::open(&path, file::MAX_STEPS)?;
        Ok(Self {
            inner: Arc::new(Inner {
                homes: reach::homes(&path),
                path,
                store_values,
                connection: Mutex::new(Some(db)),
                cleared: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The first directory grant of `sandbox` through which a guest could reach a checkpoint
    /// at `path` (its directory, or its target's when `path` is a symbolic link, is inside the
    /// grant), judged after resolving symbolic links and `..`. Check before
    /// [`open`](Self::open), which creates the file.
    ///
    /// ```
    /// use osiiso_host::Sandbox;
    /// use osiiso_host::queue::Checkpoint;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let sandbox = Sandbox::new().dir(dir.path(), "/data");
    /// let inside = dir.path().join("sub/../run.sqlite");
    /// # std::fs::create_dir(dir.path().join("sub"))?;
    /// assert_eq!(Checkpoint::grant_reaching(&inside, &sandbox).unwrap().guest, "/data");
    /// assert!(Checkpoint::grant_reaching("elsewhere.sqlite", &sandbox).is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn grant_reaching(path: impl AsRef<Path>, sandbox: &Sandbox) -> Option<&DirGrant> {
        reach::grant_reaching(&reach::homes(path.as_ref()), sandbox)
    }

    /// Refuses a `sandbox` through which a guest could reach this checkpoint (see
    /// [`grant_reaching`](Self::grant_reaching)): a guest that can write it could forge
    /// completions. The checkpointed submissions call it for each plugin's sandbox.
    pub fn check_sandbox(&self, sandbox: &Sandbox) -> Result<(), Error> {
        if self.inner.cleared.lock().contains(sandbox) {
            return Ok(());
        }
        if let Some(grant) = reach::grant_reaching(&self.inner.homes, sandbox) {
            return Err(Error::Checkpoint(CheckpointError::ReachableByGuest {
                path: self.inner.path.clone(),
                granted: grant.host.clone(),
                guest: grant.guest.to_string(),
            }));
        }
        let mut cleared = self.inner.cleared.lock();
        if cleared.len() >= CLEARED_SANDBOXES {
            cleared.clear();
        }
        cleared.push(sandbox.clone());
        Ok(())
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Records that `key` of `namespace` succeeded with `value` (insert or replace: the last
    /// value wins). A value with no JSON form is logged (`not encodable`) and not recorded:
    /// `Ok(false)`.
    pub fn record<T: serde::Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
        name: Option<&str>,
    ) -> Result<bool, Error> {
        let (blob, encoding) = if self.inner.store_values {
            match serde_json::to_vec(value) {
                Ok(json) => (Some(json), "json"),
                Err(error) => {
                    tracing::warn!(
                        namespace,
                        key,
                        "checkpoint value not encodable as JSON ({error}); not recorded"
                    );
                    return Ok(false);
                }
            }
        } else {
            (None, "none")
        };
        let recorded_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.with(|db| {
            db.prepare_cached(
                "INSERT OR REPLACE INTO completions \
                 (namespace, key, value, encoding, name, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![namespace, key, blob, encoding, name, recorded_at])?;
            Ok(true)
        })
    }

    /// The stored completions among `keys` of `namespace`, looked up in batches of 500. A row
    /// whose value does not decode is left out (logged: `could not decode stored value`), so
    /// its input runs again.
    pub fn lookup(&self, namespace: &str, keys: &[String]) -> Result<HashMap<String, Hit>, Error> {
        self.with(|db| {
            let mut hits = HashMap::new();
            for batch in keys.chunks(LOOKUP_BATCH) {
                let marks = vec!["?"; batch.len()].join(", ");
                let sql = format!(
                    "SELECT key, value, encoding FROM completions \
                     WHERE namespace = ? AND key IN ({marks})"
                );
                let mut statement = db.prepare_cached(&sql)?;
                let args = std::iter::once(namespace).chain(batch.iter().map(String::as_str));
                let mut rows = statement.query(params_from_iter(args))?;
                while let Some(row) = rows.next()? {
                    // Columns are read by reference: a crafted row of another type is one
                    // that does not decode, not an error for the whole lookup.
                    let Ok(key) = row.get_ref(0)?.as_str().map(str::to_string) else {
                        continue;
                    };
                    match decode(row.get_ref(1)?, row.get_ref(2)?) {
                        Some(hit) => {
                            hits.insert(key, hit);
                        }
                        None => tracing::warn!(
                            namespace,
                            key = %crate::text::for_display(&key, 200),
                            "could not decode stored value; the input runs again"
                        ),
                    }
                }
            }
            Ok(hits)
        })
    }

    /// Whether `key` of `namespace` succeeded before.
    pub fn is_done(&self, namespace: &str, key: &str) -> Result<bool, Error> {
        self.with(|db| {
            Ok(db
                .prepare_cached("SELECT 1 FROM completions WHERE namespace = ?1 AND key = ?2")?
                .query_row(params![namespace, key], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }

    /// Completions recorded, in one namespace or in all.
    pub fn count(&self, namespace: Option<&str>) -> Result<u64, Error> {
        self.with(|db| {
            let count: i64 = match namespace {
                Some(ns) => db.query_row(
                    "SELECT COUNT(*) FROM completions WHERE namespace = ?1",
                    [ns],
                    |row| row.get(0),
                )?,
                None => db.query_row("SELECT COUNT(*) FROM completions", [], |row| row.get(0))?,
            };
            Ok(count.max(0) as u64)
        })
    }

    /// The namespaces with completions, sorted.
    pub fn namespaces(&self) -> Result<Vec<String>, Error> {
        self.with(|db| {
            let mut statement =
                db.prepare("SELECT DISTINCT namespace FROM completions ORDER BY namespace")?;
            let names = statement.query_map([], |row| row.get(0))?;
            names.collect::<Result<Vec<String>, _>>()
        })
    }

    /// Forgets the completions of one namespace, or all; returns how many rows went.
    pub fn clear(&self, namespace: Option<&str>) -> Result<u64, Error> {
        self.with(|db| {
            let rows = match namespace {
                Some(ns) => db.execute("DELETE FROM completions WHERE namespace = ?1", [ns])?,
                None => db.execute("DELETE FROM completions", [])?,
            };
            Ok(rows as u64)
        })
    }

    /// Closes the file; later calls fail with [`CheckpointError::Closed`]. Idempotent. Close it
    /// after the queue has finished: completions recorded after it are lost.
    pub fn close(&self) {
        if let Some(db) = self.inner.connection.lock().take()
            && let Err((_, error)) = db.connection.close()
        {
            tracing::warn!(path = %self.inner.path.display(), %error, "closing the checkpoint");
        }
    }

    /// Runs one operation on the connection, under a fresh step budget.
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, Error> {
        let connection = self.inner.connection.lock();
        let Some(db) = connection.as_ref() else {
            return Err(Error::Checkpoint(CheckpointError::Closed));
        };
        db.start_operation();
        f(&db.connection).map_err(|e| {
            let why = db.budget_spent().unwrap_or_else(|| e.to_string());
            Error::Checkpoint(CheckpointError::Database {
                path: self.inner.path.clone(),
                reason: why,
            })
        })
    }
}

/// A stored value and its encoding as a hit, or `None` when they do not decode.
fn decode(value: ValueRef<'_>, encoding: ValueRef<'_>) -> Option<Hit> {
    match (encoding.as_str().ok()?, value) {
        ("none", _) => Some(Hit {
            value: None,
            has_value: false,
        }),
        // Kept as its text, validated like a value a task returns: never parsed into a tree.
        ("json", ValueRef::Blob(bytes) | ValueRef::Text(bytes)) => {
            let text = std::str::from_utf8(bytes).ok()?;
            Json::parse(text).ok().map(|value| Hit {
                value: Some(value),
                has_value: true,
            })
        }
        _ => None,
    }
}

/// The canonical JSON of a value: object keys sorted, no whitespace. `1` and `"1"` differ;
/// objects give the same text whatever the order of their keys.
///
/// ```
/// use osiiso_host::queue::canonical_json;
/// use serde_json::json;
/// assert_eq!(canonical_json(&json!({"b": 1, "a": [true, null]})), r#"{"a":[true,null],"b":1}"#);
/// assert_ne!(canonical_json(&json!(1)), canonical_json(&json!("1")));
/// ```
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            // Sorted explicitly: a `preserve_order` map keeps insertion order.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(out, value);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_replace_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.sqlite");
        let checkpoint = Checkpoint::open(&path).unwrap();
        assert!(checkpoint.record("ns", "k", &json!(1), Some("a")).unwrap());
        assert!(checkpoint.record("ns", "k", &json!(2), Some("a")).unwrap());
        assert_eq!(
            checkpoint.count(Some("ns")).unwrap(),
            1,
            "the last value wins"
        );
        checkpoint.close();
        checkpoint.close();
        assert!(matches!(
            checkpoint.count(None),
            Err(Error::Checkpoint(CheckpointError::Closed))
        ));

        let reopened = Checkpoint::open(&path).unwrap();
        let hits = reopened.lookup("ns", &["k".into()]).unwrap();
        assert_eq!(hits["k"].value, Some(json!(2).into()));
        assert!(reopened.is_done("ns", "k").unwrap());
        assert_eq!(reopened.namespaces().unwrap(), ["ns"]);
        assert_eq!(reopened.clear(None).unwrap(), 1);
    }

    #[test]
    fn values_not_retained_and_lookups_in_batches() {
        let checkpoint = Checkpoint::open_with(":memory:", false).unwrap();
        let keys: Vec<String> = (0..1200).map(|i| i.to_string()).collect();
        for key in keys.iter().step_by(3) {
            checkpoint.record("ns", key, &json!(key), None).unwrap();
        }
        let hits = checkpoint.lookup("ns", &keys).unwrap();
        assert_eq!(hits.len(), 400);
        assert_eq!(
            hits["0"],
            Hit {
                value: None,
                has_value: false
            }
        );
    }

    #[test]
    fn foreign_and_corrupt_files_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(&garbage, b"this is not a database at all, not even close").unwrap();
        let error = Checkpoint::open(&garbage).unwrap_err().to_string();
        assert!(
            error.contains("garbage.sqlite") && error.contains("not an osiiso checkpoint"),
            "{error}"
        );
        assert_eq!(
            std::fs::read(&garbage).unwrap(),
            b"this is not a database at all, not even close"
        );

        let foreign = dir.path().join("foreign.sqlite");
        Connection::open(&foreign)
            .unwrap()
            .execute("CREATE TABLE users (id INTEGER)", [])
            .unwrap();
        let before = std::fs::read(&foreign).unwrap();
        let error = Checkpoint::open(&foreign).unwrap_err().to_string();
        assert!(
            error.contains("foreign.sqlite") && error.contains("users"),
            "{error}"
        );
        assert_eq!(std::fs::read(&foreign).unwrap(), before);
    }

    #[test]
    fn stored_values_come_back_as_their_text_and_bad_ones_are_not_hits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.sqlite");
        Checkpoint::open(&path).unwrap().close();
        // Rows as another writer of the file could have left them.
        let raw = Connection::open(&path).unwrap();
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let rows: [(&str, &[u8]); 5] = [
            ("ordered", br#"{ "zebra": 1,  "apple": [true, null] }"#),
            ("deep", deep.as_bytes()),
            ("broken", b"[1,"),
            ("binary", b"\xff\xfe"),
            ("huge", b"1e999"),
        ];
        for (key, value) in rows {
            raw.execute(
                "INSERT INTO completions (namespace, key, value, encoding, recorded_at) \
                 VALUES ('ns', ?1, ?2, 'json', 0)",
                params![key, value],
            )
            .unwrap();
        }
        drop(raw);
        let checkpoint = Checkpoint::open(&path).unwrap();
        let keys: Vec<String> = rows.iter().map(|(key, _)| key.to_string()).collect();
        let hits = checkpoint.lookup("ns", &keys).unwrap();
        let value = hits["ordered"].value.as_ref().unwrap();
        assert_eq!(
            value.as_str(),
            r#"{"zebra":1,"apple":[true,null]}"#,
            "compact, in the stored key order"
        );
        assert_eq!(
            hits.len(),
            1,
            "too deep, broken, not UTF-8 or out of range: not hits, so they run again"
        );
    }

    #[test]
    fn canonical_keys_ignore_key_order() {
        assert_eq!(
            canonical_json(&json!({"z": {"y": 1, "x": 2}, "a": "s"})),
            r#"{"a":"s","z":{"x":2,"y":1}}"#
        );
        assert_eq!(canonical_json(&json!("1")), r#""1""#);
    }
}
