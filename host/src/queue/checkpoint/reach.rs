//! Whether a guest could reach a checkpoint through a directory grant. A guest that can write
//! the file — or the `-wal` and `-shm` files SQLite keeps beside it — can forge completions,
//! and one that can read it sees every recorded value; so a checkpoint must lie outside every
//! grant. Judged as the compile cache's refusal is: after resolving symbolic links and `..`.

use std::path::{Component, Path, PathBuf};

use crate::engine::{DirGrant, Sandbox};

/// The canonical directories SQLite works in for the checkpoint at `path`: the one holding the
/// path itself (where a symbolic link could be swapped) and the one holding the file it
/// resolves to (where SQLite puts `-wal` and `-shm`). None for `":memory:"`.
pub(super) fn homes(path: &Path) -> Vec<PathBuf> {
    if path == Path::new(":memory:") || path.as_os_str().is_empty() {
        return Vec::new();
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut homes: Vec<PathBuf> = resolve(parent).into_iter().collect();
    if let Some(dir) = resolve(path).and_then(|file| file.parent().map(Path::to_path_buf))
        && !homes.contains(&dir)
    {
        homes.push(dir);
    }
    homes
}

/// `path` made absolute the way SQLite does it: symbolic links resolved component by
/// component, `..` removing the last component of what is resolved so far, and components
/// that do not exist (yet) kept as written. `None` when the working directory is unknown.
fn resolve(path: &Path) -> Option<PathBuf> {
    let absolute = std::env::current_dir().ok()?.join(path);
    let mut out = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                if let Ok(real) = out.canonicalize() {
                    out = real;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// The first grant of `sandbox` whose directory holds one of `homes`.
pub(super) fn grant_reaching<'a>(homes: &[PathBuf], sandbox: &'a Sandbox) -> Option<&'a DirGrant> {
    sandbox.dirs().iter().find(|grant| {
        grant
            .host
            .canonicalize()
            .is_ok_and(|dir| homes.iter().any(|home| home.starts_with(&dir)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_reach_through_dot_dot_and_symbolic_links_but_not_beside() {
        let root = tempfile::tempdir().unwrap();
        let granted = root.path().join("granted");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(granted.join("sub")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(granted.join("real.sqlite"), b"").unwrap();
        std::os::unix::fs::symlink(granted.join("real.sqlite"), outside.join("link.sqlite"))
            .unwrap();
        let sandbox = Sandbox::new().dir_read_only(&granted, "/data");
        for inside in [
            granted.join("new.sqlite"),
            granted.join("sub/../new.sqlite"),
            // SQLite drops `missing/..` without looking: so must the judge.
            granted.join("missing/../new.sqlite"),
            outside.join("../granted/new.sqlite"),
            granted.join("sub/deeper.sqlite"),
            outside.join("link.sqlite"),
        ] {
            let found = grant_reaching(&homes(&inside), &sandbox);
            assert_eq!(found.map(|g| g.guest.as_str()), Some("/data"), "{inside:?}");
        }
        for beside in [
            root.path().join("beside.sqlite"),
            outside.join("new.sqlite"),
            PathBuf::from(":memory:"),
        ] {
            assert!(
                grant_reaching(&homes(&beside), &sandbox).is_none(),
                "{beside:?}"
            );
        }
        // A grant below the checkpoint's directory does not reach it.
        let below = Sandbox::new().dir(granted.join("sub"), "/sub");
        assert!(grant_reaching(&homes(&granted.join("new.sqlite")), &below).is_none());
    }
}
