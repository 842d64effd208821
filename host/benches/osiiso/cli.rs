//! The CLI benchmarks: the whole `osiiso-host run` process with a warm vs cold compile cache
//! (B7), and the CLI on 50,000 trivial inputs against osiiso 1.1.0, the Python package, on the
//! same inputs and worker counts (B10, its Python side in `osiiso_bench.py`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde_json::Value;

use crate::measure::{CpuSnapshot, fmt_rate, fmt_secs, fmt_x, list_ms, median, print_other_load};
use crate::{Scale, Verdict};

// ---------------------------------------------------------------------------------------------
// B7: the whole `osiiso-host run` process, warm vs cold compile cache.

pub(crate) fn host_binary() -> anyhow::Result<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_osiiso-host"));
    ensure!(bin.exists(), "{} does not exist", bin.display());
    Ok(bin)
}

fn run_echo(bin: &Path, cache_dir: &Path) -> anyhow::Result<(Duration, String)> {
    let start = Instant::now();
    let output = Command::new(bin)
        .arg("run")
        .arg(osiiso_test_artifacts::ECHO)
        .args([
            "echo",
            "--input",
            "1",
            "--output",
            "jsonl",
            "-q",
            "--cache-dir",
        ])
        .arg(cache_dir)
        .env_remove("RUST_LOG")
        .env_remove("OSIISO_CACHE_DIR")
        .output()
        .context("spawning osiiso-host")?;
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    ensure!(
        output.status.success() && !stdout.is_empty(),
        "osiiso-host run failed ({}): stdout {stdout:?}, stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((elapsed, stdout))
}

pub(crate) fn bench_b7(scale: Scale) -> anyhow::Result<Vec<Verdict>> {
    let bin = host_binary()?;
    let (cold_runs, warm_runs) = (scale.count(3, 1), scale.count(10, 2));
    println!(
        "   {} run {} echo --input 1 --output jsonl -q --cache-dir DIR",
        bin.display(),
        Path::new(osiiso_test_artifacts::ECHO)
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned())
    );
    let scratch = tempfile::tempdir()?;
    let warm_dir = scratch.path().join("warm");
    let mut cold = Vec::new();
    let mut first_output = String::new();
    for i in 0..cold_runs {
        // The first cold run fills the cache the warm runs use.
        let dir = if i == 0 {
            warm_dir.clone()
        } else {
            scratch.path().join(format!("cold-{i}"))
        };
        let (elapsed, stdout) = run_echo(&bin, &dir)?;
        if i == 0 {
            first_output = stdout;
        }
        cold.push(elapsed.as_secs_f64());
    }
    println!("   stdout: {first_output}");
    run_echo(&bin, &warm_dir)?; // page cache, not counted
    let mut warm = Vec::new();
    for _ in 0..warm_runs {
        warm.push(run_echo(&bin, &warm_dir)?.0.as_secs_f64());
    }
    println!(
        "   cold cache ({cold_runs} runs, fresh empty dir each): {}",
        list_ms(&cold)
    );
    println!("   warm cache ({warm_runs} runs): {}", list_ms(&warm));
    let (cold_median, warm_median) = (median(&mut cold), median(&mut warm));
    println!(
        "   median: cold {}  warm {}",
        fmt_secs(cold_median),
        fmt_secs(warm_median)
    );
    Ok(vec![
        Verdict::at_most(
            "B7",
            "warm-cache run, whole process",
            warm_median,
            0.020,
            fmt_secs,
        ),
        Verdict::at_least("B7", "cold / warm", cold_median / warm_median, 5.0, fmt_x),
    ])
}

// ---------------------------------------------------------------------------------------------
// B10: the CLI on 50,000 trivial inputs vs osiiso 1.1.0 (Python 3.13), fresh and warm.

/// The Python side of B10.
const OSIISO_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/osiiso/osiiso_bench.py"
);

/// The backends B10 compares: queue, workers, extra CLI flags, and the goals for CLI/osiiso
/// tasks per second, fresh instances and `--reuse` (README.md, "Benchmarks"; async fresh 2×
/// and process warm 10× from issue 22). `None`: measured for comparison, no goal (the process
/// queue with 4 attempts per worker, which approximates some queue rules for the tasks sent
/// ahead: docs/queues.md §10.4).
type B10Goals = Option<(f64, f64)>;
const B10_BACKENDS: [(&str, usize, &[&str], B10Goals); 4] = [
    ("thread", 4, &[], Some((10.0, 10.0))),
    ("async", 8, &[], Some((2.0, 5.0))),
    ("process", 2, &[], Some((3.0, 10.0))),
    ("process", 2, &["--attempts-per-worker", "4"], None),
];

/// A Python 3.13 with osiiso 1.1.0 installed.
struct Osiiso {
    python: PathBuf,
    versions: String,
}

impl Osiiso {
    /// Finds one: `$OSIISO_PY` if set, else the venv `target/osiiso-bench-venv`, which is
    /// created (Python 3.13 from pyenv, `pip install osiiso==1.1.0`) only when `create`.
    fn find(create: bool) -> Result<Self, String> {
        if let Some(python) = std::env::var_os("OSIISO_PY") {
            let python = PathBuf::from(python);
            return Self::probe(&python).map_err(|e| format!("$OSIISO_PY: {e}"));
        }
        let venv = crate::target_dir().join("osiiso-bench-venv");
        let python = venv.join("bin").join("python");
        if let Ok(found) = Self::probe(&python) {
            return Ok(found);
        }
        if !create {
            return Err(format!(
                "no usable venv at {}, and smoke mode does not create one (set $OSIISO_PY, or \
                 run the full benchmark once)",
                venv.display()
            ));
        }
        if !python.exists() {
            let base = python_3_13()?;
            println!("   creating {} with {}", venv.display(), base.display());
            run_setup(Command::new(&base).arg("-m").arg("venv").arg(&venv))?;
        }
        println!("   pip install osiiso==1.1.0 into {}", venv.display());
        run_setup(Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "--retries",
            "1",
            "--timeout",
            "30",
            "osiiso==1.1.0",
        ]))?;
        Self::probe(&python)
    }

    /// Checks that `python` is a Python 3.13 that imports osiiso 1.1.0.
    fn probe(python: &Path) -> Result<Self, String> {
        let output = Command::new(python)
            .args([
                "-c",
                "import sys, osiiso, importlib.metadata as m; \
                 print(sys.version.split()[0], m.version('osiiso'))",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut words = stdout.split_whitespace();
        let (Some(py), Some(osiiso)) = (words.next(), words.next()) else {
            return Err(format!(
                "{} cannot import osiiso: {}",
                python.display(),
                last_line(&output.stderr)
            ));
        };
        if !py.starts_with("3.13.") || osiiso != "1.1.0" {
            return Err(format!(
                "{} has Python {py} with osiiso {osiiso}; B10 needs Python 3.13 with osiiso 1.1.0",
                python.display()
            ));
        }
        Ok(Self {
            python: python.to_path_buf(),
            versions: format!("Python {py}, osiiso {osiiso}"),
        })
    }

    /// One run of `osiiso_bench.py`: the seconds it timed itself (queue construction through
    /// collecting results) and the wall time of the whole Python process.
    fn run(
        &self,
        queue: &str,
        workers: usize,
        inputs: &Path,
        n: usize,
    ) -> anyhow::Result<(f64, f64)> {
        let start = Instant::now();
        let output = Command::new(&self.python)
            .arg(OSIISO_SCRIPT)
            .args([
                "--backend",
                queue,
                "--workers",
                &workers.to_string(),
                "--inputs",
            ])
            .arg(inputs)
            .stdin(Stdio::null())
            .output()
            .context("spawning the osiiso benchmark")?;
        let wall = start.elapsed().as_secs_f64();
        ensure!(
            output.status.success(),
            "osiiso_bench.py --backend {queue} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_str(last_line(&output.stdout).as_str())
            .context("reading osiiso_bench.py's JSON line")?;
        ensure!(
            report["tasks"].as_u64() == Some(n as u64),
            "osiiso_bench.py ran {} tasks, not {n}",
            report["tasks"]
        );
        let seconds = report["seconds"]
            .as_f64()
            .context("osiiso_bench.py printed no seconds")?;
        Ok((seconds, wall))
    }
}

/// Python 3.13: pyenv's 3.13.0, else `python3.13` on the PATH.
fn python_3_13() -> Result<PathBuf, String> {
    let pyenv = Command::new("pyenv")
        .args(["which", "python3.13"])
        .env("PYENV_VERSION", "3.13.0")
        .stdin(Stdio::null())
        .output();
    let pyenv_error = match pyenv {
        Ok(out) if out.status.success() => {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !path.is_empty() {
                return Ok(PathBuf::from(path));
            }
            "printed nothing".to_string()
        }
        Ok(out) => last_line(&out.stderr),
        Err(e) => e.to_string(),
    };
    let on_path = Command::new("python3.13")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if on_path.is_ok_and(|s| s.success()) {
        return Ok(PathBuf::from("python3.13"));
    }
    Err(format!(
        "no Python 3.13: `PYENV_VERSION=3.13.0 pyenv which python3.13` failed ({pyenv_error}) \
         and there is no python3.13 on the PATH"
    ))
}

/// Runs one set-up command (venv, pip), its output captured.
fn run_setup(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}): {}",
            output.status,
            last_line(&output.stderr)
        ))
    }
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `osiiso-host run DOUBLE.wasm double --inputs FILE --queue Q --workers N --output jsonl -q`,
/// with the bench's own compile cache, and `--reuse` when given.
fn double_command(
    bin: &Path,
    inputs: &Path,
    cache_dir: &Path,
    queue: &str,
    workers: usize,
    extra: &[&str],
    reuse: Option<usize>,
) -> Command {
    let mut command = Command::new(bin);
    command
        .arg("run")
        .arg(osiiso_test_artifacts::DOUBLE)
        .arg("double")
        .arg("--inputs")
        .arg(inputs)
        .args(["--queue", queue, "--workers", &workers.to_string()])
        .args(extra)
        .args(["--output", "jsonl", "-q", "--cache-dir"])
        .arg(cache_dir)
        .env_remove("RUST_LOG")
        .env_remove("OSIISO_CACHE_DIR")
        .stdin(Stdio::null());
    if let Some(reuse) = reuse {
        command.args(["--reuse", &reuse.to_string()]);
    }
    command
}

/// Wall time of one whole CLI process, its stdout going to a null sink.
fn time_cli(mut command: Command) -> anyhow::Result<f64> {
    command.stdout(Stdio::null());
    timed_run(command).map(|(elapsed, _)| elapsed)
}

/// Runs one whole CLI process to its end; returns its wall time and what it wrote. A run that
/// fails is an error with its stderr.
pub(crate) fn timed_run(mut command: Command) -> anyhow::Result<(f64, std::process::Output)> {
    command.stderr(Stdio::piped());
    let start = Instant::now();
    let output = command.output().context("spawning osiiso-host")?;
    let elapsed = start.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "osiiso-host run failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((elapsed, output))
}

/// One untimed run that checks the exit status and that `n` succeeded lines with the right
/// values came out.
fn verify_cli(mut command: Command, n: usize) -> anyhow::Result<()> {
    let output = command.output().context("spawning osiiso-host")?;
    ensure!(
        output.status.success(),
        "osiiso-host run failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (mut lines, mut sum) = (0usize, 0i64);
    for line in stdout.lines() {
        let row: Value = serde_json::from_str(line).context("a result line is not JSON")?;
        ensure!(
            row["status"] == "succeeded",
            "a task did not succeed: {line}"
        );
        sum += row["value"]
            .as_i64()
            .context("a result without an integer value")?;
        lines += 1;
    }
    let n = n as i64;
    ensure!(
        lines as i64 == n && sum == n * (n - 1),
        "{lines} result lines (values summing to {sum}) for {n} inputs"
    );
    Ok(())
}

pub(crate) fn bench_b10(scale: Scale) -> anyhow::Result<Vec<Verdict>> {
    let bin = host_binary()?;
    let n = scale.count(50_000, 200);
    let rounds = scale.count(3, 1);
    let osiiso = match Osiiso::find(scale.full) {
        Ok(osiiso) => {
            println!(
                "   osiiso side: {} ({})",
                osiiso.versions,
                osiiso.python.display()
            );
            Some(osiiso)
        }
        Err(reason) if scale.full => {
            println!("   B10 SKIPPED: {reason}");
            return Ok(Vec::new());
        }
        Err(reason) => {
            println!("   osiiso side skipped (smoke mode runs the CLI side alone): {reason}");
            None
        }
    };
    let scratch = tempfile::tempdir()?;
    let inputs = scratch.path().join("inputs.jsonl");
    let text: String = (0..n).map(|i| format!("{i}\n")).collect();
    std::fs::write(&inputs, text)?;
    let cache_dir = scratch.path().join("cache");
    println!(
        "   inputs 0..{} one per line; task double of {}",
        n - 1,
        Path::new(osiiso_test_artifacts::DOUBLE)
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned())
    );
    println!(
        "   osiiso-host: {} run DOUBLE.wasm double --inputs FILE --queue Q --workers N --output \
         jsonl -q --cache-dir DIR [--reuse {n}] > /dev/null",
        bin.display()
    );
    println!(
        "   osiiso: {} {OSIISO_SCRIPT} --backend Q --workers N --inputs FILE",
        osiiso
            .as_ref()
            .map_or_else(|| "PYTHON".to_string(), |o| o.python.display().to_string())
    );
    println!(
        "   osiiso figure: queue construction through collecting the results, timed inside \
         Python (no interpreter start-up, import or input reading)"
    );
    println!(
        "   osiiso-host figure: wall time of the whole CLI process (start-up, loading the \
         cached component, reading the inputs, writing {n} JSON lines to /dev/null)"
    );
    println!(
        "   per backend: 1 untimed verification run each of fresh and --reuse (exit 0, {n} \
         succeeded lines, values checked; fills the compile cache), then {rounds} rounds of \
         osiiso, CLI fresh, CLI --reuse"
    );

    let mut verdicts = Vec::new();
    for (queue, workers, extra, goals) in B10_BACKENDS {
        let flags = extra.join(" ");
        println!("   -- {queue}, {workers} workers {flags}");
        let command =
            |reuse| double_command(&bin, &inputs, &cache_dir, queue, workers, extra, reuse);
        let load_from = CpuSnapshot::take();
        verify_cli(command(None), n)?;
        verify_cli(command(Some(n)), n)?;
        let (mut py_rates, mut fresh_rates, mut warm_rates) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            let mut line = format!("   round {round}:");
            if let Some(osiiso) = &osiiso {
                let (seconds, wall) = osiiso.run(queue, workers, &inputs, n)?;
                let rate = n as f64 / seconds;
                line += &format!(
                    " osiiso {} ({}; whole python {})",
                    fmt_rate(rate),
                    fmt_secs(seconds),
                    fmt_secs(wall)
                );
                py_rates.push(rate);
            }
            let fresh = time_cli(command(None))?;
            let warm = time_cli(command(Some(n)))?;
            line += &format!(
                "  CLI fresh {} ({})  CLI --reuse {} ({})",
                fmt_rate(n as f64 / fresh),
                fmt_secs(fresh),
                fmt_rate(n as f64 / warm),
                fmt_secs(warm)
            );
            println!("{line}");
            fresh_rates.push(n as f64 / fresh);
            warm_rates.push(n as f64 / warm);
        }
        print_other_load(
            &format!("during {queue}/{workers} {flags}"),
            load_from,
            CpuSnapshot::take(),
        );
        let (fresh, warm) = (median(&mut fresh_rates), median(&mut warm_rates));
        if queue == "thread" {
            // Fresh isolation nearly free: fresh at least half of warm (issue 22).
            verdicts.push(Verdict::at_least(
                "B10",
                "CLI fresh / CLI --reuse tasks/s, thread 4",
                fresh / warm,
                0.5,
                fmt_x,
            ));
        }
        if osiiso.is_none() {
            println!(
                "   median: CLI fresh {}  CLI --reuse {}",
                fmt_rate(fresh),
                fmt_rate(warm)
            );
            continue;
        }
        let py = median(&mut py_rates);
        println!(
            "   median tasks/s: osiiso {}  CLI fresh {} ({})  CLI --reuse {} ({})",
            fmt_rate(py),
            fmt_rate(fresh),
            fmt_x(fresh / py),
            fmt_rate(warm),
            fmt_x(warm / py)
        );
        let Some((fresh_goal, warm_goal)) = goals else {
            continue;
        };
        verdicts.push(Verdict::at_least(
            "B10",
            &format!("CLI/osiiso tasks/s, {queue} {workers}, fresh"),
            fresh / py,
            fresh_goal,
            fmt_x,
        ));
        verdicts.push(Verdict::at_least(
            "B10",
            &format!("CLI/osiiso tasks/s, {queue} {workers}, reuse"),
            warm / py,
            warm_goal,
            fmt_x,
        ));
    }
    Ok(verdicts)
}
