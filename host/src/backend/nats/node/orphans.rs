//! Whether a submitter is gone, as a node decides it before dropping the submitter's
//! attempts: its liveness entry expired *and* nothing answers on its report subject, twice,
//! while this node could tell.

use std::time::Instant;

use bytes::Bytes;

use super::super::layout;
use super::super::timing::{HEARTBEAT, REQUEST_TIMEOUT, SUBMITTER_GONE_AFTER, SUBMITTER_LIVENESS};
use super::NodeShared;

/// What this node learnt about one submitter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    /// When it was last asked.
    checked: Instant,
    /// When it was first found gone, in the current run of such findings.
    gone_since: Option<Instant>,
}

impl NodeShared {
    /// Whether `submitter` is gone: its heartbeat entry has expired *and* nothing answers on
    /// its report subject, found again [`SUBMITTER_GONE_AFTER`] after it was first found so
    /// (a submitter that moved to another server of a cluster is back by then), while this
    /// node was connected long enough to tell. Anything less certain counts as alive.
    pub(crate) async fn submitter_gone(&self, submitter: &str) -> bool {
        let Some(since) = self.absent_since(submitter).await else {
            return false;
        };
        let waited = since.elapsed();
        if waited < SUBMITTER_GONE_AFTER {
            tokio::time::sleep(SUBMITTER_GONE_AFTER - waited).await;
        }
        self.absent_since(submitter).await.is_some()
    }

    /// Since when `submitter` has looked absent (`None`: it does not). A look is reused for a
    /// heartbeat.
    async fn absent_since(&self, submitter: &str) -> Option<Instant> {
        let now = Instant::now();
        {
            let mut alive = self.alive.lock();
            alive.retain(|_, l| now.duration_since(l.checked) < SUBMITTER_GONE_AFTER * 4);
            if let Some(known) = alive.get(submitter)
                && now.duration_since(known.checked) < HEARTBEAT
            {
                return known.gone_since;
            }
        }
        let absent = self.broker.connected_for() >= SUBMITTER_LIVENESS.saturating_mul(2)
            && matches!(
                tokio::time::timeout(REQUEST_TIMEOUT, self.submitters.get(submitter)).await,
                Ok(Ok(None))
            )
            && !self.answers(submitter).await;
        let mut alive = self.alive.lock();
        let entry = alive.entry(submitter.to_string()).or_insert(Liveness {
            checked: now,
            gone_since: None,
        });
        entry.checked = now;
        if absent {
            Some(*entry.gone_since.get_or_insert(now))
        } else {
            entry.gone_since = None;
            None
        }
    }

    /// Whether something answers a ping on the submitter's report subject (or this node
    /// cannot tell).
    async fn answers(&self, submitter: &str) -> bool {
        let ping = self
            .broker
            .client
            .request(layout::report_subject(submitter), Bytes::new());
        match tokio::time::timeout(HEARTBEAT, ping).await {
            Ok(Err(error)) => error.kind() != async_nats::RequestErrorKind::NoResponders,
            _ => true,
        }
    }
}
