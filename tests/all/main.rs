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
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "nats")]
mod nats_cluster;
#[cfg(feature = "nats")]
mod nats_fixture;
#[cfg(feature = "nats")]
mod nats_runs;
#[cfg(feature = "nats")]
mod nats_service;
#[cfg(feature = "nats")]
mod nats_trust;
mod process_faults;
mod queue_races;
mod scenarios;
mod security;
