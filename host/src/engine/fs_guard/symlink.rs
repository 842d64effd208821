//! Symbolic links a guest creates must not point outside the directory it was granted.
//!
//! cap-std already stops a guest from *following* a link out of its preopened directories,
//! but a link it leaves behind persists on the host, where the next program that follows it
//! (a backup job, the user's shell) would be led outside. `symlink-at` is therefore replaced
//! in both linkers by one that refuses, with `not-permitted`, a target that is absolute or
//! that contains a `..` component. A target made only of downward components resolves
//! inside the link's own directory, and, since every link created this way obeys the same
//! rule, so does any chain of them.

use wasmtime::StoreContextMut;
use wasmtime::component::{LinkerInstance, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, Host, HostDescriptor};
use wasmtime_wasi::runtime::in_tokio;

use crate::engine::store::AttemptState;

const SYMLINK_AT: &str = "[method]descriptor.symlink-at";

/// Whether a link whose text is `target` may be created: relative, and never climbing.
pub(crate) fn target_stays_inside(target: &str) -> bool {
    !target.starts_with('/') && !target.split('/').any(|component| component == "..")
}

type SymlinkArgs = (Resource<Descriptor>, String, String);
type SymlinkResult = (Result<(), ErrorCode>,);

/// Defines `symlink-at` in the `wasi:filesystem/types` of a sync linker.
pub(super) fn define_sync(types: &mut LinkerInstance<'_, AttemptState>) -> wasmtime::Result<()> {
    types.func_wrap(
        SYMLINK_AT,
        |mut store: StoreContextMut<'_, AttemptState>,
         (fd, target, link): SymlinkArgs|
         -> wasmtime::Result<SymlinkResult> {
            if !target_stays_inside(&target) {
                return Ok((Err(refused(&target)),));
            }
            let mut view = store.data_mut().filesystem();
            let created = in_tokio(HostDescriptor::symlink_at(&mut view, fd, target, link));
            Ok((match created {
                Ok(()) => Ok(()),
                Err(error) => Err(Host::convert_error_code(&mut view, error)?),
            },))
        },
    )
}

/// Defines `symlink-at` in the `wasi:filesystem/types` of an async linker.
pub(super) fn define_async(types: &mut LinkerInstance<'_, AttemptState>) -> wasmtime::Result<()> {
    types.func_wrap_async(
        SYMLINK_AT,
        |mut store: StoreContextMut<'_, AttemptState>, (fd, target, link): SymlinkArgs| {
            Box::new(async move {
                if !target_stays_inside(&target) {
                    return Ok((Err(refused(&target)),));
                }
                let mut view = store.data_mut().filesystem();
                let created = HostDescriptor::symlink_at(&mut view, fd, target, link).await;
                Ok::<SymlinkResult, wasmtime::Error>((match created {
                    Ok(()) => Ok(()),
                    Err(error) => Err(Host::convert_error_code(&mut view, error)?),
                },))
            })
        },
    )
}

fn refused(target: &str) -> ErrorCode {
    tracing::debug!(
        target: "osiiso::guest",
        link_target = %crate::text::for_display(target, 256),
        "symbolic link refused: its target is absolute or climbs with `..`"
    );
    ErrorCode::NotPermitted
}

#[cfg(test)]
mod tests {
    use super::target_stays_inside;

    #[test]
    fn only_downward_relative_targets_are_allowed() {
        for ok in [
            "file", "sub/file", "./file", "a/./b", "", "a//b", "..x", "x..",
        ] {
            assert!(target_stays_inside(ok), "{ok}");
        }
        for bad in ["/etc/passwd", "..", "../x", "a/../b", "a/..", "/"] {
            assert!(!target_stays_inside(bad), "{bad}");
        }
    }
}
