//! `osiiso-host compile PLUGIN [-o OUT]`.

use std::path::PathBuf;

use clap::Args;

use super::Failure;
use super::options::CacheArgs;

#[derive(Args, Debug)]
pub(crate) struct CompileArgs {
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// Write the precompiled artifact here instead of into the compile cache.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    #[command(flatten)]
    cache: CacheArgs,
}

pub(crate) fn run(args: CompileArgs) -> Result<(), Failure> {
    let host = args.cache.host(4)?;
    let written = host.precompile(&args.plugin, args.output.as_deref())?;
    println!("{}", written.display());
    Ok(())
}
