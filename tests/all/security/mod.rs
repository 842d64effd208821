//! The trust boundary around the sandbox (SECURITY.md), tried through the real binary as a
//! hostile plugin author would: precompiled native code, planted and swapped cache entries,
//! output files that are not files, lost results, limits that must hold in aggregate,
//! oversized frames, guest text aimed at the terminal, guest output in the result stream,
//! and compile bombs (`security/compile_bombs.rs`).

mod aggregate_limits;
mod compile_bombs;
mod compiled_code;
mod guest_text;
mod outputs;
mod process_frames;
mod reuse;

use std::path::Path;
use std::process::Command;

use crate::support::cli::BIN;

/// Every queue the CLI offers.
const QUEUES: &[&str] = &["thread", "async", "process"];

/// Runs the binary and returns (exit code, stdout, raw stderr): nothing stripped, so that
/// escape sequences would show.
fn raw(args: &[&str], cache: &Path) -> (i32, Vec<u8>, Vec<u8>) {
    let output = Command::new(BIN)
        .args(args)
        .env("OSIISO_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        output.stdout,
        output.stderr,
    )
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b)
}
