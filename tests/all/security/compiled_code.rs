//! Compiled code: precompiled artifacts refused without the opt-in, crafted native code never
//! deserialized, planted and swapped compile-cache entries.

use std::os::unix::fs::PermissionsExt;

use osiiso_host::{CacheOutcome, Host, LoadError};
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
    let host = Host::builder().cache_dir(cache.path()).build().unwrap();
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
