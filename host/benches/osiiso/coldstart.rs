//! B11, cold start: the time from `osiiso-host run` to the first result of a never-seen
//! plugin (an empty `--cache-dir`), with each compile tier side by side, and the throughput of
//! each tier's code once the cache is warm.
//!
//! The plugins are the foreign guests of `tests/foreign`: the 12 MB componentize-js
//! `js-text.wasm` and the 19 MB componentize-py `py-text.wasm`, looked up in
//! `$OSIISO_FOREIGN_GUESTS`, else in the target directory's `foreign-guests/`
//! (`cargo build -p osiiso-foreign-guests` with the same `CARGO_TARGET_DIR` builds them). A
//! missing one is skipped with a message. In smoke mode the
//! small `echo` guest stands in for them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, ensure};

use crate::measure::{fmt_rate, fmt_secs, fmt_x, list_ms, median};
use crate::{Scale, Verdict};

/// The compile tiers, as `--compile-tier` names them.
const TIERS: [&str; 2] = ["optimized", "baseline"];

/// The goal for the first result of a never-seen plugin.
const FIRST_RESULT_GOAL: f64 = 3.0;

/// One plugin under test: its file, task and one input.
struct Subject {
    label: &'static str,
    path: PathBuf,
    task: &'static str,
    input: String,
}

fn subjects(scale: Scale) -> Vec<Subject> {
    if !scale.full {
        return vec![Subject {
            label: "echo",
            path: PathBuf::from(osiiso_test_artifacts::ECHO),
            task: "echo",
            input: "1".into(),
        }];
    }
    let dir = std::env::var_os("OSIISO_FOREIGN_GUESTS")
        .map_or_else(|| crate::target_dir().join("foreign-guests"), PathBuf::from);
    let mut found = Vec::new();
    for (label, file) in [("js", "js-text.wasm"), ("python", "py-text.wasm")] {
        let path = dir.join(file);
        if path.is_file() {
            found.push(Subject {
                label,
                path,
                task: "stats",
                // About 1 KB of text: the guest does some work per task.
                input: serde_json::to_string(
                    &"the quick brown fox jumps over a lazy dog\n".repeat(24),
                )
                .expect("a string serializes"),
            });
        } else {
            println!(
                "   SKIPPED {label}: {} not built (`cargo build -p osiiso-foreign-guests` with \
                 this CARGO_TARGET_DIR builds it; or set OSIISO_FOREIGN_GUESTS to its directory)",
                path.display()
            );
        }
    }
    found
}

/// `osiiso-host run PLUGIN TASK --compile-tier TIER --cache-dir DIR --output jsonl -q`, with
/// `inputs` (a file of JSON lines) or the subject's one input.
fn command(
    bin: &Path,
    subject: &Subject,
    tier: &str,
    cache: &Path,
    inputs: Option<&Path>,
) -> Command {
    let mut command = Command::new(bin);
    command
        .arg("run")
        .arg(&subject.path)
        .arg(subject.task)
        .args([
            "--compile-tier",
            tier,
            "--output",
            "jsonl",
            "-q",
            "--cache-dir",
        ])
        .arg(cache)
        .env_remove("RUST_LOG")
        .env_remove("OSIISO_CACHE_DIR")
        .env_remove("OSIISO_COMPILE_TIER")
        .stdin(Stdio::null());
    match inputs {
        Some(file) => command.arg("--inputs").arg(file),
        None => command.args(["--input", &subject.input]),
    };
    command
}

/// Runs `command` to the end; returns its wall time and how many results succeeded.
fn time_run(mut command: Command) -> anyhow::Result<(f64, usize)> {
    let start = Instant::now();
    let output = command.output().context("spawning osiiso-host")?;
    let elapsed = start.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "osiiso-host run failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let succeeded = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains("\"status\":\"succeeded\""))
        .count();
    Ok((elapsed, succeeded))
}

pub(crate) fn bench_b11(scale: Scale) -> anyhow::Result<Vec<Verdict>> {
    let bin = crate::cli::host_binary()?;
    let (cold_runs, tasks) = (scale.count(3, 1), scale.count(4000, 20));
    println!(
        "   cold: {} run PLUGIN stats --input TEXT --compile-tier TIER --cache-dir EMPTY \
         --output jsonl -q",
        bin.display()
    );
    println!("   warm: the same with --inputs ({tasks} lines) on the warm cache of that tier");
    let scratch = tempfile::tempdir()?;
    let mut verdicts = Vec::new();
    for subject in subjects(scale) {
        println!("   -- {} ({})", subject.label, subject.path.display());
        // Cold: a fresh empty cache each run, the tiers interleaved.
        let mut cold: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for round in 0..cold_runs {
            for (i, tier) in TIERS.iter().enumerate() {
                let dir = scratch
                    .path()
                    .join(format!("{}-{tier}-{round}", subject.label));
                let (elapsed, ok) = time_run(command(&bin, &subject, tier, &dir, None))?;
                ensure!(ok == 1, "{tier}: the first result did not succeed");
                cold[i].push(elapsed);
            }
        }
        // Warm: each tier on the cache its first cold run filled.
        let inputs = scratch
            .path()
            .join(format!("{}-inputs.jsonl", subject.label));
        std::fs::write(&inputs, format!("{}\n", subject.input).repeat(tasks))?;
        let mut rates = [0.0; 2];
        for (i, tier) in TIERS.iter().enumerate() {
            let dir = scratch.path().join(format!("{}-{tier}-0", subject.label));
            // The run of one input, on the warm cache: the process's own start-up.
            let (start_up, _) = time_run(command(&bin, &subject, tier, &dir, None))?;
            let (elapsed, ok) = time_run(command(&bin, &subject, tier, &dir, Some(&inputs)))?;
            ensure!(ok == tasks, "{tier}: {ok} of {tasks} tasks succeeded");
            rates[i] = tasks as f64 / (elapsed - start_up).max(1e-3);
            println!(
                "   {tier:<9} cold {} (median {}); warm: start-up {}, {} tasks in {} -> {}",
                list_ms(&cold[i]),
                fmt_secs(median(&mut cold[i].clone())),
                fmt_secs(start_up),
                tasks,
                fmt_secs(elapsed),
                fmt_rate(rates[i])
            );
        }
        let (optimized, baseline) = (median(&mut cold[0]), median(&mut cold[1]));
        println!(
            "   first result: optimized / baseline {}; warm throughput: baseline / optimized {}",
            fmt_x(optimized / baseline),
            fmt_x(rates[1] / rates[0])
        );
        let what = |text: &str| format!("{} {text}", subject.label);
        verdicts.push(Verdict::at_most(
            "B11",
            &what("first result, --compile-tier baseline"),
            baseline,
            FIRST_RESULT_GOAL,
            fmt_secs,
        ));
        verdicts.push(Verdict::at_most(
            "B11",
            &what("first result, --compile-tier optimized"),
            optimized,
            FIRST_RESULT_GOAL,
            fmt_secs,
        ));
    }
    Ok(verdicts)
}
