//! The memory benchmark: peak RSS of the whole `osiiso-host run` process tree on many trivial
//! tasks (`double`, output to /dev/null), at two sizes, on each queue: a finite run with
//! `--output jsonl` (with warm instances, `--reuse 1000`, and with a fresh one per task), one
//! with `--output json`, and an infinite run fed on stdin; printed as peak RSS and as bytes per
//! finished task. Plus four sequential 60 MB values with one worker.
//!
//! The peak is the larger of the kernel's `ru_maxrss` (the largest single process) and the
//! summed RSS of the host and its worker processes sampled every 50 ms, so that the process
//! queue's workers count together.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};

use crate::{Scale, Verdict};

/// How a run reads its inputs and writes its rows.
#[derive(Clone, Copy)]
enum Shape {
    /// `--inputs FILE --output jsonl`
    FiniteJsonl,
    /// `--inputs FILE --output json`
    FiniteJson,
    /// `--mode infinite --inputs - --output jsonl` with the file on stdin
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
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, pid) = (done.clone(), child.id());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::SeqCst) {
                peak = peak.max(tree_rss(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
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
    done.store(true, Ordering::SeqCst);
    let sampled = sampler.join().unwrap_or(0);
    ensure!(waited > 0, "wait4: {}", std::io::Error::last_os_error());
    let errors = errors.join().unwrap_or_default();
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "osiiso-host failed (status {status}): {}",
        errors.lines().last().unwrap_or("")
    );
    // ru_maxrss is in KiB on Linux.
    Ok((usage.ru_maxrss as u64 * 1024).max(sampled))
}

/// The summed RSS in bytes of `root` and every process descended from it, from /proc (0 where
/// there is no /proc).
fn tree_rss(root: u32) -> u64 {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent is the second field after the command name's closing parenthesis.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(pid);
        }
    }
    let (mut total, mut todo) = (0, vec![root]);
    while let Some(pid) = todo.pop() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        total += kib.unwrap_or(0) * 1024;
        todo.extend(children.remove(&pid).unwrap_or_default());
    }
    total
}

/// One measured run: a queue, a shape, and whether instances are warm (`--reuse 1000`).
#[derive(Clone, Copy)]
struct Case {
    queue: &'static str,
    shape: Shape,
    warm: bool,
}

fn run_shape(bin: &Path, case: Case, inputs: &Path, cache: &Path) -> anyhow::Result<u64> {
    let Case { queue, shape, warm } = case;
    let mut command = Command::new(bin);
    command
        .arg("run")
        .arg(osiiso_test_artifacts::DOUBLE)
        .args(["--queue", queue, "-q", "--cache-dir"])
        .arg(cache);
    if warm {
        command.args(["--reuse", "1000"]);
    }
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
            command.args(["--mode", "infinite", "--inputs", "-", "--output", "jsonl"]);
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
    let mut cases = Vec::new();
    for queue in ["thread", "async", "process"] {
        for shape in [Shape::FiniteJsonl, Shape::FiniteJson, Shape::InfiniteStdin] {
            cases.push(Case {
                queue,
                shape,
                warm: true,
            });
        }
        cases.push(Case {
            queue,
            shape: Shape::FiniteJsonl,
            warm: false,
        });
    }
    println!(
        "   peak RSS of `osiiso-host run double.wasm` ({small} and {large} tasks; warm: \
         --reuse 1000, fresh: an instance per task)"
    );
    for case in cases {
        let Case { queue, shape, warm } = case;
        let at_small = run_shape(&bin, case, &small_inputs, &cache)?;
        let at_large = run_shape(&bin, case, &large_inputs, &cache)?;
        let per_task = at_large.saturating_sub(at_small) as f64 / (large - small) as f64;
        let how = if warm { "warm" } else { "fresh" };
        println!(
            "   {queue:<8} {:<15} {how:<6} {:>8} at {small}, {:>8} at {large}: {per_task:>7.1} \
             bytes per finished task ({:.0} bytes per task in all at {large})",
            shape.name(),
            mb(at_small),
            mb(at_large),
            at_large as f64 / large as f64,
        );
        let what = format!("{queue} {} {how}", shape.name());
        verdicts.push(Verdict::at_most(
            "memory",
            &format!("{what}: bytes per task"),
            per_task,
            // A row's index on disk for `json`; nothing for the others.
            if matches!(shape, Shape::FiniteJson) {
                32.0
            } else {
                8.0
            },
            |v| format!("{v:.1} B"),
        ));
        verdicts.push(Verdict::at_most(
            "memory",
            &format!("{what}, {large} tasks: peak"),
            at_large as f64 / 1e6,
            300.0,
            |v| format!("{v:.0} MB"),
        ));
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
