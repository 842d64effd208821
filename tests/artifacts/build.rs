//! Compiles every example plugin and test guest for `wasm32-wasip2` (wasmtime's
//! `test-programs`/`artifacts` pattern) and generates constants with their paths, plus a
//! `foreach_guest!` macro so that every test guest needs a matching test.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Example plugins, one crate each: `(crate, artifact file stem)`. `typed-calc` is a component
/// built with plain wit-bindgen (no SDK), `wc-program` a plain WASI program (`fn main`).
const PLUGINS: &[(&str, &str)] = &[
    ("echo", "echo"),
    ("score", "score"),
    ("files", "files"),
    ("fetch", "fetch"),
    ("double", "double"),
    ("mix", "mix"),
    ("typed-calc", "typed_calc"),
    ("wc-program", "wc-program"),
    // A hostile typed component (tests/typed-guests).
    ("hostile-typed", "hostile_typed"),
];
/// Crates also built for `wasm32-wasip1` (core modules), exposed as `<NAME>_P1`.
const WASIP1_PROGRAMS: &[(&str, &str)] = &[("wc-program", "wc-program")];
/// The crate holding one binary per test guest.
const GUESTS_PACKAGE: &str = "osiiso-test-guests";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // <target>/<profile>/build/<pkg>/out: share one guest build between debug and release.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-guests"))
        .unwrap_or_else(|| out_dir.join("wasm-guests"));

    // The workspace manifest and lock file too: a dependency's version or features (serde_json's
    // `preserve_order`) change what the guests do.
    for dir in [
        "Cargo.toml",
        "Cargo.lock",
        "wit",
        "guest-sdk",
        "plugins",
        "tests/guests",
        "tests/typed-guests",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["-p", GUESTS_PACKAGE]);
    for (plugin, _) in PLUGINS {
        command.args(["-p", plugin]);
    }
    run(command, "wasm32-wasip2");

    // The same programs as WASI preview-1 core modules.
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(&workspace)
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (program, _) in WASIP1_PROGRAMS {
        command.args(["-p", program]);
    }
    run(command, "wasm32-wasip1");

    let release = target_dir.join("wasm32-wasip2").join("release");
    let release_p1 = target_dir.join("wasm32-wasip1").join("release");
    let mut code = String::new();
    for (plugin, file) in PLUGINS {
        push_const(&mut code, plugin, &release.join(format!("{file}.wasm")));
    }
    for (program, file) in WASIP1_PROGRAMS {
        push_const(
            &mut code,
            &format!("{program}_p1"),
            &release_p1.join(format!("{file}.wasm")),
        );
    }
    let mut guests: Vec<String> = fs::read_dir(workspace.join("tests/guests/src/bin"))
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    guests.sort();
    for guest in &guests {
        push_const(&mut code, guest, &release.join(format!("{guest}.wasm")));
    }
    code.push_str("/// Calls `$mac!(name)` for every test guest, so each one needs a test.\n");
    code.push_str("#[macro_export]\nmacro_rules! foreach_guest {\n    ($mac:ident) => {\n");
    for guest in &guests {
        writeln!(code, "        $mac!({guest});").unwrap();
    }
    code.push_str("    };\n}\n");
    fs::write(out_dir.join("artifacts.rs"), code).unwrap();
}

/// Runs a cargo build of guests for `target`, without the flags of the build that runs this
/// script.
fn run(mut command: Command, target: &str) {
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("failed to run cargo to build the wasm guests");
    assert!(
        status.success(),
        "building the wasm guests failed: is the {target} target installed? \
         (`rustup target add {target}`)"
    );
}

fn push_const(code: &mut String, name: &str, path: &Path) {
    assert!(
        path.exists(),
        "expected guest artifact {} to exist",
        path.display()
    );
    writeln!(code, "/// Path of the `{name}` component.").unwrap();
    writeln!(
        code,
        "pub const {}: &str = {:?};",
        name.to_uppercase().replace('-', "_"),
        path.display().to_string()
    )
    .unwrap();
}
