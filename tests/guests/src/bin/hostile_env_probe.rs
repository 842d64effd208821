//! Reports every environment variable it can see.
use osiiso_guest::task;

/// Returns the visible environment as `[[key, value], ...]`, sorted.
#[task]
fn env() -> Vec<(String, String)> {
    let mut vars: Vec<_> = std::env::vars().collect();
    vars.sort();
    vars
}

fn main() {}
