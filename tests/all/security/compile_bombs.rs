//! Compile bombs: components that are small on disk and cost the compiler minutes or
//! gigabytes (SECURITY.md, "Exhaust the host"). Each bomb is a real plugin — the echo
//! component with one more core module, which nothing instantiates but the compiler still
//! compiles — so that only the compile limits can stop it. The limits here are lowered far
//! below what the bombs need: about 600 MB and minutes of CPU.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use osiiso_host::{AttemptOutcome, CacheOutcome, CompileTier, Compiler, Host, LoadError};
use osiiso_test_artifacts as artifacts;

use crate::support::cli::{osiiso, osiiso_in, path_str};

/// The lowest compile memory limit; a memory bomb needs ten times as much.
const MEMORY: &str = "64MiB";
/// A compile timeout a time bomb overruns many times over, however fast the machine.
const TIMEOUT: &str = "2s";

// ---------------------------------------------------------------------------------------------
// the bombs, in the binary format

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    leb128(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// A core module of functions `() -> ()` with these bodies (locals and code, `end`
/// included).
fn core_module(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut functions = Vec::new();
    leb128(bodies.len(), &mut functions);
    functions.resize(functions.len() + bodies.len(), 0x00);
    let mut code = Vec::new();
    leb128(bodies.len(), &mut code);
    for body in bodies {
        leb128(body.len(), &mut code);
        code.extend_from_slice(body);
    }
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend(section(1, b"\x01\x60\x00\x00"));
    module.extend(section(3, &functions));
    module.extend(section(10, &code));
    module
}

/// The echo plugin plus a core module of these function bodies.
fn echo_with(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut component = std::fs::read(artifacts::ECHO).unwrap();
    component.extend(section(1, &core_module(bodies)));
    component
}

/// `n` empty functions: about 6 KB of compiler memory each.
fn many_functions(n: usize) -> Vec<u8> {
    echo_with(&vec![vec![0x00, 0x0b]; n])
}

/// One function of `depth` nested `loop`s: quadratic compile time.
fn nested_loops(depth: usize) -> Vec<u8> {
    let mut body = vec![0x00];
    body.extend([0x03, 0x40].repeat(depth));
    body.extend(vec![0x0b; depth + 1]);
    echo_with(&[body])
}

/// One function of `depth` nested `if`s.
fn nested_ifs(depth: usize) -> Vec<u8> {
    let mut body = vec![0x00];
    body.extend([0x41, 0x00, 0x04, 0x40].repeat(depth));
    body.extend(vec![0x0b; depth + 1]);
    echo_with(&[body])
}

/// `depth` nested blocks holding `count` blocks that each end in a `br_table` over every
/// depth: a million edges into a few blocks, superlinear compile time.
fn br_tables(depth: usize, count: usize) -> Vec<u8> {
    let mut table = vec![0x02, 0x40, 0x41, 0x00, 0x0e];
    leb128(depth, &mut table);
    for target in 0..depth {
        leb128(target, &mut table);
    }
    table.extend([0x00, 0x0b]);
    let mut body = vec![0x00];
    body.extend([0x02, 0x40].repeat(depth));
    body.extend(table.repeat(count));
    body.extend(vec![0x0b; depth + 1]);
    echo_with(&[body])
}

/// Writes `bytes` as `name` in `dir`.
fn plugin(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// the CLI: exit 2, naming the limit and the flag that raises it

#[test]
fn list_refuses_a_memory_bomb_naming_the_compile_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = plugin(dir.path(), "bomb.wasm", &many_functions(100_000));
    osiiso(&[
        "list",
        path_str(&bomb),
        "--no-cache",
        "--compile-memory",
        MEMORY,
    ])
    .assert_usage_error(&[
        "bomb.wasm",
        "compile memory limit of 64 MiB",
        "--compile-memory",
    ]);
}

/// The time bombs: each costs Cranelift minutes.
fn time_bombs() -> [(&'static str, Vec<u8>); 3] {
    [
        ("loops.wasm", nested_loops(30_000)),
        ("ifs.wasm", nested_ifs(100_000)),
        ("tables.wasm", br_tables(10, 100_000)),
    ]
}

#[test]
fn run_refuses_a_time_bomb_naming_the_compile_timeout_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bomb) in time_bombs() {
        let bomb = plugin(dir.path(), name, &bomb);
        osiiso(&[
            "run",
            path_str(&bomb),
            "echo",
            "--input",
            "1",
            "--no-cache",
            "--compile-timeout",
            TIMEOUT,
            "--compile-tier",
            "optimized",
            "--output",
            "jsonl",
        ])
        .assert_usage_error(&[name, "compile timeout of 2s", "--compile-timeout"]);
    }
}

#[test]
fn compile_refuses_bombs_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let memory_bomb = plugin(dir.path(), "memory.wasm", &many_functions(100_000));
    let out = dir.path().join("memory.cwasm");
    osiiso_in(
        &[
            "compile",
            path_str(&memory_bomb),
            "-o",
            path_str(&out),
            "--compile-memory",
            MEMORY,
        ],
        &cache,
    )
    .assert_usage_error(&["memory.wasm", "compile memory limit", "--compile-memory"]);
    assert!(!out.exists(), "no artifact is written");

    let time_bomb = plugin(dir.path(), "time.wasm", &nested_loops(30_000));
    osiiso_in(
        &[
            "compile",
            path_str(&time_bomb),
            "--compile-timeout",
            TIMEOUT,
        ],
        &cache,
    )
    .assert_usage_error(&["time.wasm", "compile timeout", "--compile-timeout"]);
    assert!(
        crate::support::cache_entries(&cache).is_empty(),
        "no cache entry is written"
    );
}

#[test]
fn compile_limits_below_what_a_compile_process_needs_are_refused() {
    for args in [
        ["--compile-memory", "1MiB"],
        ["--compile-memory", "lots"],
        ["--compile-timeout", "soon"],
        ["--compile-timeout", "0s"],
    ] {
        let mut all = vec!["list", artifacts::ECHO];
        all.extend(args);
        let out = osiiso(&all);
        out.assert_code(2);
        assert!(out.stderr.contains(args[0]), "{out:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// the library

#[test]
fn a_host_refuses_bombs_and_keeps_compiling_honest_plugins() {
    let cache = tempfile::tempdir().unwrap();
    // Twice what the echo plugin needs, a fifth of what the memory bomb needs.
    let memory = 128 << 20;
    // Cranelift's limits (a tiered host runs the time bomb on Winch's code: the test above).
    let host = Host::builder()
        .cache_dir(cache.path())
        .compile_memory(memory)
        .compile_tier(CompileTier::Optimized)
        .build()
        .unwrap();
    assert!(
        host.compile_program().is_some(),
        "the tests find target/<profile>/osiiso-host"
    );
    assert_eq!(host.compile_memory(), memory);

    // A bomb too small to matter: the construction itself is a valid plugin.
    let small = host.load_bytes("small", &many_functions(100)).unwrap();
    assert!(small.task("echo").is_ok());

    match host.load_bytes("memory-bomb", &many_functions(100_000)) {
        Err(LoadError::CompileMemory { plugin, limit, .. }) => {
            assert_eq!((plugin.as_str(), limit), ("memory-bomb", memory));
        }
        other => panic!("expected CompileMemory, got {other:?}"),
    }
    let hasty = Host::builder()
        .cache_dir(cache.path())
        .compile_timeout(Duration::from_secs(2))
        .compile_tier(CompileTier::Optimized)
        .build()
        .unwrap();
    match hasty.load_bytes("time-bomb", &nested_loops(30_000)) {
        Err(error @ LoadError::CompileTimeout { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("time-bomb") && message.contains("compile_timeout"),
                "{message}"
            );
        }
        other => panic!("expected CompileTimeout, got {other:?}"),
    }
    // Only the honest plugin reached the cache, and the host still compiles.
    assert_eq!(crate::support::cache_entries(cache.path()).len(), 1);
    let echo = host.load(artifacts::ECHO).unwrap();
    assert_eq!(echo.cache_outcome(), CacheOutcome::Miss);
}

/// Winch compiles each time bomb in well under a second, so a tiered host (the default) runs
/// it on baseline code; Cranelift's compilation in the background is stopped by the compile
/// timeout, and the plugin stays on its baseline code and keeps working.
#[test]
fn a_tiered_host_runs_a_time_bomb_on_baseline_code_and_stops_its_optimization() {
    let cache = tempfile::tempdir().unwrap();
    // Winch needs well under a second for each bomb (ten times that on a loaded machine
    // still fits); Cranelift needs minutes.
    let host = Host::builder()
        .cache_dir(cache.path())
        .compile_timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    assert_eq!(host.compile_tier(), CompileTier::Tiered);
    let mut plugins = Vec::new();
    for (name, bomb) in time_bombs() {
        let plugin = host.load_bytes(name, &bomb).unwrap();
        assert_eq!(plugin.compile_tier(), CompileTier::Baseline, "{name}");
        let report = crate::support::run(&plugin, "echo", serde_json::json!(name));
        assert_eq!(
            report.outcome,
            AttemptOutcome::Succeeded(serde_json::json!(name).into())
        );
        plugins.push(plugin);
    }
    // Three optimisations, one after the other, each stopped after 4 s.
    let give_up = std::time::Instant::now() + crate::support::COMPILE_TIMEOUT;
    while host.optimizations_failed() < plugins.len() as u64 {
        assert!(
            std::time::Instant::now() < give_up,
            "the optimisations never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(host.plugins_optimized(), 0);
    for plugin in &plugins {
        assert_eq!(plugin.compile_tier(), CompileTier::Baseline);
        let report = crate::support::run(plugin, "echo", serde_json::json!(1));
        assert_eq!(
            report.outcome,
            AttemptOutcome::Succeeded(serde_json::json!(1).into())
        );
    }
    // Only their baseline code reached the cache.
    assert_eq!(
        crate::support::cache_entries(cache.path()).len(),
        plugins.len()
    );
}

/// The compile processes this test binary started with a data limit of `bytes`, found in
/// `/proc` (a distinctive limit tells one test's from the others').
fn compile_processes_limited_to(bytes: u64) -> Vec<u32> {
    let me = std::process::id().to_string();
    let limit = format!("Max data size {bytes} ");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The parent pid is the second field after the command's closing parenthesis.
        let parent = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1));
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let limits = std::fs::read_to_string(entry.path().join("limits")).unwrap_or_default();
        let limits = limits.split_whitespace().collect::<Vec<_>>().join(" ");
        if parent == Some(me.as_str())
            && String::from_utf8_lossy(&cmdline).contains("--osiiso-compile")
            && limits.contains(&limit)
        {
            found.push(pid);
        }
    }
    found
}

/// A plugin dropped while Cranelift compiles it in the background keeps compiling (its
/// optimised code goes to the cache for its next load), but once its host is dropped too
/// the compile process is killed rather than left to run until the compile timeout: here
/// ten minutes, for a bomb that needs most of a minute.
#[test]
fn a_dropped_host_stops_its_background_compilation() {
    // A data limit no other test uses marks this test's compile processes.
    const MEMORY: u64 = 777 << 20;
    let cache = tempfile::tempdir().unwrap();
    let host = Host::builder()
        .cache_dir(cache.path())
        .compile_timeout(Duration::from_secs(600))
        .compile_memory(MEMORY)
        .build()
        .unwrap();
    let [(name, bomb), ..] = time_bombs();
    let plugin = host.load_bytes(name, &bomb).unwrap();
    let report = crate::support::run(&plugin, "echo", serde_json::json!(1));
    assert!(matches!(report.outcome, AttemptOutcome::Succeeded(_)));
    // The attempt started the optimisation: wait for its compile process.
    let give_up = std::time::Instant::now() + Duration::from_secs(120);
    while compile_processes_limited_to(MEMORY).is_empty() {
        assert!(
            std::time::Instant::now() < give_up,
            "no background compilation started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Without the plugin, the compilation goes on.
    drop(plugin);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(host.optimizations_pending(), 1);
    assert_eq!(compile_processes_limited_to(MEMORY).len(), 1);
    // Without the host, its compile process is gone long before the bomb would compile.
    drop(host);
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    while !compile_processes_limited_to(MEMORY).is_empty() {
        assert!(
            std::time::Instant::now() < give_up,
            "the compile process of a dropped host went on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Only the baseline code reached the cache.
    assert_eq!(crate::support::cache_entries(cache.path()).len(), 1);
}

#[test]
fn cache_hits_never_start_a_compile_process() {
    let cache = tempfile::tempdir().unwrap();
    let warm = Host::builder().cache_dir(cache.path()).build().unwrap();
    assert_eq!(
        warm.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Miss
    );
    // A compiler that cannot start: a hit must not need it, a miss fails naming it.
    let nowhere = PathBuf::from("/nonexistent/osiiso-host");
    let host = Host::builder()
        .cache_dir(cache.path())
        .compiler(Compiler::Program(nowhere.clone()))
        .build()
        .unwrap();
    assert_eq!(host.compile_program(), Some(nowhere.as_path()));
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Hit
    );
    match host.load(artifacts::DOUBLE) {
        Err(error @ LoadError::Compiler { .. }) => {
            assert!(
                error.to_string().contains("/nonexistent/osiiso-host"),
                "{error}"
            );
        }
        other => panic!("expected a Compiler error, got {other:?}"),
    }
}

#[test]
fn a_compile_process_that_misbehaves_fails_the_load_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let cases = [
        // The kernel's OOM killer.
        (
            script("oom-killed", "kill -KILL $$"),
            "compile memory limit",
        ),
        // std's abort when an allocation fails under the data limit.
        (
            script(
                "alloc-failed",
                "echo 'memory allocation of 4624 bytes failed' >&2; kill -ABRT $$",
            ),
            "memory allocation of 4624 bytes failed",
        ),
        (
            script("panics", "echo 'the compiler broke' >&2; exit 101"),
            "the compiler broke",
        ),
        (
            script("garbage", "cat >/dev/null; printf '%0100d' 0"),
            "compile reply magic",
        ),
        (
            script(
                "huge",
                "cat >/dev/null; printf 'osiiso-compile1\\000\\000\\377\\377\\377\\377\\377\\377\\377\\377'",
            ),
            "more than the",
        ),
        // A reply, then a process that does not exit; and one that never replies, with a
        // child that holds its pipes open.
        (
            script(
                "lingers",
                "cat >/dev/null; printf 'osiiso-compile1\\000\\001\\000\\000\\000\\000\\000\\000\\000\\000'; exec sleep 600",
            ),
            "compile timeout",
        ),
        (script("stalls", "sleep 600 & wait"), "compile timeout"),
    ];
    for (program, needle) in cases {
        let host = Host::builder()
            .cache(false)
            .compiler(Compiler::Program(program.clone()))
            .compile_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let error = host.load(artifacts::ECHO).unwrap_err().to_string();
        assert!(
            error.contains(needle) && error.contains("echo.wasm"),
            "{}: expected {needle:?} in: {error}",
            program.display()
        );
    }
}

/// A WASI preview-1 program is adapted into a component where it is compiled, under the
/// compile limits: the compile process receives the module itself (the host adapted it
/// itself before, about 4 bytes of memory per byte of module, bounded by nothing), and a
/// module whose adaptation needs more than the compile memory fails naming that limit.
#[test]
fn a_preview1_program_is_adapted_inside_the_compile_process() {
    let dir = tempfile::tempdir().unwrap();
    let received = dir.path().join("received.wasm");
    let program = dir.path().join("records");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\ncat > '{}'\necho 'recorded' >&2\nexit 101\n",
            received.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host = Host::builder()
        .cache(false)
        .compiler(Compiler::Program(program))
        .build()
        .unwrap();
    let error = host.load(artifacts::WC_PROGRAM_P1).unwrap_err().to_string();
    assert!(error.contains("recorded"), "{error}");
    assert_eq!(
        std::fs::read(&received).unwrap(),
        std::fs::read(artifacts::WC_PROGRAM_P1).unwrap(),
        "the compile process gets the module as it is"
    );

    // A program the compile process cannot adapt is not handed to the other compiler of a
    // tiered host (as code Winch refuses is): adapting fails the same way whoever compiles.
    let calls = dir.path().join("calls");
    let program = dir.path().join("unadaptable");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho call >> '{}'\n\
             printf 'osiiso-compile1\\000\\004\\003\\000\\000\\000\\000\\000\\000\\000bad'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host = Host::builder()
        .cache(false)
        .compile_tier(CompileTier::Tiered)
        .compiler(Compiler::Program(program))
        .build()
        .unwrap();
    let error = host.load(artifacts::WC_PROGRAM_P1).unwrap_err();
    assert!(
        matches!(&error, LoadError::Compile { message, .. } if message == "bad"),
        "{error:?}"
    );
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "call\n");

    // A program of a million functions with 24-byte bodies (25 MB): valid, and adapting it
    // needs several times the 64 MiB compile memory, so the compile process stops in the
    // adaptation (a copy of the module fails to allocate) and the load names the limit.
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend(section(1, b"\x01\x60\x00\x00"));
    let n = 1_000_000;
    let mut functions = Vec::new();
    leb128(n, &mut functions);
    functions.resize(functions.len() + n, 0x00);
    module.extend(section(3, &functions));
    module.extend(section(5, b"\x01\x00\x01"));
    module.extend(section(7, b"\x02\x06_start\x00\x00\x06memory\x02\x00"));
    let mut body = vec![0x00];
    body.resize(22, 0x01);
    body.push(0x0b);
    let mut code = Vec::with_capacity(n * 24 + 8);
    leb128(n, &mut code);
    for _ in 0..n {
        leb128(body.len(), &mut code);
        code.extend_from_slice(&body);
    }
    module.extend(section(10, &code));
    drop(code);
    let bomb = plugin(dir.path(), "huge-program.wasm", &module);
    drop(module);
    let listed = osiiso(&[
        "list",
        path_str(&bomb),
        "--no-cache",
        "--compile-memory",
        MEMORY,
    ]);
    listed.assert_code(2);
    assert!(
        listed.stderr.contains("compile memory limit") && listed.stderr.contains("huge-program"),
        "{listed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// nodes compile what submitters send

/// A submitter whose own limits let the plugin through sends it to a node with a lower
/// compile memory limit: every task fails `plugin_load` once, naming the node's limit.
#[cfg(feature = "nats")]
#[test]
fn a_node_fails_the_tasks_of_a_compile_bomb_with_plugin_load() {
    use crate::nats_fixture::{Node, Server, Version, require};
    let Some(server) = require(Version::V215, "compile bomb on a node") else {
        return;
    };
    let server = Server::start(&server);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Its own cache: the submitter's compiled entry must not be a hit on the node.
    let cache_root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let node_cache = cache_root.path().join("cache");
    let _node = Node::start(
        &server.url(),
        1,
        dir.path(),
        &[
            "--cache-dir",
            path_str(&node_cache),
            "--compile-memory",
            MEMORY,
        ],
    );
    let bomb = plugin(dir.path(), "bomb.wasm", &many_functions(20_000));
    let url = server.url();
    let out = osiiso(&[
        "run",
        path_str(&bomb),
        "echo",
        "--input",
        "1",
        "--input",
        "2",
        "--retries",
        "2",
        "--queue",
        "nats",
        "--nats",
        &url,
        "--output",
        "jsonl",
    ]);
    out.assert_code(1);
    let rows = out.jsonl();
    assert_eq!(rows.len(), 2, "{out:#?}");
    for row in rows {
        assert_eq!(
            crate::support::cli::error_kind(&row),
            "plugin_load",
            "{row:#}"
        );
        assert_eq!(row["attempts"], 1, "never retried: {row:#}");
        let message = row["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("compile memory limit of 64 MiB")
                && message.contains("--compile-memory"),
            "{message}"
        );
    }
}
