//! The router: takes acknowledged events in journal order (from memory when they follow on
//! from where it stands, else from the journal file), plans them on every core, asks routing
//! what follows, renders completed aggregation batches, and commits it all with the journal
//! position in one store operation. It is the only writer of dedup holds and aggregation
//! queues, so its reads of them are current. The position moves only after a commit: a
//! router that fails and is restarted starts again from the last committed event.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use super::journal_writer::{Appended, Job};
use crate::app::App;
use crate::event::EventId;
use crate::routing::decide::{self, Decided, ReadyBatch};
use crate::routing::plan::{self, EventPlan};
use crate::store::{AggState, RoutingCommit};

/// The router's state, kept across restarts.
pub(super) struct Router {
    rx: mpsc::UnboundedReceiver<Appended>,
    /// Next journal position to route (everything before `Store::journal_end` is
    /// acknowledged); moves only after a commit.
    pos: u64,
    pending: VecDeque<Appended>,
    /// Aggregation queues, as committed.
    queues: BTreeMap<String, AggState>,
}

impl Router {
    pub(super) fn new(
        rx: mpsc::UnboundedReceiver<Appended>,
        pos: u64,
        queues: BTreeMap<String, AggState>,
    ) -> Router {
        Router {
            rx,
            pos,
            pending: VecDeque::new(),
            queues,
        }
    }
}

/// Runs the router until stop. Returns only at stop; a panic is the supervisor's to see.
pub(super) async fn run(s: Arc<Shared>, state: Arc<tokio::sync::Mutex<Router>>) {
    let mut r = state.lock().await;
    let mut stop = s.stop.subscribe();
    let windows = s.app.window_routes();
    loop {
        if *stop.borrow() {
            break;
        }
        flush_windows(&s, &mut r, &windows).await;
        if r.pending.is_empty() {
            // Behind the journal's end with nothing in memory (events read back after a
            // restart, or memory was full): wait only briefly, then read the file.
            let behind = r.pos < s.store.journal_end();
            let wait = if behind {
                Duration::from_millis(20)
            } else if windows.is_empty() {
                Duration::from_secs(3600)
            } else {
                Duration::from_secs(1)
            };
            let next = tokio::select! {
                a = r.rx.recv() => a,
                _ = tokio::time::sleep(wait) => None,
                _ = stop.wait_for(|s| *s) => break,
            };
            match next {
                Some(a) => r.pending.push_back(a),
                None if behind => {}
                None => {
                    if r.rx.is_closed() {
                        break;
                    }
                    continue;
                }
            }
        }
        while let Ok(a) = r.rx.try_recv() {
            r.pending.push_back(a);
        }
        let (jobs, next_pos) = match take_jobs(&s, &mut r).await {
            Some(taken) => taken,
            None => continue,
        };
        #[cfg(test)]
        super::tests::faults::router(jobs.iter().map(|j| j.entry.body.as_str()));
        let n = jobs.len() as i64;
        let jobs = Arc::new(jobs);
        loop {
            match route_batch(&s, &jobs, Some(next_pos), &r.queues).await {
                Ok(queues) => {
                    r.queues = queues;
                    r.pos = next_pos;
                    break;
                }
                Err(e) => {
                    // The events stay in the journal; try again shortly.
                    tracing::error!(error = %e, events = n, "routing commit failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if *stop.borrow() {
                        return;
                    }
                }
            }
        }
        s.unrouted.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The next events to route and the position after them: from memory when they follow on
/// from where the router stands, else read from the journal file. `None`: nothing now.
async fn take_jobs(s: &Shared, r: &mut Router) -> Option<(Vec<Job>, u64)> {
    let mut jobs = Vec::new();
    let mut pos = r.pos;
    while jobs.len() < s.limits.route_batch {
        let Some(front) = r.pending.front() else {
            break;
        };
        let usable = front.start == pos && front.jobs.is_some();
        if front.end > pos && !usable {
            break;
        }
        let Some(a) = r.pending.pop_front() else {
            break;
        };
        if let Some((js, bytes)) = a.jobs {
            s.handoff.fetch_sub(bytes, Ordering::Relaxed);
            if usable {
                jobs.extend(js);
                pos = a.end;
            }
        }
    }
    if !jobs.is_empty() {
        return Some((jobs, pos));
    }
    // Behind what memory holds: read from the journal file.
    if r.pos >= s.store.journal_end() {
        return None;
    }
    let (store, from, max) = (s.store.clone(), r.pos, s.limits.route_batch);
    let read = tokio::task::spawn_blocking(move || store.read_journal(from, max)).await;
    match read {
        Ok(Ok((recs, next))) if next > from => {
            let jobs = recs
                .into_iter()
                .filter_map(|rec| match crate::event::parse(rec.entry.body.as_bytes()) {
                    Ok(input) => Some(Job {
                        id: rec.id,
                        entry: rec.entry,
                        input,
                    }),
                    Err(e) => {
                        // Intake only journals what parses, so this is a damaged record.
                        tracing::error!(event_id = %rec.id, error = %e, "journal entry is not an event; skipped");
                        None
                    }
                })
                .collect();
            Some((jobs, next))
        }
        Ok(Ok(_)) => {
            tracing::error!(
                position = from,
                "journal has no readable record where routing stands; waiting"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the journal; retrying in 1s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "journal read panicked; retrying in 1s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
    }
}

/// Plans, decides, renders and commits one batch. Returns the aggregation queues as
/// committed; on an error nothing is committed and the queues are as they were.
async fn route_batch(
    s: &Arc<Shared>,
    jobs: &Arc<Vec<Job>>,
    checkpoint: Option<u64>,
    queues: &BTreeMap<String, AggState>,
) -> Result<BTreeMap<String, AggState>, String> {
    let (s2, jobs, queues) = (s.clone(), jobs.clone(), queues.clone());
    let res = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let mut queues = queues;
        let now = s2.now();
        let plans = plan_parallel(&s2.app, &jobs);
        let keys: Vec<&str> = plans
            .iter()
            .flat_map(|p| &p.routes)
            .filter_map(|rp| rp.dedup.as_ref().map(|(k, _)| k.as_str()))
            .collect();
        let holds = if keys.is_empty() {
            Default::default()
        } else {
            s2.store.dedup_holds(keys).map_err(|e| e.to_string())?
        };
        let mut decided = decide::decide_batch(plans, holds, &mut queues, now);
        decided.commit.checkpoint = checkpoint;
        for batch in std::mem::take(&mut decided.ready) {
            render_batch(&s2.app, &mut decided.commit, batch, now);
        }
        let seq = s2
            .store
            .commit_routing(&decided.commit)
            .map_err(|e| e.to_string())?;
        Ok((decided, queues, seq))
    })
    .await;
    let (decided, queues, seq) = match res {
        Ok(r) => r?,
        Err(e) => return Err(format!("routing panicked: {e}")),
    };
    count(s, &decided);
    let Decided { commit, .. } = decided;
    s.hand_over(commit.queued, seq);
    Ok(queues)
}

fn count(s: &Shared, d: &Decided) {
    let c = &s.counters;
    c.condition_errors
        .fetch_add(d.condition_errors, Ordering::Relaxed);
    c.render_errors
        .fetch_add(d.render_errors, Ordering::Relaxed);
    c.routing_failures.fetch_add(d.failed, Ordering::Relaxed);
}

/// Renders a completed aggregation batch (outside any transaction) and adds it to the commit.
fn render_batch(app: &App, commit: &mut RoutingCommit, batch: ReadyBatch, now: u64) {
    let contents: Vec<_> = batch.items.iter().map(|i| i.content.clone()).collect();
    let rendered = match app.route(&batch.route) {
        Some(route) => std::panic::catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            super::tests::faults::aggregating(contents.iter().map(|c| c.description.as_str()))?;
            plan::render_aggregate(route, &contents)
        }))
        .unwrap_or_else(|p| {
            Err(format!(
                "the aggregation template panicked: {}",
                panic_text(&p)
            ))
        }),
        None => Err(format!("route {} is not configured any more", batch.route)),
    };
    if let Err(e) = &rendered {
        tracing::warn!(route = %batch.route, error = %e, "aggregation template failed; dead letters for the batch");
    }
    let id = EventId::mint(now);
    decide::commit_batch(commit, batch, rendered, id.as_str(), now);
}

/// Sends the batches of time-window routes whose window has ended (also the ones that ended
/// while postee was stopped).
async fn flush_windows(
    s: &Arc<Shared>,
    r: &mut Router,
    windows: &[(Arc<crate::routing::Route>, u64)],
) {
    let now = s.now();
    let due: Vec<&str> = windows
        .iter()
        .filter(|(route, ms)| {
            r.queues
                .get(&route.name)
                .is_some_and(|q| decide::window_ended(q, *ms, now))
        })
        .map(|(route, _)| route.name.as_str())
        .collect();
    if due.is_empty() {
        return;
    }
    let mut queues = r.queues.clone();
    let mut commit = RoutingCommit::default();
    for name in due {
        let (Some(route), Some(q)) = (s.app.route(name), queues.get_mut(name)) else {
            continue;
        };
        let batch = ReadyBatch {
            route: name.to_string(),
            items: decide::take_batch(q),
            actions: route.actions.clone(),
            serialize: route.serialize,
        };
        commit.aggregation.insert(name.to_string(), q.clone());
        render_batch(&s.app, &mut commit, batch, now);
    }
    let (store, commit) = (s.store.clone(), Arc::new(commit));
    let c2 = commit.clone();
    match tokio::task::spawn_blocking(move || store.commit_routing(&c2)).await {
        Ok(Ok(seq)) => {
            r.queues = queues;
            s.hand_over(commit.queued.iter().cloned(), seq);
        }
        Ok(Err(e)) => tracing::error!(error = %e, "aggregation window flush failed; retrying"),
        Err(e) => tracing::error!(error = %e, "aggregation window flush panicked; retrying"),
    }
}

/// Plans a batch (conditions and rendering, the CPU work) on every core, keeping the order.
/// A panic while planning one event makes that event's plan a recorded failure; it never
/// drops the event or the batch.
fn plan_parallel(app: &Arc<App>, jobs: &Arc<Vec<Job>>) -> Vec<EventPlan> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The other chunks go to the runtime's blocking pool, whose threads are kept and reused:
    // a thread started per batch (as `std::thread::scope` does) cost more than planning small
    // batches (a hundred thread starts a second under load).
    let handle = tokio::runtime::Handle::try_current();
    let (Ok(handle), true) = (handle, threads >= 2 && jobs.len() >= 8) else {
        return jobs.iter().map(|j| plan_one(app, j)).collect();
    };
    let chunk = jobs.len().div_ceil(threads);
    let ranges: Vec<std::ops::Range<usize>> = (0..jobs.len())
        .step_by(chunk)
        .map(|at| at..(at + chunk).min(jobs.len()))
        .collect();
    let others: Vec<_> = ranges[1..]
        .iter()
        .map(|r| {
            let (app, jobs, r2) = (app.clone(), jobs.clone(), r.clone());
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            drop(handle.spawn_blocking(move || {
                let _ = tx.send(
                    jobs[r2]
                        .iter()
                        .map(|j| plan_one(&app, j))
                        .collect::<Vec<_>>(),
                );
            }));
            (r.clone(), rx)
        })
        .collect();
    let mut plans: Vec<EventPlan> = jobs[ranges[0].clone()]
        .iter()
        .map(|j| plan_one(app, j))
        .collect();
    for (r, rx) in others {
        // No answer only if the task never ran (the runtime is shutting down) or its
        // machinery failed (plan_one catches panics): plan the chunk here instead.
        let part = rx
            .recv()
            .unwrap_or_else(|_| jobs[r].iter().map(|j| plan_one(app, j)).collect());
        plans.extend(part);
    }
    plans
}

fn plan_one(app: &App, j: &Job) -> EventPlan {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        #[cfg(test)]
        super::tests::faults::planning(&j.entry.body);
        plan::plan_event(&app.routes, &app.aqua_server, &j.id, &j.entry, &j.input)
    }))
    .unwrap_or_else(|p| {
        let why = format!("routing panicked: {}", panic_text(&p));
        tracing::error!(event_id = %j.id, error = %why, "event recorded as failed");
        EventPlan::failed(j.id.clone(), j.entry.clone(), why)
    })
}

/// The message of a caught panic.
pub(super) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
