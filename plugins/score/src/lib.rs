//! A CPU-bound kernel: the workload for fuel, timeouts and the process backend.

use osiiso_guest::task;

/// Sum of squares modulo a prime, over `1..=n`, mixed so the loop cannot be folded.
#[task(timeout = "60s")]
fn score(n: u64) -> u64 {
    score_kernel(n)
}

/// The kernel, public so the benchmark can run the very same code natively.
pub fn score_kernel(n: u64) -> u64 {
    const P: u64 = 1_000_000_007;
    let mut acc: u64 = 0;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 1..=n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = (i ^ (x & 0xff)) % P;
        acc = (acc + v * v % P) % P;
        if i % 1_000_000 == 0 {
            osiiso_guest::progress(i, n);
        }
    }
    acc
}
