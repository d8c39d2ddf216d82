//! The running service: journal writer (a thread; group commit to the journal log, ack after
//! fdatasync) → router (plan, decide, render aggregation batches, one store commit per batch)
//! → one lane and scheduler per action (adaptive concurrency, retries, dead letters) → outcome
//! writer (many outcomes per transaction); plus upkeep (flush, maintenance). Each task is
//! supervised: a task that stops is logged, shown by `/healthz` (503 with the reason) and
//! restarted; one that keeps failing stops the service with an error, for an orchestrator to
//! restart. Intake and the management API use only the [`Pipeline`] handle.

mod journal_writer;
mod lanes;
mod outcomes;
mod router;
mod supervisor;
mod upkeep;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use regorus::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::app::App;
use crate::event::{Clock, EventId, JournalEntry};
use crate::routing::decide::next_in_chain;
use crate::store::{
    self, DeadLetter, EventRecord, EventView, Outcome, OutcomeCommit, Replay, Store, StoreError,
};
use lanes::Lane;
pub use supervisor::Health;
pub use upkeep::Upkeep;

/// Bounds and pacing of the pipeline. The defaults are the production values; tests shrink
/// them to drive rare paths (reading the journal file back, spilling lanes to the outbox).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Acknowledged events not yet routed, beyond which intake answers 503. They wait in the
    /// journal on disk, so this only bounds how far routing may fall behind.
    pub max_unrouted: i64,
    /// Parsed events handed from intake to the router in memory, at most; beyond this the
    /// router reads them back from the journal file, so a burst waits on disk, not in RAM.
    pub handoff_bytes: usize,
    /// Deliveries an action holds in memory (ready to send); more wait in the outbox.
    pub lane_max: usize,
    pub lane_max_bytes: usize,
    /// Most events appended in one journal write.
    pub journal_batch: usize,
    /// Most events routed in one transaction.
    pub route_batch: usize,
    /// Most outcomes recorded in one transaction.
    pub outcome_batch: usize,
    /// How often routing and outcomes are made durable.
    pub flush_every: Duration,
    /// How long a stopped task waits before it is restarted.
    pub restart_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unrouted: 500_000,
            handoff_bytes: 32 * 1024 * 1024,
            lane_max: 4096,
            lane_max_bytes: 32 * 1024 * 1024,
            journal_batch: 2048,
            route_batch: 512,
            outcome_batch: 2048,
            flush_every: Duration::from_millis(100),
            restart_delay: Duration::from_secs(1),
        }
    }
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

/// Why a replay could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("replay failed: {0}")]
    Task(String),
}

/// The service's numbers, for `/stats`.
#[derive(Debug, serde::Serialize)]
pub struct Stats {
    pub store_bytes: u64,
    /// The unrouted journal, counted against `max-db-size`.
    pub journal_bytes: u64,
    pub store_full: bool,
    pub counts: BTreeMap<&'static str, u64>,
    /// Route conditions that could not be evaluated (recorded on their events).
    pub condition_errors: u64,
    /// Templates that failed (each a dead letter per action).
    pub render_errors: u64,
    /// Events whose routing failed as a whole (recorded on the event).
    pub routing_failures: u64,
    /// Pipeline tasks restarted by the supervisor.
    pub task_restarts: u64,
    /// Each action's concurrency: its adaptive limit now, ceiling and deliveries in flight.
    pub concurrency: BTreeMap<String, Concurrency>,
}

/// One action's concurrency, for `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Concurrency {
    /// How many deliveries may be in flight now (adaptive, from 1 up to `max`).
    pub limit: usize,
    /// The ceiling: the action's `concurrency`.
    pub max: usize,
    /// Deliveries being sent (or having their outcome recorded) now.
    pub in_flight: usize,
}

/// Counts of faults that did not stop anything but must not go unseen (`/stats`).
#[derive(Debug, Default)]
pub struct Counters {
    pub condition_errors: AtomicU64,
    pub render_errors: AtomicU64,
    pub routing_failures: AtomicU64,
}

/// What the pipeline's tasks share.
struct Shared {
    app: Arc<App>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    lanes: BTreeMap<String, Arc<Lane>>,
    /// Events acknowledged and not routed yet (since start).
    unrouted: AtomicI64,
    /// Bytes of parsed events handed to the router in memory.
    handoff: AtomicUsize,
    /// Set by maintenance when `max-db-size` is reached with only undelivered work left.
    full: AtomicBool,
    counters: Counters,
    health: Health,
    stop: watch::Sender<bool>,
}

impl Shared {
    /// Hands deliveries queued by commit number `seq` to their actions' lanes.
    fn hand_over(&self, queued: impl IntoIterator<Item = crate::message::Delivery>, seq: u64) {
        for d in queued {
            if let Some(l) = self.lanes.get(&d.action) {
                l.push(d, seq, &self.limits);
            }
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// The running pipeline: the narrow handle intake and the management API use.
pub struct Pipeline {
    shared: Arc<Shared>,
    journal_tx: std_mpsc::SyncSender<journal_writer::Request>,
    accepting: AtomicBool,
    journal_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    tasks: Mutex<Option<supervisor::Tasks>>,
    /// The runtime routing and delivery run on (see [`supervisor::delivery_runtime`]).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl Pipeline {
    /// Starts every task. Journal entries left by an earlier run are routed first, and
    /// deliveries left in the outbox resume.
    pub fn start(
        app: Arc<App>,
        store: Arc<Store>,
        upkeep: Upkeep,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Result<Arc<Pipeline>, StartError> {
        let known: HashSet<String> = app.actions.keys().cloned().collect();
        let now = clock.now_ms();
        let orphans = store.orphans(&known)?;
        let commits: Vec<OutcomeCommit> = orphans
            .iter()
            .map(|d| {
                tracing::warn!(route = %d.route, action = %d.action, event_id = %d.event_id, "queued delivery moved to dead letters: its action is not configured any more");
                OutcomeCommit {
                    delivery: d.clone(),
                    outcome: Outcome::Dead {
                        error: format!(
                            "action `{}` is not configured (or not enabled) any more",
                            d.action
                        ),
                    },
                    next: next_in_chain(d, now),
                }
            })
            .collect();
        if !commits.is_empty() {
            store.record_outcomes(&commits, now)?;
        }
        let writer = store.open_journal()?;
        let checkpoint = store.checkpoint()?;
        if checkpoint < writer.end() {
            tracing::info!("routing events acknowledged before the last stop");
        }
        let (journal_tx, journal_rx) = std_mpsc::sync_channel(16384);
        let (route_tx, route_rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let lanes = app
            .actions
            .iter()
            .map(|(k, a)| (k.clone(), Arc::new(Lane::new(a.concurrency))))
            .collect();
        let queues = store.aggregation_states()?;
        let shared = Arc::new(Shared {
            app,
            store,
            clock,
            limits,
            lanes,
            unrouted: AtomicI64::new(0),
            handoff: AtomicUsize::new(0),
            full: AtomicBool::new(false),
            counters: Counters::default(),
            health: Health::default(),
            stop,
        });
        let journal_thread = journal_writer::spawn(writer, journal_rx, route_tx, shared.clone())?;
        let runtime = supervisor::delivery_runtime().map_err(StartError::Runtime)?;
        let router = router::Router::new(route_rx, checkpoint, queues);
        let tasks = supervisor::start_tasks(&shared, runtime.handle(), router, upkeep);
        Ok(Arc::new(Pipeline {
            shared,
            journal_tx,
            accepting: AtomicBool::new(true),
            journal_thread: Mutex::new(Some(journal_thread)),
            tasks: Mutex::new(Some(tasks)),
            runtime: Mutex::new(Some(runtime)),
        }))
    }

    /// Journals an event and answers once it is on disk.
    pub async fn accept(&self, entry: JournalEntry, input: Value) -> Result<String, AcceptError> {
        let s = &self.shared;
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(AcceptError::ShuttingDown);
        }
        if s.full.load(Ordering::SeqCst) {
            return Err(AcceptError::Full);
        }
        if s.unrouted.load(Ordering::Relaxed) >= s.limits.max_unrouted {
            return Err(AcceptError::Busy);
        }
        let id = EventId::mint(s.now()).into_string();
        let (reply, rx) = oneshot::channel();
        let req = journal_writer::Request {
            id: id.clone(),
            entry,
            input,
            reply,
        };
        self.journal_tx.try_send(req).map_err(|e| match e {
            std_mpsc::TrySendError::Full(_) => AcceptError::Busy,
            std_mpsc::TrySendError::Disconnected(_) => AcceptError::ShuttingDown,
        })?;
        match rx.await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(AcceptError::Store(e)),
            Err(_) => Err(AcceptError::ShuttingDown),
        }
    }

    /// Whether new events are taken now.
    pub fn is_accepting(&self) -> bool {
        let s = &self.shared;
        self.accepting.load(Ordering::SeqCst)
            && !s.full.load(Ordering::SeqCst)
            && s.unrouted.load(Ordering::Relaxed) < s.limits.max_unrouted
    }

    /// Tasks that are down now (stopped and not restarted yet, or given up on), with why.
    /// The journal writer stopping is fatal: nothing can be acknowledged any more.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.shared.health.down();
        let journal_stopped = self
            .journal_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|t| t.is_finished());
        if journal_stopped && self.accepting.load(Ordering::SeqCst) {
            out.push("journal writer: stopped".into());
        }
        out
    }

    /// Resolves when a task has failed for good: the service should stop with an error.
    pub async fn fatal(&self) -> String {
        self.shared.health.fatal().await
    }

    /// Names of the routes (for `/tenant/{route}`).
    pub fn route_names(&self) -> Vec<String> {
        self.shared
            .app
            .routes
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// Events acknowledged and not routed yet (since this start).
    pub fn unrouted(&self) -> u64 {
        self.shared.unrouted.load(Ordering::Relaxed).max(0) as u64
    }

    pub fn is_full(&self) -> bool {
        self.shared.full.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Task restarts since start.
    pub fn restarts(&self) -> u64 {
        self.shared.health.restarts()
    }

    /// Each action's concurrency limit now, ceiling and deliveries in flight.
    pub fn concurrency(&self) -> BTreeMap<String, Concurrency> {
        self.shared
            .lanes
            .iter()
            .map(|(k, l)| (k.clone(), l.concurrency()))
            .collect()
    }

    /// The most recent events, newest first.
    pub async fn recent_events(&self, limit: usize) -> Result<Vec<EventRecord>, ReplayError> {
        let store = self.shared.store.clone();
        blocking(move || store.recent_events(limit)).await
    }

    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ReplayError> {
        let store = self.shared.store.clone();
        blocking(move || store.dead_letters()).await
    }

    /// What `/stats` shows.
    pub async fn stats(&self) -> Result<Stats, ReplayError> {
        let store = self.shared.store.clone();
        let (size, journal_bytes, mut counts) =
            blocking(move || Ok((store.size()?, store.journal_bytes()?, store.counts()?))).await?;
        // Not routed yet: waiting in the journal.
        counts.insert("journal", self.unrouted());
        let c = &self.shared.counters;
        Ok(Stats {
            store_bytes: size,
            journal_bytes,
            store_full: self.is_full(),
            counts,
            condition_errors: c.condition_errors.load(Ordering::Relaxed),
            render_errors: c.render_errors.load(Ordering::Relaxed),
            routing_failures: c.routing_failures.load(Ordering::Relaxed),
            task_restarts: self.restarts(),
            concurrency: self.concurrency(),
        })
    }

    /// One event, routed or still queued.
    pub async fn event(&self, id: String) -> Result<Option<EventView>, ReplayError> {
        let store = self.shared.store.clone();
        blocking(move || store.event(&id)).await
    }

    /// Re-queues dead letters (all when `ids` is `None`) whose action is configured now, and
    /// wakes their actions.
    pub async fn replay(&self, ids: Option<Vec<String>>) -> Result<Replay, ReplayError> {
        let (store, app, now) = (
            self.shared.store.clone(),
            self.shared.app.clone(),
            self.shared.now(),
        );
        let r =
            blocking(move || store.replay(ids.as_deref(), &|a| app.actions.contains_key(a), now))
                .await?;
        for d in &r.replayed {
            if let Some(l) = self.shared.lanes.get(&d.action) {
                l.rescan();
            }
        }
        Ok(r)
    }

    /// Stops taking events, lets in-flight sends finish up to `deadline`, makes everything
    /// durable. What is not sent stays queued for the next start.
    pub async fn shutdown(&self, deadline: Duration) {
        self.accepting.store(false, Ordering::SeqCst);
        // send_replace: the value changes even when no task is listening any more.
        self.shared.stop.send_replace(true);
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tasks) = tasks
            && tokio::time::timeout(deadline, tasks.join()).await.is_err()
        {
            tracing::warn!(
                timeout_s = deadline.as_secs(),
                "shutdown deadline reached with deliveries in flight; they stay queued"
            );
        }
        let journal = self
            .journal_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = journal {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let store = self.shared.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.flush()).await {
            tracing::error!(error = %e, "final store flush failed");
        }
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            rt.shutdown_background();
        }
    }
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the delivery threads: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the journal writer: {0}")]
    Thread(std::io::Error),
}

/// Runs store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> store::Result<T> + Send + 'static,
) -> Result<T, ReplayError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(ReplayError::Task(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
