//! The compile process's side: `<binary> --osiiso-compile ARGS`, started by
//! [`child`](super::child) under the compile limits. It reads one component on stdin,
//! compiles it with the engine settings it was given, writes one [`Reply`] on stdout and exits.
//! It runs no guest code, opens no file and reads no environment.

use std::io::{BufWriter, Read, Write};

use super::reply::Reply;
use crate::engine::config::CompileTier;
use crate::engine::{cache, config};

/// What the parent asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServeArgs {
    /// The cache fingerprint the parent's engine has; another one means another build.
    pub(super) fingerprint: String,
    /// The parent's `address_space_cap`, which shapes compiled code.
    pub(super) address_space_cap: Option<u64>,
    /// Whether the parent's engine meters fuel, which shapes compiled code too.
    pub(super) fuel: bool,
    /// The parent's compiler.
    pub(super) tier: CompileTier,
    /// The most bytes read on stdin: for one compilation, the size of its input, which the
    /// compile process reserves at once (a buffer grown while reading would need up to twice
    /// as much memory).
    pub(super) max_input: u64,
}

impl ServeArgs {
    pub(super) fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--fingerprint".to_string(),
            self.fingerprint.clone(),
            "--max-input".to_string(),
            self.max_input.to_string(),
        ];
        if let Some(cap) = self.address_space_cap {
            args.push("--address-space-cap".into());
            args.push(cap.to_string());
        }
        if !self.fuel {
            args.push("--no-fuel".into());
        }
        if self.tier == CompileTier::Baseline {
            args.push("--baseline".into());
        }
        args
    }

    pub(super) fn parse(args: &[String]) -> Result<Self, String> {
        let mut parsed = Self {
            fingerprint: String::new(),
            address_space_cap: None,
            fuel: true,
            tier: CompileTier::Optimized,
            max_input: 0,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--fingerprint" => parsed.fingerprint = value()?.clone(),
                "--max-input" => {
                    parsed.max_input = value()?.parse().map_err(|_| "bad --max-input")?;
                }
                "--no-fuel" => parsed.fuel = false,
                "--baseline" => parsed.tier = CompileTier::Baseline,
                "--address-space-cap" => {
                    parsed.address_space_cap =
                        Some(value()?.parse().map_err(|_| "bad --address-space-cap")?);
                }
                other => return Err(format!("unknown compile argument '{other}'")),
            }
        }
        Ok(parsed)
    }
}

/// Serves one compile request; returns the exit code (0 whenever a reply was written).
pub(crate) fn serve(args: &[String]) -> i32 {
    close_inherited_descriptors();
    let reply = match ServeArgs::parse(args) {
        Ok(args) => compile(&args),
        Err(message) => Reply::Failed(message),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    match reply.write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(_) => 3,
    }
}

fn compile(args: &ServeArgs) -> Reply {
    let mut wasm = Vec::new();
    let out_of_memory = || std::io::Error::from(std::io::ErrorKind::OutOfMemory);
    let read = usize::try_from(args.max_input)
        .map_err(|_| out_of_memory())
        .and_then(|len| wasm.try_reserve_exact(len).map_err(|_| out_of_memory()))
        .and_then(|()| {
            std::io::stdin()
                .lock()
                .take(args.max_input.saturating_add(1))
                .read_to_end(&mut wasm)
        });
    if let Err(error) = read {
        if error.kind() == std::io::ErrorKind::OutOfMemory {
            // What the parent reads as the compile memory limit (as an allocation that
            // fails inside the compiler would say).
            eprintln!(
                "out of memory reading the plugin ({} bytes)",
                args.max_input
            );
            std::process::exit(1);
        }
        return Reply::Failed(format!("cannot read the plugin: {error}"));
    }
    if wasm.len() as u64 > args.max_input {
        return Reply::Failed(format!(
            "the plugin is larger than the {} bytes announced",
            args.max_input
        ));
    }
    let engine = match config::compile_engine(args.address_space_cap, args.fuel, args.tier) {
        Ok(engine) => engine,
        Err(error) => return Reply::Failed(format!("cannot create the engine: {error:#}")),
    };
    let fingerprint = cache::engine_fingerprint(&engine);
    if fingerprint != args.fingerprint {
        return Reply::Incompatible(format!(
            "its engine fingerprint is {fingerprint}, the host's is {}",
            args.fingerprint
        ));
    }
    let component = match super::component_of(&wasm) {
        Ok(component) => component,
        Err(message) => return Reply::Unadaptable(message),
    };
    match engine.precompile_component(&component) {
        Ok(artifact) => Reply::Artifact(artifact),
        Err(error) => Reply::Invalid(format!("{error:#}")),
    }
}

/// Closes every descriptor above stderr that this process inherited without close-on-exec
/// (a careless library in the parent, say): the compiler needs none of them.
fn close_inherited_descriptors() {
    // SAFETY: close_range on descriptors this process does not use; nothing else runs yet.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } == 0;
    if closed {
        return;
    }
    // Kernels before 5.9: close what /proc lists.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above; the directory's own descriptor is already closed.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        for args in [
            ServeArgs {
                fingerprint: "0123abcd".into(),
                address_space_cap: None,
                fuel: true,
                tier: CompileTier::Optimized,
                max_input: 256 << 20,
            },
            ServeArgs {
                fingerprint: "ff".into(),
                address_space_cap: Some(1 << 30),
                fuel: false,
                tier: CompileTier::Baseline,
                max_input: 1,
            },
        ] {
            assert_eq!(ServeArgs::parse(&args.to_args()).unwrap(), args);
        }
        assert!(ServeArgs::parse(&["--max-input".into()]).is_err());
        assert!(ServeArgs::parse(&["--nonsense".into()]).is_err());
    }
}
