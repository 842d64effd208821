//! Reading the work of a `run`: `--input`, `--inputs FILE.jsonl|-` and `--jobs FILE.jsonl|-`.
//! Files are hostile input: every line and every file is bounded, and each error names the
//! file, the line and the limit. In finite mode everything is parsed and validated before
//! anything runs.

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use osiiso_host::queue::TaskOptions;
use osiiso_host::units::format_size;
use serde_json::{Map, Value};

/// The longest line of an inputs or jobs file. Larger than any sensible input limit, so that
/// an oversized input becomes one task's `invalid_input` failure, not a refused file.
pub(crate) const MAX_LINE_BYTES: usize = 256 << 20;
/// The largest inputs or jobs file read whole (finite mode).
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 30;

/// Where a job came from, for messages: `jobs.jsonl line 3`, `--input #2`.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    Line { source: Arc<str>, line: usize },
    Input(usize),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line { source, line } => write!(f, "{source} line {line}"),
            Self::Input(n) => write!(f, "--input #{n}"),
        }
    }
}

/// One task to submit.
pub(crate) struct JobSpec {
    /// Where it came from.
    pub origin: Origin,
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
            let input = serde_json::from_str(text).map_err(|e| {
                anyhow!(
                    "--input #{} is not valid JSON ({e}): {}",
                    i + 1,
                    osiiso_host::text::for_display(text, 200)
                )
            })?;
            Ok(JobSpec {
                origin: Origin::Input(i + 1),
                task: None,
                input,
                overrides: Map::new(),
            })
        })
        .collect()
}

/// How each line of a source becomes a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// `--inputs`: the line is the input.
    Input,
    /// `--jobs`: an object with `task`, `input` and per-task options.
    Job,
}

/// The lines of a JSONL source as jobs, one at a time, each bounded.
pub(crate) struct JobReader {
    name: Arc<str>,
    lines: BoundedLines<Box<dyn BufRead + Send>>,
    kind: LineKind,
    base: TaskOptions,
}

impl JobReader {
    /// Opens `source` (`-` is stdin). `base` checks each `--jobs` line's options, so a bad
    /// value is reported with its line.
    pub(crate) fn open(source: &Path, kind: LineKind, base: &TaskOptions) -> anyhow::Result<Self> {
        let reader: Box<dyn BufRead + Send> = if source == Path::new("-") {
            Box::new(BufReader::with_capacity(256 << 10, io::stdin()))
        } else {
            let file = std::fs::File::open(source)
                .with_context(|| format!("cannot open {}", source.display()))?;
            Box::new(BufReader::with_capacity(256 << 10, file))
        };
        Ok(Self::from_reader(
            &source.display().to_string(),
            reader,
            kind,
            base,
        ))
    }

    pub(crate) fn from_reader(
        name: &str,
        reader: Box<dyn BufRead + Send>,
        kind: LineKind,
        base: &TaskOptions,
    ) -> Self {
        Self {
            name: Arc::from(name),
            lines: BoundedLines::new(reader, MAX_LINE_BYTES),
            kind,
            base: base.clone(),
        }
    }

    /// Bytes read so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.lines.consumed
    }

    /// The source's name in messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Iterator for JobReader {
    type Item = anyhow::Result<JobSpec>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (n, line) = match self.lines.next()? {
                Ok(line) => line,
                Err(LineError::TooLong { line }) => {
                    return Some(Err(anyhow!(
                        "{} line {line}: longer than the {} limit for one line",
                        self.name,
                        format_size(MAX_LINE_BYTES)
                    )));
                }
                Err(LineError::Io { line, error }) => {
                    return Some(Err(anyhow!(
                        "{}: cannot read line {line}: {error}",
                        self.name
                    )));
                }
            };
            let Ok(text) = std::str::from_utf8(&line) else {
                return Some(Err(anyhow!("{} line {n}: not valid UTF-8", self.name)));
            };
            if text.trim().is_empty() {
                continue;
            }
            let origin = Origin::Line {
                source: self.name.clone(),
                line: n,
            };
            return Some(match self.kind {
                LineKind::Input => parse_input_line(origin, text),
                LineKind::Job => parse_job_line(origin, text, &self.base),
            });
        }
    }
}

/// Reads every job of `reader`, refusing a source over [`MAX_FILE_BYTES`].
pub(crate) fn read_all(mut reader: JobReader) -> anyhow::Result<Vec<JobSpec>> {
    let mut specs = Vec::new();
    while let Some(spec) = reader.next() {
        specs.push(spec?);
        if reader.bytes_read() > MAX_FILE_BYTES {
            bail!(
                "{}: larger than the {} limit for a file read whole (stream it with --mode \
                 infinite)",
                reader.name(),
                format_size(MAX_FILE_BYTES as usize)
            );
        }
    }
    Ok(specs)
}

fn parse_input_line(origin: Origin, line: &str) -> anyhow::Result<JobSpec> {
    let input = serde_json::from_str(line).map_err(|e| anyhow!("{origin}: not valid JSON: {e}"))?;
    Ok(JobSpec {
        origin,
        task: None,
        input,
        overrides: Map::new(),
    })
}

fn parse_job_line(origin: Origin, line: &str, base: &TaskOptions) -> anyhow::Result<JobSpec> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| anyhow!("{origin}: not valid JSON: {e}"))?;
    let Value::Object(mut object) = value else {
        bail!("{origin}: expected a JSON object with \"task\" and \"input\"");
    };
    let task = match object.remove("task") {
        None | Some(Value::Null) => None,
        Some(Value::String(task)) => Some(task),
        Some(_) => bail!("{origin}: \"task\" must be a string"),
    };
    let input = object.remove("input").unwrap_or(Value::Null);
    base.with_json_overrides(&object)
        .map_err(|e| anyhow!("{origin}: {e}"))?;
    Ok(JobSpec {
        origin,
        task,
        input,
        overrides: object,
    })
}

/// Why a line could not be read.
#[derive(Debug)]
pub(crate) enum LineError {
    /// Over the line limit; the rest of the source is not read.
    TooLong {
        line: usize,
    },
    Io {
        line: usize,
        error: io::Error,
    },
}

/// Lines (without their `\n` or `\r\n`) of a reader, each at most `max` bytes, with their
/// 1-based numbers. A line over the limit ends the iteration with an error, without
/// reading the rest of it into memory.
pub(crate) struct BoundedLines<R> {
    reader: R,
    max: usize,
    line: usize,
    consumed: u64,
    done: bool,
}

impl<R: BufRead> BoundedLines<R> {
    pub(crate) fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            max,
            line: 0,
            consumed: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for BoundedLines<R> {
    type Item = Result<(usize, Vec<u8>), LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.line += 1;
        let mut line = Vec::new();
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.done = true;
                    return Some(Err(LineError::Io {
                        line: self.line,
                        error,
                    }));
                }
            };
            if chunk.is_empty() {
                self.done = true;
                return (!line.is_empty()).then_some(Ok((self.line, line)));
            }
            let (take, ends) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if line.len() + take > self.max + 2 {
                self.done = true;
                return Some(Err(LineError::TooLong { line: self.line }));
            }
            line.extend_from_slice(&chunk[..take]);
            self.reader.consume(take);
            self.consumed += take as u64;
            if ends {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > self.max {
                    self.done = true;
                    return Some(Err(LineError::TooLong { line: self.line }));
                }
                return Some(Ok((self.line, line)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn jobs(text: &[u8]) -> Vec<anyhow::Result<JobSpec>> {
        let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(text.to_vec()));
        JobReader::from_reader("jobs.jsonl", reader, LineKind::Job, &TaskOptions::new())
            .take(10_000)
            .collect()
    }

    #[test]
    fn a_good_jobs_file_parses_with_line_numbers() {
        let out = jobs(b"{\"task\":\"a\",\"input\":1,\"priority\":2}\n\n{\"input\":[1]}\r\n");
        assert_eq!(out.len(), 2);
        let first = out[0].as_ref().unwrap();
        assert_eq!(first.task.as_deref(), Some("a"));
        assert_eq!(first.origin.to_string(), "jobs.jsonl line 1");
        assert_eq!(
            out[1].as_ref().unwrap().origin.to_string(),
            "jobs.jsonl line 3"
        );
    }

    #[test]
    fn an_overlong_line_is_refused_without_reading_it_whole() {
        let mut lines = BoundedLines::new(io::BufReader::new(io::repeat(b'x')), 1024);
        match lines.next() {
            Some(Err(LineError::TooLong { line: 1 })) => {}
            other => panic!("{other:?}"),
        }
        assert!(lines.next().is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bytes: no panic, and every error names the file and a line.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            for result in jobs(&bytes) {
                if let Err(error) = result {
                    let message = error.to_string();
                    prop_assert!(message.starts_with("jobs.jsonl"), "{}", message);
                }
            }
        }

        /// Lines built from JSON-ish fragments: no panic, the errors say which line.
        #[test]
        fn jsonish_lines_never_panic(lines in proptest::collection::vec(
            prop_oneof![
                Just("{\"task\":\"t\",\"input\":1}".to_string()),
                Just("{\"retries\":-1}".to_string()),
                Just("{\"timeout\":\"abc\"}".to_string()),
                Just("{\"unknown\":1}".to_string()),
                Just("[1,2]".to_string()),
                Just("{\"task\":7}".to_string()),
                Just("{\"delay\":1e309}".to_string()),
                Just("{\"backoff\":\"NaN\"}".to_string()),
                "[ -~]{0,40}",
            ],
            0..20,
        )) {
            let text = lines.join("\n");
            for result in jobs(text.as_bytes()) {
                if let Err(error) = result {
                    prop_assert!(error.to_string().contains(" line "), "{}", error);
                }
            }
        }
    }
}
