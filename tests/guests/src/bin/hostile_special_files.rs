//! Opens what a granted directory may hold besides regular files and directories: a FIFO
//! (whose open blocks until the other end is opened), a socket, a device.
use osiiso_guest::{TaskError, task};

/// Reads `path` whole and returns how many bytes it had.
#[task]
fn read(path: String) -> Result<usize, TaskError> {
    std::fs::read(&path)
        .map(|bytes| bytes.len())
        .map_err(|e| TaskError::permanent(format!("cannot read {path}: {e}")))
}

/// Writes one line to `path`.
#[task]
fn write(path: String) -> Result<(), TaskError> {
    std::fs::write(&path, "hello\n")
        .map_err(|e| TaskError::permanent(format!("cannot write {path}: {e}")))
}

/// Sleeps `ms` milliseconds: a task that is still running when the run is stopped.
#[task]
fn sleep(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

fn main() {}
