//! The osiiso-host integration tests: one binary, a module per concern.

mod support;

mod async_queue;
mod checkpoint;
mod cli;
mod compile_tiers;
mod engine_cache;
mod engine_load;
mod foreign_components;
mod foreign_guests;
mod fresh_isolation;
mod hostile;
mod hostile_files;
mod http;
mod jobs;
mod key_order;
mod long_runs;
mod memory;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "nats")]
mod nats_cluster;
#[cfg(feature = "nats")]
mod nats_fixture;
#[cfg(feature = "nats")]
mod nats_observe;
#[cfg(feature = "nats")]
mod nats_runs;
#[cfg(feature = "nats")]
mod nats_service;
#[cfg(feature = "nats")]
mod nats_trust;
mod observe;
mod process_batching;
mod process_faults;
mod programs;
mod queue_races;
mod sandbox_limits;
mod scenarios;
mod security;
mod typed_tasks;
