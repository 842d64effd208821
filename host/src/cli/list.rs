//! `osiiso-host list PLUGIN [--json]`.

use std::path::PathBuf;

use clap::Args;

use super::Failure;
use super::options::CacheArgs;

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// The plugin component (.wasm) or a precompiled artifact.
    plugin: PathBuf,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

pub(crate) fn run(args: ListArgs) -> Result<(), Failure> {
    let host = args.cache.host(4)?;
    let plugin = host.load(&args.plugin)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(plugin.tasks())?);
        return Ok(());
    }
    let width = plugin
        .tasks()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0);
    for task in plugin.tasks() {
        let mut lines = task.description.lines();
        println!("{:width$}  {}", task.name, lines.next().unwrap_or(""));
        for line in lines {
            println!("{:width$}  {line}", "");
        }
        let mut extras = Vec::new();
        if let Some(schema) = &task.input_schema {
            extras.push(format!("input: {schema}"));
        }
        if let Some(retries) = task.retries {
            extras.push(format!("retries: {retries}"));
        }
        if let Some(timeout) = task.timeout {
            extras.push(format!("timeout: {}s", timeout.as_secs_f64()));
        }
        if !extras.is_empty() {
            println!("{:width$}  ({})", "", extras.join(", "));
        }
    }
    Ok(())
}
