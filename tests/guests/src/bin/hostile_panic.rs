//! Panics with a known message.
use osiiso_guest::task;

/// Panics with "the guest gave up".
#[task]
fn explode() -> u32 {
    panic!("the guest gave up")
}

fn main() {}
