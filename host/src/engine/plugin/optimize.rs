//! A tiered host's plugin moving to its optimised code: planned at load, started with the
//! plugin's first attempt, compiled on the host's background thread, installed between
//! attempts.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use wasmtime::component::{Component, ComponentExportIndex};

use super::{Plugin, PluginInner, sdk_exports};
use crate::engine::code::Code;
use crate::engine::tiers::TierEngine;
use crate::engine::typed;

impl Plugin {
    /// Has `optimized` compile the plugin's code in the background once the plugin runs its
    /// first attempt ([`start_optimizing`](Self::start_optimizing)).
    pub(crate) fn optimize_later(&self, optimized: Arc<TierEngine>, wasm: Vec<u8>) {
        *self.inner.to_optimize.lock() = Some((optimized, wasm));
        self.inner.optimize_pending.store(true, Ordering::Release);
    }

    /// Called as an attempt starts: the first time, queues the plugin's background
    /// compilation, if one is planned.
    pub(crate) fn start_optimizing(&self) {
        if self.inner.optimize_pending.load(Ordering::Relaxed)
            && self.inner.optimize_pending.swap(false, Ordering::AcqRel)
        {
            self.optimize_in_background();
        }
    }

    /// Compiles the plugin's optimised code on the host's background thread, then installs
    /// it: attempts that start after that run it. A plugin dropped before its turn is not
    /// compiled; one dropped while it compiles has its optimised code written to the compile
    /// cache all the same, unless its host is dropped too, which stops the compilation. A
    /// compilation that fails leaves the plugin on its code, with a warning, and the host
    /// does not try that plugin again.
    fn optimize_in_background(&self) {
        let plugin = Arc::downgrade(&self.inner);
        let host = Arc::downgrade(&self.inner.host.inner);
        let key = self.inner.cache_key.clone();
        self.host().background().run(Box::new(move || {
            let Some((optimized, wasm)) = plugin
                .upgrade()
                .and_then(|inner| inner.to_optimize.lock().take())
            else {
                return;
            };
            let began = std::time::Instant::now();
            // A plugin dropped meanwhile still gets its optimised code into the compile
            // cache, for its next load (a node or worker that drops and reloads plugins
            // would otherwise never keep one); once its host is gone too, nobody will load
            // it here again, and its compile process is killed rather than left to run out
            // its time.
            let gone = || host.strong_count() == 0;
            let compiled = optimized.cache.load_or_compile(
                &optimized.engine,
                &optimized.compile,
                &key,
                &wasm,
                &gone,
            );
            drop(wasm);
            let Some(inner) = plugin.upgrade() else {
                return;
            };
            let installed = match compiled {
                Ok((component, _)) => inner.code_like(optimized, component),
                Err(error) => {
                    Err(crate::engine::load::compile_failure(error, &inner.name).to_string())
                }
            };
            let shown = crate::text::for_display(&inner.name, 256);
            match installed {
                Ok(code) => {
                    // Counted first: whoever sees the new code sees the count too.
                    inner.host.optimizations().done();
                    inner.code.store(Arc::new(code));
                    tracing::info!(
                        plugin = %shown,
                        seconds = began.elapsed().as_secs_f64(),
                        "optimised code in use (compiled in the background)"
                    );
                }
                Err(message) => {
                    inner.host.optimizations().failed(&key);
                    tracing::warn!(
                        plugin = %shown,
                        "keeping the baseline code: the optimised compilation failed: {message}"
                    );
                }
            }
        }));
    }
}

impl PluginInner {
    /// Code of `component` (this plugin compiled by `tier`), with its tasks where the
    /// plugin's list has them.
    fn code_like(&self, tier: Arc<TierEngine>, component: Component) -> Result<Code, String> {
        let invoke = match sdk_exports(&component) {
            Some(Ok((invoke, _))) => Some(invoke),
            Some(Err(message)) => return Err(message.into()),
            None => None,
        };
        let first = self.code.load();
        let exports: Vec<Option<ComponentExportIndex>> = if first.exports().is_empty() {
            Vec::new()
        } else {
            let found = typed::discover(&component, &tier.engine);
            self.tasks
                .iter()
                .map(|task| {
                    found
                        .iter()
                        .find(|f| f.info.name == task.name)
                        .and_then(|f| f.export)
                })
                .collect()
        };
        let same_shape = invoke.is_some() == first.has_invoke()
            && exports.len() == first.exports().len()
            && exports
                .iter()
                .zip(first.exports().iter())
                .all(|(new, old)| new.is_some() == old.is_some());
        if !same_shape {
            return Err("its exports differ from the first compilation's".into());
        }
        Code::new(tier, component, invoke, exports).map_err(|e| format!("{e:#}"))
    }
}
