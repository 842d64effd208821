//! `osiiso-host compile PLUGIN [-o OUT]`.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::Failure;
use super::options::CacheArgs;

#[derive(Args, Debug)]
pub(crate) struct CompileArgs {
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// Write the precompiled artifact here instead of into the compile cache. Only a
    /// regular file is replaced; loading the artifact later needs --allow-precompiled.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Compile fuel-metered code: what `run` uses with --fuel or --queue async (by
    /// default, the code of the other runs).
    #[arg(long)]
    fuel: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

pub(crate) fn run(args: CompileArgs) -> Result<(), Failure> {
    let host = args.cache.host(4, args.fuel)?;
    let written = host.precompile(&args.plugin, args.output.as_deref())?;
    writeln!(std::io::stdout(), "{}", written.display()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Output(format!("cannot write to stdout: {e}"))
        }
    })
}
