//! Reads and writes files inside a directory the host preopened (`--dir HOST::/data`).

use std::fs;
use std::path::PathBuf;

use osiiso_guest::{TaskError, task};
use serde::Deserialize;

/// Reads a text file and returns its contents.
#[task]
fn read(path: String) -> Result<String, TaskError> {
    fs::read_to_string(&path).map_err(|e| TaskError::permanent(format!("cannot read {path}: {e}")))
}

/// Writes `{"path": ..., "contents": ...}` and returns the number of bytes written.
#[task]
fn write(request: WriteRequest) -> Result<usize, TaskError> {
    fs::write(&request.path, request.contents.as_bytes()).map_err(|e| {
        TaskError::permanent(format!("cannot write {}: {e}", request.path.display()))
    })?;
    Ok(request.contents.len())
}

/// Lists the entries of a directory, sorted.
#[task]
fn list_dir(path: String) -> Result<Vec<String>, TaskError> {
    let entries = fs::read_dir(&path)
        .map_err(|e| TaskError::permanent(format!("cannot list {path}: {e}")))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

#[derive(Deserialize)]
struct WriteRequest {
    path: PathBuf,
    contents: String,
}
