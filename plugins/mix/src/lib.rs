//! A CPU-bound kernel without `%`: xorshift plus an FNV-1a style mix (add, xor, shift and
//! multiply only), the second kernel of benchmark B5 beside `score`'s 64-bit remainder.

use osiiso_guest::task;

/// Mixes `n` rounds of xorshift into an FNV-style accumulator.
#[task(timeout = "60s")]
fn mix(n: u64) -> u64 {
    mix_kernel(n)
}

/// The kernel, public so that the benchmark runs the very same code natively.
pub fn mix_kernel(n: u64) -> u64 {
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut acc: u64 = 0xcbf2_9ce4_8422_2325;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    // Progress every 1,000,000 iterations, counted down rather than tested with `%`.
    let mut until_progress: u32 = 1_000_000;
    for i in 1..=n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = i ^ (x & 0xff);
        acc = (acc ^ v).wrapping_mul(FNV_PRIME);
        acc = acc.wrapping_add(v.wrapping_mul(v));
        until_progress -= 1;
        if until_progress == 0 {
            until_progress = 1_000_000;
            osiiso_guest::progress(i, n);
        }
    }
    acc
}
