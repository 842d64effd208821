//! Keeps state in globals between calls: a secret from one task that the next task tries to
//! read, and a counter; and writes a secret straight into linear memory, behind the
//! allocator's back, where the next task looks for it (a reused memory slot that was not
//! cleaned would show it). With a fresh instance per attempt (the default) nothing survives;
//! with warm instances it survives only within one plugin, limits and sandbox.
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use osiiso_guest::{TaskError, task};

static SECRET: Mutex<Option<String>> = Mutex::new(None);
static COUNT: AtomicU64 = AtomicU64::new(0);

/// Stores `secret` in a global.
#[task]
fn remember(secret: String) -> bool {
    *SECRET.lock().unwrap() = Some(secret);
    true
}

/// Returns what an earlier task stored, if this instance saw one.
#[task]
fn recall() -> Option<String> {
    SECRET.lock().unwrap().clone()
}

/// Counts the calls this instance has served (1 on a fresh instance).
#[task]
fn count() -> u64 {
    COUNT.fetch_add(1, Ordering::SeqCst) + 1
}

/// Counts, then traps: a warm instance must not survive this.
#[task]
fn count_and_crash() -> Result<u64, TaskError> {
    COUNT.fetch_add(1, Ordering::SeqCst);
    panic!("crashing after counting")
}

/// Bytes of the secret written into raw memory.
const RAW_LEN: usize = 32;

/// Where the raw secret goes, at fixed addresses so that every instance looks at the same
/// bytes: deep in the stack region of the memory the instance starts with (the stack grows
/// down from its top and never gets there), and 24 MiB in, in memory grown for it.
fn raw_spots() -> [usize; 2] {
    const GROWN: usize = 24 << 20;
    let pages = core::arch::wasm32::memory_size(0);
    let needed = (GROWN + RAW_LEN).div_ceil(65536);
    if pages < needed {
        let grown = core::arch::wasm32::memory_grow(0, needed - pages);
        assert!(grown != usize::MAX, "cannot grow memory");
    }
    [4096, GROWN]
}

/// Writes `secret` (padded or cut to 32 bytes) into raw linear memory, at both spots.
#[task]
fn scribble(secret: String) -> bool {
    let mut bytes = [b'.'; RAW_LEN];
    let n = secret.len().min(RAW_LEN);
    bytes[..n].copy_from_slice(&secret.as_bytes()[..n]);
    for spot in raw_spots() {
        // SAFETY: both spots are inside the instance's memory and no Rust value lives there.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), spot as *mut u8, RAW_LEN) };
    }
    true
}

/// What raw memory holds at the spots [`scribble`] writes to: the text of each spot's
/// non-zero bytes (empty when the memory is clean).
#[task]
fn peek() -> Vec<String> {
    raw_spots()
        .map(|spot| {
            let mut bytes = [0u8; RAW_LEN];
            // SAFETY: as in `scribble`; the bytes are only read.
            unsafe {
                core::ptr::copy_nonoverlapping(spot as *const u8, bytes.as_mut_ptr(), RAW_LEN)
            };
            String::from_utf8_lossy(&bytes)
                .trim_matches('\0')
                .to_string()
        })
        .to_vec()
}

fn main() {}
