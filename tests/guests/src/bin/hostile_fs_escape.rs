//! Tries to read files outside its preopened directories.
use osiiso_guest::{TaskError, task};

/// Reads `path` and returns its contents, or the error the sandbox gave.
#[task]
fn read(path: String) -> Result<String, TaskError> {
    std::fs::read_to_string(&path)
        .map_err(|e| TaskError::permanent(format!("cannot read {path}: {e}")))
}

/// Writes "pwned" to `path`.
#[task]
fn write(path: String) -> Result<(), TaskError> {
    std::fs::write(&path, "pwned")
        .map_err(|e| TaskError::permanent(format!("cannot write {path}: {e}")))
}

fn main() {}
