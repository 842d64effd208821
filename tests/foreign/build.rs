//! Builds the plugins written in other languages than Rust, from source:
//!
//! * `plugins/wordcount-c` with the C SDK (`guest-sdk/c`) through the `osiiso-c` build tool:
//!   clang + wasi-libc (Debian: `clang lld wasi-libc libclang-rt-dev-wasm32`) and the WASI
//!   preview-1 adapter of wasmtime 48.0.8;
//! * `plugins/py-text` with `componentize-py` (PyPI).
//!
//! The components land in `<target>/foreign-guests/` (where `tests/all/foreign_guests.rs`
//! looks for them) and their paths become constants of this crate.

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // <target>/<profile>/build/<pkg>/out → <target>/foreign-guests, shared by every profile.
    let guests_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|target| target.join("foreign-guests"))
        .unwrap_or_else(|| out_dir.join("foreign-guests"));
    fs::create_dir_all(&guests_dir).unwrap();

    let wit = workspace.join("wit");
    let c_plugin = workspace.join("plugins/wordcount-c");
    let py_plugin = workspace.join("plugins/py-text");
    for path in [&wit, &c_plugin, &py_plugin, &workspace.join("guest-sdk/c")] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for var in ["OSIISO_CLANG", "WASI_SYSROOT", "COMPONENTIZE_PY", "PYTHON"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let wordcount = guests_dir.join("wordcount-c.wasm");
    build_c(&wit, &c_plugin, &wordcount, &out_dir.join("wordcount-c"));

    let py_text = guests_dir.join("py-text.wasm");
    build_python(&wit, &py_plugin, &py_text, &out_dir.join("py-text"));

    let mut code = String::new();
    for (name, path, what) in [
        (
            "WORDCOUNT_C",
            &wordcount,
            "the C example plugin `plugins/wordcount-c`",
        ),
        (
            "PY_TEXT",
            &py_text,
            "the Python example plugin `plugins/py-text`",
        ),
    ] {
        writeln!(code, "/// Path of {what}.").unwrap();
        writeln!(
            code,
            "pub const {name}: &str = {:?};",
            path.display().to_string()
        )
        .unwrap();
    }
    fs::write(out_dir.join("paths.rs"), code).unwrap();
}

fn build_c(wit: &Path, plugin: &Path, output: &Path, work: &Path) {
    let toolchain = osiiso_c::Toolchain::detect().unwrap_or_else(|e| {
        panic!(
            "cannot build the C plugin: {e:#}\n(.ci/run installs the toolchain: apt-get install {})",
            osiiso_c::DEBIAN_PACKAGES
        )
    });
    let mut sources: Vec<PathBuf> = fs::read_dir(plugin)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "c").then_some(path)
        })
        .collect();
    sources.sort();
    let mut options = osiiso_c::BuildOptions::new(sources, output, work);
    options.wit = osiiso_c::Wit::Path(wit.to_path_buf());
    options.extra_flags.push("-Werror".into());
    osiiso_c::build_plugin(&toolchain, &options)
        .unwrap_or_else(|e| panic!("building {}: {e:#}", plugin.display()));
}

/// How to run componentize-py: `$COMPONENTIZE_PY`, `componentize-py` on `PATH`, or its
/// console-script entry point through `$PYTHON`/`python3`.
fn componentize_py() -> (Command, String) {
    let python = env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let make: Box<dyn Fn() -> Command> = match env::var_os("COMPONENTIZE_PY") {
        Some(path) => Box::new(move || Command::new(&path)),
        None if Command::new("componentize-py")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()) =>
        {
            Box::new(|| Command::new("componentize-py"))
        }
        // Installed for this Python but not on PATH (e.g. no shim yet): its entry point.
        None => Box::new(move || {
            let mut command = Command::new(&python);
            command.args([
                "-c",
                "import sys, componentize_py; sys.argv[0] = 'componentize-py'; \
                 sys.exit(componentize_py.script())",
            ]);
            command
        }),
    };
    let version = version_of(&mut make());
    let mut command = make();
    command.arg("--quiet");
    (command, version)
}

fn version_of(command: &mut Command) -> String {
    match command.arg("--version").output() {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        Ok(output) => panic!(
            "componentize-py --version failed: {}\n(.ci/run installs it: pip install \
             componentize-py)",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => panic!(
            "cannot run componentize-py: {e}\n(.ci/run installs it: pip install componentize-py)"
        ),
    }
}

fn build_python(wit: &Path, plugin: &Path, output: &Path, work: &Path) {
    let (mut command, version) = componentize_py();

    // componentize-py takes ~30 s: skip it when nothing it reads has changed.
    let mut hasher = DefaultHasher::new();
    version.hash(&mut hasher);
    let sources = python_sources(plugin);
    for file in sources.iter().chain(&files_under(wit)) {
        file.hash(&mut hasher);
        fs::read(file).unwrap().hash(&mut hasher);
    }
    let stamp = format!("{:016x}", hasher.finish());
    let stamp_file = output.with_extension("stamp");
    if output.is_file() && fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return;
    }

    // Build from a copy holding only the sources, so neither bytecode caches nor stray files
    // from the plugin directory end up in the component (or in the source tree).
    let src = work.join("src");
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(&src).unwrap();
    for file in &sources {
        fs::copy(file, src.join(file.file_name().unwrap())).unwrap();
    }
    let _ = fs::remove_file(&stamp_file);
    let result = command
        .current_dir(work)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-d")
        .arg(wit)
        .args(["-w", "plugin", "componentize", "app", "-p"])
        .arg(&src)
        .arg("-o")
        .arg(output)
        .output()
        .expect("running componentize-py");
    assert!(
        result.status.success(),
        "componentize-py failed to build {} ({}):\n{}{}",
        plugin.display(),
        result.status,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    fs::write(&stamp_file, stamp).unwrap();
}

fn python_sources(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "py").then_some(path)
        })
        .collect();
    files.sort();
    files
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
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
