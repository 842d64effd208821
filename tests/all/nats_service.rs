//! A NATS fleet as a service runs it: nodes started before their broker, idle nodes that stay
//! quiet, a broker outage that costs nothing but waiting, payloads of any size, and a `nodes`
//! listing a person can read.

use std::time::Duration;

use futures::StreamExt;
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::nats_fixture::{Fleet, Node, Server, Version, free_port, require};
use crate::nats_runs::{eventually, executions, one_success_per_tag, run_marks, run_on};
use crate::support::cli::{osiiso, path_str, status, write_jsonl};

#[test]
fn serve_waits_for_its_broker_and_joins_once_it_is_up() {
    let Some(binary) = require(Version::V215, "serve before its broker") else {
        return;
    };
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let node = Node::start(&url, 1, root.path(), &[]);
    eventually("the node to say it waits", || {
        node.log().contains("waiting for the NATS server")
    });
    let fleet = Fleet {
        servers: vec![Server::start_on(&binary, port)],
        nodes: vec![node],
        root,
    };
    fleet.wait_for_nodes(1);
    let out = run_on(&fleet, &[artifacts::ECHO, "echo", "--input", "3"]);
    out.assert_code(0);
    assert_eq!(out.single()["value"], 3);
    assert!(fleet.nodes[0].log().contains("reached the NATS server"));
}

/// Messages each node's connection (named `osiiso-host node <id>`) has sent to the server so
/// far, by connection name.
fn sent_by_nodes(server: &Server) -> Vec<(String, u64)> {
    let connz = server.monitoring("/connz?limit=1024");
    let mut sent: Vec<(String, u64)> = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            let name = c["name"].as_str()?;
            // A node's connection, not a lingering `osiiso-host nodes` of the fixture's.
            name.starts_with("osiiso-host node ")
                .then(|| (name.to_string(), c["in_msgs"].as_u64().unwrap_or(0)))
        })
        .collect();
    sent.sort();
    sent
}

#[test]
fn idle_nodes_send_at_most_two_messages_a_second() {
    let Some(binary) = require(Version::V215, "idle nodes") else {
        return;
    };
    let fleet = Fleet::start(&binary, 2, 4);
    let before = sent_by_nodes(&fleet.servers[0]);
    assert_eq!(before.len(), 2, "{before:?}");
    let window = Duration::from_secs(6);
    std::thread::sleep(window);
    let after = sent_by_nodes(&fleet.servers[0]);
    for ((name, was), (_, is)) in before.iter().zip(&after) {
        let sent = is - was;
        // A heartbeat every 3 s, and a long poll per band every 30 s: at most 3 + 8 in any
        // 6 s (short polling sent about 190).
        assert!(
            sent <= 2 * window.as_secs(),
            "{name} sent {sent} messages in {window:?}"
        );
    }
}

#[test]
fn a_broker_outage_costs_waiting_and_no_attempt() {
    let Some(binary) = require(Version::V215, "broker outage") else {
        return;
    };
    let mut fleet = Fleet::start(&binary, 2, 2);
    // A timeout far shorter than the outage: no clock runs while the broker is away.
    let run = run_marks(&fleet, 12, 400, &["--retries", "0", "--timeout", "2s"]);
    eventually("work running", || executions(&fleet).len() >= 2);
    fleet.server().kill();
    // Longer than every liveness window, every request's patience and the timeout: what was
    // running finishes and waits to report, what was queued waits to be published.
    std::thread::sleep(Duration::from_secs(8));
    fleet.server().restart();
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 0, "{stderr}\n{}", fleet.logs());
    let attempts = one_success_per_tag(&rows, 12, &stderr);
    assert!(attempts.values().all(|&a| a == 1), "{attempts:?}");
    assert!(stderr.contains("lost the NATS server"), "{stderr}");
    assert!(stderr.contains("the NATS server is back"), "{stderr}");
    assert!(
        fleet.logs().contains("lost the NATS server"),
        "{}",
        fleet.logs()
    );
}

#[test]
fn inputs_and_results_of_megabytes_travel_whatever_their_content() {
    let Some(fleet) = crate::nats_fixture::shared_fleet() else {
        return;
    };
    // Quotes double when escaped; `1e15` expands when re-encoded; plain bytes are plain.
    let jobs = vec![
        json!({"name": "quotes", "input": "\"".repeat(3 << 20)}),
        json!({"name": "numbers", "input": vec![1e15; 300_000]}),
        json!({"name": "five", "input": "x".repeat(5 << 20)}),
    ];
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let jobs_file = write_jsonl(dir.path(), "big.jsonl", &jobs);
    let out = run_on(
        fleet,
        &[
            artifacts::ECHO,
            "echo",
            "--jobs",
            path_str(&jobs_file),
            "--retries",
            "0",
        ],
    );
    out.assert_code(0);
    let rows = out.jsonl();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(status(row), "succeeded", "{}", row["error"]);
        let job = jobs.iter().find(|j| j["name"] == row["name"]).unwrap();
        assert!(
            row["value"] == job["input"],
            "{} came back changed",
            row["name"]
        );
    }
    // Nothing is left in the payload store.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !stored_payloads(&fleet.url()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left in the payload store: {:?}",
            stored_payloads(&fleet.url())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The chunk subjects of objects with content in the payload store (a deleted one keeps
/// only its name).
fn stored_payloads(url: &str) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream("OBJ_osiiso2-payloads").await.unwrap();
        let subjects = stream
            .info_with_subjects("$O.osiiso2-payloads.C.>")
            .await
            .unwrap();
        subjects.map(|s| s.unwrap().0).collect().await
    })
}

#[test]
fn nodes_shows_each_cached_plugin_by_name() {
    let Some(fleet) = crate::nats_fixture::shared_fleet() else {
        return;
    };
    run_on(fleet, &[artifacts::DOUBLE, "--input", "2"]).assert_code(0);
    let hash = blake3::hash(&std::fs::read(artifacts::DOUBLE).unwrap()).to_hex();
    let shown = format!("double@{}", &hash[..12]);
    eventually("a heartbeat with the plugin", || {
        let table = osiiso(&["nodes", "--nats", &fleet.url()]);
        table.stdout.contains(&shown) && !table.stdout.contains("truncated")
    });
    let json = osiiso(&["nodes", "--nats", &fleet.url(), "--json"]);
    let nodes: Vec<Value> = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        nodes.iter().any(|n| n["cached"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "double" && p["hash"] == hash.as_str())),
        "{nodes:#?}"
    );
}

#[test]
fn a_killed_broker_of_a_busy_fleet_charges_no_retry_twice() {
    let Some(binary) = require(Version::V29, "broker restart, no retries (2.9)") else {
        return;
    };
    let mut fleet = Fleet::start(&binary, 2, 2);
    let run = run_marks(&fleet, 8, 400, &["--retries", "0"]);
    eventually("work running", || executions(&fleet).len() >= 2);
    fleet.server().kill();
    std::thread::sleep(Duration::from_secs(4));
    fleet.server().restart();
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 0, "{stderr}\n{}", fleet.logs());
    one_success_per_tag(&rows, 8, &stderr);
}

#[test]
fn a_drained_node_leaves_no_pull_behind() {
    let Some(binary) = require(Version::V215, "drained node") else {
        return;
    };
    let mut fleet = Fleet::start(&binary, 2, 2);
    // Idle, each node holds a long poll on every band; one drains and exits. Had its polls
    // outlived it, the broker would hand attempts to a node that is gone.
    fleet.nodes[0].stop();
    assert!(fleet.nodes[0].log().contains("stopped"));
    let run = run_marks(&fleet, 6, 100, &["--retries", "0"]);
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 0, "{stderr}\n{}", fleet.logs());
    let attempts = one_success_per_tag(&rows, 6, &stderr);
    assert!(attempts.values().all(|&a| a == 1), "{attempts:?}");
}
