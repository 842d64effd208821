//! Small example tasks: the quickest way to see osiiso-host work.

use osiiso_guest::{TaskError, task};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Returns its input unchanged.
#[task]
fn echo(input: serde_json::Value) -> serde_json::Value {
    input
}

/// Adds two integers given as a JSON array `[a, b]`.
#[task]
fn add(a: i64, b: i64) -> Result<i64, TaskError> {
    a.checked_add(b)
        .ok_or_else(|| TaskError::invalid_input("integer overflow"))
}

/// Greets someone: `{"name": "Ada", "excited": true}` gives `"Hello, Ada!"`.
#[task]
fn greet(person: Person) -> Greeting {
    let mark = if person.excited { "!" } else { "." };
    osiiso_guest::log::info!("greeting {}", person.name);
    Greeting {
        message: format!("Hello, {}{mark}", person.name),
        attempt: osiiso_guest::attempt(),
    }
}

/// Fails with the given kind: `"failed"`, `"permanent"` or `"invalid"`.
#[task(input_schema = r#"{"enum": ["failed", "permanent", "invalid"]}"#)]
fn fail(kind: String) -> Result<(), TaskError> {
    match kind.as_str() {
        "permanent" => Err(TaskError::permanent("asked to fail permanently")),
        "invalid" => Err(TaskError::invalid_input("asked to reject the input")),
        _ => Err(TaskError::failed("asked to fail")),
    }
}

/// Who to greet. Its input schema is derived (`JsonSchema`).
#[derive(Deserialize, JsonSchema)]
struct Person {
    name: String,
    #[serde(default)]
    excited: bool,
}

#[derive(Serialize)]
struct Greeting {
    message: String,
    attempt: u32,
}
