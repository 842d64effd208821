//! Tries to leave symbolic links in its granted directory that point outside it.
use osiiso_guest::{TaskError, task};
use serde::Deserialize;

#[derive(Deserialize)]
struct Link {
    /// What the link points at.
    target: String,
    /// Where the link is created (inside a granted directory).
    link: String,
}

/// Creates a symbolic link; the error the sandbox gave otherwise.
#[task]
fn link(spec: Link) -> Result<String, TaskError> {
    #[allow(deprecated, reason = "the one stable symlink call on wasm32-wasip2")]
    std::fs::soft_link(&spec.target, &spec.link)
        .map(|()| format!("{} -> {}", spec.link, spec.target))
        .map_err(|e| TaskError::permanent(format!("cannot link {}: {e}", spec.link)))
}

fn main() {}
