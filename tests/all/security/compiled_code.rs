//! Compiled code: precompiled artifacts refused without the opt-in, crafted native code never
//! deserialized, planted and swapped compile-cache entries.

use std::os::unix::fs::PermissionsExt;

use osiiso_host::{CacheOutcome, CompileTier, Host, LoadError};
use osiiso_test_artifacts as artifacts;

use crate::support::cli::{osiiso, osiiso_in, path_str};

#[test]
fn a_precompiled_artifact_named_wasm_is_refused_without_the_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("innocent.wasm");
    let out = osiiso(&["compile", artifacts::ECHO, "-o", path_str(&artifact)]);
    out.assert_code(0);
    for args in [
        vec!["list", path_str(&artifact)],
        vec!["run", path_str(&artifact), "echo", "--input", "1", "-q"],
    ] {
        osiiso(&args).assert_usage_error(&["innocent.wasm", "precompiled", "--allow-precompiled"]);
    }
    // The opt-in, for a trusted file.
    let out = osiiso(&[
        "run",
        path_str(&artifact),
        "echo",
        "--input",
        "5",
        "--allow-precompiled",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(0);
    assert_eq!(out.single()["value"], 5);
}

#[test]
fn crafted_native_code_is_never_deserialized() {
    let dir = tempfile::tempdir().unwrap();
    // Headers of every kind of compiled code, followed by junk: refused as precompiled
    // before anything reads the payload.
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(4096, 0);
    for (name, bytes) in [
        (
            "v1.wasm",
            [b"osiiso-cwasm-v1\0".as_slice(), &[0; 64]].concat(),
        ),
        (
            "v2.wasm",
            [b"osiiso-cwasm-v2\0".as_slice(), &[0; 64]].concat(),
        ),
        (
            "entry.wasm",
            [b"osiiso-cache-v2\0".as_slice(), &[0; 64]].concat(),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        osiiso(&["list", path_str(&path)]).assert_usage_error(&[name, "precompiled"]);
    }
    let path = dir.path().join("elf.wasm");
    std::fs::write(&path, &elf).unwrap();
    let out = osiiso(&["list", path_str(&path)]);
    out.assert_code(2);
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
}

#[test]
fn a_swapped_cache_entry_is_rebuilt_and_never_runs_another_plugin() {
    let cache = tempfile::tempdir().unwrap();
    // One tier: a tiered host would write more entries in the background.
    let host = Host::builder()
        .cache_dir(cache.path())
        .compile_tier(CompileTier::Optimized)
        .build()
        .unwrap();
    let echo = host.load(artifacts::ECHO).unwrap();
    let score = host.load(artifacts::SCORE).unwrap();
    let [a, b] = crate::support::cache_entries(cache.path())
        .try_into()
        .unwrap();
    let (echo_entry, score_entry) = if a.to_string_lossy().contains(echo.hash()) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(score_entry.to_string_lossy().contains(score.hash()));
    // Copy score's entry over echo's: loading echo must rebuild echo, not run score.
    std::fs::copy(&score_entry, &echo_entry).unwrap();
    let reloaded = host.load(artifacts::ECHO).unwrap();
    assert_eq!(reloaded.cache_outcome(), CacheOutcome::Rebuilt);
    assert_eq!(
        reloaded.tasks().iter().map(|t| &t.name).collect::<Vec<_>>(),
        echo.tasks().iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    // The same through the CLI, with a fresh process.
    std::fs::copy(&score_entry, &echo_entry).unwrap();
    let out = osiiso_in(
        &[
            "list",
            artifacts::ECHO,
            "--cache-dir",
            path_str(cache.path()),
        ],
        cache.path(),
    );
    out.assert_code(0);
    assert!(out.stdout.contains("greet"), "{out:#?}");
    assert!(!out.stdout.contains("score"), "{out:#?}");

    // An entry planted by someone without the key is rebuilt too.
    let mut planted = b"osiiso-cache-v2\0".to_vec();
    planted.extend([0xab; 32]);
    planted.extend(std::fs::read(&score_entry).unwrap().split_off(48));
    std::fs::write(&echo_entry, planted).unwrap();
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Rebuilt
    );
    // The key is the user's alone.
    let key = std::fs::metadata(cache.path().join("key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o077, 0);
}

#[test]
fn a_cache_directory_others_can_write_is_not_used() {
    let parent = tempfile::tempdir().unwrap();
    let cache = parent.path().join("shared");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = osiiso_in(
        &[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "1",
            "--output",
            "jsonl",
            "-q",
        ],
        &cache,
    );
    out.assert_code(0);
    assert!(
        out.stderr.contains("not using the compile cache") && out.stderr.contains("shared"),
        "the warning names the directory: {out:#?}"
    );
    assert!(
        crate::support::cache_entries(&cache).is_empty(),
        "nothing was written there"
    );
    let host = Host::builder().cache_dir(&cache).build().unwrap();
    assert!(!host.cache_enabled());
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Disabled
    );
}

#[test]
fn precompiled_loads_need_the_builder_flag() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::builder().cache(false).build().unwrap();
    let out = dir.path().join("echo.cwasm");
    host.precompile(artifacts::ECHO, Some(&out)).unwrap();
    assert!(matches!(
        host.load(&out),
        Err(LoadError::Precompiled { .. })
    ));
    let trusting = Host::builder()
        .cache(false)
        .allow_precompiled(true)
        .build()
        .unwrap();
    assert_eq!(
        trusting.load(&out).unwrap().cache_outcome(),
        CacheOutcome::Precompiled
    );
}

/// A library user who grants the compile cache to a guest, directly or through a directory
/// holding it, gets no attempt run: a guest that could write the cache (or read its key) could
/// have the host run native code of its choice. The CLI refuses the same grant at start.
#[test]
fn a_sandbox_reaching_the_compile_cache_runs_no_attempt() {
    use osiiso_host::{AttemptOutcome, DirGrant, FailureKind, Sandbox};

    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let host = Host::builder()
        .cache_dir(&cache)
        .compile_timeout(crate::support::COMPILE_TIMEOUT)
        .build()
        .unwrap();
    let plugin = host.load(artifacts::ECHO).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let run = |dir: &std::path::Path| {
        let grant = DirGrant::parse(&format!("{}::/g", dir.display()), true).unwrap();
        let plugin = plugin.clone().with_sandbox(Sandbox::new().grant(grant));
        crate::support::run(&plugin, "echo", serde_json::json!(1)).outcome
    };
    for dir in [cache.clone(), root.path().to_path_buf()] {
        match run(&dir) {
            AttemptOutcome::Failed(failure) => {
                assert_eq!(failure.kind, FailureKind::PluginLoad, "{failure:?}");
                assert!(failure.message.contains("compile cache"), "{failure:?}");
            }
            other => panic!("{}: expected a refusal, got {other:?}", dir.display()),
        }
    }
    // A directory apart from the cache is granted as usual.
    assert!(matches!(run(outside.path()), AttemptOutcome::Succeeded(_)));

    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        "1",
        "--dir-ro",
        path_str(root.path()),
        "--cache-dir",
        path_str(&cache),
    ]);
    out.assert_usage_error(&["compile cache"]);
}
