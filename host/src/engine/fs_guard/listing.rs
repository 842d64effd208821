//! `read-directory`: a listing read from the directory as the guest asks, never a copy.
//!
//! wasmtime-wasi (48) reads a whole directory into a `Vec` of entries when the stream is
//! created, outside every budget: a guest holding streams of a large directory made the host
//! hold its listing again and again (1.8 GB with `--max-memory 32MiB`). Here the stream keeps
//! the directory open and reads it with `getdents` as entries are asked for, so what the host
//! holds per stream is bounded by the kernel read buffer (about 24 KiB) whatever the size of
//! the directory. The open directory counts as [`LISTING_DESCRIPTORS`] in the store's
//! descriptor budget, which bounds the streams of an attempt; a stream read to its end
//! closes them at once.

use std::sync::Arc;

use cap_primitives::fs::{FileTypeExt as _, ReadDir};
use wasmtime::StoreContextMut;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{DescriptorType, DirectoryEntry, ErrorCode};

use crate::engine::store::AttemptState;

/// Descriptors one open listing holds: cap-std's handle on the directory and the stream's.
pub(crate) const LISTING_DESCRIPTORS: usize = 2;

/// A `directory-entry-stream`.
pub(crate) struct Listing {
    /// `None` once the end was reached (its descriptors are closed then).
    open: Option<OpenListing>,
}

struct OpenListing {
    entries: ReadDir,
    /// Alive while the listing holds its descriptors: the budget watches it.
    _owner: Arc<()>,
}

pub(super) type ReadDirectoryResult = (Result<Resource<Listing>, ErrorCode>,);
pub(super) type ReadEntryResult = (Result<Option<DirectoryEntry>, ErrorCode>,);

/// `[method]descriptor.read-directory`.
pub(super) fn read_directory(
    mut store: StoreContextMut<'_, AttemptState>,
    (fd,): (Resource<Descriptor>,),
) -> wasmtime::Result<ReadDirectoryResult> {
    let state = store.data_mut();
    let descriptors = state.descriptors().clone();
    let view = state.filesystem();
    let Descriptor::Dir(dir) = view.table.get(&fd)? else {
        return Ok((Err(ErrorCode::NotDirectory),));
    };
    let Ok(reserved) = descriptors.reserve(LISTING_DESCRIPTORS) else {
        return Ok((Err(ErrorCode::Quota),));
    };
    let entries = match cap_primitives::fs::read_base_dir(&dir.dir) {
        Ok(entries) => entries,
        Err(e) => return Ok((Err(e.into()),)),
    };
    let owner = Arc::new(());
    reserved.hold(Arc::downgrade(&owner) as _);
    let listing = Listing {
        open: Some(OpenListing {
            entries,
            _owner: owner,
        }),
    };
    Ok((Ok(view.table.push(listing)?),))
}

/// `[method]directory-entry-stream.read-directory-entry`.
pub(super) fn read_directory_entry(
    mut store: StoreContextMut<'_, AttemptState>,
    (stream,): (Resource<Listing>,),
) -> wasmtime::Result<ReadEntryResult> {
    let view = store.data_mut().filesystem();
    let listing = view.table.get_mut(&stream)?;
    Ok((listing.next_entry(),))
}

/// The destructor of `directory-entry-stream`.
pub(super) fn drop_listing(
    mut store: StoreContextMut<'_, AttemptState>,
    rep: u32,
) -> wasmtime::Result<()> {
    let view = store.data_mut().filesystem();
    view.table.delete(Resource::<Listing>::new_own(rep))?;
    Ok(())
}

impl Listing {
    fn next_entry(&mut self) -> Result<Option<DirectoryEntry>, ErrorCode> {
        let Some(open) = &mut self.open else {
            return Ok(None);
        };
        let Some(entry) = open.entries.next() else {
            self.open = None;
            return Ok(None);
        };
        let entry = entry?;
        // As wasmtime-wasi: the type of the entry itself (a symbolic link is one).
        let file_type = entry.file_type()?;
        let type_ = if file_type.is_dir() {
            DescriptorType::Directory
        } else if file_type.is_symlink() {
            DescriptorType::SymbolicLink
        } else if file_type.is_file() {
            DescriptorType::RegularFile
        } else if file_type.is_block_device() {
            DescriptorType::BlockDevice
        } else if file_type.is_char_device() {
            DescriptorType::CharacterDevice
        } else {
            DescriptorType::Unknown
        };
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| ErrorCode::IllegalByteSequence)?;
        Ok(Some(DirectoryEntry { type_, name }))
    }
}
