//! Keeps state in globals between calls: a secret from one task that the next task tries to
//! read, and a counter. With a fresh instance per attempt (the default) nothing survives; with
//! warm instances it survives only within one plugin, limits and sandbox.
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

fn main() {}
