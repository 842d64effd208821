//! `osiiso-host nodes --nats URL [--json]`: the nodes alive on a broker.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use osiiso_host::backend::{DEFAULT_NATS_URL, NodeInfo, live_nodes};
use osiiso_host::text::{escape_control, for_display};

use super::Failure;

#[derive(Args, Debug)]
pub(crate) struct NodesArgs {
    /// The NATS server (with JetStream): a URL, or the comma-separated URLs of one cluster's
    /// servers; repeatable.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        env = "OSIISO_NATS_URL",
        default_value = DEFAULT_NATS_URL
    )]
    nats: Vec<String>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: NodesArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the runtime: {e}"))?;
    let nodes = runtime.block_on(live_nodes(&args.nats.join(","), Duration::from_secs(3)))?;
    let mut out = BufWriter::new(io::stdout().lock());
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &nodes)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_table(&mut out, &nodes)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::BrokenPipe),
        Err(e) => Err(Failure::Output(format!("cannot write to stdout: {e}"))),
    }
}

/// One row per node. Everything in a node entry was written by whoever can reach the
/// broker, so every field is bounded and escaped.
fn write_table(out: &mut impl Write, nodes: &[NodeInfo]) -> io::Result<()> {
    if nodes.is_empty() {
        eprintln!("no live nodes");
        return Ok(());
    }
    writeln!(
        out,
        "{:<26} {:<24} {:>5} {:>7}  CACHED",
        "ID", "HOST", "SLOTS", "RUNNING"
    )?;
    for node in nodes {
        // `name@hash` (the hash cut to 12 digits, as git shortens commits).
        let cached: Vec<String> = node
            .cached
            .iter()
            .take(16)
            .map(|plugin| {
                let hash: String = plugin.hash.chars().take(12).collect();
                format!(
                    "{}@{}",
                    for_display(&plugin.name, 40),
                    escape_control(&hash)
                )
            })
            .collect();
        writeln!(
            out,
            "{:<26} {:<24} {:>5} {:>7}  {}",
            for_display(&node.id, 32),
            for_display(&node.host, 64),
            node.slots,
            node.running,
            if cached.is_empty() {
                "-".to_string()
            } else {
                cached.join(" ")
            }
        )?;
    }
    Ok(())
}
