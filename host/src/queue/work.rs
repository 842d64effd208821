//! What a task runs: a WASM task with its input, or the embedder's own native code.

use std::sync::Arc;

use crate::attempt::TaskCall;
use crate::failure::{FailureKind, TaskFailure};
use crate::json::Json;

/// The embedder's own blocking code, called once per attempt.
pub type NativeFn = Arc<dyn Fn() -> Result<Json, TaskFailure> + Send + Sync>;

/// The embedder's own blocking code, for queues whose backend
/// [accepts native closures](super::AcceptsNative) (ThreadQueue, AsyncQueue).
/// The closure is called once per attempt.
#[derive(Clone)]
pub struct NativeTask {
    name: String,
    run: NativeFn,
}

impl NativeTask {
    /// A native task returning any serializable value.
    ///
    /// ```
    /// use osiiso_host::queue::NativeTask;
    /// let answer = NativeTask::new("answer", || Ok::<_, osiiso_host::TaskFailure>(42));
    /// assert_eq!(answer.name(), "answer");
    /// ```
    pub fn new<T, F>(name: impl Into<String>, f: F) -> Self
    where
        T: serde::Serialize,
        F: Fn() -> Result<T, TaskFailure> + Send + Sync + 'static,
    {
        let run: NativeFn = Arc::new(move || json_value(f()?));
        Self {
            name: name.into(),
            run,
        }
    }

    /// Its name (also its identity).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What a task runs.
#[derive(Clone)]
pub(crate) enum Work {
    /// A WASM task with its JSON input.
    Wasm(TaskCall),
    /// A native blocking closure.
    Native { name: String, run: NativeFn },
    /// A native async closure, called once per attempt.
    Future { name: String, make: NativeFutureFn },
}

/// The embedder's own async code: builds a fresh future for each attempt.
pub type NativeFutureFn =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<Json, TaskFailure>> + Send + Sync>;

/// A native async closure, for queues whose backend [accepts futures](super::AcceptsFutures)
/// (AsyncQueue): called again for every attempt,
/// and dropped at its next `.await` on timeout or cancel.
#[derive(Clone)]
pub struct AsyncNativeTask {
    name: String,
    make: NativeFutureFn,
}

impl AsyncNativeTask {
    /// A native async task returning any serializable value.
    pub fn new<T, F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        T: serde::Serialize,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, TaskFailure>> + Send + 'static,
    {
        let make: NativeFutureFn = Arc::new(move || {
            let future = f();
            Box::pin(async move { json_value(future.await?) })
        });
        Self {
            name: name.into(),
            make,
        }
    }

    /// Its name (also its identity).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl From<AsyncNativeTask> for Work {
    fn from(native: AsyncNativeTask) -> Self {
        Self::Future {
            name: native.name,
            make: native.make,
        }
    }
}

impl From<TaskCall> for Work {
    fn from(call: TaskCall) -> Self {
        Self::Wasm(call)
    }
}

impl From<NativeTask> for Work {
    fn from(native: NativeTask) -> Self {
        Self::Native {
            name: native.name,
            run: native.run,
        }
    }
}

impl Work {
    /// Stable identity: `<plugin>/<task>` or the native name.
    pub(crate) fn identity(&self) -> String {
        match self {
            Self::Wasm(call) => call.task().identity(),
            Self::Native { name, .. } | Self::Future { name, .. } => name.clone(),
        }
    }

    pub(crate) fn default_name(&self) -> String {
        match self {
            Self::Wasm(call) => call.task().name().to_string(),
            Self::Native { name, .. } | Self::Future { name, .. } => name.clone(),
        }
    }
}

/// A native task's value as JSON, or the `Serialization` failure that says it has no JSON form.
fn json_value<T: serde::Serialize>(value: T) -> Result<Json, TaskFailure> {
    Json::serialize(&value).map_err(|e| {
        TaskFailure::new(
            FailureKind::Serialization,
            format!("the task's value has no JSON form: {e}"),
        )
    })
}
