//! The `osiiso:task/tasks` export: every `#[task]` registers a [`TaskDef`], and one export
//! lists and dispatches them.

use std::marker::PhantomData;
use std::sync::Once;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TaskError;
use crate::bindings::exports::osiiso::task::tasks::{self, Guest, TaskInfo};
use crate::bindings::osiiso::task::host::{self, Level};

/// One task, as registered by the `#[task]` attribute.
pub struct TaskDef {
    /// Name used to invoke it.
    pub name: &'static str,
    /// The function's doc comment.
    pub description: &'static str,
    /// JSON Schema of the input: declared, or derived from the argument types when possible.
    pub input_schema: fn() -> Option<String>,
    /// Suggested retries.
    pub retries: Option<u32>,
    /// Suggested per-attempt timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Decodes the input, runs the function, encodes the output.
    pub invoke: fn(&str) -> Result<String, TaskError>,
}

inventory::collect!(TaskDef);

/// Picks the schema of an argument type by autoref specialization: the macro calls
/// `(&SchemaProbe::<T>::new()).input_schema()`, which resolves to [`ViaJsonSchema`] when
/// `T: schemars::JsonSchema` (a method on `&SchemaProbe<T>`) and to [`NoJsonSchema`] (a method
/// on `&&SchemaProbe<T>`, one auto-reference further) otherwise.
pub struct SchemaProbe<T>(PhantomData<T>);

impl<T> SchemaProbe<T> {
    /// A probe for `T`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

/// The schema of a type that implements `schemars::JsonSchema`, as compact JSON.
pub trait ViaJsonSchema {
    /// The schema.
    fn input_schema(&self) -> Option<String>;
}

impl<T: schemars::JsonSchema> ViaJsonSchema for SchemaProbe<T> {
    fn input_schema(&self) -> Option<String> {
        serde_json::to_string(&schemars::schema_for!(T)).ok()
    }
}

/// No schema for a type without `schemars::JsonSchema`.
pub trait NoJsonSchema {
    /// `None`.
    fn input_schema(&self) -> Option<String>;
}

impl<T> NoJsonSchema for &SchemaProbe<T> {
    fn input_schema(&self) -> Option<String> {
        None
    }
}

/// How much of an undecodable input, or of the decoder's message, an error quotes.
const QUOTE_BYTES: usize = 200;

/// Decodes a task's JSON input into its argument type (a tuple for several arguments). The
/// error quotes a bounded prefix of the input, never all of it.
pub fn decode_args<T: DeserializeOwned>(task: &str, input: &str) -> Result<T, TaskError> {
    serde_json::from_str(input).map_err(|e| {
        TaskError::invalid_input(format!(
            "task '{task}': cannot decode input: {} (input: {} bytes, starting {})",
            bounded(&e.to_string()),
            input.len(),
            bounded(input)
        ))
    })
}

/// `text` cut to [`QUOTE_BYTES`] on a character boundary, marked when cut.
fn bounded(text: &str) -> String {
    if text.len() <= QUOTE_BYTES {
        return text.to_string();
    }
    let mut end = QUOTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Encodes a task's output as JSON.
pub fn encode_output<T: Serialize>(task: &str, value: &T) -> Result<String, TaskError> {
    serde_json::to_string(value)
        .map_err(|e| TaskError::permanent(format!("task '{task}': cannot encode output: {e}")))
}

/// Prefix of the log line that carries a guest panic's message to the host.
const PANIC_PREFIX: &str = "panicked at ";

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_else(|| "<unknown>".into());
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "Box<dyn Any>".into());
            host::log(
                Level::Error,
                &format!("{PANIC_PREFIX}{location}: {payload}"),
            );
        }));
    });
}

struct Dispatcher;

impl Guest for Dispatcher {
    fn list() -> Vec<TaskInfo> {
        let mut defs: Vec<&TaskDef> = inventory::iter::<TaskDef>.into_iter().collect();
        defs.sort_by_key(|def| def.name);
        defs.into_iter()
            .map(|def| TaskInfo {
                name: def.name.to_string(),
                description: def.description.to_string(),
                input_schema: (def.input_schema)(),
                retries: def.retries,
                timeout_ms: def.timeout_ms,
            })
            .collect()
    }

    fn invoke(name: String, input: String) -> Result<String, tasks::TaskError> {
        install_panic_hook();
        let Some(def) = inventory::iter::<TaskDef>
            .into_iter()
            .find(|def| def.name == name)
        else {
            let known: Vec<&str> = inventory::iter::<TaskDef>
                .into_iter()
                .map(|d| d.name)
                .collect();
            return Err(tasks::TaskError::Permanent(format!(
                "unknown task '{name}' (known: {})",
                known.join(", ")
            )));
        };
        (def.invoke)(&input).map_err(|e| match e {
            TaskError::Failed(m) => tasks::TaskError::Failed(m),
            TaskError::Permanent(m) => tasks::TaskError::Permanent(m),
            TaskError::InvalidInput(m) => tasks::TaskError::InvalidInput(m),
        })
    }
}

crate::bindings::export!(Dispatcher with_types_in crate::bindings);
