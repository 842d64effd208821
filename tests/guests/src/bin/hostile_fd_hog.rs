//! Holds as many host descriptors as it can: files, directories, directory listings,
//! outgoing HTTP connections.
use std::time::Duration;

use osiiso_guest::{TaskError, task};
use serde::Deserialize;
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, OutgoingRequest, Scheme};

#[derive(Deserialize)]
struct Hog {
    /// What to open.
    path: String,
    /// How many at once.
    count: u32,
    /// How long to hold them before returning.
    #[serde(default)]
    hold_ms: u64,
    /// A writable directory: once everything is open, the task creates `holding` there and
    /// holds on until `release` appears (so that the host can be measured meanwhile).
    #[serde(default)]
    handshake: Option<String>,
}

/// Opens `path` `count` times and holds every handle; fails with the first error.
#[task]
fn files(hog: Hog) -> Result<u32, TaskError> {
    let mut held = Vec::new();
    let result = (0..hog.count).try_for_each(|_| {
        held.push(std::fs::File::open(&hog.path)?);
        Ok::<(), std::io::Error>(())
    });
    finish(&hog, held.len(), result)
}

/// Starts `count` listings of the directory `path`, reads one entry of each and holds them.
#[task]
fn listings(hog: Hog) -> Result<u32, TaskError> {
    let mut held = Vec::new();
    let result = (0..hog.count).try_for_each(|_| {
        let mut entries = std::fs::read_dir(&hog.path)?;
        entries.next().transpose()?;
        held.push(entries);
        Ok::<(), std::io::Error>(())
    });
    finish(&hog, held.len(), result)
}

/// Opens and closes `path` `count` times, one after the other.
#[task]
fn sequential(hog: Hog) -> Result<u32, TaskError> {
    for n in 0..hog.count {
        std::fs::File::open(&hog.path)
            .map_err(|e| TaskError::failed(format!("open {n} failed: {e}")))?;
    }
    Ok(hog.count)
}

/// Lists the directory `path` to its end; returns the number of entries.
#[task]
fn list(path: String) -> Result<u64, TaskError> {
    let mut count = 0;
    for entry in std::fs::read_dir(&path).map_err(|e| TaskError::failed(e.to_string()))? {
        entry.map_err(|e| TaskError::failed(e.to_string()))?;
        count += 1;
    }
    Ok(count)
}

/// Sends `count` GET requests to `http://<path>/` and holds every response (never reading
/// its body); fails naming the first error.
#[task]
fn connections(hog: Hog) -> Result<u32, TaskError> {
    let mut pending = Vec::new();
    for _ in 0..hog.count {
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_scheme(Some(&Scheme::Http));
        let _ = request.set_authority(Some(&hog.path));
        let _ = request.set_path_with_query(Some("/"));
        match outgoing_handler::handle(request, None) {
            Ok(response) => pending.push(response),
            Err(e) => return Err(TaskError::failed(format!("request refused: {e:?}"))),
        }
    }
    let mut held = Vec::new();
    let mut first_error = None;
    for response in &pending {
        response.subscribe().block();
        match response.get() {
            Some(Ok(Ok(response))) => held.push(response),
            other => {
                first_error.get_or_insert_with(|| format!("{other:?}"));
            }
        }
    }
    let result = match first_error {
        Some(error) => Err(std::io::Error::other(error)),
        None => Ok(()),
    };
    finish(&hog, held.len(), result)
}

fn finish(hog: &Hog, held: usize, result: std::io::Result<()>) -> Result<u32, TaskError> {
    std::thread::sleep(Duration::from_millis(hog.hold_ms));
    if let Some(dir) = &hog.handshake {
        let dir = std::path::Path::new(dir);
        std::fs::write(dir.join("holding"), "")
            .map_err(|e| TaskError::permanent(format!("handshake: {e}")))?;
        while !dir.join("release").exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    match result {
        Ok(()) => Ok(held as u32),
        Err(e) => Err(TaskError::failed(format!("held {held}, then: {e}"))),
    }
}

fn main() {}
