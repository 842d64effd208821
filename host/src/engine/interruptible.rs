//! Blocking WASI waits that a deadline or a cancellation can end (docs/queues.md §10.1).
//!
//! Epochs cannot preempt a host call. In the sync linker, a guest that sleeps, waits on a
//! pollable or reads a slow stream (an HTTP body) blocks its worker thread inside
//! `wasi:io/poll` or a `blocking-*` method of `wasi:io/streams`, where no epoch check runs.
//! These replacements race the wait against the attempt's control, checked every
//! [`CHECK_EVERY`], and end the call with the same interruption the epoch callback raises.
//! (The async linker needs none of this: its attempt future is dropped.)
//!
//! The interface versions must be the ones wasmtime-wasi defines, or these would be added
//! beside the originals instead of replacing them; the sleeping-guest scenario of the test
//! suite hangs if that happens.

use std::future::Future;
use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi::p2::bindings::io::streams::{
    Host as StreamsHost, HostInputStream, HostOutputStream,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamResult};
use wasmtime_wasi::runtime::in_tokio;

use super::store::AttemptState;
use crate::attempt::{AttemptControl, StopReason};

/// How often a blocked call looks at the control; well under the smallest sensible `poll`.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// The interfaces the sync WASI linker defines (the version of wasmtime-wasi's WIT; guests
/// importing an older 0.2 version are served by semver matching).
const POLL_INTERFACE: &str = "wasi:io/poll@0.2.12";
const STREAMS_INTERFACE: &str = "wasi:io/streams@0.2.12";

/// Replaces the blocking functions of `wasi:io` in a sync linker that already has WASI.
pub(crate) fn shadow_blocking_io(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    shadow_poll(linker)?;
    shadow_streams(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn shadow_poll(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
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
    Ok(())
}

/// Defines `name` as a blocking stream method: `$method` of the async host trait, run until
/// it ends or the attempt must stop, its stream error converted for the guest.
macro_rules! blocking_stream_method {
    ($instance:expr, $name:literal, $host:ident::$method:ident($this:ty $(, $arg:ident: $ty:ty)*) -> $ok:ty) => {
        $instance.func_wrap(
            $name,
            |mut store: StoreContextMut<'_, AttemptState>, (this, $($arg,)*): ($this, $($ty,)*)| {
                let control = store.data().control.clone();
                let table = store.data_mut().ctx().table;
                let result: StreamResult<$ok> =
                    until_stopped(&control, async { Ok($host::$method(table, this, $($arg),*).await) })?;
                let result = match result {
                    Ok(value) => Ok(value),
                    Err(error) => Err(StreamsHost::convert_stream_error(table, error)?),
                };
                Ok((result,))
            },
        )
    };
}

fn shadow_streams(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    let mut streams = linker.instance(STREAMS_INTERFACE)?;
    blocking_stream_method!(streams, "[method]input-stream.blocking-read",
        HostInputStream::blocking_read(Resource<DynInputStream>, len: u64) -> Vec<u8>)?;
    blocking_stream_method!(streams, "[method]input-stream.blocking-skip",
        HostInputStream::blocking_skip(Resource<DynInputStream>, len: u64) -> u64)?;
    blocking_stream_method!(streams, "[method]output-stream.blocking-write-and-flush",
        HostOutputStream::blocking_write_and_flush(Resource<DynOutputStream>, bytes: Vec<u8>) -> ())?;
    blocking_stream_method!(streams, "[method]output-stream.blocking-write-zeroes-and-flush",
        HostOutputStream::blocking_write_zeroes_and_flush(Resource<DynOutputStream>, len: u64) -> ())?;
    blocking_stream_method!(
        streams,
        "[method]output-stream.blocking-flush",
        HostOutputStream::blocking_flush(Resource<DynOutputStream>) -> ()
    )?;
    blocking_stream_method!(streams, "[method]output-stream.blocking-splice",
        HostOutputStream::blocking_splice(Resource<DynOutputStream>, src: Resource<DynInputStream>, len: u64) -> u64)?;
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

/// Polled rather than awaited: a worker process's cancellation arrives through the
/// control's watch, which only a check reads.
async fn stopped(control: &AttemptControl) -> StopReason {
    loop {
        if let Some(reason) = control.stop_reason() {
            return reason;
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
