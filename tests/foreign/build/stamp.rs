//! Stamps: a slow build is skipped when nothing it reads has changed.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// A digest of `tool` (a version) and of the contents of `files`.
pub fn of(tool: &str, files: &[PathBuf]) -> String {
    let mut hasher = DefaultHasher::new();
    tool.hash(&mut hasher);
    for file in files {
        file.hash(&mut hasher);
        fs::read(file).unwrap().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// Whether `output` exists and was built with `stamp`.
pub fn fresh(output: &Path, stamp: &str) -> bool {
    output.is_file() && fs::read_to_string(stamp_file(output)).is_ok_and(|s| s == stamp)
}

/// Forgets `output`'s stamp (before a build that may fail).
pub fn clear(output: &Path) {
    let _ = fs::remove_file(stamp_file(output));
}

/// Records that `output` was built with `stamp`.
pub fn write(output: &Path, stamp: &str) {
    fs::write(stamp_file(output), stamp).unwrap();
}

fn stamp_file(output: &Path) -> PathBuf {
    output.with_extension("stamp")
}

/// Every file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The files of `dir` with extension `ext`, sorted.
pub fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == ext).then_some(path)
        })
        .collect();
    files.sort();
    files
}
