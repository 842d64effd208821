//! A plugin's compiled code for one engine: the component, its pre-linked instances and where
//! its tasks are exported. An attempt takes the code once, when its store is made
//! ([`AttemptStore::new`](super::store::AttemptStore::new)), and uses that code to the end,
//! so a plugin can move to other code (a tiered host's optimised code) between attempts.

use std::sync::{Arc, OnceLock};

use wasmtime::component::{Component, ComponentExportIndex, Instance, InstancePre};
use wasmtime::{Engine, Store};

use super::config::CompileTier;
use super::contract::InvokeFn;
use super::store::AttemptState;
use super::tiers::TierEngine;

/// Compiled code of a plugin, ready to instantiate.
pub(crate) struct Code {
    tier: Arc<TierEngine>,
    component: Component,
    pre: InstancePre<AttemptState>,
    pre_async: OnceLock<InstancePre<AttemptState>>,
    /// `invoke` of `osiiso:task/tasks`, for an SDK plugin.
    invoke: Option<ComponentExportIndex>,
    /// Where each task of the plugin's list is exported (typed functions and a WASI
    /// program's `run`), by its position in that list.
    exports: Arc<[Option<ComponentExportIndex>]>,
}

impl Code {
    /// `component`, compiled by `tier`'s engine, pre-linked with its sync linker.
    pub(crate) fn new(
        tier: Arc<TierEngine>,
        component: Component,
        invoke: Option<ComponentExportIndex>,
        exports: Vec<Option<ComponentExportIndex>>,
    ) -> wasmtime::Result<Self> {
        let pre = tier.linker.instantiate_pre(&component)?;
        Ok(Self {
            tier,
            component,
            pre,
            pre_async: OnceLock::new(),
            invoke,
            exports: exports.into(),
        })
    }

    /// The compiler that made it: [`CompileTier::Optimized`] or [`CompileTier::Baseline`].
    pub(crate) fn tier(&self) -> CompileTier {
        self.tier.tier
    }

    pub(crate) fn tier_engine(&self) -> &Arc<TierEngine> {
        &self.tier
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.tier.engine
    }

    pub(crate) fn component(&self) -> &Component {
        &self.component
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<AttemptState> {
        &self.pre
    }

    /// The pre-linked instance for async attempts (WASI linked with its async host calls).
    pub(crate) fn instance_pre_async(&self) -> wasmtime::Result<&InstancePre<AttemptState>> {
        if let Some(pre) = self.pre_async.get() {
            return Ok(pre);
        }
        let pre = self.tier.linker_async.instantiate_pre(&self.component)?;
        Ok(self.pre_async.get_or_init(|| pre))
    }

    /// Where the tasks of the plugin's list are exported, by position.
    pub(crate) fn exports(&self) -> &Arc<[Option<ComponentExportIndex>]> {
        &self.exports
    }

    /// Whether it is an SDK plugin's code (with `invoke`).
    pub(crate) fn has_invoke(&self) -> bool {
        self.invoke.is_some()
    }

    /// `invoke` of an SDK plugin's instance; `None` for a plugin of typed exports.
    pub(crate) fn invoke_fn(
        &self,
        store: &mut Store<AttemptState>,
        instance: &Instance,
    ) -> wasmtime::Result<Option<InvokeFn>> {
        self.invoke
            .as_ref()
            .map(|index| instance.get_typed_func(store, index))
            .transpose()
    }
}
