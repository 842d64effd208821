//! Spins forever without calling the host: only the epoch or fuel can stop it.
use osiiso_guest::task;

/// Loops forever.
#[task]
fn spin() -> u64 {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn main() {}
