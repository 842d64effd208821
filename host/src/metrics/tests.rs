use super::*;
use crate::ThreadQueue;
use crate::failure::TaskFailure;
use crate::queue::{NativeTask, TaskOptions, Workers};

fn line_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(prefix) && line[prefix.len()..].starts_with(' '))
        .and_then(|line| line[prefix.len()..].trim().parse().ok())
}

#[test]
fn a_queue_counts_its_tasks_by_status_and_kind() {
    let metrics = Metrics::new();
    let queue = ThreadQueue::builder()
        .workers(Workers::Fixed(2))
        .metrics(&metrics)
        .build()
        .unwrap();
    for i in 0..5 {
        queue
            .submit_native(
                NativeTask::new(format!("ok-{i}"), || Ok::<_, TaskFailure>(1)),
                TaskOptions::new(),
            )
            .unwrap();
    }
    queue
        .submit_native(
            NativeTask::new("bad", || {
                Err::<u8, _>(TaskFailure::new(
                    FailureKind::Permanent,
                    "<script>\u{1b}[31m",
                ))
            }),
            TaskOptions::new(),
        )
        .unwrap();
    queue
        .submit_native(
            NativeTask::new("flaky", || {
                Err::<u8, _>(TaskFailure::new(FailureKind::Failed, "again"))
            }),
            TaskOptions::new().retries(2),
        )
        .unwrap();
    let summary = queue.run().unwrap();
    assert_eq!(summary.total_submitted, 7);

    let text = metrics.encode();
    let get =
        |prefix: &str| line_value(&text, prefix).unwrap_or_else(|| panic!("{prefix}\n{text}"));
    assert_eq!(get("osiiso_tasks_submitted_total"), 7.0);
    assert_eq!(
        get("osiiso_tasks_finished_total{status=\"succeeded\"}"),
        5.0
    );
    assert_eq!(
        get("osiiso_tasks_finished_total{status=\"failed\",kind=\"permanent\"}"),
        1.0
    );
    assert_eq!(
        get("osiiso_tasks_finished_total{status=\"failed\",kind=\"failed\"}"),
        1.0
    );
    assert_eq!(get("osiiso_task_retries_total"), 2.0);
    // 5 + 1 + 3 attempts.
    assert_eq!(get("osiiso_attempt_duration_seconds_count"), 9.0);
    assert_eq!(
        get("osiiso_attempts_finished_total{outcome=\"failed\"}"),
        3.0
    );
    assert_eq!(get("osiiso_tasks_queued"), 0.0);
    assert_eq!(get("osiiso_attempts_running"), 0.0);

    let status = metrics.status(10);
    assert_eq!(status.counts.succeeded, 5);
    assert_eq!(status.counts.failed, 2);
    assert_eq!(status.counts.submitted, 7);
    assert_eq!(status.failures.len(), 2);
    // Guest text is bounded and stripped of terminal controls.
    assert!(
        status
            .failures
            .iter()
            .all(|f| !f.message.contains('\u{1b}'))
    );
    assert!(status.healthy);
    metrics.set_draining(true);
    assert!(!metrics.healthy());
}

#[test]
fn recent_failures_are_bounded() {
    let metrics = Metrics::new();
    let long = "x".repeat(100_000);
    for _ in 0..(RECENT_FAILURES * 3) {
        metrics.failed(RecentFailure::new(&long, &long, FailureKind::Trap, &long));
    }
    let status = metrics.status(0);
    assert_eq!(status.failures.len(), RECENT_FAILURES);
    assert!(status.failures.iter().all(
        |f| f.message.len() <= MAX_STATUS_MESSAGE + 64 && f.name.len() <= MAX_STATUS_NAME + 64
    ));
}
