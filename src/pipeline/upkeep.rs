//! Upkeep tasks: the flusher (makes routing and outcomes durable every 100 ms) and
//! maintenance (dedup expiry, history retention, `max-db-size`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Shared;
use crate::store::{Maintenance, StoreError};

/// Maintenance settings.
#[derive(Debug, Clone, Copy)]
pub struct Upkeep {
    pub retention: Duration,
    pub max_db_size: Option<u64>,
    pub verify_interval: Duration,
}

/// Makes non-fsync'd commits durable every `flush_every`: what a crash can roll back (and so
/// send again) is at most that much work.
pub(super) async fn flusher(s: Arc<Shared>) {
    let mut stop = s.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(s.limits.flush_every) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let store = s.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.flush()).await {
            tracing::error!(error = %e, "store flush failed");
        }
    }
}

/// Dedup expiry, history retention and `max-db-size`: at start, every `db-verify-interval`,
/// and whenever a size check (every 10 s) finds the store over its limit.
pub(super) async fn maintenance(s: Arc<Shared>, upkeep: Upkeep) {
    let mut stop = s.stop.subscribe();
    let mut last_full_run: Option<Instant> = None;
    loop {
        let due_full = last_full_run.is_none_or(|t| t.elapsed() >= upkeep.verify_interval);
        let (store, now) = (s.store.clone(), s.now());
        let res =
            tokio::task::spawn_blocking(move || -> Result<Option<Maintenance>, StoreError> {
                let over = match upkeep.max_db_size {
                    Some(max) => store.size()? > max,
                    None => false,
                };
                if !(due_full || over) {
                    return Ok(None);
                }
                let retention = upkeep.retention.as_millis() as u64;
                Ok(Some(store.maintain(retention, upkeep.max_db_size, now)?))
            })
            .await;
        match res {
            Ok(Ok(Some(m))) => {
                if due_full {
                    last_full_run = Some(Instant::now());
                }
                report(&s, &m);
            }
            Ok(Ok(None)) => s.full.store(false, Ordering::SeqCst),
            Ok(Err(e)) => tracing::error!(error = %e, "store maintenance failed"),
            Err(e) => tracing::error!(error = %e, "store maintenance panicked"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

fn report(s: &Shared, m: &Maintenance) {
    if m.over_limit != s.full.load(Ordering::SeqCst) {
        if m.over_limit {
            tracing::error!(
                "store is at max-db-size with only undelivered work; new events get 503 until deliveries drain"
            );
        } else {
            tracing::info!("store is below max-db-size again; accepting events");
        }
    }
    s.full.store(m.over_limit, Ordering::SeqCst);
    if m.dedup_expired + m.history_trimmed > 0 {
        tracing::info!(
            dedup_expired = m.dedup_expired,
            history_trimmed = m.history_trimmed,
            "store maintenance"
        );
    }
}
