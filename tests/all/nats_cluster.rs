//! NATS clusters: three nats-server 2.15 on loopback, routed into one cluster, given to the CLI
//! as a list. The layout is replicated on every server, and a run rides through the death of
//! the server that leads its attempts stream.

use osiiso_test_artifacts as artifacts;

use crate::nats_fixture::{Fleet, Server, Version, require};
use crate::nats_runs::{eventually, executions, one_success_per_tag, run_marks};
use crate::support::cli::osiiso;

/// Every stream of the layout.
const STREAMS: [&str; 5] = [
    "OSIISO2_ATTEMPTS",
    "KV_osiiso2-nodes",
    "KV_osiiso2-submitters",
    "OBJ_osiiso2-plugins",
    "OBJ_osiiso2-payloads",
];

/// The leader and the replicas of `stream`, asked of the servers of `url`. A stream whose
/// leader just died answers nothing until its survivors have elected another (seconds): the
/// question is asked again until it is answered, for at most a minute.
fn stream_info(url: &str, stream: &str) -> (String, usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let servers: Vec<async_nats::ServerAddr> =
            url.split(',').map(|s| s.parse().unwrap()).collect();
        let client = async_nats::connect(servers.as_slice()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let info = loop {
            // `get_stream` asks the stream's leader for its info.
            match js.get_stream(stream).await {
                Ok(found) => break found.cached_info().clone(),
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("{stream} not answered yet: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{stream} never answered: {e}"),
            }
        };
        let leader = info
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .unwrap_or_default();
        (leader, info.config.num_replicas)
    })
}

#[test]
fn a_run_rides_through_the_death_of_the_server_leading_its_attempts() {
    let Some(binary) = require(Version::V215, "cluster failover") else {
        return;
    };
    let mut fleet = Fleet::on(Server::cluster(&binary, 3), 2, 4, "10s");
    let run = run_marks(&fleet, 40, 300, &["--retries", "2"]);
    eventually("a quarter of the work done", || {
        executions(&fleet).values().sum::<usize>() >= 10
    });
    let url = fleet.url();
    let (leader, replicas) = stream_info(&url, "OSIISO2_ATTEMPTS");
    assert_eq!(replicas, 3, "three servers: three replicas");
    let victim = fleet
        .servers
        .iter_mut()
        .find(|s| s.name == leader)
        .unwrap_or_else(|| panic!("the leader '{leader}' is one of ours"));
    victim.kill();
    let (rows, stderr, code) = run.finish(&fleet);
    assert_eq!(code, 0, "{stderr}\n{}", fleet.logs());
    one_success_per_tag(&rows, 40, &stderr);
    let ran = executions(&fleet);
    assert!(ran.values().all(|&n| n <= 3), "{ran:?}");
    // Every stream of the layout lives on all three servers (the survivors answer).
    for stream in STREAMS {
        assert_eq!(stream_info(&url, stream).1, 3, "{stream}");
    }
}

#[test]
fn servers_are_given_as_lists_and_an_existing_layout_is_followed() {
    let Some(binary) = require(Version::V215, "cluster lists") else {
        return;
    };
    let fleet = Fleet::on(Server::cluster(&binary, 3), 1, 1, "10s");
    let servers: Vec<String> = fleet.servers.iter().map(Server::url).collect();
    // `--nats` repeated, one with a list: the same three servers.
    let list = format!("{},{}", servers[1], servers[2]);
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        "7",
        "--queue",
        "nats",
        "--nats",
        &servers[0],
        "--nats",
        &list,
        "--replicas",
        "1",
        "--output",
        "jsonl",
    ]);
    out.assert_code(0);
    assert_eq!(out.single()["value"], 7);
    // The nodes made the layout with three replicas; this run follows it and says so.
    assert!(
        out.stderr
            .contains("has other replicas than this process would make"),
        "{}",
        out.stderr
    );
    assert_eq!(stream_info(&fleet.url(), "OSIISO2_ATTEMPTS").1, 3);
}

#[test]
fn more_replicas_than_servers_is_refused_at_once() {
    let Some(binary) = require(Version::V215, "too many replicas") else {
        return;
    };
    let server = Server::start(&binary);
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        "1",
        "--queue",
        "nats",
        "--nats",
        &server.url(),
        "--replicas",
        "3",
    ]);
    out.assert_usage_error(&["replicas"]);
}
