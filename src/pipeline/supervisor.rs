//! Supervision of the pipeline's tasks: each runs in its own tokio task; one that panics or
//! returns before stop is logged, shown as down by `/healthz` (with the reason) and restarted
//! after a pause. A task that fails five times within a minute is given up on: the service
//! then stops with an error, so an orchestrator restarts the process (the journal and the
//! outbox are on disk, so nothing acknowledged is lost either way).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::router::{Router, panic_text};
use super::{Shared, Upkeep, lanes, outcomes, router, upkeep};

/// Failures within [`FAILURE_WINDOW`] after which a task is given up on.
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Which tasks are down, and why.
pub struct Health {
    down: Mutex<BTreeMap<String, String>>,
    restarts: AtomicU64,
    fatal: watch::Sender<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            down: Mutex::new(BTreeMap::new()),
            restarts: AtomicU64::new(0),
            fatal: watch::channel(None).0,
        }
    }
}

impl Health {
    /// `task: reason` for every task that is down now.
    pub fn down(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(task, why)| format!("{task}: {why}"))
            .collect()
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Resolves once a task has been given up on, with why.
    pub async fn fatal(&self) -> String {
        let mut rx = self.fatal.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_default(),
            // The sender lives as long as this value: never reached while it does.
            Err(_) => std::future::pending().await,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.down.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The supervised tasks, for shutdown to wait on.
pub(super) struct Tasks(JoinSet<()>);

impl Tasks {
    pub(super) async fn join(mut self) {
        while self.0.join_next().await.is_some() {}
    }
}

/// Starts every task of the pipeline on `rt`, each under a supervisor.
pub(super) fn start_tasks(
    s: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    router_state: Router,
    upkeep_cfg: Upkeep,
) -> Tasks {
    let mut set = JoinSet::new();
    let router_state = Arc::new(tokio::sync::Mutex::new(router_state));
    let s2 = s.clone();
    set.spawn_on(
        supervise(s.clone(), "router".into(), move || {
            router::run(s2.clone(), router_state.clone())
        }),
        rt,
    );
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    let outcome_rx = Arc::new(tokio::sync::Mutex::new(outcome_rx));
    // The outcome writer ends when the last lane has (at stop): with no actions, there is
    // nothing for it to do.
    if !s.app.actions.is_empty() {
        let s2 = s.clone();
        set.spawn_on(
            supervise(s.clone(), "outcome writer".into(), move || {
                outcomes::run(s2.clone(), outcome_rx.clone())
            }),
            rt,
        );
    }
    for name in s.app.actions.keys() {
        let (s2, tx, n) = (s.clone(), outcome_tx.clone(), name.clone());
        set.spawn_on(
            supervise(s.clone(), format!("lane {name}"), move || {
                lanes::scheduler(s2.clone(), n.clone(), tx.clone())
            }),
            rt,
        );
    }
    drop(outcome_tx);
    let s2 = s.clone();
    set.spawn_on(
        supervise(s.clone(), "flusher".into(), move || {
            upkeep::flusher(s2.clone())
        }),
        rt,
    );
    let s2 = s.clone();
    set.spawn_on(
        supervise(s.clone(), "maintenance".into(), move || {
            upkeep::maintenance(s2.clone(), upkeep_cfg)
        }),
        rt,
    );
    Tasks(set)
}

/// Runs `make()`'s task until stop, restarting it when it panics or returns early.
async fn supervise<F, Fut>(s: Arc<Shared>, name: String, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut stop = s.stop.subscribe();
    let mut failures: VecDeque<Instant> = VecDeque::new();
    loop {
        let res = tokio::spawn(make()).await;
        if *stop.borrow() {
            break;
        }
        let reason = match res {
            Ok(()) => "stopped unexpectedly".to_string(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_text(&e.into_panic())),
            Err(e) => e.to_string(),
        };
        s.health.lock().insert(name.clone(), reason.clone());
        let now = Instant::now();
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
        {
            failures.pop_front();
        }
        if failures.len() >= MAX_FAILURES {
            let why = format!("{name}: {reason} ({MAX_FAILURES} times within a minute; giving up)");
            tracing::error!(task = %name, error = %reason, "pipeline task keeps failing; stopping the service");
            s.health.fatal.send_replace(Some(why));
            return;
        }
        tracing::error!(task = %name, error = %reason, "pipeline task stopped; restarting it");
        tokio::select! {
            _ = tokio::time::sleep(s.limits.restart_delay) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        s.health.restarts.fetch_add(1, Ordering::Relaxed);
        s.health.lock().remove(&name);
    }
}

/// Nice value of the routing and delivery threads: under overload the CPU goes to intake
/// first (acknowledging is what senders wait for; the backlog waits durably on disk), and
/// routing and delivery take the rest (about a tenth while intake wants every core; all of it
/// as soon as intake does not). Without contention this changes nothing. Measured with
/// scripts/bench: nice 5 gave ~30,500 accepted/s, nice 10 ~34,000/s, delivery the same.
const DELIVERY_NICE: i32 = 10;

/// A runtime of its own for routing and delivery, its threads at [`DELIVERY_NICE`].
pub(super) fn delivery_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("postee-deliver")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
}

/// Lowers the calling thread's priority. On Linux the nice value is per thread; a failure
/// only loses the preference.
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: gettid and setpriority take no pointers and only read their integer
    // arguments; calling them from any thread is sound.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, DELIVERY_NICE);
    }
}
