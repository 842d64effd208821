//! Outgoing HTTP from a plugin: the host denies it unless granted with
//! `--allow-http HOST[:PORT]`.
//!
//! ```text
//! osiiso-host run fetch.wasm fetch --input '"http://127.0.0.1:8080/data.json"' \
//!     --allow-http 127.0.0.1:8080
//! ```

use osiiso_guest::{TaskError, http, task};
use serde::{Deserialize, Serialize};

/// GETs a URL (`"http://..."` or `{"url": "http://..."}`) and returns its JSON body with the
/// status: `{"status": 200, "json": ...}`. A denied destination fails permanently.
#[task]
fn fetch(target: Target) -> Result<Fetched, TaskError> {
    let url = match target {
        Target::Url(url) | Target::Object { url } => url,
    };
    osiiso_guest::log::debug!("GET {url}");
    let response = http::get(&url)?.error_for_status()?;
    Ok(Fetched {
        status: response.status,
        json: response.json()?,
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Target {
    Url(String),
    Object { url: String },
}

#[derive(Serialize)]
struct Fetched {
    status: u16,
    json: serde_json::Value,
}
