//! Writes 100 MiB to stdout and stderr: the host must keep only a bounded tail.
use osiiso_guest::task;
use std::io::Write;

/// Writes `mib` MiB (default 100) to stdout, then one line to stderr, and returns the count.
#[task]
fn flood(mib: Option<u64>) -> u64 {
    let mib = mib.unwrap_or(100);
    let line = [b'x'; 1023];
    let mut out = std::io::stdout().lock();
    let mut written = 0u64;
    for _ in 0..mib * 1024 {
        out.write_all(&line).unwrap();
        out.write_all(b"\n").unwrap();
        written += 1024;
    }
    out.flush().unwrap();
    eprintln!("flood done");
    written
}

fn main() {}
