//! `osiiso-host list PLUGIN [--json]`.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use clap::Args;
use osiiso_host::Plugin;
use osiiso_host::text::escape_control;

use super::Failure;
use super::options::{CacheArgs, LimitArgs};

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// The plugin component (.wasm); a precompiled artifact needs --allow-precompiled.
    plugin: PathBuf,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

pub(crate) fn run(args: ListArgs) -> Result<(), Failure> {
    let host = args.cache.host(4, args.limits.fuel.is_some())?;
    let plugin = args.limits.load(&host, &args.plugin)?;
    if plugin.tasks().is_empty() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "plugin '{}' has no tasks at all (its task list is empty)",
            args.plugin.display()
        )));
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, plugin.tasks())
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_table(&mut out, &plugin)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::BrokenPipe),
        Err(e) => Err(Failure::Output(format!("cannot write to stdout: {e}"))),
    }
}

/// Names and descriptions come from the plugin: control characters are escaped, so that a
/// plugin cannot act on the terminal that lists it.
fn write_table(out: &mut impl Write, plugin: &Plugin) -> io::Result<()> {
    let names: Vec<String> = plugin
        .tasks()
        .iter()
        .map(|t| escape_control(&t.name).into_owned())
        .collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (task, name) in plugin.tasks().iter().zip(&names) {
        // A typed task shows its WIT signature first, and why it cannot run if it cannot.
        let mut lines: Vec<String> = task.signature.iter().cloned().collect();
        lines.extend(task.description.lines().map(str::to_string));
        if let Some(reason) = &task.not_runnable {
            lines.push(format!("not runnable: {reason}"));
        }
        let mut lines = lines.iter();
        writeln!(
            out,
            "{name:width$}  {}",
            escape_control(lines.next().map_or("", String::as_str))
        )?;
        for line in lines {
            writeln!(out, "{:width$}  {}", "", escape_control(line))?;
        }
        let mut extras = Vec::new();
        if !task.aliases.is_empty() {
            let aliases: Vec<String> = task
                .aliases
                .iter()
                .map(|a| escape_control(a).into_owned())
                .collect();
            extras.push(format!("also: {}", aliases.join(", ")));
        }
        if let Some(schema) = &task.input_schema {
            extras.push(format!("input: {}", escape_control(&schema.to_string())));
        }
        if let Some(retries) = task.retries {
            extras.push(format!("retries: {retries}"));
        }
        if let Some(timeout) = task.timeout {
            extras.push(format!("timeout: {}s", timeout.as_secs_f64()));
        }
        if !extras.is_empty() {
            writeln!(out, "{:width$}  ({})", "", extras.join(", "))?;
        }
    }
    Ok(())
}
