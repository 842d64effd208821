//! Compile tiers: a host of the baseline tier (Winch) runs plugins correctly, keeps every
//! limit, keeps its compile-cache entries apart from the optimised tier's, and hands its tier
//! to the compile process and to process workers.

use std::time::Duration;

use osiiso_host::{
    AttemptControl, AttemptOutcome, CacheOutcome, CompileTier, FailureKind, Host, Limits,
    LoadError, TaskFailure,
};
use osiiso_test_artifacts as artifacts;
use serde_json::json;

use crate::foreign_guests::{Tool, guest, path_str, skipped};
use crate::support::cli::osiiso_in;
use crate::support::{COMPILE_TIMEOUT, run, run_with};

fn host(tier: CompileTier, cache: &std::path::Path) -> Host {
    Host::builder()
        .cache_dir(cache)
        .compile_tier(tier)
        .compile_timeout(COMPILE_TIMEOUT)
        .build()
        .expect("host builds")
}

fn failure(outcome: AttemptOutcome) -> TaskFailure {
    match outcome {
        AttemptOutcome::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The fingerprint directories of a compile cache: one per engine configuration that wrote
/// an entry.
fn fingerprints(cache: &std::path::Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(cache)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

#[test]
fn the_baseline_tier_runs_a_plugin_and_keeps_its_cache_entries_apart() {
    let cache = tempfile::tempdir().unwrap();
    let baseline = host(CompileTier::Baseline, cache.path());
    assert_eq!(baseline.compile_tier(), CompileTier::Baseline);
    let plugin = baseline.load(artifacts::ECHO).unwrap();
    assert_eq!(plugin.cache_outcome(), CacheOutcome::Miss);
    let report = run(&plugin, "echo", json!({"hello": "world"}));
    assert_eq!(
        report.outcome,
        AttemptOutcome::Succeeded(json!({"hello": "world"}).into())
    );
    assert_eq!(
        baseline.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Hit
    );
    assert_eq!(fingerprints(cache.path()).len(), 1);

    // The optimised tier's code is another engine's: it compiles its own entry, next to the
    // baseline one, and neither replaces the other.
    let optimized = host(CompileTier::Optimized, cache.path());
    let plugin = optimized.load(artifacts::ECHO).unwrap();
    assert_eq!(plugin.cache_outcome(), CacheOutcome::Miss);
    assert_eq!(
        run(&plugin, "echo", json!(1)).outcome,
        AttemptOutcome::Succeeded(json!(1).into())
    );
    assert_eq!(fingerprints(cache.path()).len(), 2);
    assert_eq!(
        baseline.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Hit
    );
}

#[test]
fn every_attempt_limit_holds_on_the_baseline_tier() {
    let cache = tempfile::tempdir().unwrap();
    let baseline = host(CompileTier::Baseline, cache.path());

    // Epoch interruption: a deadline stops a guest that never calls the host.
    let spin = baseline.load(artifacts::HOSTILE_INFINITE_LOOP).unwrap();
    let control = AttemptControl::new(Some(Duration::from_millis(100)));
    let f = failure(run_with(&spin, "spin", json!(null), control).outcome);
    assert_eq!(f.kind, FailureKind::Timeout, "{f}");

    // Fuel: the budget is spent exactly, and reported.
    let spin = spin.with_limits(Limits::new().fuel(1_000_000));
    let report = run(&spin, "spin", json!(null));
    assert_eq!(report.fuel_consumed, Some(1_000_000));
    let f = failure(report.outcome);
    assert_eq!(f.kind, FailureKind::OutOfFuel, "{f}");

    // Memory.
    let bomb = baseline
        .load(artifacts::HOSTILE_MEMORY_BOMB)
        .unwrap()
        .with_limits(Limits::new().max_memory(32 << 20));
    let f = failure(run(&bomb, "bomb", json!(null)).outcome);
    assert_eq!(f.kind, FailureKind::MemoryLimit, "{f}");

    // Stack.
    let recurse = baseline.load(artifacts::HOSTILE_DEEP_RECURSION).unwrap();
    let f = failure(run(&recurse, "recurse", json!(null)).outcome);
    assert_eq!(f.kind, FailureKind::Trap, "{f}");
    assert!(f.message.contains("stack overflow"), "{}", f.message);
}

#[test]
fn the_compile_limits_hold_on_the_baseline_tier() {
    let cache = tempfile::tempdir().unwrap();
    let baseline = Host::builder()
        .cache_dir(cache.path())
        .compile_tier(CompileTier::Baseline)
        .compile_timeout(Duration::ZERO)
        .build()
        .unwrap();
    match baseline.load(artifacts::ECHO) {
        Err(LoadError::CompileTimeout { limit, .. }) => assert_eq!(limit, Duration::ZERO),
        other => panic!("expected a compile timeout, got {other:?}"),
    }
}

/// `--compile-tier baseline` reaches the process workers: they load the parent's baseline
/// entry instead of compiling (and caching) optimised code of their own.
#[test]
fn process_workers_compile_on_the_parents_tier() {
    let cache = tempfile::tempdir().unwrap();
    let out = osiiso_in(
        &[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "7",
            "--queue",
            "process",
            "--workers",
            "1",
            "--compile-tier",
            "baseline",
            "--output",
            "jsonl",
        ],
        cache.path(),
    );
    out.assert_code(0);
    assert_eq!(out.single()["value"], json!(7), "{out:#?}");
    assert_eq!(fingerprints(cache.path()).len(), 1, "{out:#?}");
}

/// The 12 MB componentize-js component, whose first result this tier is for, runs on it.
#[test]
fn a_javascript_component_runs_on_the_baseline_tier() {
    if skipped(
        "a_javascript_component_runs_on_the_baseline_tier",
        &[Tool::Js],
    ) {
        return;
    }
    let js = guest("js-text.wasm");
    let out = crate::support::cli::osiiso(&[
        "run",
        path_str(&js),
        "stats",
        "--input",
        "\"two words\"",
        "--compile-tier",
        "baseline",
        "--output",
        "jsonl",
    ]);
    out.assert_code(0);
    let row = out.single();
    assert_eq!(row["status"], json!("succeeded"), "{out:#?}");
    assert_eq!(row["value"]["words"], json!(2), "{out:#?}");
}
