//! Opening a checkpoint file as the untrusted input it is. Anyone who can write the file may
//! have crafted it, so before anything is written: it must be a regular file (or not exist
//! yet), SQLite runs in defensive mode with an untrusted schema, triggers and views disabled
//! and no attached databases, and the schema must be exactly the one osiiso creates — one
//! table, no trigger, view, index or other table. Every operation runs under a budget of
//! SQLite steps and a busy timeout, so that no file makes a statement run or wait for ever.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags};

use super::super::error::{CheckpointError, Error};
use crate::text::for_display;

/// The table and its columns, as created (docs/queues.md §11). The schema of an existing
/// checkpoint must be this text exactly.
const SCHEMA: &str = "CREATE TABLE completions (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    encoding TEXT NOT NULL,
    name TEXT,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID";

/// SQLite virtual-machine steps between two looks at the budget.
const STEP_CHECK: u64 = 10_000;
/// The steps one operation may take. A lookup of 500 keys or a record takes thousands; a
/// scan of every row (`count`, `namespaces`, `clear`) about ten per row, so this is room for
/// a checkpoint of a hundred million completions, and a few seconds of CPU at most.
pub(super) const MAX_STEPS: u64 = 2_000_000_000;
/// How long an operation waits for a lock another process holds on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open checkpoint database and the step budget of its current operation.
pub(super) struct Db {
    pub(super) connection: Connection,
    steps: Arc<AtomicU64>,
    max_steps: u64,
}

impl Db {
    /// Starts the budget of a new operation.
    pub(super) fn start_operation(&self) {
        self.steps.store(0, Ordering::Relaxed);
    }

    /// Whether the last operation was stopped by the budget, and then why.
    pub(super) fn budget_spent(&self) -> Option<String> {
        (self.steps.load(Ordering::Relaxed) > self.max_steps).then(|| {
            format!(
                "an operation took more than {} SQLite steps and was stopped (a crafted file?)",
                self.max_steps
            )
        })
    }
}

/// Opens `path` (or `":memory:"`) with at most `max_steps` steps per operation, checks that
/// it is a new file or a checkpoint before changing anything, then sets WAL mode and creates
/// the table if needed.
pub(super) fn open(path: &Path, max_steps: u64) -> Result<Db, Error> {
    let refuse = |why: String| {
        Error::Checkpoint(CheckpointError::NotACheckpoint {
            path: path.to_path_buf(),
            reason: for_display(&why, 300),
        })
    };
    let database = |reason: String| {
        Error::Checkpoint(CheckpointError::Database {
            path: path.to_path_buf(),
            reason,
        })
    };
    if path != Path::new(":memory:") {
        check_file(path).map_err(refuse)?;
    }
    // No URI flag: a path is a path, never `file:...?vfs=`.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let cannot_open = |e: rusqlite::Error| database(format!("cannot open: {e}"));
    let mut connection = Connection::open_with_flags(path, flags).map_err(cannot_open)?;
    let steps = Arc::new(AtomicU64::new(0));
    harden(&mut connection, steps.clone(), max_steps).map_err(cannot_open)?;
    let db = Db {
        connection,
        steps,
        max_steps,
    };
    db.start_operation();
    let objects = schema(&db.connection).map_err(|e| match db.budget_spent() {
        Some(spent) => refuse(spent),
        None => refuse(e.to_string()),
    })?;
    let fresh = objects.is_empty();
    if !fresh {
        check_schema(&objects).map_err(refuse)?;
    }
    let setup = |db: &Connection| -> rusqlite::Result<()> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        if fresh {
            db.execute(SCHEMA, [])?;
        }
        Ok(())
    };
    db.start_operation();
    setup(&db.connection).map_err(|e| database(format!("cannot prepare: {e}")))?;
    Ok(db)
}

/// A checkpoint is a regular file, or a symbolic link to one, or nothing yet. A FIFO would
/// block the first read for ever; a device or a directory is no checkpoint.
fn check_file(path: &Path) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let meta = if meta.file_type().is_symlink() {
        std::fs::metadata(path).map_err(|_| "a symbolic link to nothing".to_string())?
    } else {
        meta
    };
    if meta.is_file() {
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt as _;
    let kind = meta.file_type();
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a device"
    };
    Err(format!("not a regular file ({what})"))
}

/// What a crafted file must not get to do: run triggers or views, write the schema, attach
/// other files, run for ever, or wait for ever for a lock.
fn harden(db: &mut Connection, steps: Arc<AtomicU64>, max_steps: u64) -> rusqlite::Result<()> {
    db.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    db.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    db.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
    db.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_VIEW, false)?;
    db.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    db.busy_timeout(BUSY_TIMEOUT)?;
    db.pragma_update(None, "cell_size_check", true)?;
    db.pragma_update(None, "mmap_size", 0)?;
    db.progress_handler(
        STEP_CHECK as i32,
        Some(move || steps.fetch_add(STEP_CHECK, Ordering::Relaxed) + STEP_CHECK > max_steps),
    )?;
    Ok(())
}

/// One object of `sqlite_schema`: type, name, table, SQL.
type Object = (String, String, String, Option<String>);

fn schema(db: &Connection) -> rusqlite::Result<Vec<Object>> {
    let mut statement = db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema")?;
    let objects = statement.query_map([], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
    })?;
    objects.collect()
}

/// The schema must be the one table osiiso creates, as created.
fn check_schema(objects: &[Object]) -> Result<(), String> {
    let ours = |(kind, name, table, _): &Object| {
        kind == "table" && name == "completions" && table == "completions"
    };
    let foreign: Vec<String> = objects
        .iter()
        .filter(|object| !ours(object))
        .map(|(kind, name, _, _)| format!("{kind} '{name}'"))
        .collect();
    if !foreign.is_empty() {
        let more = match foreign.len() {
            n if n > 5 => format!(" and {} more", n - 5),
            _ => String::new(),
        };
        return Err(format!(
            "it holds {}{more}, and a checkpoint holds only its completions table",
            foreign[..foreign.len().min(5)].join(", ")
        ));
    }
    match objects {
        [(_, _, _, Some(sql))] if sql == SCHEMA => Ok(()),
        _ => Err("its completions table is not the one osiiso creates".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_statement_is_stopped_by_the_step_budget() {
        let db = open(Path::new(":memory:"), 1_000_000).unwrap();
        db.start_operation();
        let endless = db.connection.query_row(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
            [],
            |row| row.get::<_, i64>(0),
        );
        assert!(endless.is_err());
        assert!(db.budget_spent().unwrap().contains("SQLite steps"));
        // The next operation has its own budget.
        db.start_operation();
        let count: i64 = db
            .connection
            .query_row("SELECT count(*) FROM completions", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 0);
        assert!(db.budget_spent().is_none());
    }

    #[test]
    fn the_schema_must_be_exactly_ours() {
        let table = |sql: &str| {
            (
                "table".to_string(),
                "completions".to_string(),
                "completions".to_string(),
                Some(sql.to_string()),
            )
        };
        assert!(check_schema(&[table(SCHEMA)]).is_ok());
        let wider = SCHEMA.replace("recorded_at REAL", "extra TEXT, recorded_at REAL");
        assert!(
            check_schema(&[table(&wider)])
                .unwrap_err()
                .contains("not the one osiiso creates")
        );
        let trigger = (
            "trigger".to_string(),
            "t\u{1b}[2J".to_string(),
            "completions".to_string(),
            Some("CREATE TRIGGER ...".to_string()),
        );
        let error = check_schema(&[table(SCHEMA), trigger]).unwrap_err();
        assert!(error.contains("trigger 't"), "{error}");
    }
}
