//! One lane and scheduler per action: the deliveries that are due, in memory up to a bound
//! (the rest read back from the outbox), sent up to the action's adaptive concurrency limit
//! (`routing::concurrency`, fed with each attempt's RTT and outcome); each attempt's outcome is
//! decided by routing's retry policy and recorded by the outcome writer.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

use super::outcomes::Request as OutcomeRequest;
use super::router::panic_text;
use super::{Concurrency, Limits, Shared};
use crate::actions::ActionError;
use crate::app::BuiltAction;
use crate::message::{Delivery, Rendered, Unrendered};
use crate::routing::concurrency::{Controller, Sample, Signal};
use crate::routing::decide::next_in_chain;
use crate::routing::plan;
use crate::routing::retry::{Failure, RetryDecision};
use crate::store::{Outcome, OutcomeCommit};

/// One action's deliveries that are due, in memory, and the ones being sent.
pub(super) struct Lane {
    state: std::sync::Mutex<LaneState>,
    notify: Notify,
    /// How many may be in flight now, and how many are. Locked after `state` when both are
    /// needed, never before.
    limiter: std::sync::Mutex<Limiter>,
    /// The origin of the limiter's clock: monotonic, like the RTTs it compares.
    epoch: Instant,
}

/// The adaptive limit of the running scheduler. `run` counts scheduler starts, so a task of an
/// earlier run (cancelled with its scheduler) does not report into the new run's controller.
struct Limiter {
    run: u64,
    ctl: Controller,
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
    /// The store's commit number when the last outbox read began: that read saw every
    /// delivery committed up to it.
    scanned: u64,
}

fn delivery_bytes(d: &Delivery) -> usize {
    let c = &d.content;
    256 + d.id.len() + c.title.len() + c.description.len() + c.url.len()
}

impl Lane {
    /// A lane whose action sends at most `ceiling` at a time (its `concurrency`).
    pub(super) fn new(ceiling: usize) -> Lane {
        Lane {
            state: std::sync::Mutex::new(LaneState {
                ready: VecDeque::new(),
                bytes: 0,
                known: HashSet::new(),
                // Read the outbox once at start: deliveries left by an earlier run.
                spilled: true,
                wake_at: 0,
                scanned: 0,
            }),
            notify: Notify::new(),
            limiter: std::sync::Mutex::new(Limiter {
                run: 0,
                ctl: Controller::new(ceiling),
            }),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A delivery committed to the outbox (by commit number `seq`) and due now.
    pub(super) fn push(&self, d: Delivery, seq: u64, limits: &Limits) {
        {
            let mut s = self.lock();
            // An outbox read that began after this commit has taken the delivery (or left
            // the lane spilled, so a later read will): taking it here too could send it twice.
            if s.known.contains(&d.id) || seq <= s.scanned {
                return;
            }
            let size = delivery_bytes(&d);
            if s.ready.len() >= limits.lane_max || s.bytes + size > limits.lane_max_bytes {
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
    pub(super) fn rescan(&self) {
        self.lock().spilled = true;
        self.notify.notify_one();
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A (re)started scheduler learns the target again, from the initial limit, up to
    /// `ceiling`. Returns the run its deliveries report to.
    fn restart_limiter(&self, ceiling: usize) -> u64 {
        let mut l = self.limiter();
        l.run += 1;
        l.ctl = Controller::new(ceiling);
        l.run
    }

    /// Deliveries that may start now.
    fn free(&self) -> usize {
        self.limiter().ctl.free()
    }

    /// The action's limit, ceiling and deliveries in flight (`/stats`).
    pub(super) fn concurrency(&self) -> Concurrency {
        let l = self.limiter();
        Concurrency {
            limit: l.ctl.limit(),
            max: l.ctl.ceiling(),
            in_flight: l.ctl.in_flight(),
        }
    }

    /// A restarted scheduler starts from the outbox: what was in memory or in flight is
    /// still there (at least once).
    fn reset(&self) {
        let mut s = self.lock();
        s.ready.clear();
        s.known.clear();
        s.bytes = 0;
        s.spilled = true;
        s.wake_at = 0;
        s.scanned = 0;
    }
}

/// One delivery's place in the limit. Freed when dropped, with what its attempt showed (RTT
/// and outcome) or, when the task was cancelled or panicked, with nothing learnt.
struct Slot {
    lane: Arc<Lane>,
    run: u64,
    sample: Option<Sample>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now_us = self.lane.epoch.elapsed().as_micros() as u64;
        let mut l = self.lane.limiter();
        if l.run != self.run {
            return;
        }
        match self.sample.take() {
            Some(sample) => {
                l.ctl.on_done(now_us, sample);
            }
            None => l.ctl.on_cancel(),
        }
    }
}

/// What an attempt tells the concurrency limit: every transient failure (connect error,
/// timeout, 408, 429, 5xx) is back-pressure; a permanent one says nothing about load.
fn signal(res: &Result<(), ActionError>) -> Signal {
    match res {
        Ok(()) => Signal::Delivered,
        Err(ActionError::Transient { .. }) => Signal::BackPressure,
        Err(ActionError::Permanent { .. }) => Signal::Permanent,
    }
}

/// One action's sender: sends what its lane holds, up to its adaptive limit; reads the outbox
/// when the lane spilled over or a retry is due.
pub(super) async fn scheduler(
    s: Arc<Shared>,
    name: String,
    outcomes: mpsc::UnboundedSender<OutcomeRequest>,
) {
    let Some(built) = s.app.actions.get(&name).cloned() else {
        return;
    };
    let Some(lane) = s.lanes.get(&name).cloned() else {
        return;
    };
    lane.reset();
    let run = lane.restart_limiter(built.concurrency);
    let mut stop = s.stop.subscribe();
    let mut inflight = JoinSet::new();
    // After a failed outbox read, the next one waits a second.
    let mut scan_after = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        while inflight.try_join_next().is_some() {}
        let now = s.now();
        let may_scan = Instant::now() >= scan_after;
        let (work, scan) = {
            let mut st = lane.lock();
            let free = lane.free();
            let mut work = Vec::with_capacity(free.min(st.ready.len()));
            while work.len() < free {
                let Some(d) = st.ready.pop_front() else { break };
                st.bytes -= delivery_bytes(&d);
                work.push(d);
            }
            lane.limiter().ctl.on_start(work.len());
            let scan = may_scan && work.len() < free && (st.spilled || st.wake_at <= now);
            (work, scan)
        };
        for delivery in work {
            // Made before the task, so a task cancelled before it ran frees its slot too.
            let mut slot = Slot {
                lane: lane.clone(),
                run,
                sample: None,
            };
            let (s2, b2, lane2, tx) = (s.clone(), built.clone(), lane.clone(), outcomes.clone());
            inflight.spawn(async move {
                slot.sample = Some(attempt(&s2, &b2, &lane2, &tx, delivery).await);
                drop(slot);
                lane2.notify.notify_one();
            });
        }
        if scan {
            if let Err(e) = scan_outbox(&s, &lane, &name).await {
                tracing::error!(action = %name, error = %e, "cannot read the outbox; retrying in 1s");
                scan_after = Instant::now() + Duration::from_secs(1);
            }
            if !lane.lock().ready.is_empty() && lane.free() > 0 {
                continue;
            }
        }
        // Sleep until there is work, a retry is due (at most a second), or stop.
        let wait = {
            let st = lane.lock();
            let free = lane.free() > 0;
            if free && (!st.ready.is_empty() || (st.spilled && Instant::now() >= scan_after)) {
                Duration::ZERO
            } else {
                Duration::from_millis(st.wake_at.saturating_sub(s.now()).clamp(1, 1000))
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

/// Reads due deliveries from the outbox into the lane, under the lane's lock, so a delivery
/// handed over meanwhile is not read twice, and one finished meanwhile is not read back.
async fn scan_outbox(s: &Arc<Shared>, lane: &Arc<Lane>, name: &str) -> Result<(), String> {
    let (s2, lane2, n) = (s.clone(), lane.clone(), name.to_string());
    let res = tokio::task::spawn_blocking(move || {
        let mut st = lane2.lock();
        let room = s2.limits.lane_max.saturating_sub(st.ready.len());
        let scan = s2.store.due_scan(&n, s2.now(), room, &st.known)?;
        let (found, next) = (scan.due, scan.next_at);
        st.scanned = scan.seen;
        let more = found.len() >= room;
        for dl in found {
            st.known.insert(dl.id.clone());
            st.bytes += delivery_bytes(&dl);
            st.ready.push_back(dl);
        }
        st.spilled = more;
        st.wake_at = next.unwrap_or(u64::MAX);
        Ok::<_, crate::store::StoreError>(())
    })
    .await;
    match res {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("outbox read panicked: {e}")),
    }
}

/// The content of a delivery whose template had failed, rendered again now (a replay after
/// the template was fixed). An error is permanent until the template changes.
fn render_again(s: &Shared, d: &Delivery, how: &Unrendered) -> Result<Rendered, ActionError> {
    let fail = |e: String| ActionError::permanent(format!("template still fails: {e}"));
    let route = s
        .app
        .route(&d.route)
        .ok_or_else(|| fail(format!("route {} is not configured any more", d.route)))?;
    match how {
        Unrendered::Event => {
            let body = s
                .store
                .event_body(&d.event_id)
                .map_err(|e| ActionError::transient(e.to_string()))?
                .ok_or_else(|| fail(format!("the body of event {} is gone", d.event_id)))?;
            plan::render_body(route, &s.app.aqua_server, &body).map_err(fail)
        }
        Unrendered::Aggregation { items } => plan::render_aggregate(route, items).map_err(fail),
    }
}

/// One attempt of one delivery, and what follows from it. Returns what the attempt showed
/// of the target: the send's RTT and how it ended.
async fn attempt(
    s: &Shared,
    built: &BuiltAction,
    lane: &Lane,
    outcomes: &mpsc::UnboundedSender<OutcomeRequest>,
    mut delivery: Delivery,
) -> Sample {
    delivery.attempts += 1;
    let start = Instant::now();
    let rendered = match delivery.unrendered.clone() {
        Some(how) => render_again(s, &delivery, &how).map(|c| {
            delivery.content = c;
            delivery.unrendered = None;
        }),
        None => Ok(()),
    };
    let res = match rendered {
        // A panicking action is a failed attempt like any other: retried, then dead.
        Ok(()) => AssertUnwindSafe(built.action.send(&delivery.message()))
            .catch_unwind()
            .await
            .unwrap_or_else(|p| {
                Err(ActionError::transient(format!(
                    "the action panicked: {}",
                    panic_text(&p)
                )))
            }),
        Err(e) => Err(e),
    };
    let elapsed_ms = start.elapsed().as_millis() as u64;
    let sample = Sample {
        rtt_us: start.elapsed().as_micros() as u64,
        signal: signal(&res),
    };
    let now = s.now();
    let outcome = match &res {
        Ok(()) => Outcome::Delivered,
        Err(e) => {
            let failure = Failure {
                attempts: delivery.attempts,
                created_at_ms: delivery.created_at_ms,
                transient: e.is_transient(),
                retry_after: match e {
                    ActionError::Transient { retry_after, .. } => *retry_after,
                    ActionError::Permanent { .. } => None,
                },
            };
            match built.retry.decide(failure, now, rand::random::<f64>()) {
                RetryDecision::RetryAt(next_at) => Outcome::Retry {
                    next_at,
                    error: e.to_string(),
                },
                RetryDecision::Dead => Outcome::Dead {
                    error: e.to_string(),
                },
            }
        }
    };
    let next = match outcome {
        Outcome::Retry { .. } => None,
        _ => next_in_chain(&delivery, now),
    };
    let retry_at = match &outcome {
        Outcome::Retry { next_at, .. } => Some(*next_at),
        _ => None,
    };
    let (reply, rx) = oneshot::channel();
    // What is needed after the commit, without a copy of the (possibly large) content.
    let mut shell = Delivery::new(
        &delivery.event_id,
        &delivery.route,
        &delivery.action,
        Rendered::default(),
        delivery.created_at_ms,
    );
    shell.id.clone_from(&delivery.id);
    shell.attempts = delivery.attempts;
    let commit = OutcomeCommit {
        delivery,
        outcome: outcome.clone(),
        next: next.clone(),
    };
    let delivery = shell;
    let recorded = match outcomes.send(OutcomeRequest { commit, reply }) {
        Ok(()) => rx
            .await
            .unwrap_or_else(|_| Err("the outcome writer stopped".into())),
        Err(_) => Err("the outcome writer stopped".into()),
    };
    {
        let mut st = lane.lock();
        st.known.remove(&delivery.id);
        match (&recorded, retry_at) {
            // The delivery stays due in the outbox, so it is sent again (at least once).
            (Err(_), _) => st.wake_at = st.wake_at.min(s.now() + 1000),
            (Ok(_), Some(at)) => st.wake_at = st.wake_at.min(at),
            _ => {}
        }
    }
    let seq = match recorded {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(route = %delivery.route, action = %built.action.name(), event_id = %delivery.event_id, error = %e, "cannot record a delivery outcome");
            return sample;
        }
    };
    if let Some(next) = next {
        s.hand_over([next], seq);
    }
    log_outcome(built, &delivery, &outcome, &res, elapsed_ms, now);
    sample
}

/// One structured line per delivery outcome: successes at `debug` (at thousands per second a
/// line each costs more than the send; `/stats` counts them), retries and dead letters at
/// `warn`.
fn log_outcome(
    built: &BuiltAction,
    d: &Delivery,
    outcome: &Outcome,
    res: &Result<(), ActionError>,
    elapsed_ms: u64,
    now: u64,
) {
    let a = built.action.as_ref();
    let transient = res.as_ref().err().is_some_and(ActionError::is_transient);
    match outcome {
        Outcome::Delivered => tracing::debug!(
            route = %d.route, action = %a.name(), kind = a.kind(), event_id = %d.event_id,
            attempt = d.attempts, outcome = "delivered", elapsed_ms, "delivery"
        ),
        Outcome::Retry { next_at, error } => tracing::warn!(
            route = %d.route, action = %a.name(), kind = a.kind(), event_id = %d.event_id,
            attempt = d.attempts, outcome = "retrying", transient, elapsed_ms,
            retry_in_ms = next_at.saturating_sub(now), error = %error, "delivery"
        ),
        Outcome::Dead { error } => tracing::warn!(
            route = %d.route, action = %a.name(), kind = a.kind(), event_id = %d.event_id,
            attempt = d.attempts, outcome = "dead", transient, elapsed_ms, error = %error,
            "delivery; moved to dead letters"
        ),
    }
}
