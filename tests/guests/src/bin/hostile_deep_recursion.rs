//! Recurses until the wasm stack overflows.
use osiiso_guest::task;

#[inline(never)]
fn depth(n: u64) -> u64 {
    if std::hint::black_box(n) == u64::MAX {
        return 0;
    }
    depth(n + 1).wrapping_mul(31).wrapping_add(n)
}

/// Recurses without bound.
#[task]
fn recurse() -> u64 {
    depth(0)
}

fn main() {}
