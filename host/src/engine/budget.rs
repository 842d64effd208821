//! The host-wide memory budget: the linear memory of every live instance together stays under
//! one total, so that many attempts each within their own cap cannot exhaust the machine.
//!
//! Each store holds a [`Reservation`] that grows with its memories. Growth that does not fit
//! waits for room (other attempts finishing) instead of failing. A wait that could never end
//! — every other holder of budget is itself waiting — is refused instead, which fails that
//! attempt with a memory-limit error and frees what it held for the others.
//!
//! The values attempts return count too, from when a queue receives one until its task's
//! result is recorded (and written by the CLI): each holds a [`Charge`]. A charge never waits
//! and is never refused — the bytes exist already — but while it is held, growing attempts
//! see that much less room.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How often a blocked growth looks at its attempt's control.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// Something holding budget it could give back at once: idle warm instances.
pub(crate) trait EvictIdle: Send + Sync {
    /// Drops what is idle.
    fn evict_idle(&self);
}

/// The budget shared by every store of one host.
pub(crate) struct MemoryBudget {
    total: usize,
    usage: Mutex<Usage>,
    room: Condvar,
    room_async: tokio::sync::Notify,
    /// Asked to give budget back before anyone waits for room.
    relievers: Mutex<Vec<std::sync::Weak<dyn EvictIdle>>>,
}

#[derive(Default)]
struct Usage {
    used: usize,
    /// Reservations holding some budget.
    holders: usize,
    /// Reservations waiting for room.
    waiting: usize,
}

/// Why growth was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// More than the whole budget, or no other attempt can free any.
    Exhausted,
}

impl MemoryBudget {
    pub(crate) fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            usage: Mutex::new(Usage::default()),
            room: Condvar::new(),
            room_async: tokio::sync::Notify::new(),
            relievers: Mutex::new(Vec::new()),
        })
    }

    /// Registers something that can give budget back under pressure.
    pub(crate) fn relieve_with(&self, reliever: std::sync::Weak<dyn EvictIdle>) {
        let mut relievers = self.relievers.lock();
        relievers.retain(|r| r.strong_count() > 0);
        relievers.push(reliever);
    }

    /// Asks every reliever to give back what is idle. Called without the usage lock held:
    /// what is dropped releases its reservation.
    fn relieve(&self) {
        let relievers: Vec<_> = self
            .relievers
            .lock()
            .iter()
            .filter_map(|r| r.upgrade())
            .collect();
        for reliever in relievers {
            reliever.evict_idle();
        }
    }

    /// The budget in bytes.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Bytes held now: the memories of live instances and the values in flight.
    pub(crate) fn used(&self) -> usize {
        self.usage.lock().used
    }

    /// Takes `delta` if it fits. `Err(None)`: wait; `Err(Some(refusal))`: give up.
    fn try_take(
        &self,
        usage: &mut Usage,
        held: usize,
        delta: usize,
    ) -> Result<(), Option<Refusal>> {
        if delta > self.total {
            return Err(Some(Refusal::Exhausted));
        }
        if usage.used.saturating_add(delta) <= self.total {
            if held == 0 && delta > 0 {
                usage.holders += 1;
            }
            usage.used += delta;
            return Ok(());
        }
        let others = usage.holders - usize::from(held > 0);
        if others <= usage.waiting {
            // Every other holder waits too: nobody would ever free anything.
            return Err(Some(Refusal::Exhausted));
        }
        Err(None)
    }

    fn release(&self, held: usize) {
        if held == 0 {
            return;
        }
        let mut usage = self.usage.lock();
        usage.used -= held;
        usage.holders -= 1;
        drop(usage);
        self.room.notify_all();
        self.room_async.notify_waiters();
    }
}

/// Host memory a value on its way to being recorded holds (see the module docs); given back
/// when dropped.
pub(crate) struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl MemoryBudget {
    /// Counts `bytes` that exist already (a returned value) until the charge is dropped. It
    /// may take the usage past the total: growing attempts then wait until it is given back.
    pub(crate) fn charge(self: &Arc<Self>, bytes: usize) -> Charge {
        if bytes > 0 {
            let mut usage = self.usage.lock();
            usage.used = usage.used.saturating_add(bytes);
            // A holder that does not wait: growth waiting for room waits for it to be given
            // back (it will be, once its task is recorded) instead of being refused.
            usage.holders += 1;
        }
        Charge {
            budget: self.clone(),
            bytes,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(std::mem::take(&mut self.bytes));
    }
}

/// One store's share of the budget; released when the store is dropped.
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    held: usize,
}

impl Reservation {
    pub(crate) fn new(budget: Arc<MemoryBudget>) -> Self {
        Self { budget, held: 0 }
    }

    /// Grows by `delta` bytes, blocking this thread while there is no room. `stop` is asked
    /// every few milliseconds whether the attempt must end; its answer ends the wait.
    pub(crate) fn grow_blocking<E>(
        &mut self,
        delta: usize,
        mut stop: impl FnMut() -> Option<E>,
    ) -> Result<Result<(), Refusal>, E> {
        let budget = self.budget.clone();
        let mut usage = budget.usage.lock();
        let mut relieved = false;
        loop {
            match budget.try_take(&mut usage, self.held, delta) {
                Ok(()) => {
                    self.held += delta;
                    return Ok(Ok(()));
                }
                Err(Some(_)) | Err(None) if !relieved => {
                    // Before waiting or giving up, idle warm instances give their share back.
                    relieved = true;
                    drop(usage);
                    budget.relieve();
                    usage = budget.usage.lock();
                    continue;
                }
                Err(Some(refusal)) => return Ok(Err(refusal)),
                Err(None) => {}
            }
            usage.waiting += 1;
            budget.room.wait_for(&mut usage, CHECK_EVERY);
            usage.waiting -= 1;
            if let Some(stopped) = stop() {
                return Err(stopped);
            }
        }
    }

    /// Returns `delta` bytes taken by a growth that then failed.
    pub(crate) fn give_back(&mut self, delta: usize) {
        let delta = delta.min(self.held);
        if delta == 0 {
            return;
        }
        self.held -= delta;
        let mut usage = self.budget.usage.lock();
        usage.used -= delta;
        if self.held == 0 {
            usage.holders -= 1;
        }
        drop(usage);
        self.budget.room.notify_all();
        self.budget.room_async.notify_waiters();
    }

    /// Grows by `delta` bytes, waiting asynchronously while there is no room. Dropping the
    /// future (the attempt was cancelled or timed out) abandons the wait.
    pub(crate) async fn grow(&mut self, delta: usize) -> Result<(), Refusal> {
        let budget = self.budget.clone();
        let mut relieved = false;
        loop {
            let room = budget.room_async.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut usage = budget.usage.lock();
                match budget.try_take(&mut usage, self.held, delta) {
                    Ok(()) => {
                        self.held += delta;
                        return Ok(());
                    }
                    Err(_) if !relieved => {}
                    Err(Some(refusal)) => return Err(refusal),
                    Err(None) => usage.waiting += 1,
                }
            }
            if !relieved {
                // Before waiting or giving up, idle warm instances give their share back.
                relieved = true;
                budget.relieve();
                continue;
            }
            let _waiting = WaitingGuard(&budget);
            // A timeout as well, so a deadlock check happens even without a wake-up.
            let _ = tokio::time::timeout(CHECK_EVERY * 10, room).await;
        }
    }
}

/// Counts an async waiter for as long as it waits, also when its future is dropped.
struct WaitingGuard<'a>(&'a MemoryBudget);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.usage.lock().waiting -= 1;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(std::mem::take(&mut self.held));
    }
}

/// The default budget: half of the memory this process may use (the machine's, or its
/// cgroup's limit when lower).
pub(crate) fn default_total() -> usize {
    let physical = physical_memory().unwrap_or(8 << 30);
    let cgroup = cgroup_limit().unwrap_or(u64::MAX);
    let available = physical.min(cgroup);
    usize::try_from(available / 2)
        .unwrap_or(usize::MAX)
        .max(256 << 20)
}

fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && page > 0).then(|| pages as u64 * page as u64)
}

fn cgroup_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_waits_for_room_and_a_deadlock_is_refused() {
        let budget = MemoryBudget::new(100);
        let mut a = Reservation::new(budget.clone());
        let mut b = Reservation::new(budget.clone());
        let never = || None::<()>;
        assert_eq!(a.grow_blocking(60, never), Ok(Ok(())));
        assert_eq!(b.grow_blocking(30, never), Ok(Ok(())));
        assert_eq!(budget.used(), 90);
        // More than the whole budget is refused at once.
        assert_eq!(a.grow_blocking(101, never), Ok(Err(Refusal::Exhausted)));
        // b needs 20 more while a is active: b waits until a is dropped.
        let waiter = std::thread::spawn(move || {
            let r = b.grow_blocking(20, || None::<()>);
            (r, b)
        });
        std::thread::sleep(Duration::from_millis(30));
        drop(a);
        let (r, b) = waiter.join().unwrap();
        assert_eq!(r, Ok(Ok(())));
        assert_eq!(budget.used(), 50);
        // Alone and out of room: nobody else can free anything.
        let mut b = b;
        assert_eq!(b.grow_blocking(60, never), Ok(Err(Refusal::Exhausted)));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_charge_holds_room_until_dropped() {
        let budget = MemoryBudget::new(100);
        let mut a = Reservation::new(budget.clone());
        assert_eq!(a.grow_blocking(60, || None::<()>), Ok(Ok(())));
        // Forced: the bytes exist already, so the usage may pass the total.
        let charge = budget.charge(70);
        assert_eq!(budget.used(), 130);
        // Growth now waits for the charge (a holder that is not waiting) instead of being
        // refused, and gets its room once the value is recorded.
        let waiter = std::thread::spawn(move || (a.grow_blocking(30, || None::<()>), a));
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !waiter.is_finished(),
            "growth must wait for the charged value"
        );
        drop(charge);
        let (grown, a) = waiter.join().unwrap();
        assert_eq!(grown, Ok(Ok(())));
        assert_eq!(budget.used(), 90);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_stopped_attempt_ends_its_wait() {
        let budget = MemoryBudget::new(10);
        let _a = Reservation::new(budget.clone());
        let mut holder = Reservation::new(budget.clone());
        assert_eq!(holder.grow_blocking(10, || None::<()>), Ok(Ok(())));
        let mut c = Reservation::new(budget.clone());
        let done = std::sync::atomic::AtomicBool::new(false);
        let stopped = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            c.grow_blocking(5, || {
                done.load(std::sync::atomic::Ordering::SeqCst)
                    .then_some("stop")
            })
        });
        assert_eq!(stopped, Err("stop"));
    }
}
