//! The durable pipeline: journal writer (a thread; group commit to the journal log, ack after
//! fdatasync) → router (conditions, dedup, render, one transaction per batch, reading the
//! journal file whenever it fell behind what memory holds) → one lane and scheduler per
//! action (deliveries in memory up to a bound, the rest read back from the outbox;
//! concurrency limit, retries with backoff and jitter, dead letters) → outcome writer (many
//! outcomes per transaction).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use regorus::Value;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::actions::{ActionError, Message};
use crate::app::{App, BuiltAction};
use crate::config::RetryPolicy;
use crate::store::journal::{self, JournalWriter};
use crate::store::{self, Delivery, JournalEntry, Outcome, Store};

/// Acknowledged events not yet routed, beyond which intake answers 503. They wait in the
/// journal on disk, so this only bounds how far routing may fall behind.
pub const MAX_UNROUTED: i64 = 500_000;
/// Parsed events handed from intake to the router in memory, at most; beyond this the router
/// reads them back from the journal file, so a burst waits on disk, not in RAM.
const MAX_HANDOFF_BYTES: usize = 32 * 1024 * 1024;

/// Memory bounds, from the constants; `POSTEE_TEST_HANDOFF_BYTES` and `POSTEE_TEST_LANE_MAX`
/// shrink them so tests can drive the read-back paths (journal file, outbox) with few events.
fn handoff_limit() -> usize {
    static V: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *V.get_or_init(|| env_usize("POSTEE_TEST_HANDOFF_BYTES").unwrap_or(MAX_HANDOFF_BYTES))
}
fn lane_limit() -> usize {
    static V: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *V.get_or_init(|| env_usize("POSTEE_TEST_LANE_MAX").unwrap_or(LANE_MAX))
}
fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}
/// Most events appended in one journal write.
const JOURNAL_BATCH: usize = 2048;
/// Most events routed in one transaction.
const ROUTE_BATCH: usize = 512;
/// Deliveries an action holds in memory (ready to send); more wait in the outbox.
const LANE_MAX: usize = 4096;
const LANE_MAX_BYTES: usize = 32 * 1024 * 1024;
/// How often routing and outcomes are made durable.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Most outcomes recorded in one transaction.
const OUTCOME_BATCH: usize = 2048;

struct JournalRequest {
    id: String,
    entry: JournalEntry,
    input: Value,
    reply: oneshot::Sender<Result<(), String>>,
}

struct RouteJob {
    id: String,
    entry: JournalEntry,
    input: Value,
}

/// One journal write, as the router learns of it. `jobs` is `None` when memory was full:
/// the router then reads those events from the journal file.
struct Appended {
    start: u64,
    end: u64,
    jobs: Option<(Vec<RouteJob>, usize)>,
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
    journal_tx: std_mpsc::SyncSender<JournalRequest>,
    lanes: BTreeMap<String, Arc<Lane>>,
    /// Events acknowledged and not routed yet (since start; recovered ones count below 0).
    unrouted: Arc<AtomicI64>,
    accepting: AtomicBool,
    /// Set by maintenance when `max-db-size` is reached with only undelivered work left.
    pub full: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    journal_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    tasks: Mutex<Option<JoinSet<()>>>,
    /// The runtime routing and delivery run on (see [`delivery_runtime`]).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

/// Nice value of the routing and delivery threads: under overload the CPU goes to intake
/// first (acknowledging is what senders wait for; the backlog waits durably on disk), and
/// routing and delivery take the rest (about a tenth while intake wants every core; all of it
/// as soon as intake does not). Without contention this changes nothing. Measured with
/// scripts/bench: nice 5 gave ~30,500 accepted/s, nice 10 ~34,000/s, delivery the same.
const DELIVERY_NICE: i32 = 10;

/// A runtime of its own for routing and delivery, its threads at [`DELIVERY_NICE`].
fn delivery_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("postee-deliver")
        .on_thread_start(|| {
            // On Linux the nice value is per thread; a failure only loses the preference.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, DELIVERY_NICE);
            }
        })
        .enable_all()
        .build()
}

/// Maintenance settings.
#[derive(Debug, Clone, Copy)]
pub struct Upkeep {
    pub retention: Duration,
    pub max_db_size: Option<u64>,
    pub verify_interval: Duration,
}

/// One action's deliveries that are due, in memory, and the ones being sent.
struct Lane {
    state: Mutex<LaneState>,
    notify: Notify,
}

struct LaneState {
    ready: VecDeque<Delivery>,
    bytes: usize,
    /// Ids in `ready` or being sent: a read of the outbox skips them.
    known: HashSet<String>,
    /// The outbox may hold due deliveries that are not in memory.
    spilled: bool,
    /// When a delivery waiting for a retry is due (ms; `u64::MAX`: none known).
    wake_at: u64,
}

fn delivery_bytes(d: &Delivery) -> usize {
    let c = &d.content;
    256 + d.id.len() + c.title.len() + c.description.len() + c.url.len()
}

impl Lane {
    fn new() -> Lane {
        Lane {
            state: Mutex::new(LaneState {
                ready: VecDeque::new(),
                bytes: 0,
                known: HashSet::new(),
                // Read the outbox once at start: deliveries left by an earlier run.
                spilled: true,
                wake_at: 0,
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A delivery committed to the outbox and due now.
    fn push(&self, d: Delivery) {
        {
            let mut s = self.lock();
            if s.known.contains(&d.id) {
                return;
            }
            let size = delivery_bytes(&d);
            if s.ready.len() >= lane_limit() || s.bytes + size > LANE_MAX_BYTES {
                s.spilled = true;
            } else {
                s.known.insert(d.id.clone());
                s.bytes += size;
                s.ready.push_back(d);
            }
        }
        self.notify.notify_one();
    }

    /// The outbox changed behind the lane's back (replay): read it again.
    fn rescan(&self) {
        self.lock().spilled = true;
        self.notify.notify_one();
    }
}

impl Dispatcher {
    /// Starts every task. Journal entries left by an earlier run are routed first, and
    /// deliveries left in the outbox resume.
    pub fn start(
        app: Arc<App>,
        store: Arc<Store>,
        upkeep: Upkeep,
    ) -> Result<Arc<Dispatcher>, String> {
        let known: HashSet<String> = app.actions.keys().cloned().collect();
        for d in store
            .dead_letter_orphans(&known)
            .map_err(|e| e.to_string())?
        {
            tracing::warn!(route = %d.route, action = %d.action, event_id = %d.event_id, "queued delivery moved to dead letters: its action is not configured any more");
        }
        // A store from before the journal was a log: route what its old journal holds.
        let legacy = store.journal().map_err(|e| e.to_string())?;
        for chunk in legacy.chunks(ROUTE_BATCH) {
            let jobs: Vec<RouteJob> = chunk
                .iter()
                .filter_map(|(id, entry)| to_job(id.clone(), entry.clone()))
                .collect();
            let plans = plan_parallel(&app, &jobs);
            store
                .commit_routing(plans, None, &|route, items| {
                    app.render_aggregate(route, items)
                })
                .map_err(|e| e.to_string())?;
        }
        let writer = JournalWriter::open(store.journal_dir()).map_err(|e| {
            format!(
                "cannot open the journal {}: {e}",
                store.journal_dir().display()
            )
        })?;
        store.journal_end.store(writer.end(), Ordering::SeqCst);
        let checkpoint = store.checkpoint().map_err(|e| e.to_string())?;
        if checkpoint < writer.end() {
            tracing::info!("routing events acknowledged before the last stop");
        }
        let (journal_tx, journal_rx) = std_mpsc::sync_channel::<JournalRequest>(16384);
        let (route_tx, route_rx) = mpsc::unbounded_channel::<Appended>();
        let (stop, stop_rx) = watch::channel(false);
        let lanes: BTreeMap<String, Arc<Lane>> = app
            .actions
            .keys()
            .map(|k| (k.clone(), Arc::new(Lane::new())))
            .collect();
        let unrouted = Arc::new(AtomicI64::new(0));
        let handoff = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let journal_thread = {
            let shared = JournalShared {
                store: store.clone(),
                route_tx,
                unrouted: unrouted.clone(),
                handoff: handoff.clone(),
            };
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("postee-journal".into())
                .spawn(move || journal_writer(writer, journal_rx, shared, stopping))
                .map_err(|e| format!("cannot start the journal writer: {e}"))?
        };
        let (outcome_tx, outcome_rx) = mpsc::unbounded_channel::<OutcomeRequest>();
        let runtime =
            delivery_runtime().map_err(|e| format!("cannot start the delivery threads: {e}"))?;
        let rt = runtime.handle().clone();
        let d = Arc::new(Dispatcher {
            app: app.clone(),
            store: store.clone(),
            journal_tx,
            lanes,
            unrouted,
            accepting: AtomicBool::new(true),
            full: Arc::new(AtomicBool::new(false)),
            stop,
            journal_thread: Mutex::new(Some(journal_thread)),
            tasks: Mutex::new(None),
            runtime: Mutex::new(Some(runtime)),
        });
        // The journal thread watches this flag; the watch channel wakes the async tasks.
        let mut stop_flag = stop_rx.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn_on(
            async move {
                let _ = stop_flag.wait_for(|s| *s).await;
                stopping.store(true, Ordering::SeqCst);
            },
            &rt,
        );
        let cursor = RouterCursor {
            pos: checkpoint,
            handoff,
        };
        tasks.spawn_on(router(d.clone(), route_rx, cursor, stop_rx.clone()), &rt);
        tasks.spawn_on(outcome_writer(store.clone(), outcome_rx), &rt);
        for name in app.actions.keys() {
            tasks.spawn_on(
                scheduler(d.clone(), name.clone(), outcome_tx.clone(), stop_rx.clone()),
                &rt,
            );
        }
        drop(outcome_tx);
        tasks.spawn_on(flusher(store.clone(), stop_rx.clone()), &rt);
        if !app.window_routes().is_empty() {
            tasks.spawn_on(windows(d.clone(), stop_rx.clone()), &rt);
        }
        tasks.spawn_on(maintenance(d.clone(), upkeep, stop_rx), &rt);
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
        if self.unrouted.load(Ordering::Relaxed) >= MAX_UNROUTED {
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
            std_mpsc::TrySendError::Full(_) => AcceptError::Busy,
            std_mpsc::TrySendError::Disconnected(_) => AcceptError::ShuttingDown,
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
            && self.unrouted.load(Ordering::Relaxed) < MAX_UNROUTED
    }

    /// Events acknowledged and not routed yet (since this start).
    pub fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed).max(0) as u64
    }

    /// Tells an action's scheduler that its outbox changed (replayed deliveries).
    pub fn notify(&self, action: &str) {
        if let Some(l) = self.lanes.get(action) {
            l.rescan();
        }
    }

    /// Hands freshly queued deliveries to their actions' lanes.
    fn hand_over(&self, queued: Vec<Delivery>) {
        for d in queued {
            if let Some(l) = self.lanes.get(&d.action) {
                l.push(d);
            }
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
        let journal = self
            .journal_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = journal {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let store = self.store.clone();
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

fn to_job(id: String, entry: JournalEntry) -> Option<RouteJob> {
    match crate::intake::parse_event(entry.body.as_bytes()) {
        Ok(input) => Some(RouteJob { id, entry, input }),
        Err(e) => {
            // Intake only journals what parses, so this is a damaged record.
            tracing::error!(event_id = %id, error = %e, "journal entry is not an event; skipped");
            None
        }
    }
}

/// How many fdatasyncs may be in flight at once.
const SYNC_THREADS: usize = 4;

/// A written batch waiting for its fdatasync.
struct Written {
    start: u64,
    batch: Vec<JournalRequest>,
}

/// What the journal's threads share.
struct JournalShared {
    store: Arc<Store>,
    route_tx: mpsc::UnboundedSender<Appended>,
    unrouted: Arc<AtomicI64>,
    handoff: Arc<AtomicUsize>,
}

/// Writes batches to the journal on its own thread: every request waiting when a write starts
/// goes into that write; sync threads then make it durable (several fdatasyncs may be in
/// flight, so throughput does not stop at one flush per disk round trip) and answer.
fn journal_writer(
    mut writer: JournalWriter,
    rx: std_mpsc::Receiver<JournalRequest>,
    shared: JournalShared,
    stopping: Arc<AtomicBool>,
) {
    let syncer = journal::Syncer::<Written>::new(writer.end());
    let shared = Arc::new(shared);
    let threads: Vec<_> = (0..SYNC_THREADS)
        .filter_map(|i| {
            let (syncer, shared) = (syncer.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("postee-sync-{i}"))
                .spawn(move || syncer.run(&|batches, res| synced(&shared, batches, res)))
                .ok()
        })
        .collect();
    if threads.is_empty() {
        tracing::error!("cannot start the journal's sync threads");
        return;
    }
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                if stopping.load(Ordering::SeqCst) {
                    // Answer what was already handed over, then take nothing new.
                    match rx.try_recv() {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                } else {
                    continue;
                }
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < JOURNAL_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if let Some(e) = syncer.broken() {
            for r in batch {
                let _ = r.reply.send(Err(e.clone()));
            }
            continue;
        }
        let items: Vec<(&str, &JournalEntry)> =
            batch.iter().map(|r| (r.id.as_str(), &r.entry)).collect();
        match writer.write(&items) {
            Ok(starts) => {
                let start = starts.first().copied().unwrap_or(writer.end());
                syncer.push(writer.end(), writer.file(), Written { start, batch });
            }
            Err(e) => {
                let e = format!("journal write failed: {e}");
                tracing::error!(error = %e, events = batch.len(), "events refused");
                for r in batch {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }
    syncer.close();
    for t in threads {
        let _ = t.join();
    }
}

/// Batches made durable (or not): answer intake, hand the events to the router.
fn synced(shared: &JournalShared, batches: Vec<(u64, Written)>, res: Result<(), String>) {
    if let Err(e) = res {
        tracing::error!(error = %e, "journal cannot be made durable; events refused until restart");
        for (_, w) in batches {
            for r in w.batch {
                let _ = r.reply.send(Err(e.clone()));
            }
        }
        return;
    }
    for (end, w) in batches {
        shared.store.journal_end.store(end, Ordering::SeqCst);
        shared
            .unrouted
            .fetch_add(w.batch.len() as i64, Ordering::Relaxed);
        // A parsed event takes several times its text in memory.
        let bytes: usize = w.batch.iter().map(|r| r.entry.body.len() * 6 + 512).sum();
        let keep = shared.handoff.load(Ordering::Relaxed) + bytes <= handoff_limit();
        let mut jobs = Vec::with_capacity(if keep { w.batch.len() } else { 0 });
        for r in w.batch {
            let _ = r.reply.send(Ok(()));
            if keep {
                jobs.push(RouteJob {
                    id: r.id,
                    entry: r.entry,
                    input: r.input,
                });
            }
        }
        if keep {
            shared.handoff.fetch_add(bytes, Ordering::Relaxed);
        }
        let _ = shared.route_tx.send(Appended {
            start: w.start,
            end,
            jobs: keep.then_some((jobs, bytes)),
        });
    }
}

/// Where the router is in the journal.
struct RouterCursor {
    /// Next position to route (everything before `Store::journal_end` is acknowledged).
    pos: u64,
    /// Bytes of parsed events handed over in memory.
    handoff: Arc<AtomicUsize>,
}

/// Routes journaled events in batches: conditions, dedup, rendering, then one transaction that
/// also records how far the journal is routed. Takes events from memory when they follow on
/// from where it is, else reads them from the journal file.
async fn router(
    d: Arc<Dispatcher>,
    mut rx: mpsc::UnboundedReceiver<Appended>,
    mut cur: RouterCursor,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending: VecDeque<Appended> = VecDeque::new();
    loop {
        if *stop.borrow() {
            break;
        }
        if pending.is_empty() {
            // Behind the journal's end with nothing in memory (events read back after a
            // restart, or memory was full): wait only briefly, then read the file.
            let behind = cur.pos < d.store.journal_end.load(Ordering::SeqCst);
            let wait = if behind {
                Duration::from_millis(20)
            } else {
                Duration::from_secs(3600)
            };
            let next = tokio::select! {
                a = rx.recv() => a,
                _ = tokio::time::sleep(wait) => None,
                _ = stop.wait_for(|s| *s) => break,
            };
            match next {
                Some(a) => pending.push_back(a),
                None if behind => {}
                None => {
                    if rx.is_closed() {
                        break;
                    }
                    continue;
                }
            }
        }
        while let Ok(a) = rx.try_recv() {
            pending.push_back(a);
        }
        let mut jobs = Vec::new();
        while jobs.len() < ROUTE_BATCH {
            let Some(front) = pending.front() else { break };
            let usable = front.start == cur.pos && front.jobs.is_some();
            if front.end > cur.pos && !usable {
                break;
            }
            let a = pending.pop_front().expect("front exists");
            if let Some((js, bytes)) = a.jobs {
                cur.handoff.fetch_sub(bytes, Ordering::Relaxed);
                if usable {
                    jobs.extend(js);
                    cur.pos = a.end;
                }
            }
        }
        if jobs.is_empty() {
            // Behind what memory holds: read from the journal file.
            let (dir, from, to) = (
                d.store.journal_dir().to_path_buf(),
                cur.pos,
                d.store.journal_end.load(Ordering::SeqCst),
            );
            if from >= to {
                continue;
            }
            let read =
                tokio::task::spawn_blocking(move || journal::read(&dir, from, to, ROUTE_BATCH))
                    .await;
            match read {
                Ok(Ok((recs, next))) => {
                    jobs = recs
                        .into_iter()
                        .filter_map(|r| to_job(r.id, r.entry))
                        .collect();
                    if next == from {
                        tracing::error!(
                            position = from,
                            "journal has no readable record where routing stands; waiting"
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    cur.pos = next;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the journal; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "journal read panicked; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let n = jobs.len() as i64;
        let jobs = Arc::new(jobs);
        let checkpoint = cur.pos;
        loop {
            let (app, store, jobs) = (d.app.clone(), d.store.clone(), jobs.clone());
            let res = tokio::task::spawn_blocking(move || {
                let plans = plan_parallel(&app, &jobs);
                store.commit_routing(plans, Some(checkpoint), &|route, items| {
                    app.render_aggregate(route, items)
                })
            })
            .await;
            match res {
                Ok(Ok(queued)) => {
                    d.hand_over(queued);
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
                    return;
                }
            }
        }
        d.unrouted.fetch_sub(n, Ordering::Relaxed);
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

/// An outcome to record, and where to say it is recorded (with the delivery queued next by
/// serialize-actions).
struct OutcomeRequest {
    delivery: Delivery,
    outcome: Outcome,
    reply: oneshot::Sender<Result<Option<Delivery>, String>>,
}

/// Records delivery outcomes, every one waiting in one transaction.
async fn outcome_writer(store: Arc<Store>, mut rx: mpsc::UnboundedReceiver<OutcomeRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < OUTCOME_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let s = store.clone();
        let (batch, res) = tokio::task::spawn_blocking(move || {
            let items: Vec<(&Delivery, Outcome)> = batch
                .iter()
                .map(|r| (&r.delivery, r.outcome.clone()))
                .collect();
            let res = s.record_outcomes(&items).map_err(|e| e.to_string());
            (batch, res)
        })
        .await
        .unwrap_or_else(|e| (Vec::new(), Err(e.to_string())));
        match res {
            Ok(nexts) => {
                for (r, next) in batch.into_iter().zip(nexts) {
                    let _ = r.reply.send(Ok(next));
                }
            }
            Err(e) => {
                for r in batch {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One action's sender: sends what its lane holds, up to its concurrency; reads the outbox
/// when the lane spilled over or a retry is due.
async fn scheduler(
    d: Arc<Dispatcher>,
    name: String,
    outcomes: mpsc::UnboundedSender<OutcomeRequest>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(built) = d.app.actions.get(&name).cloned() else {
        return;
    };
    let lane = d.lanes[&name].clone();
    let sem = Arc::new(Semaphore::new(built.concurrency));
    let mut inflight = JoinSet::new();
    // After a failed outbox read, the next one waits a second.
    let mut scan_after = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        while inflight.try_join_next().is_some() {}
        let now = store::now_ms();
        let may_scan = Instant::now() >= scan_after;
        let (work, scan) = {
            let mut s = lane.lock();
            let free = sem.available_permits();
            let mut work = Vec::with_capacity(free.min(s.ready.len()));
            while work.len() < free {
                let Some(d) = s.ready.pop_front() else { break };
                s.bytes -= delivery_bytes(&d);
                work.push(d);
            }
            let scan = may_scan && work.len() < free && (s.spilled || s.wake_at <= now);
            (work, scan)
        };
        let mut work = work.into_iter();
        while let Some(delivery) = work.next() {
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                // Cannot happen (permits counted above): leave these to the outbox.
                let mut s = lane.lock();
                s.known.remove(&delivery.id);
                for rest in work.by_ref() {
                    s.known.remove(&rest.id);
                }
                s.spilled = true;
                break;
            };
            let (d2, b2, lane2, tx) = (d.clone(), built.clone(), lane.clone(), outcomes.clone());
            inflight.spawn(async move {
                attempt(&d2, &b2, &lane2, &tx, delivery).await;
                drop(permit);
                lane2.notify.notify_one();
            });
        }
        if scan {
            let (store, lane2, n) = (d.store.clone(), lane.clone(), name.clone());
            // Read under the lane's lock, so a delivery handed over meanwhile is not read
            // twice, and one finished meanwhile is not read back.
            let res = tokio::task::spawn_blocking(move || {
                let mut s = lane2.lock();
                let room = lane_limit().saturating_sub(s.ready.len());
                let now = store::now_ms();
                let (found, next) = store.due_scan(&n, now, room, &s.known)?;
                let more = found.len() >= room;
                for dl in found {
                    s.known.insert(dl.id.clone());
                    s.bytes += delivery_bytes(&dl);
                    s.ready.push_back(dl);
                }
                s.spilled = more;
                s.wake_at = next.unwrap_or(u64::MAX);
                Ok::<_, store::StoreError>(())
            })
            .await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(action = %name, error = %e, "cannot read the outbox; retrying in 1s");
                    scan_after = Instant::now() + Duration::from_secs(1);
                }
                Err(e) => {
                    tracing::error!(action = %name, error = %e, "outbox read panicked; retrying in 1s");
                    scan_after = Instant::now() + Duration::from_secs(1);
                }
            }
            if !lane.lock().ready.is_empty() && sem.available_permits() > 0 {
                continue;
            }
        }
        // Sleep until there is work, a retry is due (at most a second), or stop.
        let wait = {
            let s = lane.lock();
            let free = sem.available_permits() > 0;
            if free && (!s.ready.is_empty() || (s.spilled && Instant::now() >= scan_after)) {
                Duration::ZERO
            } else {
                let now = store::now_ms();
                Duration::from_millis(s.wake_at.saturating_sub(now).clamp(1, 1000))
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = lane.notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    // Let in-flight sends finish (the caller bounds this with the shutdown deadline).
    while inflight.join_next().await.is_some() {}
}

/// One attempt of one delivery, and what follows from it.
async fn attempt(
    d: &Dispatcher,
    built: &BuiltAction,
    lane: &Lane,
    outcomes: &mpsc::UnboundedSender<OutcomeRequest>,
    mut delivery: Delivery,
) {
    delivery.attempts += 1;
    let msg = Message {
        event_id: delivery.event_id.clone(),
        route: delivery.route.clone(),
        content: delivery.content.clone(),
    };
    let start = Instant::now();
    let res = built.action.send(&msg).await;
    let elapsed_ms = start.elapsed().as_millis() as u64;
    let policy = built.retry;
    let (outcome, retry_in_ms, transient) = match &res {
        Ok(()) => (Outcome::Delivered, None, false),
        Err(e) => {
            let now = store::now_ms();
            let deadline = delivery.created_at_ms + policy.max_age.as_millis() as u64;
            let retry_after = match e {
                ActionError::Transient { retry_after, .. } => *retry_after,
                ActionError::Permanent { .. } => None,
            };
            let next_at = now + backoff(&policy, delivery.attempts, retry_after).as_millis() as u64;
            if e.is_transient() && delivery.attempts < policy.max_attempts && next_at <= deadline {
                (
                    Outcome::Retry {
                        next_at,
                        error: e.to_string(),
                    },
                    Some(next_at - now),
                    true,
                )
            } else {
                (
                    Outcome::Dead {
                        error: e.to_string(),
                    },
                    None,
                    e.is_transient(),
                )
            }
        }
    };
    let (reply, rx) = oneshot::channel();
    let retry_at = match &outcome {
        Outcome::Retry { next_at, .. } => Some(*next_at),
        _ => None,
    };
    let label = match &outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retrying",
        Outcome::Dead { .. } => "dead",
    };
    let sent = outcomes.send(OutcomeRequest {
        delivery: delivery.clone(),
        outcome,
        reply,
    });
    let recorded = match sent {
        Ok(()) => rx
            .await
            .unwrap_or_else(|_| Err("the outcome writer stopped".into())),
        Err(_) => Err("the outcome writer stopped".into()),
    };
    {
        let mut s = lane.lock();
        s.known.remove(&delivery.id);
        match (&recorded, retry_at) {
            // The delivery stays due in the outbox, so it is sent again (at least once).
            (Err(_), _) => s.wake_at = s.wake_at.min(store::now_ms() + 1000),
            (Ok(_), Some(at)) => s.wake_at = s.wake_at.min(at),
            _ => {}
        }
    }
    let a = built.action.as_ref();
    let next = match recorded {
        Ok(next) => next,
        Err(e) => {
            tracing::error!(route = %delivery.route, action = %a.name(), event_id = %delivery.event_id, error = %e, "cannot record a delivery outcome");
            return;
        }
    };
    if let Some(next) = next {
        d.hand_over(vec![next]);
    }
    let error = res.err().map(|e| e.to_string()).unwrap_or_default();
    match label {
        "delivered" => tracing::info!(
            route = %delivery.route, action = %a.name(), kind = a.kind(), event_id = %delivery.event_id,
            attempt = delivery.attempts, outcome = label, elapsed_ms, "delivery"
        ),
        "retrying" => tracing::warn!(
            route = %delivery.route, action = %a.name(), kind = a.kind(), event_id = %delivery.event_id,
            attempt = delivery.attempts, outcome = label, transient, elapsed_ms, retry_in_ms = retry_in_ms.unwrap_or(0),
            error = %error, "delivery"
        ),
        _ => tracing::warn!(
            route = %delivery.route, action = %a.name(), kind = a.kind(), event_id = %delivery.event_id,
            attempt = delivery.attempts, outcome = label, transient, elapsed_ms, error = %error, "delivery; moved to dead letters"
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
            Ok(Ok(queued)) => d.hand_over(queued),
            Ok(Err(e)) => tracing::error!(error = %e, "aggregation window flush failed"),
            Err(e) => tracing::error!(error = %e, "aggregation window flush panicked"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Makes non-fsync'd commits durable every 100 ms: what a crash can roll back (and so send
/// again) is at most that much work.
async fn flusher(store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_EVERY) => {}
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
