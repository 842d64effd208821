//! Hostile clients of the broker. On an open broker, a client that sees every attempt's
//! subject and every report forges reports, announcements, hand-backs and cancellations for
//! all of them, and guesses ids: no result changes. With the recommended broker layout
//! (docs/nats-accounts.conf, used here as is), a submitter cannot read or take attempts nor
//! speak as a node, and another account sees nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::nats_fixture::{Fleet, Node, Server, Version, require};
use crate::nats_runs::{Background, executions, marks, marks_dir, one_success_per_tag};
use osiiso_test_artifacts as artifacts;

/// A frame as the protocol writes one (docs/distributed.md), with a MAC of random bytes.
fn forged_frame(header: &Value, body: &[u8]) -> Bytes {
    let header = serde_json::to_vec(header).unwrap();
    let mut frame = b"OSIISO2\0".to_vec();
    frame.extend((0..32).map(|_| rand_byte()));
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    Bytes::from(frame)
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}

fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Everything a client that does not hold an attempt's key can send about it.
async fn forge_everything(client: &async_nats::Client, submitter: &str, token: &str) {
    let report = |outcome: Value, sections: [u64; 3]| {
        json!({
            "submitter": submitter, "token": token, "node": "nforged",
            "kind": {"Ran": {"outcome": outcome, "fuel_consumed": null, "stdout": null, "stderr": null}},
            "bad_plugin": false, "body": {"Inline": {"sections": sections}},
        })
    };
    let forged = [
        forged_frame(&report(json!({"Succeeded": ""}), [8, 0, 0]), b"\"forged\""),
        forged_frame(
            &report(
                json!({"Failed": {"kind": "permanent", "message": "forged", "detail": null}}),
                [0, 0, 0],
            ),
            b"",
        ),
        forged_frame(
            &json!({"submitter": submitter, "token": token, "node": "nforged",
                    "kind": "Returned", "body": {"Inline": {"sections": [0, 0, 0]}}}),
            b"",
        ),
    ];
    for frame in forged {
        let _ = client
            .publish(format!("osiiso2.report.{submitter}"), frame)
            .await;
    }
    let running =
        json!({"node": "nforged", "beat": 1u64 << 40, "attempts": [[token, random_hex()]]});
    let _ = client
        .publish(
            format!("osiiso2.event.{submitter}"),
            Bytes::from(running.to_string()),
        )
        .await;
    let cancel = json!({"token": token, "mac": random_hex()});
    let _ = client
        .publish(
            format!("osiiso2.cancel.{submitter}"),
            Bytes::from(cancel.to_string()),
        )
        .await;
}

#[test]
fn forged_reports_and_cancels_change_no_result() {
    let Some(server) = require(Version::V215, "forgeries") else {
        return;
    };
    let fleet = Fleet::start(&server, 2, 2);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let forgeries = Arc::new(AtomicUsize::new(0));
    let forger = {
        let (url, forgeries) = (fleet.url(), forgeries.clone());
        runtime.spawn(async move {
            let client = async_nats::connect(url).await.unwrap();
            let mut attempts = client.subscribe("osiiso2.attempt.>").await.unwrap();
            let mut reports = client.subscribe("osiiso2.report.*").await.unwrap();
            loop {
                tokio::select! {
                    Some(attempt) = attempts.next() => {
                        // Its subject says whose it is: osiiso2.attempt.<band>.<submitter>.<token>.
                        let parts: Vec<&str> = attempt.subject.split('.').collect();
                        let (submitter, token) = (parts[3], parts[4]);
                        forge_everything(&client, submitter, token).await;
                        // And guesses: tokens it never saw.
                        for _ in 0..8 {
                            let guess = format!("a{}", &random_hex()[..24]);
                            forge_everything(&client, submitter, &guess).await;
                        }
                        forgeries.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(report) = reports.next() => {
                        // A real report, bent: one byte of its body, or of its header.
                        let mut bent = report.payload.to_vec();
                        let last = bent.len() - 1;
                        bent[last] ^= 1;
                        let _ = client.publish(report.subject.clone(), Bytes::from(bent)).await;
                        let mut bent = report.payload.to_vec();
                        bent[45] ^= 1;
                        let _ = client.publish(report.subject.clone(), Bytes::from(bent)).await;
                    }
                }
            }
        })
    };
    let jobs = marks(&fleet, 8, 500);
    let dir = marks_dir(&fleet);
    let run = Background::start(
        &fleet,
        &[
            artifacts::SCENARIO_FLAKY,
            "mark",
            "--inputs",
            crate::support::cli::path_str(&jobs),
            "--dir",
            &dir,
            "--retries",
            "0",
        ],
    );
    let (rows, stderr, code) = run.finish(&fleet);
    forger.abort();
    assert_eq!(code, 0, "{stderr}\n{}", fleet.logs());
    // Every row is the real one: the task's own tag, one attempt, run once.
    let attempts = one_success_per_tag(&rows, 8, &stderr);
    assert!(attempts.values().all(|&a| a == 1), "{attempts:?}");
    assert!(executions(&fleet).values().all(|&n| n == 1));
    assert!(
        forgeries.load(Ordering::Relaxed) >= 8,
        "the forger saw every attempt"
    );
    assert!(stderr.contains("dropped a forged report"), "{stderr}");
    assert!(stderr.contains("dropped a forged announcement"), "{stderr}");
    assert!(
        fleet.logs().contains("dropped a forged cancellation"),
        "{}",
        fleet.logs()
    );
}

/// A server configured with docs/nats-accounts.conf, as the docs say to include it.
fn layout_server(binary: &std::path::Path) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let accounts = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/nats-accounts.conf");
    std::fs::copy(accounts, dir.path().join("nats-accounts.conf")).unwrap();
    let config = dir.path().join("server.conf");
    std::fs::write(&config, "include \"nats-accounts.conf\"\n").unwrap();
    (Server::start_with_config(binary, &config), dir)
}

/// `url` with `user`'s credentials of docs/nats-accounts.conf.
fn as_user(url: &str, user: &str) -> String {
    url.replace("nats://", &format!("nats://{user}:change-me-{user}@"))
}

#[test]
fn with_the_documented_layout_a_submitter_cannot_pose_as_a_node_nor_read_attempts() {
    let Some(binary) = require(Version::V215, "broker layout") else {
        return;
    };
    let (server, _config) = layout_server(&binary);
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let url = server.url();
    let node_url = as_user(&url, "a-node");
    let nodes = (0..2)
        .map(|_| Node::start(&node_url, 2, root.path(), &[]))
        .collect();
    // A node of another tenant, on the same server.
    let outsider = Node::start(&as_user(&url, "b-node"), 2, root.path(), &[]);
    let mut fleet = Fleet {
        servers: vec![server],
        nodes,
        root,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let cancels = Arc::new(AtomicUsize::new(0));
    // Mallory has a submitter's credentials of the same tenant.
    let mallory = {
        let (seen, cancels) = (seen.clone(), cancels.clone());
        let url = url.clone();
        runtime.spawn(async move {
            let client = async_nats::ConnectOptions::new()
                .user_and_password("a-submitter".into(), "change-me-a-submitter".into())
                .connect(url.as_str())
                .await
                .unwrap();
            // What only nodes may read: attempts, node inboxes, cancellations.
            let mut forbidden = futures::stream::select_all([
                client.subscribe("osiiso2.attempt.>").await.unwrap(),
                client.subscribe("_INBOX_OSIISO2_NODE.>").await.unwrap(),
                client.subscribe("osiiso2.cancel.>").await.unwrap(),
                client.subscribe("_INBOX.mallory.>").await.unwrap(),
            ]);
            let mut events = client.subscribe("osiiso2.event.*").await.unwrap();
            // Taking attempts as a node would, and reading them from the stream.
            for band in 0..8 {
                let _ = client
                    .publish_with_reply(
                        format!("$JS.API.CONSUMER.MSG.NEXT.OSIISO2_ATTEMPTS.OSIISO2_BAND_{band}"),
                        format!("_INBOX.mallory.{band}"),
                        Bytes::from(r#"{"batch":100,"expires":60000000000}"#),
                    )
                    .await;
            }
            loop {
                tokio::select! {
                    Some(_) = forbidden.next() => {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(event) = events.next() => {
                        // Announcements name submitters and tokens: speak for them.
                        let submitter = event.subject.split('.').nth(2).unwrap().to_string();
                        let running: Value = serde_json::from_slice(&event.payload).unwrap();
                        for entry in running["attempts"].as_array().unwrap() {
                            let token = entry["token"].as_str().unwrap();
                            forge_everything(&client, &submitter, token).await;
                            cancels.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = client
                            .request(
                                "$JS.API.STREAM.MSG.GET.OSIISO2_ATTEMPTS",
                                Bytes::from(r#"{"seq":1}"#),
                            )
                            .await
                            .map(|_| seen.fetch_add(1, Ordering::Relaxed));
                    }
                }
            }
        })
    };
    let submitter_url = as_user(&url, "a-submitter");
    crate::nats_fixture::wait_for_nodes(&submitter_url, &fleet.nodes, 2);
    let jobs = marks(&fleet, 8, 600);
    let dir = marks_dir(&fleet);
    let run = Background::start_on(
        &submitter_url,
        &fleet,
        &[
            artifacts::SCENARIO_FLAKY,
            "mark",
            "--inputs",
            crate::support::cli::path_str(&jobs),
            "--dir",
            &dir,
            "--retries",
            "0",
        ],
    );
    let (rows, stderr, code) = run.finish(&fleet);
    std::thread::sleep(Duration::from_millis(500));
    mallory.abort();
    assert_eq!(code, 0, "{stderr}\n{}", fleet.logs());
    let attempts = one_success_per_tag(&rows, 8, &stderr);
    assert!(attempts.values().all(|&a| a == 1), "{attempts:?}");
    assert!(executions(&fleet).values().all(|&n| n == 1));
    assert_eq!(
        seen.load(Ordering::Relaxed),
        0,
        "a submitter read what only nodes may"
    );
    assert!(
        cancels.load(Ordering::Relaxed) > 0,
        "Mallory saw announcements"
    );
    assert!(
        fleet.logs().contains("dropped a forged cancellation"),
        "{}",
        fleet.logs()
    );
    // The other tenant's node never saw an attempt.
    assert!(!outsider.log().contains("running"), "{}", outsider.log());
    fleet.nodes.push(outsider);
}
