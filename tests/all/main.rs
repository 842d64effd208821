//! The osiiso-host integration tests: one binary, a module per concern.

mod support;

mod async_queue;
mod checkpoint;
mod cli;
mod engine_cache;
mod engine_load;
mod foreign_guests;
mod hostile;
mod http;
mod long_runs;
mod memory;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "nats")]
mod nats_fixture;
mod process_faults;
mod queue_races;
mod scenarios;
mod security;
