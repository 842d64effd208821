//! B11, cold start: the time from `osiiso-host run` to the first result of a never-seen
//! plugin (an empty `--cache-dir`), with each compile tier side by side, and the throughput of
//! each tier's code once the cache is warm. For `tiered` (the default), a long run from an
//! empty cache as well: when it moved to optimised code, and the throughput of the next run,
//! on the cache it left.
//!
//! The plugins are the foreign guests of `tests/foreign`: the 12 MB componentize-js
//! `js-text.wasm` and the 19 MB componentize-py `py-text.wasm`, looked up in
//! `$OSIISO_FOREIGN_GUESTS`, else in the target directory's `foreign-guests/`
//! (`cargo build -p osiiso-foreign-guests` with the same `CARGO_TARGET_DIR` builds them). A
//! missing one is skipped with a message. In smoke mode the
//! small `echo` guest stands in for them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::ensure;

use crate::measure::{fmt_rate, fmt_secs, fmt_x, list_ms, median};
use crate::{Scale, Verdict};

/// The compile tiers, as `--compile-tier` names them.
const TIERS: [&str; 3] = ["optimized", "baseline", "tiered"];
const OPTIMIZED: usize = 0;
const BASELINE: usize = 1;
const TIERED: usize = 2;

/// The goal for the first result of a never-seen plugin.
const FIRST_RESULT_GOAL: f64 = 3.0;
/// The goal for the steady state: within 10% of the optimised code's throughput.
const STEADY_STATE_GOAL: f64 = 0.9;
/// What the host logs when a plugin moves to optimised code (`engine/plugin/optimize.rs`).
const MOVED: &str = "optimised code in use";

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
fn time_run(command: Command) -> anyhow::Result<(f64, usize)> {
    time_run_logged(command).map(|(elapsed, succeeded, _)| (elapsed, succeeded))
}

/// [`time_run`], also returning stderr.
fn time_run_logged(command: Command) -> anyhow::Result<(f64, usize, String)> {
    let (elapsed, output) = crate::cli::timed_run(command)?;
    let succeeded = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains("\"status\":\"succeeded\""))
        .count();
    Ok((
        elapsed,
        succeeded,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// When the log of a tiered run says its plugin moved to optimised code: the `seconds` the
/// background compilation took.
fn moved_after(log: &str) -> Option<f64> {
    let line = log.lines().find(|line| line.contains(MOVED))?;
    let (_, rest) = line.split_once("seconds=")?;
    rest.split_whitespace().next()?.parse().ok()
}

pub(crate) fn bench_b11(scale: Scale) -> anyhow::Result<Vec<Verdict>> {
    let bin = crate::cli::host_binary()?;
    let (cold_runs, warm_rounds, tasks) =
        (scale.count(3, 1), scale.count(3, 1), scale.count(4000, 20));
    println!(
        "   cold: {} run PLUGIN stats --input TEXT --compile-tier TIER --cache-dir EMPTY \
         --output jsonl -q",
        bin.display()
    );
    println!(
        "   warm: the same with --inputs ({tasks} lines) on the warm cache of that tier, \
         {warm_rounds} interleaved rounds"
    );
    // Long enough for Cranelift to finish on 2 cores busy with the run itself.
    let long_tasks = tasks * 3;
    println!(
        "   tiered, long: --inputs ({long_tasks} lines) from an empty cache, then --inputs \
         ({tasks} lines) on the cache it left"
    );
    let scratch = tempfile::tempdir()?;
    let mut verdicts = Vec::new();
    for subject in subjects(scale) {
        println!("   -- {} ({})", subject.label, subject.path.display());
        // Cold: a fresh empty cache each run, the tiers interleaved.
        let mut cold: [Vec<f64>; 3] = Default::default();
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
        let inputs = scratch
            .path()
            .join(format!("{}-inputs.jsonl", subject.label));
        std::fs::write(&inputs, format!("{}\n", subject.input).repeat(tasks))?;
        let long_inputs = scratch.path().join(format!("{}-long.jsonl", subject.label));
        std::fs::write(
            &long_inputs,
            format!("{}\n", subject.input).repeat(long_tasks),
        )?;
        // Tiered: a long run from an empty cache moves to optimised code on the way and
        // leaves it in the cache; the runs after it start on it.
        let long_dir = scratch
            .path()
            .join(format!("{}-tiered-long", subject.label));
        let mut long = command(&bin, &subject, "tiered", &long_dir, Some(&long_inputs));
        long.env("RUST_LOG", "osiiso_host::engine::plugin=info");
        let (long_elapsed, ok, log) = time_run_logged(long)?;
        ensure!(
            ok == long_tasks,
            "tiered: {ok} of {long_tasks} tasks succeeded"
        );
        let moved = moved_after(&log);
        println!(
            "   tiered, long cold run: {long_tasks} tasks in {}, optimised code after {}",
            fmt_secs(long_elapsed),
            moved.map_or_else(|| "never (the run ended first)".into(), fmt_secs),
        );
        // Warm: each fixed tier on the cache its first cold run filled, and tiered on the
        // cache the long run left, interleaved rounds.
        let warm_rate = |dir: &Path, tier: &str| -> anyhow::Result<(f64, f64)> {
            // The run of one input, on the warm cache: the process's own start-up.
            let (start_up, _) = time_run(command(&bin, &subject, tier, dir, None))?;
            let (elapsed, ok) = time_run(command(&bin, &subject, tier, dir, Some(&inputs)))?;
            ensure!(ok == tasks, "{tier}: {ok} of {tasks} tasks succeeded");
            Ok((start_up, tasks as f64 / (elapsed - start_up).max(1e-3)))
        };
        let mut start_ups: [Vec<f64>; 3] = Default::default();
        let mut samples: [Vec<f64>; 3] = Default::default();
        for _ in 0..warm_rounds {
            for (i, tier) in TIERS.iter().enumerate() {
                let dir = match i {
                    TIERED => long_dir.clone(),
                    _ => scratch.path().join(format!("{}-{tier}-0", subject.label)),
                };
                let (start_up, rate) = warm_rate(&dir, tier)?;
                start_ups[i].push(start_up);
                samples[i].push(rate);
            }
        }
        let mut rates = [0.0; 3];
        for (i, tier) in TIERS.iter().enumerate() {
            rates[i] = median(&mut samples[i].clone());
            println!(
                "   {tier:<9} cold {} (median {}); warm{}: start-up {}, {} (rounds {})",
                list_ms(&cold[i]),
                fmt_secs(median(&mut cold[i].clone())),
                if i == TIERED {
                    " (after the long run)"
                } else {
                    ""
                },
                fmt_secs(median(&mut start_ups[i].clone())),
                fmt_rate(rates[i]),
                samples[i]
                    .iter()
                    .map(|rate| fmt_rate(*rate))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let medians = cold.map(|mut runs| median(&mut runs));
        println!(
            "   first result: optimized / baseline {}, optimized / tiered {}; warm throughput: \
             baseline / optimized {}, tiered (next run) / optimized {}",
            fmt_x(medians[OPTIMIZED] / medians[BASELINE]),
            fmt_x(medians[OPTIMIZED] / medians[TIERED]),
            fmt_x(rates[BASELINE] / rates[OPTIMIZED]),
            fmt_x(rates[TIERED] / rates[OPTIMIZED])
        );
        let what = |text: &str| format!("{} {text}", subject.label);
        for (i, tier) in TIERS.iter().enumerate() {
            verdicts.push(Verdict::at_most(
                "B11",
                &what(&format!("first result, --compile-tier {tier}")),
                medians[i],
                FIRST_RESULT_GOAL,
                fmt_secs,
            ));
        }
        verdicts.push(Verdict::at_least(
            "B11",
            &what("steady state, tiered / optimized throughput"),
            rates[TIERED] / rates[OPTIMIZED],
            STEADY_STATE_GOAL,
            fmt_x,
        ));
    }
    Ok(verdicts)
}
