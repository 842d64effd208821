//! A long loop that never checks `cancelled()`: the host must stop it anyway.
use osiiso_guest::task;

/// Counts to `n` (default: far too many) without ever looking at `cancelled()`.
#[task]
fn grind(n: Option<u64>) -> u64 {
    let n = n.unwrap_or(u64::MAX);
    let mut acc = 0u64;
    for i in 0..n {
        acc = std::hint::black_box(acc ^ i.wrapping_mul(0x9e37_79b9));
    }
    acc
}

fn main() {}
