//! Write [osiiso-host] plugins in Rust.
//!
//! A plugin is a `cdylib` crate that depends on this crate and marks plain functions with
//! [`#[task]`](task). The SDK generates the `osiiso:task/tasks` export (task list and dispatch),
//! decodes the JSON input with serde, encodes the output, and maps errors and panics to the
//! contract's `task-error`.
//!
//! ```ignore
//! use osiiso_guest::{task, TaskError};
//!
//! /// Sum of squares modulo a prime. (The doc comment becomes the description.)
//! #[task(retries = 2, timeout = "5s")]
//! fn score(n: u64) -> Result<u64, TaskError> {
//!     Ok((1..=n).fold(0, |acc, i| (acc + i * i) % 1_000_000_007))
//! }
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`.
//!
//! [osiiso-host]: https://example.invalid/osiiso-host

mod dispatch;
mod error;
pub mod http;
pub mod log;

pub use error::TaskError;
pub use osiiso_guest_macros::task;

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        // `wit` links to the repository's `wit/`, so a packaged crate carries the contract.
        path: "wit",
        world: "plugin",
    });
}

use bindings::osiiso::task::host;

// Outside wasm (a plugin's code in native unit tests or benchmarks) there is no host: the
// helpers below answer as a first, uncancelled attempt and report nowhere.

/// The attempt number of the running invocation: 1 on the first attempt, 2 on the first retry.
pub fn attempt() -> u32 {
    if cfg!(target_family = "wasm") {
        host::attempt()
    } else {
        1
    }
}

/// True once the host wants this attempt to stop (cancelled, or the run timed out).
///
/// Long loops may poll it to stop cleanly; the host interrupts the guest anyway after one
/// poll interval.
pub fn cancelled() -> bool {
    cfg!(target_family = "wasm") && host::cancelled()
}

/// Reports progress of the current attempt (`done` out of `total` units).
pub fn progress(done: u64, total: u64) {
    if cfg!(target_family = "wasm") {
        host::progress(done, total)
    }
}

/// Items the `#[task]` macro expands to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::dispatch::{
        NoJsonSchema, SchemaProbe, TaskDef, ViaJsonSchema, decode_args, encode_output,
    };
    pub use inventory;
    pub use serde_json;
}
