//! The outcome writer: records delivery outcomes, every one waiting in one transaction.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Shared;
use crate::store::OutcomeCommit;

/// An outcome to record, and where to say it is recorded.
pub(super) struct Request {
    pub commit: OutcomeCommit,
    /// The commit's number, or why it failed.
    pub reply: oneshot::Sender<Result<u64, String>>,
}

/// Runs until every sender is gone. Its receiver outlives a restart (it sits in the mutex).
pub(super) async fn run(
    s: Arc<Shared>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Request>>>,
) {
    let mut rx = rx.lock().await;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < s.limits.outcome_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        #[cfg(test)]
        super::tests::faults::outcome(
            batch
                .iter()
                .map(|r| r.commit.delivery.content.description.as_str()),
        );
        let (commits, replies): (Vec<OutcomeCommit>, Vec<_>) =
            batch.into_iter().map(|r| (r.commit, r.reply)).unzip();
        let (store, now) = (s.store.clone(), s.now());
        let res = tokio::task::spawn_blocking(move || store.record_outcomes(&commits, now))
            .await
            .map_err(|e| format!("outcome commit panicked: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        for reply in replies {
            let _ = reply.send(res.clone());
        }
    }
}
