//! Reading the work of a `run`: `--input`, `--inputs FILE.jsonl|-` and `--jobs FILE.jsonl|-`.
//! Files are hostile input: every line is bounded by the per-input limit before it is parsed
//! (an over-long line is skipped without being read into memory), and each error names the
//! file, the line and the limit.
//!
//! A finite run reads its source twice (`Reads::Twice`): once to check every line, once to
//! submit. A regular file is read again from where it started, up to the bytes checked; a
//! source that cannot be read twice (stdin, a pipe, a device) keeps its raw lines in memory,
//! up to [`MAX_KEPT_BYTES`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use osiiso_host::queue::TaskOptions;
use osiiso_host::units::format_size;
use serde_json::{Map, Value};

use super::lines::{BoundedLines, LineError};

/// The longest line of an inputs or jobs file, whatever the per-input limit.
pub(crate) const MAX_LINE_BYTES: usize = 256 << 20;
/// Room on a `--jobs` line beyond the per-input limit, for its task and options.
pub(crate) const JOB_LINE_EXTRA: usize = 64 << 10;
/// The most a finite run keeps of a source it cannot read twice (stdin, a pipe).
pub(crate) const MAX_KEPT_BYTES: usize = 1 << 30;
const READ_BUFFER: usize = 256 << 10;

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
#[derive(Clone)]
pub(crate) struct JobSpec {
    /// Where it came from.
    pub origin: Origin,
    /// The task name (`None`: the command line's TASK, or the plugin's only task).
    pub task: Option<String>,
    pub input: Value,
    /// Per-task option overrides (a `--jobs` line).
    pub overrides: Map<String, Value>,
    /// The bytes it was read from.
    pub bytes: usize,
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
                bytes: text.len(),
            })
        })
        .collect()
}

/// How each line of a source becomes a job, and how long it may be.
#[derive(Clone, Debug)]
pub(crate) struct LineRules {
    kind: LineKind,
    /// Checks each `--jobs` line's options, so that a bad value is reported with its line.
    base: TaskOptions,
    /// The per-input limit (`--max-input-bytes`).
    max_input: usize,
}

/// What a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// `--inputs`: the line is the input.
    Input,
    /// `--jobs`: an object with `task`, `input` and per-task options.
    Job,
}

impl LineRules {
    pub(crate) fn new(kind: LineKind, base: TaskOptions, max_input: usize) -> Self {
        Self {
            kind,
            base,
            max_input,
        }
    }

    /// The longest line: the input limit (plus room for the task and options on a jobs
    /// line), never beyond [`MAX_LINE_BYTES`].
    fn max_line(&self) -> usize {
        let extra = match self.kind {
            LineKind::Input => 0,
            LineKind::Job => JOB_LINE_EXTRA,
        };
        self.max_input.saturating_add(extra).min(MAX_LINE_BYTES)
    }

    /// Why line `line` is too long.
    fn too_long(&self, name: &str, line: usize) -> anyhow::Error {
        let max = self.max_line();
        let limit = if max == MAX_LINE_BYTES {
            format!("the {} limit for one line", format_size(max))
        } else if self.kind == LineKind::Job {
            format!(
                "the {} limit for one input (--max-input-bytes) plus {} for a job's task and \
                 options",
                format_size(self.max_input),
                format_size(JOB_LINE_EXTRA)
            )
        } else {
            format!(
                "the {} limit for one input (--max-input-bytes)",
                format_size(max)
            )
        };
        anyhow!("{name} line {line}: longer than {limit}; not read")
    }
}

/// How often a source will be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reads {
    /// Streamed once (infinite mode).
    Once,
    /// Checked, then read again to submit (finite mode).
    Twice,
}

/// A second handle on a regular file, and the offset its lines start at.
struct Rewind {
    file: File,
    start: u64,
}

/// The lines of a JSONL source as jobs, one at a time, each bounded.
pub(crate) struct JobReader {
    name: Arc<str>,
    lines: BoundedLines<Box<dyn BufRead + Send>>,
    rules: LineRules,
    /// How to read a regular file again.
    rewind: Option<Rewind>,
    /// The raw lines of a source that cannot be read again, kept for the second read.
    kept: Option<Vec<u8>>,
    /// The first of two reads: an inputs line is validated, not built (its job's input is
    /// `null`), which is all a check needs and several times cheaper.
    checking: bool,
}

impl JobReader {
    /// Opens `source` (`-` is stdin). A directory is refused; a regular file (stdin too, when
    /// it is one) can be read twice; anything else is a stream.
    pub(crate) fn open(source: &Path, rules: LineRules, reads: Reads) -> anyhow::Result<Self> {
        let name = source.display().to_string();
        let file = if source == Path::new("-") {
            io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map(File::from)
                .context("cannot read stdin")?
        } else {
            File::open(source).with_context(|| format!("cannot open {name}"))?
        };
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {name}"))?;
        if meta.is_dir() {
            bail!("{name} is a directory, not a file of JSON lines");
        }
        let mut reader = Self::from_reader(
            &name,
            Box::new(BufReader::with_capacity(READ_BUFFER, file.try_clone()?)),
            rules,
        );
        if reads == Reads::Twice {
            reader.checking = true;
            let mut file = file;
            match file.stream_position() {
                Ok(start) if meta.is_file() => reader.rewind = Some(Rewind { file, start }),
                _ => reader.kept = Some(Vec::new()),
            }
        }
        Ok(reader)
    }

    pub(crate) fn from_reader(
        name: &str,
        reader: Box<dyn BufRead + Send>,
        rules: LineRules,
    ) -> Self {
        let max = rules.max_line();
        Self {
            name: Arc::from(name),
            lines: BoundedLines::new(reader, max),
            rules,
            rewind: None,
            kept: None,
            checking: false,
        }
    }

    /// The same lines again, for the second read of a source opened with `Reads::Twice`:
    /// exactly the bytes read so far, from the file or from the lines kept.
    pub(crate) fn again(self) -> anyhow::Result<Self> {
        let reader: Box<dyn BufRead + Send> = match (self.rewind, self.kept) {
            (Some(Rewind { mut file, start }), _) => {
                file.seek(SeekFrom::Start(start))
                    .with_context(|| format!("cannot read {} again", self.name))?;
                let len = self.lines.consumed();
                Box::new(BufReader::with_capacity(READ_BUFFER, file.take(len)))
            }
            (None, Some(kept)) => Box::new(io::Cursor::new(kept)),
            (None, None) => bail!("{} was opened to be read once", self.name),
        };
        Ok(Self::from_reader(&self.name, reader, self.rules))
    }

    /// Keeps a raw line for the second read, within [`MAX_KEPT_BYTES`].
    fn keep(&mut self, line: &[u8]) -> anyhow::Result<()> {
        let Some(kept) = &mut self.kept else {
            return Ok(());
        };
        if kept.len() + line.len() + 1 > MAX_KEPT_BYTES {
            bail!(
                "{}: more than the {} a finite run keeps of input it cannot read twice (stdin, \
                 a pipe); pass a file, or stream it with --mode infinite",
                self.name,
                format_size(MAX_KEPT_BYTES)
            );
        }
        kept.extend_from_slice(line);
        kept.push(b'\n');
        Ok(())
    }
}

impl Iterator for JobReader {
    type Item = anyhow::Result<JobSpec>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (n, line) = match self.lines.next()? {
                Ok(line) => line,
                Err(LineError::TooLong { line }) => {
                    return Some(Err(self.rules.too_long(&self.name, line)));
                }
                Err(LineError::Io { line, error }) => {
                    return Some(Err(anyhow!(
                        "{}: cannot read line {line}: {error}",
                        self.name
                    )));
                }
            };
            if let Err(error) = self.keep(&line) {
                return Some(Err(error));
            }
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
            return Some(match self.rules.kind {
                LineKind::Input if self.checking => check_input_line(origin, text),
                LineKind::Input => parse_input_line(origin, text),
                LineKind::Job => parse_job_line(origin, text, &self.rules.base),
            });
        }
    }
}

fn parse_input_line(origin: Origin, line: &str) -> anyhow::Result<JobSpec> {
    let input = serde_json::from_str(line).map_err(|e| anyhow!("{origin}: not valid JSON: {e}"))?;
    Ok(JobSpec {
        origin,
        task: None,
        input,
        overrides: Map::new(),
        bytes: line.len(),
    })
}

/// Validates an inputs line as [`parse_input_line`] would parse it, without building it.
fn check_input_line(origin: Origin, line: &str) -> anyhow::Result<JobSpec> {
    super::validate::validate(line).map_err(|e| anyhow!("{origin}: not valid JSON: {e}"))?;
    Ok(JobSpec {
        origin,
        task: None,
        input: Value::Null,
        overrides: Map::new(),
        bytes: line.len(),
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
        bytes: line.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::io::Write as _;

    fn rules(kind: LineKind, max_input: usize) -> LineRules {
        LineRules::new(kind, TaskOptions::new(), max_input)
    }

    fn read(text: &[u8], rules: LineRules) -> Vec<anyhow::Result<JobSpec>> {
        let reader: Box<dyn BufRead + Send> = Box::new(io::Cursor::new(text.to_vec()));
        JobReader::from_reader("jobs.jsonl", reader, rules)
            .take(10_000)
            .collect()
    }

    fn jobs(text: &[u8]) -> Vec<anyhow::Result<JobSpec>> {
        read(text, rules(LineKind::Job, 16 << 20))
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
    fn a_line_over_the_input_limit_is_refused_before_parsing_and_the_rest_is_read() {
        // Not JSON at all: a parse would say so; the length is checked first.
        let long = format!("{}\n2\n", "[".repeat(100));
        let out = read(long.as_bytes(), rules(LineKind::Input, 64));
        assert_eq!(out.len(), 2);
        let error = out[0].as_ref().err().unwrap().to_string();
        assert!(
            error.contains("jobs.jsonl line 1") && error.contains("64 B limit for one input"),
            "{error}"
        );
        assert_eq!(out[1].as_ref().unwrap().input, serde_json::json!(2));
        // A jobs line has room for its task and options beyond the input limit.
        let job = format!(
            r#"{{"task":"t","priority":1,"input":"{}"}}"#,
            "x".repeat(60)
        );
        let out = read(job.as_bytes(), rules(LineKind::Job, 64));
        assert!(out[0].is_ok());
    }

    #[test]
    fn a_second_read_gives_the_same_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, b"1\n\n[2]\n{\"a\":3}\n").unwrap();
        let mut first = JobReader::open(&path, rules(LineKind::Input, 1024), Reads::Twice).unwrap();
        let checked = first.by_ref().inspect(|j| assert!(j.is_ok())).count();
        // Appended after the check: not read the second time.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"4\n")
            .unwrap();
        let again: Vec<Value> = first.again().unwrap().map(|j| j.unwrap().input).collect();
        assert_eq!(again, [json!(1), json!([2]), json!({"a": 3})]);
        assert_eq!(checked, 3);

        let mut kept = JobReader {
            kept: Some(Vec::new()),
            ..JobReader::from_reader(
                "-",
                Box::new(io::Cursor::new(b"1\r\n\n2\n".to_vec())),
                rules(LineKind::Input, 1024),
            )
        };
        assert_eq!(kept.by_ref().count(), 2);
        let origins: Vec<String> = kept
            .again()
            .unwrap()
            .map(|j| j.unwrap().origin.to_string())
            .collect();
        assert_eq!(origins, ["- line 1", "- line 3"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bytes: no panic, and every error names the file and a line.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            for result in read(&bytes, rules(LineKind::Job, 100)) {
                if let Err(error) = result {
                    let message = error.to_string();
                    prop_assert!(message.starts_with("jobs.jsonl"), "{}", message);
                }
            }
        }

        /// The check (which validates inputs lines) and the second read (which parses them)
        /// agree on every line: the same ones are errors (their wording may differ).
        #[test]
        fn checking_and_parsing_agree(bytes in proptest::collection::vec(
            prop_oneof![
                any::<u8>(),
                proptest::sample::select(b"\n[]{}\",:0123456789.eE-+ntrufals\\".to_vec()),
            ],
            0..512,
        )) {
            let summary = |reader: JobReader| -> Vec<Result<usize, Option<String>>> {
                reader
                    .map(|j| j.map(|j| j.bytes).map_err(|e| e.to_string().split(':').next().map(str::to_string)))
                    .collect()
            };
            let lines = || -> Box<dyn BufRead + Send> { Box::new(io::Cursor::new(bytes.clone())) };
            let mut checking = JobReader::from_reader("in", lines(), rules(LineKind::Input, 64));
            checking.checking = true;
            let parsing = JobReader::from_reader("in", lines(), rules(LineKind::Input, 64));
            prop_assert_eq!(summary(checking), summary(parsing));
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
