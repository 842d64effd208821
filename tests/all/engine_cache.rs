//! The compile cache: hits, corrupt and stale entries, disabled cache, precompiled artifacts.

use osiiso_host::{CacheOutcome, CompileTier, Host};
use osiiso_test_artifacts as artifacts;

#[test]
fn second_load_hits_and_corrupt_entries_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    // One tier: a tiered host would write a second entry in the background.
    let host = Host::builder()
        .cache_dir(dir.path())
        .compile_tier(CompileTier::Optimized)
        .build()
        .unwrap();
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Miss
    );
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Hit
    );

    let [entry] = crate::support::cache_entries(dir.path())
        .try_into()
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let plugin = host.load(artifacts::ECHO).unwrap();
    assert_eq!(plugin.cache_outcome(), CacheOutcome::Rebuilt);
    assert!(!plugin.tasks().is_empty());
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Hit
    );

    std::fs::write(&entry, b"garbage").unwrap();
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Rebuilt
    );
}

#[test]
fn disabled_cache_writes_nothing() {
    let host = Host::builder().cache(false).build().unwrap();
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Disabled
    );
}

#[test]
fn precompiled_artifact_loads_and_a_tampered_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::builder()
        .cache(false)
        .allow_precompiled(true)
        .build()
        .unwrap();
    let out = dir.path().join("echo.cwasm");
    host.precompile(artifacts::ECHO, Some(&out)).unwrap();
    let plugin = host.load(&out).unwrap();
    assert_eq!(plugin.name(), "echo");
    assert!(plugin.task("greet").is_ok());

    let mut bytes = std::fs::read(&out).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&out, &bytes).unwrap();
    let error = host.load(&out).unwrap_err().to_string();
    assert!(error.contains("digest mismatch"), "{error}");
}
