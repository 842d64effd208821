//! The memory benchmark: peak RSS of the whole `osiiso-host run` process on many trivial
//! tasks (`double`, warm instances, output to /dev/null), at two sizes, for a finite run with
//! `--output jsonl`, one with `--output json`, and an infinite run fed on stdin; printed as
//! peak RSS and as bytes per finished task. Plus four sequential 60 MB values with one worker.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, ensure};

use crate::{Scale, Verdict};

/// How a run reads its inputs and writes its rows.
#[derive(Clone, Copy)]
enum Shape {
    /// `--inputs FILE --output jsonl`
    FiniteJsonl,
    /// `--inputs FILE --output json`
    FiniteJson,
    /// `--mode infinite --inputs - --size 1000` with the file on stdin
    InfiniteStdin,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::FiniteJsonl => "finite jsonl",
            Self::FiniteJson => "finite json",
            Self::InfiniteStdin => "infinite stdin",
        }
    }
}

/// Peak RSS in bytes of `command`, run to its end with stdout to /dev/null.
fn peak_rss(mut command: Command, stdin: Option<&Path>) -> anyhow::Result<u64> {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    match stdin {
        Some(path) => command.stdin(File::open(path)?),
        None => command.stdin(Stdio::null()),
    };
    let mut child = command.spawn().context("spawning osiiso-host")?;
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers to fill in.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    ensure!(waited > 0, "wait4: {}", std::io::Error::last_os_error());
    let errors = errors.join().unwrap_or_default();
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "osiiso-host failed (status {status}): {}",
        errors.lines().last().unwrap_or("")
    );
    // ru_maxrss is in KiB on Linux.
    Ok(usage.ru_maxrss as u64 * 1024)
}

fn run_shape(
    bin: &Path,
    queue: &str,
    shape: Shape,
    inputs: &Path,
    cache: &Path,
) -> anyhow::Result<u64> {
    let mut command = Command::new(bin);
    command
        .arg("run")
        .arg(osiiso_test_artifacts::DOUBLE)
        .args(["--queue", queue, "--reuse", "1000", "-q", "--cache-dir"])
        .arg(cache);
    let stdin = match shape {
        Shape::FiniteJsonl | Shape::FiniteJson => {
            command.arg("--inputs").arg(inputs).args([
                "--output",
                if matches!(shape, Shape::FiniteJson) {
                    "json"
                } else {
                    "jsonl"
                },
            ]);
            None
        }
        Shape::InfiniteStdin => {
            command.args([
                "--mode", "infinite", "--inputs", "-", "--size", "1000", "--output", "jsonl",
            ]);
            Some(inputs)
        }
    };
    peak_rss(command, stdin)
}

fn write_inputs(dir: &Path, n: usize) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("inputs-{n}.jsonl"));
    let mut file = std::io::BufWriter::new(File::create(&path)?);
    for i in 0..n {
        writeln!(file, "{i}")?;
    }
    file.flush()?;
    Ok(path)
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

pub(crate) fn bench_memory(scale: Scale) -> anyhow::Result<Vec<Verdict>> {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_osiiso-host"));
    let scratch = tempfile::tempdir()?;
    let cache = scratch.path().join("cache");
    let (small, large) = (scale.count(100_000, 1_000), scale.count(1_000_000, 10_000));
    let small_inputs = write_inputs(scratch.path(), small)?;
    let large_inputs = write_inputs(scratch.path(), large)?;
    let mut verdicts = Vec::new();
    let cases: &[(&str, Shape)] = &[
        ("thread", Shape::FiniteJsonl),
        ("thread", Shape::FiniteJson),
        ("thread", Shape::InfiniteStdin),
        ("async", Shape::FiniteJsonl),
        ("async", Shape::InfiniteStdin),
        ("process", Shape::FiniteJsonl),
        ("process", Shape::InfiniteStdin),
    ];
    println!(
        "   peak RSS of `osiiso-host run double.wasm --reuse 1000` ({small} and {large} tasks)"
    );
    for &(queue, shape) in cases {
        let at_small = run_shape(&bin, queue, shape, &small_inputs, &cache)?;
        let at_large = run_shape(&bin, queue, shape, &large_inputs, &cache)?;
        let per_task = at_large.saturating_sub(at_small) as f64 / (large - small) as f64;
        println!(
            "   {queue:<8} {:<15} {:>8} at {small}, {:>8} at {large}: {per_task:>7.1} bytes per \
             finished task ({:.0} bytes per task in all at {large})",
            shape.name(),
            mb(at_small),
            mb(at_large),
            at_large as f64 / large as f64,
        );
        let what = format!("{queue} {}: bytes per task", shape.name());
        verdicts.push(Verdict::at_most(
            "memory",
            &what,
            per_task,
            // A row's index on disk for `json`; nothing for the others.
            if matches!(shape, Shape::FiniteJson) {
                32.0
            } else {
                8.0
            },
            |v| format!("{v:.1} B"),
        ));
        if matches!(shape, Shape::FiniteJsonl) && queue == "thread" {
            verdicts.push(Verdict::at_most(
                "memory",
                &format!("thread finite jsonl, {large} tasks: peak"),
                at_large as f64 / 1e6,
                300.0,
                |v| format!("{v:.0} MB"),
            ));
        }
    }

    // Four sequential large values with one worker: each is kept once, as its text.
    let elements = scale.count(30_000_000, 300_000);
    let mut command = Command::new(&bin);
    command
        .arg("run")
        .arg(osiiso_test_artifacts::HOSTILE_OVERSIZED)
        .args(["big_array", "--workers", "1", "--output", "jsonl", "-q"])
        .arg("--cache-dir")
        .arg(&cache);
    for _ in 0..4 {
        command.arg(format!("--input={elements}"));
    }
    let peak = peak_rss(command, None)?;
    println!(
        "   4 sequential values of {} each, --workers 1: peak {}",
        mb(2 * elements as u64),
        mb(peak)
    );
    verdicts.push(Verdict::at_most(
        "memory",
        "4 x 60 MB values, 1 worker: peak",
        peak as f64 / (1u64 << 30) as f64,
        1.3,
        |v| format!("{v:.2} GiB"),
    ));
    Ok(verdicts)
}
