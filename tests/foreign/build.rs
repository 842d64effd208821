//! Builds the plugins written in other languages than Rust, from source, with tools no one
//! here wrote:
//!
//! * `plugins/wordcount-c` with the C SDK (`guest-sdk/c`) through the `osiiso-c` build tool:
//!   clang + wasi-libc (Debian: `clang lld wasi-libc libclang-rt-dev-wasm32`) and the WASI
//!   preview-1 adapter of wasmtime 48.0.8; `plugins/wc-program-c`, a plain WASI program, with
//!   clang alone (a preview-1 core module);
//! * `plugins/py-text` and the Python `plugins/typed-calc` with `componentize-py` (PyPI);
//! * `plugins/js-text` (the JavaScript SDK, `guest-sdk/js`) and the JavaScript
//!   `plugins/typed-calc` with `componentize-js` from npm, installed once, at the version
//!   `guest-sdk/js/package-lock.json` pins, into `<target>/js-tools/`.
//!
//! A toolchain that is missing skips its components with a warning (the tests that need them
//! say SKIPPED), unless `OSIISO_REQUIRE_FOREIGN` is set: then it is an error. The components
//! land in `<target>/foreign-guests/` and their paths become constants of this crate. Slow
//! builds (componentize-py, componentize-js) are skipped when nothing they read changed.

#[path = "build/c.rs"]
mod c;
#[path = "build/js.rs"]
mod js;
#[path = "build/python.rs"]
mod python;
#[path = "build/stamp.rs"]
mod stamp;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Set by CI: every toolchain must be there.
const REQUIRE: &str = "OSIISO_REQUIRE_FOREIGN";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // <target>/<profile>/build/<pkg>/out → <target>, shared by every profile.
    let target = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.clone());
    let guests = target.join("foreign-guests");
    fs::create_dir_all(&guests).unwrap();

    let ws = |path: &str| workspace.join(path);
    for path in [
        "wit",
        "guest-sdk/c",
        "guest-sdk/js",
        "plugins/wordcount-c",
        "plugins/wc-program-c",
        "plugins/py-text",
        "plugins/js-text",
        "plugins/typed-calc/wit",
        "plugins/typed-calc/js",
        "plugins/typed-calc/py",
    ] {
        println!("cargo:rerun-if-changed={}", ws(path).display());
    }
    for var in [
        "OSIISO_CLANG",
        "WASI_SYSROOT",
        "COMPONENTIZE_PY",
        "PYTHON",
        "NODE",
        "NPM",
        REQUIRE,
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let mut built: Vec<(&str, PathBuf, &str)> = Vec::new();
    let mut out = |name, file: &str, what| {
        let path = guests.join(file);
        built.push((name, path.clone(), what));
        path
    };
    let wordcount = out(
        "WORDCOUNT_C",
        "wordcount-c.wasm",
        "the C example plugin `plugins/wordcount-c`",
    );
    let wc_program_c = out(
        "WC_PROGRAM_C",
        "wc-program-c.wasm",
        "the C WASI program `plugins/wc-program-c` (a preview-1 core module)",
    );
    let py_text = out(
        "PY_TEXT",
        "py-text.wasm",
        "the Python example plugin `plugins/py-text`",
    );
    let typed_py = out(
        "TYPED_CALC_PY",
        "typed-calc-py.wasm",
        "`plugins/typed-calc` in Python (componentize-py, no SDK)",
    );
    let js_text = out(
        "JS_TEXT",
        "js-text.wasm",
        "the JavaScript example plugin `plugins/js-text`",
    );
    let typed_js = out(
        "TYPED_CALC_JS",
        "typed-calc-js.wasm",
        "`plugins/typed-calc` in JavaScript (componentize-js, no SDK)",
    );

    match osiiso_c::Toolchain::detect() {
        Ok(toolchain) => {
            c::build_plugin(
                &toolchain,
                &ws("wit"),
                &ws("plugins/wordcount-c"),
                &wordcount,
                &out_dir.join("wordcount-c"),
            );
            c::build_program(&toolchain, &ws("plugins/wc-program-c"), &wc_program_c);
        }
        Err(e) => missing(&format!(
            "the C plugins: {e:#} (.ci/run installs the toolchain: apt-get install {})",
            osiiso_c::DEBIAN_PACKAGES
        )),
    }

    match python::Componentize::find() {
        Ok(tool) => {
            tool.build(
                &ws("wit"),
                "plugin",
                &ws("plugins/py-text"),
                "app",
                &py_text,
                &out_dir.join("py-text"),
            );
            tool.build(
                &ws("plugins/typed-calc/wit"),
                "calc",
                &ws("plugins/typed-calc/py"),
                "app",
                &typed_py,
                &out_dir.join("typed-calc-py"),
            );
        }
        Err(e) => missing(&format!(
            "the Python plugins: {e} (.ci/run installs it: pip install componentize-py==0.25.1)"
        )),
    }

    match js::Componentize::install(&ws("guest-sdk/js"), &target.join("js-tools")) {
        Ok(tool) => {
            tool.build(
                &ws("wit"),
                "plugin",
                &[&ws("plugins/js-text/app.js"), &ws("guest-sdk/js/osiiso.js")],
                &js_text,
                &out_dir.join("js-text"),
            );
            tool.build(
                &ws("plugins/typed-calc/wit"),
                "calc",
                &[&ws("plugins/typed-calc/js/calc.js")],
                &typed_js,
                &out_dir.join("typed-calc-js"),
            );
        }
        Err(e) => missing(&format!(
            "the JavaScript plugins: {e} (.ci/run installs node and npm; componentize-js comes \
             from npm)"
        )),
    }

    let mut code = String::new();
    for (name, path, what) in built {
        writeln!(code, "/// Path of {what} (missing when its toolchain is).").unwrap();
        writeln!(
            code,
            "pub const {name}: &str = {:?};",
            path.display().to_string()
        )
        .unwrap();
    }
    fs::write(out_dir.join("paths.rs"), code).unwrap();
}

/// A toolchain is missing: an error under `OSIISO_REQUIRE_FOREIGN`, else a warning.
fn missing(what: &str) {
    if env::var_os(REQUIRE).is_some() {
        panic!("cannot build {what}; {REQUIRE} is set");
    }
    println!("cargo:warning=skipping {what}");
}
