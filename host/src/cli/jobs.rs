//! Reading the work of a `run`: `--input`, `--inputs FILE.jsonl|-` and `--jobs FILE.jsonl|-`.
//! Everything is parsed and validated before anything runs; errors name the line.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use osiiso_host::queue::TaskOptions;
use serde_json::{Map, Value};

/// One task to submit.
pub(crate) struct JobSpec {
    /// Where it came from, for messages: `jobs.jsonl line 3`, `--input #2`.
    pub origin: String,
    /// The task name (`None`: the command line's TASK, or the plugin's only task).
    pub task: Option<String>,
    pub input: Value,
    /// Per-task option overrides (a `--jobs` line).
    pub overrides: Map<String, Value>,
}

/// Parses each `--input` as JSON.
pub(crate) fn from_inputs(inputs: &[String]) -> anyhow::Result<Vec<JobSpec>> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let input = serde_json::from_str(text)
                .map_err(|e| anyhow!("--input #{} is not valid JSON ({e}): {text}", i + 1))?;
            Ok(JobSpec {
                origin: format!("--input #{}", i + 1),
                task: None,
                input,
                overrides: Map::new(),
            })
        })
        .collect()
}

fn open(source: &Path) -> anyhow::Result<Box<dyn Read>> {
    if source == Path::new("-") {
        Ok(Box::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(source)
            .with_context(|| format!("cannot open {}", source.display()))?;
        Ok(Box::new(file))
    }
}

/// Non-empty lines of a JSONL source with their 1-based line numbers.
fn lines(source: &Path) -> anyhow::Result<Vec<(usize, String)>> {
    let reader = BufReader::new(open(source)?);
    let mut lines = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line =
            line.with_context(|| format!("{}: cannot read line {}", source.display(), i + 1))?;
        if !line.trim().is_empty() {
            lines.push((i + 1, line));
        }
    }
    Ok(lines)
}

/// `--inputs`: one JSON input per line.
pub(crate) fn from_inputs_file(source: &Path) -> anyhow::Result<Vec<JobSpec>> {
    lines(source)?
        .into_iter()
        .map(|(n, line)| {
            let input = serde_json::from_str(&line)
                .map_err(|e| anyhow!("{} line {n}: not valid JSON: {e}", source.display()))?;
            Ok(JobSpec {
                origin: format!("{} line {n}", source.display()),
                task: None,
                input,
                overrides: Map::new(),
            })
        })
        .collect()
}

/// `--jobs`: one object per line with `task`, `input` and per-task options. Each line's
/// options are checked against `base` so that a bad value is reported before anything runs.
pub(crate) fn from_jobs_file(source: &Path, base: &TaskOptions) -> anyhow::Result<Vec<JobSpec>> {
    lines(source)?
        .into_iter()
        .map(|(n, line)| {
            let at = || format!("{} line {n}", source.display());
            let value: Value = serde_json::from_str(&line)
                .map_err(|e| anyhow!("{}: not valid JSON: {e}", at()))?;
            let Value::Object(mut object) = value else {
                bail!(
                    "{}: expected a JSON object with \"task\" and \"input\"",
                    at()
                );
            };
            let task = match object.remove("task") {
                None | Some(Value::Null) => None,
                Some(Value::String(task)) => Some(task),
                Some(_) => bail!("{}: \"task\" must be a string", at()),
            };
            let input = object.remove("input").unwrap_or(Value::Null);
            base.with_json_overrides(&object)
                .map_err(|e| anyhow!("{}: {e}", at()))?;
            Ok(JobSpec {
                origin: at(),
                task,
                input,
                overrides: object,
            })
        })
        .collect()
}
