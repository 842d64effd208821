//! Warm instances, opt-in with [`Limits::reuse`](super::Limits::reuse): one instance serves up
//! to N attempts of the same plugin under the same limits and sandbox, then is replaced.
//!
//! **The trade-off:** a task can see what an earlier task of the same plugin left in the
//! instance's memory (globals, caches, open handles). State never crosses plugins, limits or
//! sandbox grants: each of those is part of the key an instance is kept under. Fuel, the
//! deadline, cancellation, output capture, `attempt()` and the memory-limit flags are per
//! attempt. An attempt that did not return on its own — a trap, a timeout, a cancellation,
//! running out of fuel, touching a memory limit, a panic — discards its instance.
//!
//! Each warm instance holds one of the host's instance permits while it lives, idle or busy.
//! A new instance that finds none free evicts an idle one first, so idle instances never
//! starve fresh ones; under memory pressure the host's budget evicts them too.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Engine;

use super::Host;
use super::budget::{EvictIdle, MemoryBudget};
use super::call::Bound;
use super::code::Code;
use super::config::CompileTier;
use super::limits::Limits;
use super::plugin::Plugin;
use super::run::AttemptRequest;
use super::sandbox::Sandbox;
use super::store::{AttemptStore, InvokeResult};
use super::task::Task;
use crate::attempt::AttemptReport;

/// Warm instances kept between attempts, opt-in with [`Limits::reuse`]. One instance serves
/// up to N attempts of the same plugin under the same limits and sandbox, so **a task can see
/// what an earlier task of the same plugin left in memory**; anything but a clean return (a
/// trap, a timeout, a cancellation, a limit touched) discards the instance. A queue's backend
/// keeps one pool and runs every attempt through [`run`](Self::run) or
/// [`run_async`](Self::run_async); plugins whose limits do not ask for reuse get a fresh
/// instance as usual.
///
/// ```
/// use osiiso_host::{AttemptControl, AttemptOutcome, AttemptRequest, Host, Limits, WarmPool};
/// use serde_json::json;
/// # let double_wasm = osiiso_test_artifacts::DOUBLE;
/// let double = Host::new()?
///     .load(double_wasm)?
///     .with_limits(Limits::new().reuse(100))
///     .task("double")?;
/// let pool = WarmPool::new(1);
/// for n in 0..3 {
///     let report = pool.run(&double, AttemptRequest {
///         input: &json!(n),
///         attempt: 1,
///         control: AttemptControl::new(None),
///         display_name: "double",
///         progress: None,
///     });
///     assert_eq!(report.outcome, AttemptOutcome::Succeeded(json!(n * 2).into()));
/// }
/// assert_eq!(pool.idle(), 1, "one instance served all three");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WarmPool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<Vec<WarmInstance>>,
    /// The most idle instances kept.
    capacity: usize,
    /// The memory budgets this pool relieves under pressure.
    budgets: Mutex<Vec<Weak<MemoryBudget>>>,
}

/// What an instance is kept under: state never crosses any of these.
struct WarmKey {
    engine: Engine,
    plugin: String,
    limits: Limits,
    sandbox: Sandbox,
    asynchronous: bool,
}

impl WarmKey {
    /// Whether an instance kept under this key may serve `plugin`, whose attempts start on
    /// `code` (compared in place: this runs on every attempt).
    fn fits(&self, plugin: &Plugin, code: &Code, asynchronous: bool) -> bool {
        self.asynchronous == asynchronous
            && self.plugin == plugin.hash()
            && Engine::same(&self.engine, code.engine())
            && self.limits == *plugin.limits()
            && self.sandbox == *plugin.sandbox()
    }

    /// Whether the instance is of `plugin`'s baseline code, which attempts no longer start
    /// with since the plugin moved to its optimised code.
    fn outdated(&self, plugin: &Plugin, code: &Code) -> bool {
        self.plugin == plugin.hash()
            && code.tier() == CompileTier::Optimized
            && !Engine::same(&self.engine, code.engine())
    }

    /// The key of an instance of `plugin` in `store`.
    fn of(plugin: &Plugin, store: &AttemptStore, asynchronous: bool) -> Self {
        Self {
            engine: store.code.engine().clone(),
            plugin: plugin.hash().to_string(),
            limits: plugin.limits().clone(),
            sandbox: plugin.sandbox().clone(),
            asynchronous,
        }
    }
}

struct WarmInstance {
    key: WarmKey,
    store: AttemptStore,
    bound: Bound,
    uses: u32,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("idle", &self.idle())
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

impl WarmPool {
    /// A pool that keeps at most `capacity` idle instances (a queue passes its worker count).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                idle: Mutex::new(Vec::new()),
                capacity: capacity.max(1),
                budgets: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Idle instances kept now.
    pub fn idle(&self) -> usize {
        self.inner.idle.lock().len()
    }

    /// Drops every idle instance.
    pub fn clear(&self) {
        let dropped = std::mem::take(&mut *self.inner.idle.lock());
        drop(dropped);
    }

    /// Runs one attempt synchronously: in a warm instance of the task's plugin when its limits
    /// ask for reuse, else in a fresh one ([`Task::run_attempt`]). A WASI program's `run`
    /// always gets a fresh instance.
    pub fn run(&self, task: &Task, request: AttemptRequest<'_>) -> AttemptReport {
        let reuse = task.plugin().limits().reuse;
        if reuse <= 1 || task.always_fresh() {
            return task.run_attempt(request);
        }
        let input = match task.prepare(&request) {
            Ok(input) => input,
            Err(report) => return *report,
        };
        let mut warm = match self.take(task.plugin(), false) {
            Some(warm) => warm,
            None => {
                let host = task.plugin().host();
                let permit = self.permit(host, || {
                    futures::executor::block_on(host.owned_instance_permit())
                });
                match self.create(task, &request, permit) {
                    Ok(warm) => warm,
                    Err(report) => return *report,
                }
            }
        };
        warm.store.arm(&request, task.name_arc());
        let result = warm.bound.call(&mut warm.store, task, input);
        self.finish(warm, result, &request, reuse)
    }

    /// [`run`](Self::run) as a future, with async instances. Dropping the future stops the
    /// guest and discards its instance.
    pub async fn run_async(&self, task: &Task, request: AttemptRequest<'_>) -> AttemptReport {
        let reuse = task.plugin().limits().reuse;
        if reuse <= 1 || task.always_fresh() {
            return task.run_attempt_async(request).await;
        }
        let input = match task.prepare(&request) {
            Ok(input) => input,
            Err(report) => return *report,
        };
        let mut warm = match self.take(task.plugin(), true) {
            Some(warm) => warm,
            None => {
                let host = task.plugin().host();
                let permit = match host.try_owned_instance_permit() {
                    Some(permit) => permit,
                    None => {
                        self.evict_one();
                        host.owned_instance_permit().await
                    }
                };
                match self.create_async(task, &request, permit).await {
                    Ok(warm) => warm,
                    Err(report) => return *report,
                }
            }
        };
        warm.store.arm(&request, task.name_arc());
        let result = warm.bound.call_async(&mut warm.store, task, input).await;
        self.finish(warm, result, &request, reuse)
    }

    /// The report of an attempt; the instance goes back to the pool if it may serve again.
    fn finish(
        &self,
        mut warm: WarmInstance,
        result: InvokeResult,
        request: &AttemptRequest<'_>,
        reuse: u32,
    ) -> AttemptReport {
        let keep = warm.store.reusable_after(&result);
        let report = warm.store.report(result, request);
        warm.uses += 1;
        if keep && warm.uses < reuse {
            self.put(warm);
        }
        report
    }

    /// A permit for a new instance: a free one, else one an idle instance gives up, else
    /// the wait of `block`.
    fn permit(
        &self,
        host: &Host,
        block: impl FnOnce() -> OwnedSemaphorePermit,
    ) -> OwnedSemaphorePermit {
        match host.try_owned_instance_permit() {
            Some(permit) => permit,
            None => {
                self.evict_one();
                block()
            }
        }
    }

    /// A new warm instance of `task`'s plugin.
    fn create(
        &self,
        task: &Task,
        request: &AttemptRequest<'_>,
        permit: OwnedSemaphorePermit,
    ) -> Result<WarmInstance, Box<AttemptReport>> {
        self.watch_budget(task.plugin().host());
        let mut store = task.new_store(request, false, None)?;
        let key = WarmKey::of(task.plugin(), &store, false);
        let code = store.code.clone();
        let instantiated = code
            .instance_pre()
            .instantiate(&mut store.store)
            .and_then(|instance| Bound::new(&code, &mut store.store, instance));
        match instantiated {
            Ok(bound) => Ok(WarmInstance {
                key,
                store,
                bound,
                uses: 0,
                _permit: permit,
            }),
            Err(error) => Err(Box::new(store.report(Err(error), request))),
        }
    }

    /// [`create`](Self::create) for async instances.
    async fn create_async(
        &self,
        task: &Task,
        request: &AttemptRequest<'_>,
        permit: OwnedSemaphorePermit,
    ) -> Result<WarmInstance, Box<AttemptReport>> {
        self.watch_budget(task.plugin().host());
        let mut store = task.new_store(request, true, None)?;
        let key = WarmKey::of(task.plugin(), &store, true);
        let code = store.code.clone();
        let instantiated: wasmtime::Result<Bound> = async {
            let instance = code
                .instance_pre_async()?
                .instantiate_async(&mut store.store)
                .await?;
            Bound::new(&code, &mut store.store, instance)
        }
        .await;
        match instantiated {
            Ok(bound) => Ok(WarmInstance {
                key,
                store,
                bound,
                uses: 0,
                _permit: permit,
            }),
            Err(error) => Err(Box::new(store.report(Err(error), request))),
        }
    }

    /// The most recently used idle instance that may serve `plugin`. When there is none,
    /// the idle instances of code `plugin` has moved on from (a tiered host's baseline code)
    /// are dropped first: they never fit again, and the new instance needs their room.
    fn take(&self, plugin: &Plugin, asynchronous: bool) -> Option<WarmInstance> {
        let code = plugin.code();
        let mut idle = self.inner.idle.lock();
        if let Some(at) = idle
            .iter()
            .rposition(|warm| warm.key.fits(plugin, &code, asynchronous))
        {
            return Some(idle.remove(at));
        }
        let outdated: Vec<WarmInstance> = idle
            .extract_if(.., |warm| warm.key.outdated(plugin, &code))
            .collect();
        drop(idle);
        drop(outdated);
        None
    }

    /// Keeps an instance for a later attempt; beyond the capacity, the least recently used
    /// one goes.
    fn put(&self, warm: WarmInstance) {
        let evicted = {
            let mut idle = self.inner.idle.lock();
            idle.push(warm);
            (idle.len() > self.inner.capacity).then(|| idle.remove(0))
        };
        drop(evicted);
    }

    /// Drops the least recently used idle instance, if any.
    fn evict_one(&self) {
        let evicted = {
            let mut idle = self.inner.idle.lock();
            (!idle.is_empty()).then(|| idle.remove(0))
        };
        drop(evicted);
    }

    /// Lets the host's memory budget evict this pool's idle instances under pressure.
    fn watch_budget(&self, host: &Host) {
        let budget = host.memory_budget();
        let mut budgets = self.inner.budgets.lock();
        budgets.retain(|b| b.strong_count() > 0);
        if !budgets
            .iter()
            .any(|b| b.upgrade().is_some_and(|b| Arc::ptr_eq(&b, &budget)))
        {
            budgets.push(Arc::downgrade(&budget));
            let pool: Weak<dyn EvictIdle> = Arc::downgrade(&self.inner) as Weak<dyn EvictIdle>;
            budget.relieve_with(pool);
        }
    }
}

impl EvictIdle for Inner {
    fn evict_idle(&self) {
        let dropped = std::mem::take(&mut *self.idle.lock());
        drop(dropped);
    }
}
