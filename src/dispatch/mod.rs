//! The durable pipeline: journal writer (group commit, ack after fsync) → router (conditions,
//! dedup, render, one transaction per batch) → one scheduler per action (concurrency limit,
//! retries with backoff and jitter, dead letters).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regorus::Value;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::actions::{ActionError, Message};
use crate::app::{App, BuiltAction};
use crate::config::RetryPolicy;
use crate::store::{self, Delivery, JournalEntry, Store};

/// Acknowledged events not yet routed (count and bytes held in memory for the router),
/// beyond which intake answers 503: a burst waits on disk and in the sender, not in RAM.
pub const MAX_UNROUTED: usize = 50_000;
pub const MAX_UNROUTED_BYTES: usize = 256 * 1024 * 1024;
/// Most events appended in one journal commit.
const JOURNAL_BATCH: usize = 1024;
/// Most events routed in one transaction.
const ROUTE_BATCH: usize = 256;

struct JournalRequest {
    id: String,
    entry: JournalEntry,
    input: Value,
    reply: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
struct RouteJob {
    id: String,
    entry: JournalEntry,
    input: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("postee is shutting down; retry later")]
    ShuttingDown,
    #[error("too many events are waiting; retry later")]
    Busy,
    #[error("the store is full (max-db-size) with undelivered work; retry later")]
    Full,
    #[error("cannot store the event: {0}")]
    Store(String),
}

/// The running pipeline, shared by intake and the management API.
pub struct Dispatcher {
    pub app: Arc<App>,
    pub store: Arc<Store>,
    journal_tx: mpsc::Sender<JournalRequest>,
    notifies: BTreeMap<String, Arc<Notify>>,
    unrouted: Arc<Backlog>,
    accepting: AtomicBool,
    /// Set by maintenance when `max-db-size` is reached with only undelivered work left.
    pub full: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Option<JoinSet<()>>>,
}

/// Events journaled but not routed yet, held in memory for the router.
#[derive(Default)]
pub struct Backlog {
    count: AtomicUsize,
    bytes: AtomicUsize,
}

impl Backlog {
    fn add(&self, bytes: usize) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }
    fn remove(&self, n: usize, bytes: usize) {
        self.count.fetch_sub(n, Ordering::SeqCst);
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
    }
    fn has_room(&self, bytes: usize) -> bool {
        self.count.load(Ordering::SeqCst) < MAX_UNROUTED
            && self.bytes.load(Ordering::SeqCst) + bytes <= MAX_UNROUTED_BYTES
    }
}

/// Maintenance settings.
#[derive(Debug, Clone, Copy)]
pub struct Upkeep {
    pub retention: Duration,
    pub max_db_size: Option<u64>,
    pub verify_interval: Duration,
}

impl Dispatcher {
    /// Starts every task. Journal entries left by an earlier run are routed first, and
    /// deliveries left in the outbox resume.
    pub fn start(
        app: Arc<App>,
        store: Arc<Store>,
        upkeep: Upkeep,
    ) -> Result<Arc<Dispatcher>, String> {
        let (journal_tx, journal_rx) = mpsc::channel::<JournalRequest>(8192);
        let (route_tx, route_rx) = mpsc::unbounded_channel::<RouteJob>();
        let (stop, stop_rx) = watch::channel(false);
        let notifies: BTreeMap<String, Arc<Notify>> = app
            .actions
            .keys()
            .map(|k| (k.clone(), Arc::new(Notify::new())))
            .collect();
        let unrouted = Arc::new(Backlog::default());
        let d = Arc::new(Dispatcher {
            app: app.clone(),
            store: store.clone(),
            journal_tx,
            notifies,
            unrouted: unrouted.clone(),
            accepting: AtomicBool::new(true),
            full: Arc::new(AtomicBool::new(false)),
            stop,
            tasks: Mutex::new(None),
        });
        let known: HashSet<String> = app.actions.keys().cloned().collect();
        for d in store
            .dead_letter_orphans(&known)
            .map_err(|e| e.to_string())?
        {
            tracing::warn!(route = %d.route, action = %d.action, event_id = %d.event_id, "queued delivery moved to dead letters: its action is not configured any more");
        }
        // Recover: acknowledged but unrouted events go first, in arrival order.
        let pending = store.journal().map_err(|e| e.to_string())?;
        if !pending.is_empty() {
            tracing::info!(
                events = pending.len(),
                "routing events acknowledged before the last stop"
            );
        }
        for (id, entry) in pending {
            match crate::intake::parse_event(entry.body.as_bytes()) {
                Ok(input) => {
                    unrouted.add(entry.body.len());
                    let _ = route_tx.send(RouteJob { id, entry, input });
                }
                Err(e) => {
                    tracing::error!(event_id = %id, error = %e, "journal entry is not an event; left in the journal")
                }
            }
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(journal_writer(
            store.clone(),
            journal_rx,
            route_tx.clone(),
            unrouted.clone(),
            stop_rx.clone(),
        ));
        tasks.spawn(router(d.clone(), route_rx, stop_rx.clone()));
        for name in app.actions.keys() {
            tasks.spawn(scheduler(d.clone(), name.clone(), stop_rx.clone()));
        }
        tasks.spawn(flusher(store.clone(), stop_rx.clone()));
        if !app.window_routes().is_empty() {
            tasks.spawn(windows(d.clone(), stop_rx.clone()));
        }
        tasks.spawn(maintenance(d.clone(), upkeep, stop_rx));
        *d.tasks.lock().unwrap_or_else(|e| e.into_inner()) = Some(tasks);
        Ok(d)
    }

    /// Journals an event and answers once it is on disk.
    pub async fn accept(&self, entry: JournalEntry, input: Value) -> Result<String, AcceptError> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(AcceptError::ShuttingDown);
        }
        if self.full.load(Ordering::SeqCst) {
            return Err(AcceptError::Full);
        }
        if !self.unrouted.has_room(entry.body.len()) {
            return Err(AcceptError::Busy);
        }
        let id = crate::intake::new_event_id();
        let (reply, rx) = oneshot::channel();
        let req = JournalRequest {
            id: id.clone(),
            entry,
            input,
            reply,
        };
        self.journal_tx.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AcceptError::Busy,
            mpsc::error::TrySendError::Closed(_) => AcceptError::ShuttingDown,
        })?;
        match rx.await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(AcceptError::Store(e)),
            Err(_) => Err(AcceptError::ShuttingDown),
        }
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
            && !self.full.load(Ordering::SeqCst)
            && self.unrouted.has_room(0)
    }

    /// Wakes the scheduler of an action (new or replayed deliveries).
    pub fn notify(&self, action: &str) {
        if let Some(n) = self.notifies.get(action) {
            n.notify_one();
        }
    }

    /// Stops taking events, lets in-flight sends finish up to `deadline`, makes everything
    /// durable. What is not sent stays queued for the next start.
    pub async fn shutdown(&self, deadline: Duration) {
        self.accepting.store(false, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut tasks) = tasks {
            let all = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(deadline, all).await.is_err() {
                tracing::warn!(
                    timeout_s = deadline.as_secs(),
                    "shutdown deadline reached with deliveries in flight; they stay queued"
                );
            }
        }
        let store = self.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.flush()).await {
            tracing::error!(error = %e, "final store flush failed");
        }
    }
}

/// Group commit: every request waiting when a commit starts goes into that commit.
async fn journal_writer(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<JournalRequest>,
    route_tx: mpsc::UnboundedSender<RouteJob>,
    unrouted: Arc<Backlog>,
    mut stop: watch::Receiver<bool>,
) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                r = rx.recv() => r,
                _ = stop.wait_for(|s| *s) => {
                    // Commit what was already handed over, take nothing new.
                    stopping = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < JOURNAL_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let entries: Vec<(String, JournalEntry)> = batch
            .iter()
            .map(|r| (r.id.clone(), r.entry.clone()))
            .collect();
        let s = store.clone();
        let res = tokio::task::spawn_blocking(move || s.append_journal(&entries))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match res {
            Ok(()) => {
                for r in batch {
                    unrouted.add(r.entry.body.len());
                    let _ = route_tx.send(RouteJob {
                        id: r.id,
                        entry: r.entry,
                        input: r.input,
                    });
                    let _ = r.reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "journal commit failed; events refused");
                for r in batch {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Routes journaled events in batches: conditions, dedup, rendering, then one transaction.
async fn router(
    d: Arc<Dispatcher>,
    mut rx: mpsc::UnboundedReceiver<RouteJob>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            j = rx.recv() => j,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < ROUTE_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let bytes: usize = batch.iter().map(|j| j.entry.body.len()).sum();
        loop {
            let app = d.app.clone();
            let store = d.store.clone();
            let jobs = batch.clone();
            let res = tokio::task::spawn_blocking(move || {
                let plans = plan_parallel(&app, &jobs);
                store.commit_routing(plans, &|route, items| app.render_aggregate(route, items))
            })
            .await;
            match res {
                Ok(Ok(touched)) => {
                    for a in touched {
                        d.notify(&a);
                    }
                    break;
                }
                Ok(Err(e)) => {
                    // The events stay in the journal; try again shortly.
                    tracing::error!(error = %e, events = n, "routing commit failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if *stop.borrow() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "routing panicked; events stay in the journal");
                    break;
                }
            }
        }
        d.unrouted.remove(n, bytes);
    }
}

/// Plans a batch (conditions and rendering, the CPU work) on every core, keeping the order.
fn plan_parallel(app: &App, jobs: &[RouteJob]) -> Vec<crate::store::EventPlan> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || jobs.len() < 8 {
        return jobs
            .iter()
            .map(|j| app.plan_event(&j.id, &j.entry, &j.input))
            .collect();
    }
    let chunk = jobs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|j| app.plan_event(&j.id, &j.entry, &j.input))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Exponential backoff with full jitter: a random delay up to `initial * 2^(attempt-1)`,
/// capped at `max-delay`; never shorter than the target's `Retry-After`.
pub fn backoff(policy: &RetryPolicy, attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exp = policy
        .initial_delay
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(30)))
        .min(policy.max_delay);
    let jitter = Duration::from_millis(rand::random_range(0..=exp.as_millis() as u64));
    match retry_after {
        Some(ra) => ra.max(jitter),
        None => jitter,
    }
}

/// One action's sender: picks due deliveries up to its concurrency, sends, records outcomes.
async fn scheduler(d: Arc<Dispatcher>, name: String, mut stop: watch::Receiver<bool>) {
    let Some(built) = d.app.actions.get(&name).cloned() else {
        return;
    };
    let notify = d.notifies[&name].clone();
    let sem = Arc::new(Semaphore::new(built.concurrency));
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut inflight = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        while inflight.try_join_next().is_some() {}
        let free = sem.available_permits();
        let mut started = 0;
        if free > 0 {
            let skip = busy.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let store = d.store.clone();
            let n = name.clone();
            let due =
                tokio::task::spawn_blocking(move || store.due(&n, store::now_ms(), free, &skip))
                    .await;
            match due {
                Ok(Ok(list)) => {
                    for delivery in list {
                        let Ok(permit) = sem.clone().try_acquire_owned() else {
                            break;
                        };
                        busy.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(delivery.id.clone());
                        started += 1;
                        let (d2, b2, busy2, notify2) =
                            (d.clone(), built.clone(), busy.clone(), notify.clone());
                        inflight.spawn(async move {
                            let id = delivery.id.clone();
                            attempt(&d2, &b2, delivery).await;
                            busy2.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                            drop(permit);
                            notify2.notify_one();
                        });
                    }
                }
                Ok(Err(e)) => tracing::error!(action = %name, error = %e, "cannot read the outbox"),
                Err(e) => tracing::error!(action = %name, error = %e, "outbox read panicked"),
            }
        }
        if started > 0 && sem.available_permits() > 0 {
            continue;
        }
        // Sleep until the next delivery is due, a notification, or at most a second.
        let store = d.store.clone();
        let n = name.clone();
        let next = tokio::task::spawn_blocking(move || store.next_due(&n))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
        let now = store::now_ms();
        let wait = match next {
            Some(at) if at > now => Duration::from_millis((at - now).min(1000)),
            Some(_)
                if sem.available_permits() > 0
                    && busy.lock().unwrap_or_else(|e| e.into_inner()).is_empty() =>
            {
                Duration::ZERO
            }
            _ => Duration::from_millis(1000),
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    // Let in-flight sends finish (the caller bounds this with the shutdown deadline).
    while inflight.join_next().await.is_some() {}
}

/// One attempt of one delivery, and what follows from it.
async fn attempt(d: &Dispatcher, built: &BuiltAction, mut delivery: Delivery) {
    delivery.attempts += 1;
    let msg = Message {
        event_id: delivery.event_id.clone(),
        route: delivery.route.clone(),
        content: delivery.content.clone(),
    };
    let start = Instant::now();
    let res = built.action.send(&msg).await;
    let elapsed_ms = start.elapsed().as_millis() as u64;
    let error = res.as_ref().err().map(|e| e.to_string());
    let transient = res.as_ref().err().is_some_and(|e| e.is_transient());
    let policy = built.retry;
    let store = d.store.clone();
    let del = delivery.clone();
    let recorded = tokio::task::spawn_blocking(
        move || -> Result<(&'static str, Option<u64>, Option<String>), store::StoreError> {
            let e = match res {
                Ok(()) => return Ok(("delivered", None, store.record_delivered(&del)?)),
                Err(e) => e,
            };
            let now = store::now_ms();
            let deadline = del.created_at_ms + policy.max_age.as_millis() as u64;
            let retry_after = match &e {
                ActionError::Transient { retry_after, .. } => *retry_after,
                ActionError::Permanent { .. } => None,
            };
            let next_at = now + backoff(&policy, del.attempts, retry_after).as_millis() as u64;
            if e.is_transient() && del.attempts < policy.max_attempts && next_at <= deadline {
                store.record_retry(&del, next_at, &e.to_string())?;
                Ok(("retrying", Some(next_at - now), None))
            } else {
                Ok(("dead", None, store.record_dead(&del, &e.to_string())?))
            }
        },
    )
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let a = built.action.as_ref();
    let (outcome, retry_in_ms, next) = match recorded {
        Ok(r) => r,
        Err(e) => {
            // The delivery stays due in the outbox, so it is sent again (at least once).
            tracing::error!(route = %delivery.route, action = %a.name(), event_id = %delivery.event_id, error = %e, "cannot record a delivery outcome");
            return;
        }
    };
    if let Some(next) = next {
        d.notify(&next);
    }
    let error = error.unwrap_or_default();
    match outcome {
        "delivered" => tracing::info!(
            route = %delivery.route, action = %a.name(), kind = a.kind(), event_id = %delivery.event_id,
            attempt = delivery.attempts, outcome, elapsed_ms, "delivery"
        ),
        "retrying" => tracing::warn!(
            route = %delivery.route, action = %a.name(), kind = a.kind(), event_id = %delivery.event_id,
            attempt = delivery.attempts, outcome, transient, elapsed_ms, retry_in_ms = retry_in_ms.unwrap_or(0),
            error = %error, "delivery"
        ),
        _ => tracing::warn!(
            route = %delivery.route, action = %a.name(), kind = a.kind(), event_id = %delivery.event_id,
            attempt = delivery.attempts, outcome, transient, elapsed_ms, error = %error, "delivery; moved to dead letters"
        ),
    }
}

/// Sends time-window aggregation batches when their window ends (checked every second;
/// a window that ended while postee was stopped fires at start).
async fn windows(d: Arc<Dispatcher>, mut stop: watch::Receiver<bool>) {
    let routes = d.app.window_routes();
    loop {
        let (app, store, routes2) = (d.app.clone(), d.store.clone(), routes.clone());
        let res = tokio::task::spawn_blocking(move || {
            store.flush_windows(&routes2, &|route, items| app.render_aggregate(route, items))
        })
        .await;
        match res {
            Ok(Ok(touched)) => {
                for a in touched {
                    d.notify(&a);
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "aggregation window flush failed"),
            Err(e) => tracing::error!(error = %e, "aggregation window flush panicked"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Makes non-fsync'd commits durable at least every half second.
async fn flusher(store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let s = store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.flush()).await {
            tracing::error!(error = %e, "store flush failed");
        }
    }
}

/// Dedup expiry, history retention and `max-db-size`: at start, every `db-verify-interval`,
/// and whenever a size check (every 10 s) finds the store over its limit.
async fn maintenance(d: Arc<Dispatcher>, upkeep: Upkeep, mut stop: watch::Receiver<bool>) {
    let mut last_full_run: Option<Instant> = None;
    loop {
        let due_full = last_full_run.is_none_or(|t| t.elapsed() >= upkeep.verify_interval);
        let store = d.store.clone();
        let res = tokio::task::spawn_blocking(
            move || -> Result<Option<store::Maintenance>, store::StoreError> {
                let over = match upkeep.max_db_size {
                    Some(max) => store.size()? > max,
                    None => false,
                };
                if due_full || over {
                    Ok(Some(store.maintain(
                        upkeep.retention.as_millis() as u64,
                        upkeep.max_db_size,
                    )?))
                } else {
                    Ok(None)
                }
            },
        )
        .await;
        match res {
            Ok(Ok(Some(m))) => {
                if due_full {
                    last_full_run = Some(Instant::now());
                }
                if m.over_limit != d.full.load(Ordering::SeqCst) {
                    if m.over_limit {
                        tracing::error!(
                            "store is at max-db-size with only undelivered work; new events get 503 until deliveries drain"
                        );
                    } else {
                        tracing::info!("store is below max-db-size again; accepting events");
                    }
                }
                d.full.store(m.over_limit, Ordering::SeqCst);
                if m.dedup_expired + m.history_trimmed > 0 {
                    tracing::info!(
                        dedup_expired = m.dedup_expired,
                        history_trimmed = m.history_trimmed,
                        "store maintenance"
                    );
                }
            }
            Ok(Ok(None)) => {
                d.full.store(false, Ordering::SeqCst);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "store maintenance failed"),
            Err(e) => tracing::error!(error = %e, "store maintenance panicked"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 10,
            max_age: Duration::from_secs(3600),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
        };
        for _ in 0..200 {
            assert!(backoff(&p, 1, None) <= Duration::from_secs(1));
            assert!(backoff(&p, 3, None) <= Duration::from_secs(4));
            assert!(backoff(&p, 30, None) <= Duration::from_secs(8));
            assert!(backoff(&p, 1, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        }
    }
}
