//! Outputs too large for a result or a log line.
use osiiso_guest::{TaskError, task};

/// Returns a string of `bytes` bytes.
#[task]
fn big_value(bytes: usize) -> String {
    "v".repeat(bytes)
}

/// Returns an array of `n` small numbers: `2n` bytes of JSON that a parsed tree would
/// inflate many times over in the host.
#[task]
fn big_array(n: usize) -> Vec<u8> {
    vec![7; n]
}

/// Returns `depth` nested arrays: `[[[...]]]`.
#[task]
fn deep(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::Value::Null, |inner, _| {
        serde_json::Value::Array(vec![inner])
    })
}

/// Fails with a message of `bytes` bytes.
#[task]
fn big_error(bytes: usize) -> Result<(), TaskError> {
    Err(TaskError::failed("e".repeat(bytes)))
}

/// Logs one line of `bytes` bytes, then succeeds.
#[task]
fn big_log(bytes: usize) -> usize {
    osiiso_guest::log::warn!("{}", "l".repeat(bytes));
    bytes
}

/// Returns the length of its input (to send it an oversized one).
#[task]
fn measure(input: String) -> usize {
    input.len()
}

/// Allocates and touches `mib` MiB of memory, then returns their sum (a big, honest task).
#[task]
fn allocate(mib: usize) -> u64 {
    let mut memory = vec![0u8; mib << 20];
    for (i, byte) in memory.iter_mut().enumerate().step_by(4096) {
        *byte = (i % 251) as u8;
    }
    memory.iter().map(|&b| u64::from(b)).sum()
}

fn main() {}
