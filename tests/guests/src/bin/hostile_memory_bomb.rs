//! Allocates until something stops it.
use osiiso_guest::task;

/// Grows a vector by 1 MiB chunks forever.
#[task]
fn bomb() -> usize {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

fn main() {}
