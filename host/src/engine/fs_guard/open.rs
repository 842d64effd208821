//! `open-at`: only regular files and directories, within the store's descriptor budget.
//!
//! Opening a FIFO blocks until the other end is opened, a terminal or some devices block in
//! their driver, and a blocked host call cannot be interrupted: a guest that opened a FIFO in
//! a granted directory used to hold its worker (and, on the async queue, a runtime thread)
//! for ever, timeouts and cancellation included. So every open is made with `O_NONBLOCK`
//! (which makes the open itself return at once for such files) and `O_NOCTTY`, and the
//! descriptor's own type (`fstat` of what was opened, so no file swapped in between a check
//! and the open can slip through, wherever a symbolic link led) decides: a directory or a
//! regular file is kept (the file with `O_NONBLOCK` cleared again), anything else — FIFO,
//! socket, character or block device — is closed at once and refused with `not-permitted`.
//!
//! Every other part of the open is wasmtime-wasi's (48) own logic, and the path is resolved
//! by cap-std's sandboxed `open`, the same code wasmtime-wasi runs.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use cap_primitives::fs::{FollowSymlinks, OpenOptions, OpenOptionsExt as _};
use wasmtime::StoreContextMut;
use wasmtime::component::Resource;
use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::{Descriptor, Dir, File, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};

use crate::engine::descriptors::Descriptors;
use crate::engine::sandbox::BLOCKING_FS_INLINE;
use crate::engine::store::AttemptState;

pub(super) type OpenArgs = (
    Resource<Descriptor>,
    PathFlags,
    String,
    OpenFlags,
    DescriptorFlags,
);
pub(super) type OpenResult = (Result<Resource<Descriptor>, ErrorCode>,);

/// The `[method]descriptor.open-at` of both linkers.
pub(super) fn open_at(
    mut store: StoreContextMut<'_, AttemptState>,
    (fd, path_flags, path, oflags, flags): OpenArgs,
) -> wasmtime::Result<OpenResult> {
    let state = store.data_mut();
    let descriptors = state.descriptors().clone();
    let view = state.filesystem();
    let dir = match view.table.get(&fd)? {
        Descriptor::Dir(dir) => dir.clone(),
        Descriptor::File(_) => return Ok((Err(ErrorCode::NotDirectory),)),
    };
    let opened = match open(&dir, &descriptors, path_flags, &path, oflags, flags) {
        Ok(opened) => opened,
        Err(code) => return Ok((Err(code),)),
    };
    Ok((Ok(view.table.push(opened)?),))
}

/// Opens `path` under `dir` the way wasmtime-wasi does, refusing what is not a regular file
/// or a directory, and counting the new descriptor in `descriptors`.
fn open(
    dir: &Dir,
    descriptors: &Descriptors,
    path_flags: PathFlags,
    path: &str,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> Result<Descriptor, ErrorCode> {
    let (options, open_mode) = options(dir, path_flags, oflags, flags)?;
    let reserved = descriptors.reserve(1).map_err(|_| ErrorCode::Quota)?;
    let file = match cap_primitives::fs::open(&dir.dir, path.as_ref(), &options) {
        Ok(file) => file,
        // A FIFO opened for writing with no reader, a socket, a device without its driver.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(refused(path, "a special file"));
        }
        Err(e) => return Err(ErrorCode::from(e)),
    };
    let file_type = file.metadata().map_err(ErrorCode::from)?.file_type();
    let opened = if file_type.is_dir() {
        let dir = Dir::new(file, dir.perms, open_mode, BLOCKING_FS_INLINE);
        reserved.hold(Arc::downgrade(&dir.dir) as _);
        Descriptor::Dir(dir)
    } else if oflags.contains(OpenFlags::DIRECTORY) {
        return Err(ErrorCode::NotDirectory);
    } else if file_type.is_file() {
        clear_nonblocking(&file).map_err(ErrorCode::from)?;
        let file = File::new(file, dir.perms, open_mode, BLOCKING_FS_INLINE);
        reserved.hold(Arc::downgrade(&file.file) as _);
        Descriptor::File(file)
    } else {
        return Err(refused(path, kind_of(&file_type)));
    };
    Ok(opened)
}

/// The open options and mode wasmtime-wasi's `Dir::open_at` derives from the guest's flags,
/// with its checks, plus `O_NONBLOCK | O_NOCTTY`.
fn options(
    dir: &Dir,
    path_flags: PathFlags,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> Result<(OpenOptions, OpenMode), ErrorCode> {
    let mut create = false;
    let mut open_mode = OpenMode::empty();
    let mut options = OpenOptions::new();
    if oflags.contains(OpenFlags::CREATE) {
        if oflags.contains(OpenFlags::EXCLUSIVE) {
            options.create_new(true);
        } else {
            options.create(true);
        }
        create = true;
        options.write(true);
        open_mode |= OpenMode::WRITE;
    }
    if oflags.contains(OpenFlags::TRUNCATE) {
        options.truncate(true).write(true);
        open_mode |= OpenMode::WRITE;
    }
    if flags.contains(DescriptorFlags::READ) {
        options.read(true);
        open_mode |= OpenMode::READ;
    }
    if flags.contains(DescriptorFlags::WRITE) {
        options.write(true);
        open_mode |= OpenMode::WRITE;
    } else {
        // As wasmtime-wasi: open for reading so the OS lets us, and let the permissions
        // refuse other uses later.
        options.read(true);
        open_mode |= OpenMode::READ;
    }
    // cap-std's own entry points for what `std` lacks (cap-fs-ext wraps the same).
    options._cap_fs_ext_follow(if path_flags.contains(PathFlags::SYMLINK_FOLLOW) {
        FollowSymlinks::Yes
    } else {
        FollowSymlinks::No
    });
    options
        ._cap_fs_ext_nonblock(true)
        .custom_flags(libc::O_NOCTTY);
    if flags.intersects(
        DescriptorFlags::FILE_INTEGRITY_SYNC
            | DescriptorFlags::DATA_INTEGRITY_SYNC
            | DescriptorFlags::REQUESTED_WRITE_SYNC,
    ) {
        return Err(ErrorCode::Unsupported);
    }
    if oflags.contains(OpenFlags::DIRECTORY)
        && oflags.intersects(OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE)
    {
        return Err(ErrorCode::Invalid);
    }
    if dir.perms.write_not_permitted() && (create || open_mode.contains(OpenMode::WRITE)) {
        return Err(ErrorCode::NotPermitted);
    }
    Ok((options, open_mode))
}

/// Regular files are read and written blocking, as wasmtime-wasi expects.
fn clear_nonblocking(file: &std::fs::File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function borrows, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn kind_of(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

fn refused(path: &str, kind: &str) -> ErrorCode {
    tracing::debug!(
        target: "osiiso::guest",
        path = %crate::text::for_display(path, 256),
        kind,
        "open refused: only regular files and directories can be opened in a granted directory"
    );
    ErrorCode::NotPermitted
}
