//! Blocking WASI waits that a deadline or a cancellation can end (SEMANTICS.md §10.1).
//!
//! Epochs cannot preempt a host call. In the sync linker, a guest that sleeps or waits on a
//! pollable blocks its worker thread inside `wasi:io/poll`, where no epoch check runs. These
//! replacements of `poll` and `pollable.block` race the wait against the attempt's control,
//! checked every [`CHECK_EVERY`], and end the call with the same interruption the epoch
//! callback raises. (The async linker needs none of this: its attempt future is dropped.)

use std::future::Future;
use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi::runtime::in_tokio;

use super::attempt::{AttemptControl, AttemptState};

/// How often a blocked call looks at the control; well under the smallest sensible `poll`.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// The `wasi:io/poll` interface the sync WASI linker defines (the version of wasmtime-wasi's
/// WIT; guests importing an older 0.2 version are served by semver matching).
const POLL_INTERFACE: &str = "wasi:io/poll@0.2.12";

/// Replaces the blocking functions of `wasi:io/poll` in a sync linker that already has WASI.
pub(crate) fn shadow_blocking_poll(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL_INTERFACE)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, AttemptState>,
         (pollables,): (Vec<Resource<DynPollable>>,)| {
            let control = store.data().control.clone();
            let table = store.data_mut().ctx().table;
            until_stopped(&control, table.poll(pollables)).map(|ready| (ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, AttemptState>, (pollable,): (Resource<DynPollable>,)| {
            let control = store.data().control.clone();
            let table = store.data_mut().ctx().table;
            until_stopped(&control, table.block(pollable))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs `wait` on wasmtime-wasi's runtime until it ends or the attempt must stop.
fn until_stopped<T>(
    control: &AttemptControl,
    wait: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    in_tokio(async {
        tokio::select! {
            result = wait => result,
            interrupt = stopped(control) => Err(wasmtime::Error::new(interrupt)),
        }
    })
}

async fn stopped(control: &AttemptControl) -> super::attempt::Interrupt {
    loop {
        if let Some(interrupt) = control.interrupt() {
            return interrupt;
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
