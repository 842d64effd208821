//! Builds osiiso-host plugins written in C.
//!
//! A C plugin is compiled by clang for `wasm32-wasi` (WASI preview 1, against wasi-libc) into
//! a core module, which is then turned into a component with the WASI preview-1 adapter of the
//! wasmtime release the host embeds. This crate does every step that is not clang's:
//!
//! * [`write_bindings`]: the `wit-bindgen c` output for the `plugin` world (`plugin.h`,
//!   `plugin.c`), generated from the WIT at build time, never committed;
//! * [`write_sdk`]: the C SDK (`osiiso.h`, `osiiso.c`) from `guest-sdk/c`;
//! * [`Toolchain`]: finds clang, its resource directory and wasi-libc, and gives the flags
//!   (`-nostdinc` plus explicit include directories, so host headers never leak in);
//! * [`componentize`]: embeds the world's type information and adapts the core module into a
//!   component (what `wasm-tools component embed` + `wasm-tools component new --adapt` do);
//! * [`build_plugin`]: all of the above for a list of C sources.
//!
//! The `osiiso-c` binary exposes the same steps on the command line.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use wit_parser::{Resolve, WorldId};

/// The osiiso:task WIT contract, as compiled into this tool (`wit/task.wit`).
pub const TASK_WIT: &str = include_str!("../../../../wit/task.wit");
/// The world a plugin implements.
pub const WORLD: &str = "plugin";
/// The C SDK header (`guest-sdk/c/osiiso.h`).
pub const SDK_HEADER: &str = include_str!("../../osiiso.h");
/// The C SDK source (`guest-sdk/c/osiiso.c`).
pub const SDK_SOURCE: &str = include_str!("../../osiiso.c");
/// Name of the core-module import the preview-1 adapter satisfies.
pub const ADAPTER_NAME: &str =
    wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME;
/// The reactor flavour of the WASI preview-1 adapter (for modules without `_start`).
pub const ADAPTER: &[u8] =
    wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;

/// Debian packages that provide the C toolchain for wasm32-wasi.
pub const DEBIAN_PACKAGES: &str = "clang lld wasi-libc libclang-rt-dev-wasm32";

/// Where the WIT comes from.
#[derive(Debug, Clone, Default)]
pub enum Wit {
    /// The contract compiled into this tool.
    #[default]
    Builtin,
    /// A WIT file or directory (`wit/` of a checkout).
    Path(PathBuf),
}

impl Wit {
    /// Parses the WIT and selects the `plugin` world.
    pub fn resolve(&self) -> Result<(Resolve, WorldId)> {
        let mut resolve = Resolve::default();
        let package = match self {
            Wit::Builtin => resolve
                .push_str("task.wit", TASK_WIT)
                .context("parsing the built-in osiiso:task WIT")?,
            Wit::Path(path) => {
                resolve
                    .push_path(path)
                    .with_context(|| format!("parsing WIT at {}", path.display()))?
                    .0
            }
        };
        let world = resolve
            .select_world(&[package], Some(WORLD))
            .with_context(|| format!("selecting world `{WORLD}`"))?;
        Ok((resolve, world))
    }
}

/// Writes the `wit-bindgen c` bindings of the `plugin` world (`plugin.h`, `plugin.c`) into
/// `dir`. No `*_component_type.o` is written: [`componentize`] embeds the type information.
pub fn write_bindings(wit: &Wit, dir: &Path) -> Result<Vec<PathBuf>> {
    let (mut resolve, world) = wit.resolve()?;
    let opts = wit_bindgen_c::Opts {
        no_object_file: true,
        ..Default::default()
    };
    let mut files = wit_bindgen_core::Files::default();
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .context("generating C bindings")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, contents) in files.iter() {
        let path = dir.join(name);
        write_if_changed(&path, contents)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the C SDK (`osiiso.h`, `osiiso.c`) into `dir`.
pub fn write_sdk(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_if_changed(&dir.join("osiiso.h"), SDK_HEADER.as_bytes())?;
    write_if_changed(&dir.join("osiiso.c"), SDK_SOURCE.as_bytes())?;
    Ok(())
}

fn write_if_changed(path: &Path, contents: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Turns a core module built for `wasm32-wasi` (preview 1) into an osiiso plugin component:
/// embeds the `plugin` world's type information and adapts the preview-1 imports.
pub fn componentize(core: &[u8], wit: &Wit) -> Result<Vec<u8>> {
    let (resolve, world) = wit.resolve()?;
    let mut module = core.to_vec();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .context("embedding the component type")?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .context("reading the core module")?
        .adapter(ADAPTER_NAME, ADAPTER)
        .context("adding the WASI preview-1 adapter")?
        .encode()
        .context("encoding the component")
}

/// clang with wasi-libc, found on this machine.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The clang driver.
    pub clang: PathBuf,
    /// clang's resource directory (its own `stddef.h`, `stdarg.h`, and the wasm32 builtins).
    pub resource_dir: PathBuf,
    /// The wasi-libc sysroot (`/usr` for Debian's `wasi-libc`).
    pub sysroot: PathBuf,
    /// wasi-libc's headers.
    pub libc_include: PathBuf,
    /// The target triple matching the sysroot layout (`wasm32-wasi` or `wasm32-wasip1`).
    pub target: String,
}

impl Toolchain {
    /// Finds the toolchain: clang from `$OSIISO_CLANG` or `PATH`, the wasi-libc sysroot from
    /// `$WASI_SYSROOT`, Debian's `/usr`, or a wasi-sdk under `/opt/wasi-sdk`.
    pub fn detect() -> Result<Self> {
        let clang = std::env::var_os("OSIISO_CLANG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("clang"));
        let output = Command::new(&clang)
            .arg("-print-resource-dir")
            .output()
            .with_context(|| {
                format!(
                    "running {} (install the Debian packages: {DEBIAN_PACKAGES})",
                    clang.display()
                )
            })?;
        if !output.status.success() {
            bail!(
                "{} -print-resource-dir failed: {}",
                clang.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let resource_dir = PathBuf::from(String::from_utf8(output.stdout)?.trim());

        let candidates: Vec<PathBuf> = match std::env::var_os("WASI_SYSROOT") {
            Some(root) => vec![root.into()],
            None => vec![
                "/usr".into(),
                "/opt/wasi-sdk/share/wasi-sysroot".into(),
                "/usr/share/wasi-sysroot".into(),
            ],
        };
        for sysroot in &candidates {
            for target in ["wasm32-wasi", "wasm32-wasip1"] {
                let include = sysroot.join("include").join(target);
                let lib = sysroot.join("lib").join(target);
                if include.join("stdlib.h").is_file() && lib.join("libc.a").is_file() {
                    let toolchain = Self {
                        clang,
                        resource_dir,
                        sysroot: sysroot.clone(),
                        libc_include: include,
                        target: target.into(),
                    };
                    toolchain.check_builtins()?;
                    return Ok(toolchain);
                }
            }
        }
        bail!(
            "wasi-libc not found in {} (set WASI_SYSROOT, or install the Debian packages: \
             {DEBIAN_PACKAGES})",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn check_builtins(&self) -> Result<()> {
        let wasi = self.resource_dir.join("lib").join("wasi");
        let found = ["libclang_rt.builtins-wasm32.a", "libclang_rt.builtins.a"]
            .iter()
            .any(|name| wasi.join(name).is_file())
            || self
                .resource_dir
                .join("lib")
                .join(&self.target)
                .join("libclang_rt.builtins.a")
                .is_file();
        if !found {
            bail!(
                "clang's wasm32 builtins are missing under {} (install the Debian package \
                 libclang-rt-dev-wasm32)",
                self.resource_dir.display()
            );
        }
        Ok(())
    }

    /// Flags for compiling C for the plugin: target, sysroot, and only the include
    /// directories of clang itself and wasi-libc (`-nostdinc`).
    pub fn cflags(&self) -> Vec<OsString> {
        let mut flags: Vec<OsString> = vec![
            format!("--target={}", self.target).into(),
            "--sysroot".into(),
            self.sysroot.clone().into(),
            "-nostdinc".into(),
            "-isystem".into(),
            self.resource_dir.join("include").into(),
            "-isystem".into(),
            self.libc_include.clone().into(),
        ];
        // C11 with the POSIX and GNU extensions wasi-libc has (`strndup`, `strdup`, ...);
        // `-std=c11` would hide them. Flags after `--` can still ask for strict C.
        flags.push("-std=gnu11".into());
        flags
    }

    /// Flags for linking the core module: a reactor (no `main`, `_initialize` runs the
    /// constructors) with a 1 MiB shadow stack.
    pub fn ldflags(&self) -> Vec<OsString> {
        vec![
            "-mexec-model=reactor".into(),
            "-Wl,-z,stack-size=1048576".into(),
        ]
    }
}

/// What to build with [`build_plugin`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The plugin's C sources.
    pub sources: Vec<PathBuf>,
    /// Extra include directories.
    pub include_dirs: Vec<PathBuf>,
    /// Where to write the component.
    pub output: PathBuf,
    /// Scratch directory for the bindings, the SDK copy and the core module.
    pub work_dir: PathBuf,
    /// The WIT to build against.
    pub wit: Wit,
    /// Optimisation level passed as `-O<level>`.
    pub opt_level: String,
    /// Further flags for clang (compile and link).
    pub extra_flags: Vec<OsString>,
}

impl BuildOptions {
    /// Options for `sources` → `output`, scratch files in `work_dir`.
    pub fn new(
        sources: impl IntoIterator<Item = impl Into<PathBuf>>,
        output: impl Into<PathBuf>,
        work_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            sources: sources.into_iter().map(Into::into).collect(),
            include_dirs: Vec::new(),
            output: output.into(),
            work_dir: work_dir.into(),
            wit: Wit::Builtin,
            opt_level: "2".into(),
            extra_flags: Vec::new(),
        }
    }
}

/// Builds a C plugin: bindings and SDK into the work directory, one clang invocation that
/// compiles and links the core module, then [`componentize`]. Returns the component's path.
pub fn build_plugin(toolchain: &Toolchain, options: &BuildOptions) -> Result<PathBuf> {
    if options.sources.is_empty() {
        bail!("no C sources given");
    }
    let gen_dir = options.work_dir.join("gen");
    write_bindings(&options.wit, &gen_dir)?;
    write_sdk(&gen_dir)?;
    let core = options.work_dir.join("core.wasm");

    let mut command = Command::new(&toolchain.clang);
    command
        .args(toolchain.cflags())
        .arg(format!("-O{}", options.opt_level))
        .args(["-Wall", "-Wextra", "-Werror=implicit-function-declaration"])
        .arg("-I")
        .arg(&gen_dir);
    for dir in &options.include_dirs {
        command.arg("-I").arg(dir);
    }
    command
        .args(&options.extra_flags)
        .args(toolchain.ldflags())
        .arg(gen_dir.join("osiiso.c"))
        .arg(gen_dir.join("plugin.c"))
        .args(&options.sources)
        .arg("-o")
        .arg(&core);
    let output = command
        .output()
        .with_context(|| format!("running {}", toolchain.clang.display()))?;
    if !output.status.success() {
        bail!(
            "clang failed ({}):\n{:?}\n{}{}",
            output.status,
            command,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Warnings are worth seeing even when the build succeeds.
    if !output.stderr.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
    }

    let bytes = fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
    let component = componentize(&bytes, &options.wit)
        .with_context(|| format!("componentizing {}", core.display()))?;
    if let Some(parent) = options.output.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(&options.output, component)
        .with_context(|| format!("writing {}", options.output.display()))?;
    Ok(options.output.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_generate_from_the_builtin_wit() {
        let dir = std::env::temp_dir().join(format!("osiiso-c-test-{}", std::process::id()));
        let files = write_bindings(&Wit::Builtin, &dir).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert!(names.contains(&"plugin.h".to_owned()), "{names:?}");
        assert!(names.contains(&"plugin.c".to_owned()), "{names:?}");
        let header = fs::read_to_string(dir.join("plugin.h")).unwrap();
        assert!(
            header.contains("exports_osiiso_task_tasks_invoke"),
            "{header}"
        );
        fs::remove_dir_all(dir).ok();
    }
}
