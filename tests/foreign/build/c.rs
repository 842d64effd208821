//! C: a plugin with the C SDK (through `osiiso-c`), and a plain WASI program with clang alone.

use std::path::Path;
use std::process::Command;

use crate::stamp;

/// `plugin`'s C sources with the SDK, into the component `output`.
pub fn build_plugin(
    toolchain: &osiiso_c::Toolchain,
    wit: &Path,
    plugin: &Path,
    output: &Path,
    work: &Path,
) {
    let sources = stamp::files_with(plugin, "c");
    let mut options = osiiso_c::BuildOptions::new(sources, output, work);
    options.wit = osiiso_c::Wit::Path(wit.to_path_buf());
    options.extra_flags.push("-Werror".into());
    osiiso_c::build_plugin(toolchain, &options)
        .unwrap_or_else(|e| panic!("building {}: {e:#}", plugin.display()));
}

/// `program`'s C sources into a WASI preview-1 command (a core module with `_start`), as any
/// C programmer would build one: clang for `wasm32-wasi` against wasi-libc, nothing else.
pub fn build_program(toolchain: &osiiso_c::Toolchain, program: &Path, output: &Path) {
    let result = Command::new(&toolchain.clang)
        .args(toolchain.cflags())
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(output)
        .args(stamp::files_with(program, "c"))
        .output()
        .expect("running clang");
    assert!(
        result.status.success(),
        "clang failed to build {}:\n{}",
        program.display(),
        String::from_utf8_lossy(&result.stderr)
    );
}
