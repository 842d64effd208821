//! Argument parsing, logging set-up and exit codes (README.md, "CLI reference"): 0 when every task
//! succeeded, 1 when any failed, was cancelled or the run timed out, 2 for usage errors and
//! plugins that cannot be loaded (and a NATS server that cannot be reached).

mod compile;
mod feed;
mod http;
mod jobs;
mod lines;
mod list;
#[cfg(feature = "nats")]
mod nodes;
mod options;
mod output;
mod progress;
mod progress_lines;
mod rows;
mod run;
#[cfg(feature = "nats")]
mod serve;
mod signals;
mod spill;
mod validate;
mod work;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run WebAssembly component tasks under a real task queue.
#[derive(Parser, Debug)]
#[command(name = "osiiso-host", version, about, propagate_version = true)]
struct Cli {
    /// More log output on stderr. By default guest logs at info and above and host warnings
    /// show; -v adds guest and host debug lines; -vv their trace lines and other crates'
    /// info; -vvv everything. `RUST_LOG` overrides (targets: `osiiso::guest`
    /// for guest logs, `osiiso_host` for the host).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a plugin's task on one or many inputs through a queue.
    Run(Box<run::RunArgs>),
    /// List a plugin's tasks: names, descriptions, input schemas, suggested defaults.
    List(list::ListArgs),
    /// Precompile a plugin into the compile cache (or a file).
    Compile(compile::CompileArgs),
    /// Serve as a node of NATS queues: run attempts that submitters queue on the broker.
    #[cfg(feature = "nats")]
    Serve(serve::ServeArgs),
    /// List the nodes alive on a NATS broker.
    #[cfg(feature = "nats")]
    Nodes(nodes::NodesArgs),
    /// Serve as a ProcessQueue worker on stdin/stdout (started by the host itself).
    #[command(hide = true)]
    Worker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// How a command failed.
pub(crate) enum Failure {
    /// Bad usage or an unloadable plugin: exit 2.
    Usage(anyhow::Error),
    /// Some task did not succeed: exit 1 (results were already reported).
    Tasks,
    /// Results could not be written (a full disk, a closed descriptor): exit 1 with the
    /// error.
    Output(String),
    /// The reader of stdout went away: exit 141 (as if killed by `SIGPIPE`), quietly.
    BrokenPipe,
    /// A signal stopped the run gracefully: exit 128 + the signal (130, 143).
    Interrupted(u8),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self::Usage(error.into())
    }
}

pub(crate) fn main() -> ExitCode {
    // Started as a compile process by a host (this one, or an embedder's)?
    osiiso_host::maybe_run_compiler();
    let cli = Cli::parse();
    if let Command::Worker { args } = &cli.command {
        // A worker's logs travel to its parent's subscriber; it installs its own.
        return match osiiso_host::WorkerOptions::from_args(args) {
            Ok(options) => ExitCode::from(osiiso_host::run_worker(options) as u8),
            Err(message) => {
                report_error(&format!("worker: {message}"));
                ExitCode::from(2)
            }
        };
    }
    // A node logs what it runs; other commands show guest logs and host warnings.
    #[cfg(feature = "nats")]
    let quiet = !matches!(cli.command, Command::Serve(_));
    #[cfg(not(feature = "nats"))]
    let quiet = true;
    init_tracing(cli.verbose, quiet);
    let outcome = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::List(args) => list::run(args),
        Command::Compile(args) => compile::run(args),
        #[cfg(feature = "nats")]
        Command::Serve(args) => serve::run(args),
        #[cfg(feature = "nats")]
        Command::Nodes(args) => nodes::run(args),
        Command::Worker { .. } => unreachable!("served above"),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Tasks) => ExitCode::from(1),
        Err(Failure::BrokenPipe) => ExitCode::from(141),
        Err(Failure::Interrupted(code)) => ExitCode::from(code),
        Err(Failure::Output(message)) => {
            report_error(&message);
            ExitCode::from(1)
        }
        Err(Failure::Usage(error)) => {
            report_error(&describe(&error));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, joined by `: `, without a cause whose text is already in the
/// message: many error types (io errors wrapped by libraries, say) print their cause in
/// their own message and hand it out as their source too.
fn describe(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// Prints `error: …` on stderr. Messages can quote guest text (task names, schemas), so
/// whatever acts on a terminal is escaped — once: text the message already quotes escaped
/// keeps its single backslashes. A failed write to stderr has nowhere to be reported.
fn report_error(message: &str) {
    let message = osiiso_host::text::escape_terminal_keep_newlines(message);
    let _ = writeln!(std::io::stderr(), "error: {message}");
}

fn init_tracing(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    // wasmtime-wasi-http warns on every failed connection; the task's error says so.
    let default = match verbose {
        0 if quiet => "warn,osiiso::guest=info,wasmtime_wasi_http=error",
        // A node logs what it runs.
        0 => "warn,osiiso::guest=info,osiiso_host=info,wasmtime_wasi_http=error",
        1 => "warn,osiiso::guest=debug,osiiso_host=debug,wasmtime_wasi_http=error",
        2 => "info,osiiso::guest=trace,osiiso_host=trace",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(verbose > 1)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::describe;

    /// An error that prints its cause and also hands it out as its source.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read 'x.wasm': {source}")]
    struct Repeats {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let error = anyhow::Error::new(Repeats { source: io() });
        assert_eq!(describe(&error), format!("cannot read 'x.wasm': {}", io()));
        let error = anyhow::Error::new(io()).context("loading the plugin");
        assert_eq!(describe(&error), format!("loading the plugin: {}", io()));
    }
}
