//! `osiiso-c`: build osiiso-host plugins written in C. See `guest-sdk/c/README.md`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use osiiso_c::{BuildOptions, Toolchain, Wit};

const USAGE: &str = "\
osiiso-c: build osiiso-host plugins written in C

usage:
  osiiso-c build -o OUT.wasm [--wit PATH] [--work DIR (keep scratch files)] [-I DIR]... [-O LEVEL] SOURCE.c... [-- CLANG_FLAGS...]
        bindings + SDK + clang (wasm32-wasi, wasi-libc) + component with the preview-1 adapter
  osiiso-c bindings [--wit PATH] DIR        write the wit-bindgen C bindings (plugin.h, plugin.c)
  osiiso-c sdk DIR                          write the C SDK (osiiso.h, osiiso.c)
  osiiso-c cflags                           print the clang flags (one per line) for wasm32-wasi
  osiiso-c ldflags                          print the clang link flags (one per line)
  osiiso-c componentize [--wit PATH] CORE.wasm -o OUT.wasm
        embed the plugin world and adapt a preview-1 core module into a component
  osiiso-c adapter OUT.wasm                 write the WASI preview-1 reactor adapter (wasmtime 48.0.8)

--wit defaults to the osiiso:task contract compiled into this tool.
Environment: OSIISO_CLANG (default clang), WASI_SYSROOT (default: Debian's /usr).
";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("osiiso-c: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Options shared by the subcommands, parsed by hand (this tool has no other dependency
/// worth its compile time).
#[derive(Default)]
struct Args {
    output: Option<PathBuf>,
    wit: Wit,
    work: Option<PathBuf>,
    include_dirs: Vec<PathBuf>,
    opt_level: Option<String>,
    positional: Vec<PathBuf>,
    passthrough: Vec<OsString>,
}

fn parse(args: Vec<OsString>) -> Result<Args> {
    let mut parsed = Args::default();
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy().into_owned();
        let mut value = |flag: &str| {
            iter.next()
                .map(PathBuf::from)
                .with_context(|| format!("{flag} needs a value"))
        };
        match text.as_str() {
            "--" => {
                parsed.passthrough.extend(iter.by_ref());
                break;
            }
            "-o" | "--output" => parsed.output = Some(value(&text)?),
            "--wit" => parsed.wit = Wit::Path(value(&text)?),
            "--work" => parsed.work = Some(value(&text)?),
            "-I" => parsed.include_dirs.push(value(&text)?),
            "-O" => parsed.opt_level = Some(value(&text)?.to_string_lossy().into_owned()),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ if text.starts_with("-I") && text.len() > 2 => {
                parsed.include_dirs.push(PathBuf::from(&text[2..]))
            }
            _ if text.starts_with("-O") && text.len() > 2 => {
                parsed.opt_level = Some(text[2..].to_owned())
            }
            _ if text.starts_with('-') => bail!("unknown option {text}\n\n{USAGE}"),
            _ => parsed.positional.push(PathBuf::from(arg)),
        }
    }
    Ok(parsed)
}

fn print_flags(flags: Vec<OsString>) {
    for flag in flags {
        println!("{}", flag.to_string_lossy());
    }
}

fn run(mut args: Vec<OsString>) -> Result<()> {
    if args.is_empty() {
        print!("{USAGE}");
        bail!("no subcommand");
    }
    let command = args.remove(0).to_string_lossy().into_owned();
    let args = parse(args)?;
    match command.as_str() {
        "build" => {
            let output = args.output.context("build needs -o OUT.wasm")?;
            // Scratch files go to a temporary directory removed afterwards, unless `--work`
            // asks to keep them.
            let scratch = match &args.work {
                Some(_) => None,
                None => Some(tempfile::tempdir().context("creating a scratch directory")?),
            };
            let work = match (&args.work, &scratch) {
                (Some(dir), _) => dir.clone(),
                (None, Some(dir)) => dir.path().to_path_buf(),
                (None, None) => unreachable!("a scratch directory exists without --work"),
            };
            let mut options = BuildOptions::new(args.positional, &output, work);
            options.wit = args.wit;
            options.include_dirs = args.include_dirs;
            options.extra_flags = args.passthrough;
            if let Some(level) = args.opt_level {
                options.opt_level = level;
            }
            let toolchain = Toolchain::detect()?;
            osiiso_c::build_plugin(&toolchain, &options)?;
            eprintln!("osiiso-c: wrote {}", output.display());
        }
        "bindings" => {
            let [dir] = &args.positional[..] else {
                bail!("bindings needs exactly one output directory");
            };
            for path in osiiso_c::write_bindings(&args.wit, dir)? {
                eprintln!("osiiso-c: wrote {}", path.display());
            }
        }
        "sdk" => {
            let [dir] = &args.positional[..] else {
                bail!("sdk needs exactly one output directory");
            };
            osiiso_c::write_sdk(dir)?;
        }
        "cflags" => print_flags(Toolchain::detect()?.cflags()),
        "ldflags" => print_flags(Toolchain::detect()?.ldflags()),
        "componentize" => {
            let [core] = &args.positional[..] else {
                bail!("componentize needs exactly one core module");
            };
            let output = args.output.context("componentize needs -o OUT.wasm")?;
            let bytes =
                std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
            let component = osiiso_c::componentize(&bytes, &args.wit)?;
            std::fs::write(&output, component)
                .with_context(|| format!("writing {}", output.display()))?;
        }
        "adapter" => {
            let [out] = &args.positional[..] else {
                bail!("adapter needs exactly one output path");
            };
            std::fs::write(out, osiiso_c::ADAPTER)
                .with_context(|| format!("writing {}", out.display()))?;
        }
        other => bail!("unknown subcommand {other}\n\n{USAGE}"),
    }
    Ok(())
}
