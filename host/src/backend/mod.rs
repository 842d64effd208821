//! Backends: how one attempt executes and how it is interrupted. The queue semantics live in
//! [`crate::queue`]; each backend here is small.

pub(crate) mod asynchronous;
pub(crate) mod process;
pub(crate) mod thread;
