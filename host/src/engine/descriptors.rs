//! Descriptors the host holds for a guest: files and directories it opened, directory
//! listings it is reading, outgoing HTTP connections in flight.
//!
//! Each store has a budget of [`Limits::max_open_files`](super::Limits::max_open_files)
//! descriptors, and every store of the process draws from one [`pool`] that leaves a reserve
//! under the process's `RLIMIT_NOFILE` for the host's own descriptors (plugin files, granted
//! directories, worker pipes, broker connections). A guest's request beyond either fails in
//! the guest (`quota` for files and listings, `connection-limit-reached` for HTTP) and is
//! remembered, so that an attempt that then fails is reported as
//! [`ResourceLimit`](crate::FailureKind::ResourceLimit), naming the limit.
//!
//! A descriptor is counted for as long as the host object behind it lives, not for as long
//! as the guest holds its handle: a file whose handle was dropped while a stream of it is
//! still open keeps its descriptor, and so its place in the budget. Each holder is tracked
//! by a weak reference to that object; holders that are gone give their place back the next
//! time the store asks for one, and all of them when the store is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use crate::failure::{FailureKind, TaskFailure};

/// The descriptors of the process left to the host itself, beside the guests' pool: a
/// quarter of the limit, and never fewer than this.
const MIN_HOST_RESERVE: usize = 256;

/// The process-wide pool every store's descriptors are drawn from.
pub(crate) struct DescriptorPool {
    total: usize,
    used: AtomicUsize,
}

impl DescriptorPool {
    fn for_limit(limit: usize) -> Self {
        let reserve = (limit / 4).max(MIN_HOST_RESERVE);
        Self {
            total: limit.saturating_sub(reserve),
            used: AtomicUsize::new(0),
        }
    }

    /// Descriptors guests may hold together.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    fn try_take(&self, units: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(units).filter(|&after| after <= self.total)
            })
            .is_ok()
    }

    fn give_back(&self, units: usize) {
        self.used.fetch_sub(units, Ordering::AcqRel);
    }
}

/// The pool of this process. The first call raises the soft `RLIMIT_NOFILE` to the hard
/// limit (as Go and many servers do at start-up) and sizes the pool from the result.
pub(crate) fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::for_limit(raise_nofile_limit()))
}

/// Raises the soft limit on open files to the hard limit; returns the soft limit in force.
fn raise_nofile_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads a valid struct. It fails harmlessly where the hard limit
        // is above what the kernel allows (then the old soft limit stays in force).
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::debug!(
                soft = limit.rlim_cur,
                hard = limit.rlim_max,
                "cannot raise the open-files limit"
            );
        }
    }
    usize::try_from(limit.rlim_cur)
        .unwrap_or(usize::MAX)
        .min(1 << 30)
}

/// Why the host refused a guest a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DescriptorRefusal {
    /// The store's own budget was full.
    Store {
        /// [`Limits::max_open_files`](super::Limits::max_open_files).
        limit: usize,
    },
    /// The process's pool was full: other attempts hold the rest.
    Pool {
        /// The pool's size.
        total: usize,
    },
}

impl DescriptorRefusal {
    /// The failure of an attempt that ran into this refusal:
    /// [`ResourceLimit`](FailureKind::ResourceLimit), naming the limit.
    pub(crate) fn failure(self, task_name: &str) -> TaskFailure {
        let message = match self {
            Self::Store { limit } => format!(
                "task '{task_name}' exceeded its limit of {limit} open files and connections \
                 (--max-open-files)"
            ),
            Self::Pool { total } => format!(
                "task '{task_name}' could not open a file or connection: the {total} \
                 descriptors the host gives all attempts together are in use by other \
                 attempts (raise the process's open-files limit, `ulimit -n`, or lower \
                 --max-open-files)"
            ),
        };
        TaskFailure::new(FailureKind::ResourceLimit, message)
    }
}

/// The descriptor budget of one store, shared by its filesystem and HTTP hooks.
#[derive(Clone)]
pub(crate) struct Descriptors {
    inner: Arc<Mutex<Budget>>,
}

struct Budget {
    limit: usize,
    held: Vec<Held>,
    /// The first refusal of the current attempt.
    refused: Option<DescriptorRefusal>,
}

struct Held {
    /// The host object that owns the descriptors; they are closed when it is dropped.
    owner: Weak<dyn Send + Sync>,
    units: usize,
}

/// Places reserved for descriptors about to be opened. Dropped without
/// [`hold`](Self::hold) (the open failed), it gives them back.
pub(crate) struct Reserved {
    budget: Descriptors,
    units: usize,
}

impl Reserved {
    /// The descriptors were opened and are owned by `owner`: they count until it is gone.
    pub(crate) fn hold(mut self, owner: Weak<dyn Send + Sync>) {
        let units = std::mem::take(&mut self.units);
        self.budget.inner.lock().held.push(Held { owner, units });
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.units > 0 {
            pool().give_back(self.units);
        }
    }
}

impl Descriptors {
    /// A budget of `limit` descriptors.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Budget {
                limit,
                held: Vec::new(),
                refused: None,
            })),
        }
    }

    /// Reserves `units` descriptors, or refuses (and remembers the refusal).
    pub(crate) fn reserve(&self, units: usize) -> Result<Reserved, DescriptorRefusal> {
        let mut budget = self.inner.lock();
        budget.prune();
        let in_use: usize = budget.held.iter().map(|h| h.units).sum();
        let refusal = if in_use.saturating_add(units) > budget.limit {
            Some(DescriptorRefusal::Store {
                limit: budget.limit,
            })
        } else if !pool().try_take(units) {
            Some(DescriptorRefusal::Pool {
                total: pool().total(),
            })
        } else {
            None
        };
        match refusal {
            None => Ok(Reserved {
                budget: self.clone(),
                units,
            }),
            Some(refusal) => {
                tracing::debug!(target: "osiiso::guest", ?refusal, "descriptor refused");
                budget.refused.get_or_insert(refusal);
                Err(refusal)
            }
        }
    }

    /// The first refusal since the attempt began, if any.
    pub(crate) fn refused(&self) -> Option<DescriptorRefusal> {
        self.inner.lock().refused
    }

    /// A new attempt begins in this store (a warm one keeps what its guest holds).
    pub(crate) fn begin_attempt(&self) {
        self.inner.lock().refused = None;
    }

    /// Descriptors held now.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        let mut budget = self.inner.lock();
        budget.prune();
        budget.held.iter().map(|h| h.units).sum()
    }
}

impl Budget {
    /// Gives back the places of holders that are gone.
    fn prune(&mut self) {
        self.held.retain(|held| {
            let alive = held.owner.strong_count() > 0;
            if !alive {
                pool().give_back(held.units);
            }
            alive
        });
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        let units: usize = self.held.iter().map(|h| h.units).sum();
        pool().give_back(units);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Arc<dyn Send + Sync> {
        Arc::new(())
    }

    #[test]
    fn the_budget_counts_what_is_alive() {
        let budget = Descriptors::new(3);
        let a = owner();
        let b = owner();
        budget.reserve(1).unwrap().hold(Arc::downgrade(&a));
        budget.reserve(2).unwrap().hold(Arc::downgrade(&b));
        assert_eq!(budget.in_use(), 3);
        assert_eq!(
            budget.reserve(1).err(),
            Some(DescriptorRefusal::Store { limit: 3 })
        );
        assert_eq!(
            budget.refused(),
            Some(DescriptorRefusal::Store { limit: 3 })
        );
        // A reservation that is not held gives its place back.
        drop(b);
        drop(budget.reserve(2).unwrap());
        assert_eq!(budget.in_use(), 1);
        budget.begin_attempt();
        assert_eq!(budget.refused(), None);
        let c = owner();
        budget.reserve(2).unwrap().hold(Arc::downgrade(&c));
        assert_eq!(budget.in_use(), 3);
        drop((a, c));
    }

    #[test]
    fn the_pool_keeps_a_reserve_for_the_host() {
        let pool = DescriptorPool::for_limit(1024);
        assert_eq!(pool.total(), 768);
        assert_eq!(DescriptorPool::for_limit(100).total(), 0);
        assert_eq!(DescriptorPool::for_limit(1 << 20).total(), 3 << 18);
        assert!(pool.try_take(700));
        assert!(!pool.try_take(69));
        assert!(pool.try_take(68));
        pool.give_back(768);
        assert!(pool.try_take(768));
    }
}
