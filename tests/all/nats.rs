//! NATS queues under faults, with real servers and `osiiso-host serve` nodes: nodes killed
//! and frozen, the broker killed and paused, cancellation, plugins fetched cold or found
//! corrupted, grants outside a node's policy, a submitter that dies. The scenario matrix
//! runs on NATS too (scenarios/); here the same CLI runs on the thread queue and on NATS,
//! on both server lines, for parity.
//!
//! Tasks count their executions through a side effect (`mark` appends to a granted file),
//! so "executed at most twice" is checked on what happened, not on what was reported.

use std::path::Path;
use std::time::Duration;

use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::nats_fixture::{Fleet, Node, Version, require};
use crate::nats_runs::{eventually, executions, marks_dir, one_success_per_tag, run_marks, run_on};
use crate::support::cli::{error_kind, osiiso, path_str, status, write_jsonl};

// ----- the broker cannot be reached -----

#[test]
fn an_unreachable_broker_fails_fast_with_exit_2_and_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let echo = artifacts::ECHO;
    let run = osiiso(&[
        "run", echo, "echo", "--input", "1", "--queue", "nats", "--nats", &url,
    ]);
    run.assert_usage_error(&[&url]);
    osiiso(&["nodes", "--nats", &url]).assert_usage_error(&[&url]);
    // (`serve` waits for its broker instead: nats_service.rs.)
    // `--nats` means the NATS queue.
    osiiso(&["run", echo, "echo", "--input", "1", "--nats", &url])
        .assert_usage_error(&["--queue nats"]);
}

/// The library's side of the same refusal: `build` fails with a typed backend error whose
/// cause is the NATS backend's own `NatsError::Connect`, naming the URL.
#[test]
fn an_unreachable_broker_is_a_typed_backend_error() {
    use osiiso_host::backend::NatsError;
    use osiiso_host::queue::{BackendError, Error};

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let error = osiiso_host::NatsQueue::builder()
        .nats(&url)
        .build()
        .unwrap_err();
    let Error::Backend {
        backend: "nats",
        error: cause @ BackendError::Setup(_),
    } = &error
    else {
        panic!("expected a NATS backend error, got {error:?}");
    };
    assert!(
        matches!(cause.downcast_ref::<NatsError>(), Some(NatsError::Connect { url: shown, .. }) if shown.contains(&port.to_string())),
        "{cause:?}"
    );
    assert!(error.to_string().starts_with("nats backend: "), "{error}");
}

// ----- nodes that die or stall -----

fn a_killed_node_costs_a_retry_and_nothing_else(version: Version, test: &str) {
    let Some(server) = require(version, test) else {
        return;
    };
    let fleet = Fleet::start(&server, 2, 2);
    let run = run_marks(&fleet, 4, 1500, &["--retries", "2"]);
    // Both nodes are running two attempts each: kill one.
    eventually("four attempts running", || {
        executions(&fleet).values().sum::<usize>() == 4
    });
    let victim = &fleet.nodes[0];
    victim.signal(libc::SIGKILL);
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 0, "{stderr}");
    let attempts = one_success_per_tag(&rows, 4, &stderr);
    let retried = attempts.values().filter(|&&a| a == 2).count();
    assert_eq!(
        retried, 2,
        "the killed node's two attempts ran again: {attempts:?}"
    );
    let ran = executions(&fleet);
    assert!(ran.values().all(|&n| n <= 2), "{ran:?}");
    assert_eq!(ran.values().sum::<usize>(), 6, "{ran:?}");
}

#[test]
fn a_killed_node_costs_a_retry_and_nothing_else_215() {
    a_killed_node_costs_a_retry_and_nothing_else(Version::V215, "node kill (2.15)");
}

#[test]
fn a_killed_node_costs_a_retry_and_nothing_else_29() {
    a_killed_node_costs_a_retry_and_nothing_else(Version::V29, "node kill (2.9)");
}

#[test]
fn a_node_killed_as_an_attempt_starts_is_noticed_long_before_its_lease_ends() {
    let Some(server) = require(Version::V215, "node killed at start") else {
        return;
    };
    // A lease longer than `finish` waits: only the submitter's own checks can end the
    // attempt, whether the node died before announcing it (usual: the kill follows the
    // guest's first step within milliseconds) or after.
    let fleet = Fleet::start_with_lease(&server, 1, 1, "300s");
    let run = run_marks(&fleet, 1, 120_000, &["--retries", "0"]);
    eventually("the attempt running", || executions(&fleet).len() == 1);
    fleet.nodes[0].signal(libc::SIGKILL);
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(status(&rows[0]), "failed", "{:#}", rows[0]);
    assert_eq!(error_kind(&rows[0]), "worker_crashed", "{:#}", rows[0]);
    let message = rows[0]["message"].as_str().unwrap();
    assert!(
        message.contains("went silent before announcing")
            || message.contains("stopped heartbeating while running"),
        "{message}"
    );
}

#[test]
fn a_node_frozen_past_its_lease_is_replaced_and_its_late_report_discarded() {
    let Some(server) = require(Version::V215, "frozen node") else {
        return;
    };
    let fleet = Fleet::start(&server, 2, 1);
    let run = run_marks(&fleet, 1, 2500, &["--retries", "1"]);
    eventually("the attempt running", || executions(&fleet).len() == 1);
    let holder = fleet
        .nodes
        .iter()
        .find(|n| n.log().contains("running"))
        .expect("a node logged the attempt");
    holder.signal(libc::SIGSTOP);
    // The other node takes the retry; once it runs, the frozen one wakes up and finishes
    // its own attempt late.
    eventually("the retry running", || {
        executions(&fleet).get("t0") == Some(&2)
    });
    holder.signal(libc::SIGCONT);
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 0, "{stderr}");
    let attempts = one_success_per_tag(&rows, 1, &stderr);
    assert_eq!(
        attempts["t0"], 2,
        "the second attempt's result, not the late first one"
    );
    assert_eq!(rows[0]["message"], "", "{:#}", rows[0]);
}

// ----- the broker dies or stalls -----

fn broker_trouble(version: Version, test: &str, trouble: impl FnOnce(&mut Fleet)) {
    let Some(server) = require(version, test) else {
        return;
    };
    let mut fleet = Fleet::start(&server, 2, 2);
    let run = run_marks(&fleet, 12, 400, &["--retries", "3"]);
    eventually("work running", || executions(&fleet).len() >= 2);
    trouble(&mut fleet);
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 0, "{stderr}");
    one_success_per_tag(&rows, 12, &stderr);
    let ran = executions(&fleet);
    assert_eq!(ran.len(), 12, "{ran:?}");
    assert!(
        ran.values().all(|&n| n <= 2),
        "executed at most twice: {ran:?}"
    );
}

#[test]
fn a_broker_killed_and_restarted_loses_no_task_215() {
    // Down longer than a liveness entry lives: on restart every heartbeat has expired.
    broker_trouble(Version::V215, "broker restart (2.15)", |fleet| {
        fleet.server().kill();
        std::thread::sleep(Duration::from_secs(4));
        fleet.server().restart();
    });
}

#[test]
fn a_broker_killed_and_restarted_loses_no_task_29() {
    broker_trouble(Version::V29, "broker restart (2.9)", |fleet| {
        fleet.server().kill();
        std::thread::sleep(Duration::from_millis(500));
        fleet.server().restart();
    });
}

#[test]
fn a_paused_broker_loses_no_task() {
    broker_trouble(Version::V215, "broker pause", |fleet| {
        let pid = fleet.server().pid();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_secs(3));
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
}

#[test]
fn an_attempt_timeout_counts_from_when_a_node_takes_it() {
    let Some(server) = require(Version::V215, "nats attempt clock") else {
        return;
    };
    // One slot, three attempts in flight: the last one waits on the broker for 2.4 s,
    // longer than its 2 s timeout, and must not time out for it.
    let fleet = Fleet::start(&server, 1, 1);
    let flaky = artifacts::SCENARIO_FLAKY;
    let out = run_on(
        &fleet,
        &[
            flaky,
            "sleep",
            "--input",
            "1200",
            "--input",
            "1200",
            "--input",
            "1200",
            "--workers",
            "3",
            "--timeout",
            "2s",
        ],
    );
    out.assert_code(0);
    assert!(
        out.jsonl()
            .iter()
            .all(|r| status(r) == "succeeded" && r["attempts"] == 1)
    );
}

#[test]
fn a_nats_queue_is_built_and_run_from_async_code() {
    use osiiso_host::NatsQueue;
    use osiiso_host::queue::TaskOptions;

    let Some(fleet) = crate::nats_fixture::shared_fleet() else {
        return;
    };
    let echo = crate::support::load(artifacts::ECHO).task("echo").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let queue = NatsQueue::builder().nats(fleet.url()).build().unwrap();
        let handle = queue
            .submit(
                echo.with_input(json!({"from": "async"})),
                TaskOptions::new(),
            )
            .unwrap();
        let summary = queue.run_async().await.unwrap();
        assert!(summary.ok(), "{summary}");
        assert_eq!(handle.await.value, Some(json!({"from": "async"}).into()));
    });
}

#[test]
fn the_nats_url_variable_leaves_the_local_queues_alone() {
    let out = crate::support::cli::osiiso_env(
        &[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "1",
            "--output",
            "jsonl",
        ],
        &[("OSIISO_NATS_URL", "nats://127.0.0.1:1")],
    );
    out.assert_code(0);
}

// ----- cancellation -----

#[test]
fn cancel_deletes_a_queued_attempt_and_stops_a_running_one() {
    use osiiso_host::queue::{TaskOptions, TaskStatus, Workers};
    use osiiso_host::{NatsQueue, Sandbox};

    let Some(server) = require(Version::V215, "nats cancel") else {
        return;
    };
    // One node with one slot: of three attempts in flight, one runs and two wait in the
    // broker.
    let fleet = Fleet::start(&server, 1, 1);
    marks_dir(&fleet);
    let plugin = crate::support::load(artifacts::SCENARIO_FLAKY)
        .with_sandbox(Sandbox::new().dir(fleet.root.path().join("marks"), "/marks"));
    let mark = plugin.task("mark").unwrap();
    let queue = NatsQueue::builder()
        .nats(fleet.url())
        .workers(Workers::Fixed(3))
        .build()
        .unwrap();
    let submit = |i: usize, ms: u64| {
        let input = json!({"tag": format!("t{i}"), "ms": ms});
        queue
            .submit(
                mark.with_input(input),
                TaskOptions::new().name(format!("t{i}")),
            )
            .unwrap()
    };
    let first = submit(0, 60_000);
    queue.start().unwrap();
    eventually("the first attempt running", || {
        executions(&fleet).contains_key("t0")
    });
    let handles = [first, submit(1, 100), submit(2, 100)];
    // t1's attempt is published, and waits in the broker behind t0.
    eventually("the second attempt queued", || handles[1].attempts() == 1);
    handles[1].cancel();
    handles[0].cancel();
    let summary = queue.run().unwrap();
    assert_eq!(handles[0].status(), TaskStatus::Cancelled);
    assert_eq!(handles[1].status(), TaskStatus::Cancelled);
    assert_eq!(handles[2].status(), TaskStatus::Succeeded);
    assert_eq!(summary.cancelled, 2);
    let node = &fleet.nodes[0];
    // The running guest really stopped (its node says so), and the queued one never ran.
    eventually("the node to report the cancelled attempt", || {
        node.log().contains("outcome=\"cancelled\"")
    });
    let ran = executions(&fleet);
    assert!(
        !ran.contains_key("t1"),
        "a cancelled queued attempt never runs: {ran:?}"
    );
}

// ----- plugins -----

/// A server and one node with an empty compile cache of its own (outside what guests may
/// be granted); the cache path and the directory holding it.
fn cold_node(server: &Path) -> (Fleet, std::path::PathBuf, tempfile::TempDir) {
    let server = crate::nats_fixture::Server::start(server);
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cache_root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cache = cache_root.path().join("cache");
    let node = Node::start(
        &server.url(),
        1,
        root.path(),
        &["--cache-dir", path_str(&cache)],
    );
    let fleet = Fleet {
        servers: vec![server],
        nodes: vec![node],
        root,
    };
    fleet.wait_for_nodes(1);
    (fleet, cache, cache_root)
}

/// The same server with its node replaced by a new cold one.
fn cold_node_on(mut fleet: Fleet) -> (Fleet, std::path::PathBuf, tempfile::TempDir) {
    for node in &mut fleet.nodes {
        node.stop();
    }
    fleet.nodes.clear();
    let cache_root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cache = cache_root.path().join("cache");
    let node = Node::start(
        &fleet.url(),
        1,
        fleet.root.path(),
        &["--cache-dir", path_str(&cache)],
    );
    fleet.nodes.push(node);
    fleet.wait_for_nodes(1);
    (fleet, cache, cache_root)
}

#[test]
fn a_cold_node_fetches_the_plugin_once_and_compiles_it_into_its_cache() {
    let Some(server) = require(Version::V215, "cold node") else {
        return;
    };
    let (fleet, cache, _cache_root) = cold_node(&server);
    for _ in 0..2 {
        let out = run_on(&fleet, &[artifacts::DOUBLE, "--input", "21"]);
        out.assert_code(0);
        assert_eq!(out.single()["value"], 42);
    }
    let log = fleet.nodes[0].log();
    assert_eq!(log.matches("plugin fetched").count(), 1, "{log}");
    assert!(
        cache.join("nats-plugins").read_dir().unwrap().count() == 1,
        "the verified component is kept"
    );
}

/// Replaces the stored component of `plugin` with other bytes, as anyone with access to the
/// broker could.
fn corrupt_stored_plugin(url: &str, plugin: &str) {
    let hash = blake3::hash(&std::fs::read(plugin).unwrap())
        .to_hex()
        .to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let store = js.get_object_store("osiiso2-plugins").await.unwrap();
        let mut evil: &[u8] = b"\0asm not the component you hashed";
        store
            .put(format!("blake3-{hash}").as_str(), &mut evil)
            .await
            .unwrap();
    });
}

#[test]
fn a_corrupted_stored_plugin_is_replaced_by_the_next_submitter() {
    let Some(server) = require(Version::V215, "corrupted plugin") else {
        return;
    };
    let (fleet, _cache, _cache_root) = cold_node(&server);
    run_on(&fleet, &[artifacts::ECHO, "echo", "--input", "1"]).assert_code(0);
    corrupt_stored_plugin(&fleet.url(), artifacts::ECHO);
    // A cold node would now fetch the wrong bytes; the submitter checks the store first.
    let (fleet, _cache, _cache_root) = cold_node_on(fleet);
    let out = run_on(&fleet, &[artifacts::ECHO, "echo", "--input", "2"]);
    out.assert_code(0);
    assert_eq!(out.single()["attempts"], 1, "{:#}", out.single());
    assert!(
        out.stderr
            .contains("does not match the file; uploading it again"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_plugin_corrupted_behind_a_submitters_back_costs_one_retry() {
    use osiiso_host::NatsQueue;
    use osiiso_host::queue::TaskOptions;

    let Some(server) = require(Version::V215, "plugin corrupted mid-run") else {
        return;
    };
    let (fleet, _cache, _cache_root) = cold_node(&server);
    let echo = crate::support::load(artifacts::ECHO).task("echo").unwrap();
    let queue = NatsQueue::builder().nats(fleet.url()).build().unwrap();
    let first = queue
        .submit(echo.with_input(json!(1)), TaskOptions::new())
        .unwrap();
    queue.run().unwrap();
    assert_eq!(first.value().unwrap(), json!(1));
    // The submitter checked the store once; it is changed after that, and a node that never
    // saw the plugin fetches it.
    corrupt_stored_plugin(&fleet.url(), artifacts::ECHO);
    let (fleet, _cache, _cache_root) = cold_node_on(fleet);
    let second = queue
        .submit(echo.with_input(json!(2)), TaskOptions::new().retries(1))
        .unwrap();
    queue.run().unwrap();
    let result = second.result().unwrap();
    assert_eq!(result.value, Some(json!(2).into()), "{result:#?}");
    assert_eq!(
        result.attempts, 2,
        "the node's complaint cost one retry: {result:#?}"
    );
    let log = fleet.nodes[0].log();
    assert!(log.contains("the stored plugin is wrong"), "{log}");
}

// ----- node policy -----

#[test]
fn grants_outside_the_node_policy_fail_permanent_naming_the_grant() {
    let Some(fleet) = crate::nats_fixture::shared_fleet() else {
        return;
    };
    let outside = tempfile::tempdir().unwrap();
    let grant = format!("{}::/marks", outside.path().display());
    let echo = artifacts::ECHO;
    let cases: [(&[&str], &str); 3] = [
        (&["--dir", &grant], "outside every --allow-dir"),
        (&["--inherit-env"], "--allow-env"),
        (&["--allow-http", "example.com"], "'example.com'"),
    ];
    for (flags, needle) in cases {
        let mut args = vec![echo, "echo", "--input", "1", "--retries", "2"];
        args.extend_from_slice(flags);
        let out = run_on(fleet, &args);
        out.assert_code(1);
        let row = out.single();
        assert_eq!(error_kind(&row), "permanent", "{row:#}");
        assert_eq!(row["attempts"], 1, "{row:#}");
        let message = row["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{flags:?}: {message}");
    }
}

// ----- the submitter dies -----

#[test]
fn a_killed_submitter_leaves_nothing_running_for_it() {
    let Some(server) = require(Version::V215, "killed submitter") else {
        return;
    };
    let fleet = Fleet::start(&server, 1, 1);
    let mut run = run_marks(&fleet, 6, 2500, &["--workers", "6"]);
    eventually("the first attempt running", || {
        !executions(&fleet).is_empty()
    });
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    let node = &fleet.nodes[0];
    // Whatever the node had not started when the submitter's heartbeat expired is dropped.
    eventually("the node to drop the orphans", || {
        let log = node.log();
        let ran = executions(&fleet).values().sum::<usize>();
        ran + log.matches("dropping an orphaned attempt").count() == 6
    });
    let ran = executions(&fleet).values().sum::<usize>();
    assert!(
        ran <= 2,
        "at most the running attempt and one taken before expiry: {ran}"
    );
}

// ----- parity with the local queues -----

/// A jobs file that exercises ordering, retries, permanent failures and timeouts.
fn parity_jobs(dir: &Path) -> std::path::PathBuf {
    let jobs = vec![
        json!({"task": "noop", "input": "low", "priority": 9, "name": "low"}),
        json!({"task": "flaky", "input": {"succeed_on": 3, "value": "third"}, "retries": 3, "name": "flaky", "priority": 1}),
        json!({"task": "flaky", "input": {"succeed_on": 5}, "retries": 1, "name": "exhausted", "priority": 2}),
        json!({"task": "permanent", "input": null, "retries": 4, "name": "permanent", "priority": 2}),
        json!({"task": "sleep", "input": 5000, "timeout": "300ms", "retries": 1, "name": "slow", "priority": 3}),
        json!({"task": "noop", "input": "first", "priority": 0, "name": "first"}),
        json!({"task": "noop", "input": "tie-a", "priority": 5, "name": "tie-a"}),
        json!({"task": "noop", "input": "tie-b", "priority": 5, "name": "tie-b"}),
    ];
    write_jsonl(dir, "parity.jsonl", &jobs)
}

/// What a user compares: name, status, error kind, attempts, value, in start order.
fn digest(rows: &[Value]) -> Vec<(String, String, String, u64, Value)> {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
    rows.iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                status(r).to_string(),
                r["error"]["kind"].as_str().unwrap_or("").to_string(),
                r["attempts"].as_u64().unwrap(),
                r["value"].clone(),
            )
        })
        .collect()
}

fn the_cli_gives_the_same_rows_as_the_thread_queue(version: Version, test: &str) {
    let Some(server) = require(version, test) else {
        return;
    };
    let fleet = Fleet::start(&server, 2, 2);
    let jobs = parity_jobs(fleet.root.path());
    let flaky = artifacts::SCENARIO_FLAKY;
    let args = [
        flaky,
        "--jobs",
        path_str(&jobs),
        "--workers",
        "1",
        "--output",
        "jsonl",
    ];
    let local = osiiso(&[&["run"][..], &args[..]].concat());
    local.assert_code(1);
    let remote = run_on(&fleet, &args[..args.len() - 2]);
    remote.assert_code(1);
    assert_eq!(digest(&remote.jsonl()), digest(&local.jsonl()));
    assert!(
        remote.stderr.contains("Failed      : 3"),
        "{}",
        remote.stderr
    );
}

#[test]
fn the_cli_gives_the_same_rows_as_the_thread_queue_215() {
    the_cli_gives_the_same_rows_as_the_thread_queue(Version::V215, "nats parity (2.15)");
}

#[test]
fn the_cli_gives_the_same_rows_as_the_thread_queue_29() {
    the_cli_gives_the_same_rows_as_the_thread_queue(Version::V29, "nats parity (2.9)");
}

#[test]
fn nodes_lists_every_live_node_with_its_slots() {
    let Some(server) = require(Version::V29, "nodes listing (2.9)") else {
        return;
    };
    let fleet = Fleet::start(&server, 2, 3);
    let out = osiiso(&["nodes", "--nats", &fleet.url(), "--json"]);
    out.assert_code(0);
    let nodes: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes.iter().all(|n| n["slots"] == 3 && n["running"] == 0),
        "{nodes:#?}"
    );
    let table = osiiso(&["nodes", "--nats", &fleet.url()]);
    assert!(table.stdout.starts_with("ID"), "{}", table.stdout);
    // A drained node leaves the live set.
    fleet.nodes[0].signal(libc::SIGTERM);
    fleet.wait_for_nodes(1);
}

#[test]
fn a_typed_task_runs_on_nats_nodes() {
    let Some(fleet) = crate::nats_fixture::shared_fleet() else {
        return;
    };
    use crate::jobs::{err, ok, run_jobs, with};
    let url = fleet.url();
    run_jobs(
        Path::new(artifacts::TYPED_CALC),
        &["--queue", "nats", "--nats", &url],
        &[
            ok(
                "summary",
                "stats#summarize",
                json!([1, 2, 4.5]),
                json!({"count": 3, "mean": 2.5, "min": 1.0, "max": 4.5}),
                1,
            ),
            ok(
                "u64",
                "checksum",
                json!("AQID"),
                json!(15_035_938_162_879_559_083_u64),
                1,
            ),
            with(
                err("err", "divide", json!([1, 0]), "failed", 2).message("cannot divide"),
                "retries",
                json!(1),
            ),
            with(
                err("mismatch", "summarize", json!(["x"]), "invalid_input", 1)
                    .message("values[0]: expected f64, got \"x\""),
                "retries",
                json!(3),
            ),
        ],
    );
}
