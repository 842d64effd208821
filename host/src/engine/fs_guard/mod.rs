//! The parts of `wasi:filesystem` the host replaces in wasmtime-wasi's implementation, in
//! both linkers:
//!
//! - [`open`]: `open-at` opens only regular files and directories (a FIFO, socket or device
//!   in a grant could block the worker for ever), within the store's descriptor budget;
//! - [`listing`]: `read-directory` streams a directory instead of copying it into host
//!   memory, and counts the open listing in the budget;
//! - [`symlink`]: `symlink-at` refuses links that would point outside their directory.
//!
//! The interface version must be the one wasmtime-wasi defines, or these would be added
//! beside the originals instead of replacing them; the tests of each guard (a FIFO that
//! would hang, links that would escape) fail if that happens.

mod listing;
mod open;
mod symlink;

use wasmtime::component::{Linker, ResourceType};

use super::store::AttemptState;

/// The interface wasmtime-wasi defines (its WIT version; older guests are served by semver
/// matching).
const TYPES_INTERFACE: &str = "wasi:filesystem/types@0.2.12";

/// Replaces the guarded functions in a sync linker that already has WASI.
pub(crate) fn guard_sync(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    guard(linker, false)
}

/// Replaces the guarded functions in an async linker that already has WASI.
pub(crate) fn guard_async(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    guard(linker, true)
}

fn guard(linker: &mut Linker<AttemptState>, asynchronous: bool) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = define(linker, asynchronous);
    linker.allow_shadowing(false);
    defined
}

fn define(linker: &mut Linker<AttemptState>, asynchronous: bool) -> wasmtime::Result<()> {
    let mut types = linker.instance(TYPES_INTERFACE)?;
    if asynchronous {
        symlink::define_async(&mut types)?;
    } else {
        symlink::define_sync(&mut types)?;
    }
    // Opening and listing never wait on anything but the local file system: the same
    // (blocking) functions serve both linkers.
    types.func_wrap("[method]descriptor.open-at", open::open_at)?;
    // The stream type is the host's own, so every function that takes or returns one is
    // replaced together: a function left out would fail the type check at instantiation.
    types.resource(
        "directory-entry-stream",
        ResourceType::host::<listing::Listing>(),
        listing::drop_listing,
    )?;
    types.func_wrap("[method]descriptor.read-directory", listing::read_directory)?;
    types.func_wrap(
        "[method]directory-entry-stream.read-directory-entry",
        listing::read_directory_entry,
    )?;
    Ok(())
}
