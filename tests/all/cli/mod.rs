//! CLI tests: the real `osiiso-host` binary on real plugins (README.md, "CLI reference").
//!
//! Every test runs the binary as a subprocess and asserts on its exit status, its JSON output
//! (the documented result object) and its messages on stderr.

mod cache;
mod jobs;
mod limits;
mod list;
mod progress;
mod queue;
mod results;
mod usage;
