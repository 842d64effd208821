//! Shared test helpers: one host for the test binary with a shared compile cache, attempts
//! run directly, and the CLI harness ([`cli`]).

pub mod cli;

use std::sync::OnceLock;

use osiiso_host::{AttemptControl, AttemptReport, AttemptRequest, Host, Plugin};

/// How long the tests let a plugin compile: the 12-19 MB foreign components can take minutes
/// on two cores busy with the whole test suite, past the default of two minutes.
pub const COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// A host whose compile cache lives in a directory shared by the whole test binary, so
/// each guest is compiled once per run, with the tests' compile timeout.
pub fn host() -> Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        Host::builder()
            .cache_dir(cache_dir())
            .compile_timeout(COMPILE_TIMEOUT)
            .build()
            .expect("host builds")
    })
    .clone()
}

/// The compile cache shared by this test binary (under the target directory).
pub fn cache_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("osiiso-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Like [`host`], but guest code runs without fuel metering
/// ([`HostBuilder::fuel_metering`](osiiso_host::HostBuilder::fuel_metering)).
pub fn unmetered_host() -> Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        Host::builder()
            .cache_dir(cache_dir())
            .fuel_metering(false)
            .build()
            .expect("host builds")
    })
    .clone()
}

/// Loads a plugin by artifact path.
pub fn load(path: &str) -> Plugin {
    host()
        .load(path)
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

/// Runs one attempt of `task` with `input`.
pub fn run(plugin: &Plugin, task: &str, input: serde_json::Value) -> AttemptReport {
    run_with(plugin, task, input, AttemptControl::new(None))
}

/// Runs one attempt with a given control.
pub fn run_with(
    plugin: &Plugin,
    task: &str,
    input: serde_json::Value,
    control: std::sync::Arc<AttemptControl>,
) -> AttemptReport {
    let task = plugin.task(task).expect("task exists");
    task.run_attempt(AttemptRequest {
        input: &input,
        attempt: 1,
        control,
        display_name: task.name(),
        progress: None,
    })
}

/// The entries of a compile cache: the files in the subdirectories of `dir`, sorted.
pub fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for sub in std::fs::read_dir(dir).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            for entry in std::fs::read_dir(&sub).unwrap() {
                let path = entry.unwrap().path();
                // Lock files sit next to the entries (`<key>.lock`).
                if path.extension().is_some_and(|ext| ext == "cwasm") {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
    found
}
