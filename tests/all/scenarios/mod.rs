//! The scenario matrix: every rule of docs/queues.md as a generic scenario, instantiated for
//! each backend by `scenarios!`. A new backend adds one line at the bottom.
//!
//! WASM tasks are used wherever possible; native closures only where a scenario needs a
//! precise hook (`native_scenarios!`, for backends that accept closures).

mod ending;
mod lifecycle;
mod native;
mod order;
mod results;
mod retries;

use std::time::{Duration, Instant};

use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{Queue, QueueBuilder, Workers};
use osiiso_host::{Task, TaskCall};
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

// The scenarios, by topic; the macros below call them as `super::<name>`.
use self::ending::*;
use self::lifecycle::*;
use self::native::*;
use self::order::*;
use self::results::*;
use self::retries::*;
use crate::support::load;

fn flaky_task(name: &str) -> Task {
    load(artifacts::SCENARIO_FLAKY).task(name).unwrap()
}

/// A guest that runs until the host stops it.
fn grind() -> Task {
    load(artifacts::HOSTILE_IGNORES_CANCEL)
        .task("grind")
        .unwrap()
}

fn noop(value: Value) -> TaskCall {
    flaky_task("noop").with_input(value)
}

fn flaky(succeed_on: u32) -> TaskCall {
    flaky_task("flaky").with_input(json!({"succeed_on": succeed_on, "value": "ok"}))
}

/// How the scenarios build a queue of each backend.
pub trait TestKind: Backend + Sized {
    fn builder() -> QueueBuilder<Self>;
}

impl TestKind for osiiso_host::backend::Thread {
    fn builder() -> QueueBuilder<Self> {
        Queue::builder()
    }
}

impl TestKind for osiiso_host::backend::Process {
    fn builder() -> QueueBuilder<Self> {
        Queue::builder()
    }
}

/// NATS queues reach the shared fleet (a server and two nodes), if there is one.
#[cfg(feature = "nats")]
impl TestKind for osiiso_host::backend::Nats {
    fn builder() -> QueueBuilder<Self> {
        let fleet = crate::nats_fixture::shared_fleet().expect("the scenario checks the fleet");
        Queue::builder().nats(fleet.url())
    }
}

/// Async queues bind this runtime; the scenario code itself stays plain and blocking.
impl TestKind for osiiso_host::backend::Async {
    fn builder() -> QueueBuilder<Self> {
        static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        let runtime = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        });
        Queue::builder().runtime(runtime.handle().clone())
    }
}

fn one_worker<K: TestKind>() -> QueueBuilder<K> {
    K::builder().workers(Workers::Fixed(1))
}

/// Waits (bounded) until `f` holds; a scenario helper, never a timing assertion.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

macro_rules! scenarios {
    ($backend:ident: $kind:ty; $($scenario:ident),* $(,)?) => {
        scenarios!($backend: $kind, if true; $($scenario),*);
    };
    ($backend:ident: $kind:ty, if $guard:expr; $($scenario:ident),* $(,)?) => {
        mod $backend {
            /// A backend that needs a service runs only where it is available.
            fn available() -> bool {
                $guard
            }
            $(
                #[test]
                fn $scenario() {
                    if available() {
                        super::$scenario::<$kind>();
                    }
                }
            )*
        }
    };
}

/// Scenarios every backend runs.
macro_rules! wasm_scenarios {
    ($backend:ident: $kind:ty $(, if $guard:expr)?) => {
        scenarios!($backend: $kind $(, if $guard)?;
            priority_order_fifo_ties,
            retry_sequence_and_hook_order,
            retries_exhausted_and_permanent_never_retried,
            suggested_options_apply_unless_chosen,
            timeouts_are_retried_and_really_stop,
            sleeping_guests_stop_at_the_deadline_and_on_cancel,
            fail_first_spares_must_complete,
            run_timeout_complete_priority,
            run_timeout_cancel_spares_nothing,
            rate_limit_spaces_attempts,
            delayed_tasks_hold_no_worker,
            cancel_in_every_location,
            summary_window_is_a_cursor,
            detached_tasks_are_left_out_of_summaries,
            map_groups_and_completion_order,
            lifecycle_shutdown_reset_strict,
            drop_with_outstanding_cancels_everything,
            every_task_gets_exactly_one_result,
            auto_workers_scale_with_work,
            validation_messages,
        );
    };
}

/// Scenarios for backends that accept native closures.
macro_rules! native_scenarios {
    ($backend:ident: $kind:ty) => {
        scenarios!($backend: $kind;
            closure_panics_fail_the_task_not_the_worker,
            hook_panics_are_contained,
            native_timeout_abandons_the_closure,
            backoff_pauses_grow,
        );
    };
}

/// Scenarios for the blocking queues (Thread, Process): bounded submit blocks.
macro_rules! sync_scenarios {
    ($backend:ident: $kind:ty $(, if $guard:expr)?) => {
        scenarios!($backend: $kind $(, if $guard)?;
            bounded_size_blocks_and_closes,
        );
    };
}

wasm_scenarios!(thread: osiiso_host::backend::Thread);
native_scenarios!(thread_native: osiiso_host::backend::Thread);
sync_scenarios!(thread_sync: osiiso_host::backend::Thread);
wasm_scenarios!(process: osiiso_host::backend::Process);
sync_scenarios!(process_sync: osiiso_host::backend::Process);
wasm_scenarios!(asynchronous: osiiso_host::backend::Async);
native_scenarios!(asynchronous_native: osiiso_host::backend::Async);
#[cfg(feature = "nats")]
wasm_scenarios!(nats: osiiso_host::backend::Nats, if crate::nats_fixture::shared_fleet().is_some());
#[cfg(feature = "nats")]
sync_scenarios!(nats_sync: osiiso_host::backend::Nats, if crate::nats_fixture::shared_fleet().is_some());
