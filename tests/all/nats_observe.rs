//! Operators see what a node runs (issue 21): `serve --http` serves `/metrics` (checked with
//! `promtool`) whose attempt counters equal the rows of the runs it served, and `/healthz`
//! turns 503 while the node drains and while it has lost its broker, and its status page shows
//! the guest progress of what it runs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use osiiso_test_artifacts as artifacts;
use serde_json::json;

use crate::nats_fixture::{Fleet, Node, Server, Version, require};
use crate::nats_runs::{Background, eventually, executions, marks_dir, run_on};
use crate::observe::{have, http_get, promtool_accepts, sample};
use crate::support::cli::{path_str, status, write_jsonl};

/// A server of `binary` and one node of `slots` serving `--http` on a free loopback port.
fn fleet_with_http(binary: &std::path::Path, slots: usize) -> (Fleet, SocketAddr) {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let servers = vec![Server::start(binary)];
    let url = servers[0].url();
    let node = Node::start(&url, slots, root.path(), &["--http", "127.0.0.1:0"]);
    let fleet = Fleet {
        servers,
        nodes: vec![node],
        root,
    };
    fleet.wait_for_nodes(1);
    let addr = http_addr(&fleet.nodes[0]);
    (fleet, addr)
}

/// The address a node prints once it serves `--http` (bounded wait).
fn http_addr(node: &Node) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = node.log();
        if let Some(rest) = log.split("status page on http://").nth(1) {
            return rest.split('/').next().unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no address printed: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metrics(addr: SocketAddr) -> String {
    let (code, text) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{text}");
    text
}

#[test]
fn node_metrics_count_the_attempts_of_a_run_and_pass_promtool() {
    let Some(binary) = require(Version::V215, "node metrics") else {
        return;
    };
    let (fleet, addr) = fleet_with_http(&binary, 2);
    let text = metrics(addr);
    assert_eq!(sample(&text, "osiiso_slots"), 2.0);
    assert_eq!(sample(&text, "osiiso_broker_connected"), 1.0);
    assert_eq!(sample(&text, "osiiso_draining"), 0.0);
    assert_eq!(
        sample(
            &text,
            "osiiso_attempts_finished_total{outcome=\"succeeded\"}"
        ),
        0.0
    );

    let ok = run_on(
        &fleet,
        &[
            artifacts::SCENARIO_FLAKY,
            "noop",
            "--input",
            "1",
            "--input",
            "2",
            "--input",
            "3",
            "--input",
            "4",
        ],
    );
    let failing = run_on(
        &fleet,
        &[
            artifacts::SCENARIO_FLAKY,
            "permanent",
            "--input",
            "null",
            "--input",
            "null",
        ],
    );
    let mut rows = ok.jsonl();
    rows.extend(failing.jsonl());
    assert_eq!(rows.len(), 6, "{}\n{}", ok.stderr, failing.stderr);
    let succeeded = rows.iter().filter(|r| status(r) == "succeeded").count();
    let failed = rows.iter().filter(|r| status(r) == "failed").count();
    assert_eq!((succeeded, failed), (4, 2), "{rows:#?}");
    let attempts: u64 = rows.iter().map(|r| r["attempts"].as_u64().unwrap()).sum();

    // The node records an attempt before it hands its report over: the rows are there, so
    // are the counts.
    let text = metrics(addr);
    assert_eq!(
        sample(
            &text,
            "osiiso_attempts_finished_total{outcome=\"succeeded\"}"
        ),
        succeeded as f64
    );
    assert_eq!(
        sample(
            &text,
            "osiiso_attempts_finished_total{outcome=\"permanent\"}"
        ),
        failed as f64
    );
    let finished: f64 = text
        .lines()
        .filter(|l| l.starts_with("osiiso_attempts_finished_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(finished, attempts as f64, "{text}");
    assert_eq!(
        sample(&text, "osiiso_attempt_duration_seconds_count"),
        attempts as f64
    );
    assert_eq!(sample(&text, "osiiso_attempts_running"), 0.0);
    assert!(sample(&text, "osiiso_memory_budget_bytes") > 0.0, "{text}");
    // Every attempt needed the plugin: the node found it once on disk or on the broker,
    // then in memory.
    let found = |source: &str| {
        sample(
            &text,
            &format!("osiiso_plugin_fetches_total{{source=\"{source}\"}}"),
        )
    };
    assert_eq!(
        found("memory") + found("disk") + found("broker"),
        attempts as f64,
        "{text}"
    );
    assert_eq!(found("disk") + found("broker"), 1.0, "{text}");
    if have(
        "promtool",
        "node_metrics_count_the_attempts_of_a_run_and_pass_promtool",
    ) {
        promtool_accepts(&text);
    }
    // The status page names the node, counts its attempts and shows its last failures.
    let (code, page) = http_get(addr, "/");
    assert_eq!(code, 200);
    assert!(page.contains("<h1>node n"), "{page}");
    assert!(page.contains("attempts/s"), "{page}");
    assert!(
        page.contains(&format!("<b>{succeeded}</b><span>succeeded</span>")),
        "{page}"
    );
    assert!(page.contains("permanent"), "{page}");
}

#[test]
fn node_healthz_turns_503_while_it_drains_a_running_attempt() {
    let Some(binary) = require(Version::V215, "node healthz on drain") else {
        return;
    };
    let (mut fleet, addr) = fleet_with_http(&binary, 1);
    assert_eq!(http_get(addr, "/healthz").0, 200);
    let dir = marks_dir(&fleet);
    // A submitter names its task with markup and a terminal escape: the node's page shows
    // it as text.
    let jobs = write_jsonl(
        fleet.root.path(),
        "long.jsonl",
        &[json!({
            "task": "mark",
            "input": {"tag": "long", "ms": 6000},
            "name": "<b>long</b>\u{1b}[2J",
        })],
    );
    let run = Background::start(
        &fleet,
        &[
            artifacts::SCENARIO_FLAKY,
            "--jobs",
            path_str(&jobs),
            "--dir",
            &dir,
        ],
    );
    // The guest runs (it marked its start): the node shows it.
    eventually("the attempt to start", || {
        executions(&fleet).contains_key("long")
    });
    assert_eq!(sample(&metrics(addr), "osiiso_attempts_running"), 1.0);
    let (_, page) = http_get(addr, "/");
    assert!(page.contains("/mark</td>"), "{page}");
    assert!(page.contains("&lt;b&gt;long&lt;/b&gt;"), "{page}");
    assert!(
        !page.contains("<b>long") && !page.contains('\u{1b}'),
        "{page}"
    );
    assert_eq!(http_get(addr, "/healthz").0, 200);

    fleet.nodes[0].signal(libc::SIGTERM);
    // Draining: still serving while the attempt finishes, and unhealthy.
    eventually("/healthz to say 503", || {
        http_get(addr, "/healthz").0 == 503
    });
    let text = metrics(addr);
    assert_eq!(sample(&text, "osiiso_draining"), 1.0);
    // The attempt ran to its end and was reported: the run has its value.
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows.len(), 1);
    assert_eq!(status(&rows[0]), "succeeded", "{:#}", rows[0]);
    fleet.nodes[0].stop();
    assert!(std::net::TcpStream::connect(addr).is_err());
}

/// A guest's progress shows on the status page of the node that runs it.
#[test]
fn node_status_page_shows_guest_progress() {
    let Some(binary) = require(Version::V215, "node status page progress") else {
        return;
    };
    let (fleet, addr) = fleet_with_http(&binary, 1);
    let run = Background::start(
        &fleet,
        &[
            artifacts::SCENARIO_FLAKY,
            "steps",
            "--input",
            r#"{"steps": 500, "ms": 10}"#,
        ],
    );
    // Before its first report the attempt shows without progress; after it, with the
    // guest's numbers and a meter.
    eventually("the node's page to show the guest's progress", || {
        let (_, page) = http_get(addr, "/");
        page.contains("/500 (") && page.contains("<meter")
    });
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["value"], json!(500), "{:#}", rows[0]);
    eventually("the node's page to show nothing running", || {
        http_get(addr, "/").1.contains("Nothing is running.")
    });
}

#[test]
fn node_healthz_turns_503_without_its_broker() {
    let Some(binary) = require(Version::V215, "node healthz without broker") else {
        return;
    };
    let (mut fleet, addr) = fleet_with_http(&binary, 1);
    assert_eq!(http_get(addr, "/healthz").0, 200);
    fleet.server().kill();
    eventually("/healthz to say 503", || {
        http_get(addr, "/healthz").0 == 503
    });
    assert_eq!(sample(&metrics(addr), "osiiso_broker_connected"), 0.0);
    fleet.server().restart();
    eventually("/healthz to say 200", || {
        http_get(addr, "/healthz").0 == 200
    });
    let text = metrics(addr);
    assert_eq!(sample(&text, "osiiso_broker_connected"), 1.0);
    assert!(
        sample(&text, "osiiso_broker_reconnects_total") >= 1.0,
        "{text}"
    );
}

#[test]
fn serve_refuses_a_bad_http_address_before_waiting_for_its_broker() {
    // Nothing listens on port 1: the node would wait for its broker forever; the address is
    // checked first.
    let out = crate::support::cli::osiiso(&[
        "serve",
        "--nats",
        "nats://127.0.0.1:1",
        "--http",
        "localhost:80",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--http: expected PORT"),
        "{}",
        out.stderr
    );
}
