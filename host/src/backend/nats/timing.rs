//! Every timing constant of the NATS protocol, in one place, with how each relates to the
//! others (docs/distributed.md has the same table). Submitters and nodes must agree on
//! these: change one, check its relations (the assertions below check what they can).

use std::time::Duration;

// ----- liveness -----

/// How often a submitter refreshes its entry in the submitters bucket, and how often it
/// checks on its attempts (the nodes that hold them, the broker that stores them).
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// An entry of the submitters bucket expires this long after its last refresh: a node takes a
/// submitter for gone only once its entry has expired (and nothing answers on its report
/// subject).
pub(crate) const SUBMITTER_LIVENESS: Duration = Duration::from_secs(3);
/// How long a submitter must have looked gone, to a node that asks twice, before the node
/// drops its attempts (a submitter that just moved to another server of a cluster is back
/// within this).
pub(crate) const SUBMITTER_GONE_AFTER: Duration = Duration::from_secs(3);
/// How often a node refreshes its entry in the nodes bucket (`osiiso-host nodes`, the `Auto`
/// worker count). Nothing about a running attempt depends on it.
pub(crate) const NODE_HEARTBEAT: Duration = Duration::from_secs(3);
/// An entry of the nodes bucket expires this long after its last refresh.
pub(crate) const NODE_LIVENESS: Duration = Duration::from_secs(10);

// ----- an attempt on a node -----

/// A node announces an attempt that is still running after this long (shorter ones report
/// before it would matter); an attempt with a timeout is announced at once, because its
/// clock starts then.
pub(crate) const ANNOUNCE_AFTER: Duration = Duration::from_millis(200);
/// A running attempt is announced again this often: the submitter's proof that its node is
/// alive.
pub(crate) const ANNOUNCE_AGAIN: Duration = Duration::from_secs(1);
/// A submitter reports an announced attempt `worker_crashed` once its node has been silent
/// this long while the submitter itself was connected.
pub(crate) const NODE_SILENCE: Duration = Duration::from_secs(4);
/// The lease on an attempt (the band consumers' `ack_wait`), unless the first node set
/// another with `--ack-wait`; a node renews it every quarter of it while it holds the
/// attempt.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The shortest lease a node accepts.
pub(crate) const MIN_LEASE: Duration = Duration::from_secs(1);
/// How long one hand-over of a report waits for the submitter's answer before it is sent
/// again (a node keeps trying for as long as the submitter is alive).
pub(crate) const REPORT_ANSWER: Duration = Duration::from_secs(5);
/// The pause between two hand-overs of a report that was not answered.
pub(crate) const REPORT_RETRY: Duration = Duration::from_millis(200);

// ----- attempts the submitter cannot account for -----

/// An unannounced attempt this old is looked for on the broker.
pub(crate) const STRANDED_CHECK_AFTER: Duration = Duration::from_secs(1);
/// An attempt a node has taken (its band's consumer delivered past it) may go unannounced
/// this long, in time the broker answered, before its node counts as dead.
pub(crate) const UNANNOUNCED_AFTER: Duration = Duration::from_secs(4);
/// An unannounced attempt is looked for once it is this old, and reported `worker_crashed`
/// once it has been gone from the broker without a report this long.
pub(crate) const VANISHED_AFTER: Duration = Duration::from_secs(3);
/// How often (in heartbeats) the vanished check runs.
pub(crate) const VANISHED_CHECK_TICKS: u64 = 3;

// ----- fetching -----

/// A node's long poll on an empty band: how long the broker holds the request.
pub(crate) const LONG_POLL: Duration = Duration::from_secs(30);
/// How often the broker says a long poll is still held; a poll not heard of for twice this
/// is taken as lost (a server died, a consumer moved) and made again.
pub(crate) const POLL_HEARTBEAT: Duration = Duration::from_secs(5);
/// How often a node looks for pulls the broker stopped talking about.
pub(crate) const PULL_CHECK: Duration = Duration::from_secs(1);
/// How long a band that refused a pull is left alone.
pub(crate) const REFUSED_PAUSE: Duration = Duration::from_secs(1);

// ----- the broker -----

/// How long one try of the first connection to a server may take (`--nats` defaults; a
/// builder or node may set another).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The pause before the n-th try to reconnect: n times this, at most ten times.
pub(crate) const RECONNECT_STEP: Duration = Duration::from_millis(100);
/// How long a process that stops waits for the broker to take its leave (its liveness
/// entry removed, what it sent flushed).
pub(crate) const LEAVE_PATIENCE: Duration = Duration::from_secs(2);

/// How long a request to the broker (JetStream API, a report, a ping) may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long storing or fetching one object (a plugin, a large payload) may take.
pub(crate) const OBJECT_PATIENCE: Duration = Duration::from_secs(120);
/// The pause between two tries of a publish that the broker did not acknowledge.
pub(crate) const PUBLISH_RETRY: Duration = Duration::from_millis(200);
/// The broker drops a second copy of an attempt published within this window (same
/// message id): retried publishes never queue an attempt twice within it.
pub(crate) const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Queued attempts and stored payloads are dropped by the broker after this long.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The first and the longest pause between tries to reach the broker or set up its layout
/// while waiting for it (`serve` at start, a submitter's set-up).
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(250);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a submitter's set-up waits for JetStream on a server it reached (a cluster still
/// electing its leaders) before `build` fails.
pub(crate) const SETUP_PATIENCE: Duration = Duration::from_secs(30);

const fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// The relations the protocol depends on.
const _: () = {
    // A submitter's entry outlives two missed refreshes.
    assert!(ms(SUBMITTER_LIVENESS) >= 3 * ms(HEARTBEAT));
    // A node's entry outlives two missed refreshes.
    assert!(ms(NODE_LIVENESS) > 3 * ms(NODE_HEARTBEAT));
    // A live node is heard of at least three times before its silence counts.
    assert!(ms(NODE_SILENCE) >= 3 * ms(ANNOUNCE_AGAIN));
    assert!(ms(ANNOUNCE_AFTER) < ms(ANNOUNCE_AGAIN));
    // A taken attempt is announced long before it counts as stranded.
    assert!(ms(UNANNOUNCED_AFTER) > ms(ANNOUNCE_AFTER) + ms(HEARTBEAT));
    // The broker says a poll is alive several times before it expires.
    assert!(2 * ms(POLL_HEARTBEAT) < ms(LONG_POLL));
    // A lease is renewed (every quarter) at least every 250 ms.
    assert!(ms(MIN_LEASE) / 4 >= 250);
    // A publish retried at its pace stays within the duplicate window for many tries.
    assert!(ms(DUPLICATE_WINDOW) > 100 * ms(PUBLISH_RETRY));
    assert!(ms(BACKOFF_FIRST) < ms(BACKOFF_MAX));
    // Lost pulls are looked for several times per heartbeat window.
    assert!(ms(PULL_CHECK) < ms(POLL_HEARTBEAT));
    // Reconnecting tries every second at worst: well within a liveness window.
    assert!(10 * ms(RECONNECT_STEP) < ms(SUBMITTER_LIVENESS));
};

/// The next pause of a backoff that started at [`BACKOFF_FIRST`].
pub(crate) fn backoff(previous: Duration) -> Duration {
    previous.saturating_mul(2).clamp(BACKOFF_FIRST, BACKOFF_MAX)
}
