//! Waiting until a condition holds, in one place for the whole crate: on a condition variable for blocking
//! callers, on a `Notify` for async ones. Both re-check after every wake-up and register
//! before checking, so a change between the check and the wait is never missed.

use std::time::Instant;

use parking_lot::{Condvar, MutexGuard};
use tokio::sync::Notify;

/// Blocks until `check` gives a value or `deadline` passes (then `None`).
pub(crate) fn blocking_until<T, R>(
    condvar: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    deadline: Option<Instant>,
    mut check: impl FnMut(&mut T) -> Option<R>,
) -> Option<R> {
    loop {
        if let Some(value) = check(guard) {
            return Some(value);
        }
        match deadline {
            Some(deadline) => {
                if condvar.wait_until(guard, deadline).timed_out() {
                    return check(guard);
                }
            }
            None => condvar.wait(guard),
        }
    }
}

/// Waits on `notify` until `check` gives a value or `deadline` passes (then `None`).
pub(crate) async fn notified_until<R>(
    notify: &Notify,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Option<R>,
) -> Option<R> {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a change in between still wakes this wait.
        notified.as_mut().enable();
        if let Some(value) = check() {
            return Some(value);
        }
        match deadline {
            Some(deadline) => {
                if tokio::time::timeout_at(deadline.into(), notified)
                    .await
                    .is_err()
                {
                    return check();
                }
            }
            None => notified.await,
        }
    }
}

/// [`notified_until`] without a deadline.
pub(crate) async fn notified<R>(notify: &Notify, check: impl FnMut() -> Option<R>) -> R {
    match notified_until(notify, None, check).await {
        Some(value) => value,
        None => unreachable!("a wait without a deadline ends only with a value"),
    }
}
