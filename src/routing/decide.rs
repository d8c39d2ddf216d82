//! The pure decisions of routing: what a batch of planned events leads to, given the dedup
//! holds and aggregation queues read from the store and the time. Nothing here does I/O; the
//! pipeline commits the result in one store operation. Tested with tables and fixed times.

use std::collections::{BTreeMap, HashMap};

use super::plan::{Aggregate, EventPlan, RoutePlan, Verdict};
use crate::message::{Delivery, Rendered, Unrendered};
use crate::store::{
    ActionRecord, AggItem, AggState, DeadLetter, DedupHold, EventRecord, RouteRecord,
    RoutingCommit, Status,
};

/// What a route's dedup key says about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupDecision {
    /// Send, and hold the key.
    Hold(DedupHold),
    /// An earlier event holds the key: not sent.
    Duplicate { of: String },
}

/// Dedup (spec §4.6): a key held by an event that has not expired makes later events with
/// the same key duplicates; otherwise this event takes the key for `ttl_s` seconds (0:
/// forever).
pub fn dedup(existing: Option<&DedupHold>, event_id: &str, ttl_s: u64, now: u64) -> DedupDecision {
    match existing {
        Some(h) if h.active(now) => DedupDecision::Duplicate {
            of: h.event_id.clone(),
        },
        _ => DedupDecision::Hold(DedupHold {
            event_id: event_id.to_string(),
            expires_at_ms: if ttl_s == 0 {
                0
            } else {
                now.saturating_add(ttl_s.saturating_mul(1000))
            },
        }),
    }
}

/// Adds a message to a route's aggregation queue. Returns the batch to send (newest first,
/// as Postee hands it to the aggregation package) when a count-mode queue is full.
pub fn aggregate(
    state: &mut AggState,
    mode: Aggregate,
    item: AggItem,
    now: u64,
) -> Option<Vec<AggItem>> {
    if state.items.is_empty() {
        state.window_started_ms = now;
    }
    state.items.push(item);
    match mode {
        Aggregate::Count(n) if state.items.len() >= n => Some(take_batch(state)),
        _ => None,
    }
}

/// A time-window queue whose window has ended (also one that ended while postee was down).
pub fn window_ended(state: &AggState, window_ms: u64, now: u64) -> bool {
    !state.items.is_empty() && state.window_started_ms.saturating_add(window_ms) <= now
}

/// Empties a queue into a batch, newest first.
pub fn take_batch(state: &mut AggState) -> Vec<AggItem> {
    let mut items = std::mem::take(&mut state.items);
    items.reverse();
    items
}

/// The deliveries of one message to a route's actions, and their history records. With
/// `serialize` only the first action is queued now; it carries the rest as its chain.
pub fn deliveries(
    event_id: &str,
    rp: &RouteTarget<'_>,
    content: &Rendered,
    dedup_key: Option<&str>,
    now: u64,
) -> (Vec<Delivery>, Vec<ActionRecord>) {
    let queued = if rp.serialize { 1 } else { rp.actions.len() };
    let mut out = Vec::with_capacity(queued);
    let mut records = Vec::with_capacity(rp.actions.len());
    for (i, action) in rp.actions.iter().enumerate() {
        let mut d = Delivery::new(event_id, rp.route, action, content.clone(), now);
        records.push(pending(&d, now));
        if i < queued {
            d.dedup_key = dedup_key.map(str::to_string);
            if rp.serialize {
                d.then = rp.actions[1..].to_vec();
            }
            out.push(d);
        }
    }
    (out, records)
}

/// A route and the actions it delivers to.
#[derive(Debug, Clone, Copy)]
pub struct RouteTarget<'a> {
    pub route: &'a str,
    pub actions: &'a [String],
    pub serialize: bool,
}

fn pending(d: &Delivery, now: u64) -> ActionRecord {
    ActionRecord {
        action: d.action.clone(),
        delivery_id: d.id.clone(),
        status: Status::Pending,
        attempts: 0,
        last_error: None,
        updated_at_ms: now,
    }
}

/// A template failed: each action gets a dead letter with the error (and what a replay
/// needs to render again), and the history shows them dead.
pub fn dead_on_arrival(
    event_id: &str,
    rp: &RouteTarget<'_>,
    unrendered: Unrendered,
    error: &str,
    now: u64,
) -> (Vec<DeadLetter>, Vec<ActionRecord>) {
    let mut dead = Vec::new();
    let mut records = Vec::new();
    for action in rp.actions {
        let mut d = Delivery::new(event_id, rp.route, action, Rendered::default(), now);
        d.last_error = Some(error.to_string());
        d.unrendered = Some(unrendered.clone());
        records.push(ActionRecord {
            status: Status::Dead,
            last_error: Some(error.to_string()),
            ..pending(&d, now)
        });
        dead.push(DeadLetter {
            delivery: d,
            dead_at_ms: now,
            error: error.to_string(),
        });
    }
    (dead, records)
}

/// `serialize-actions`: once a delivery has finished (delivered or dead), the next action of
/// its chain gets the same content, due now.
pub fn next_in_chain(d: &Delivery, now: u64) -> Option<Delivery> {
    let (next, rest) = d.then.split_first()?;
    let mut n = Delivery::new(&d.event_id, &d.route, next, d.content.clone(), now);
    n.dedup_key = d.dedup_key.clone();
    n.then = rest.to_vec();
    n.unrendered = d.unrendered.clone();
    Some(n)
}

/// An aggregation batch that is complete and must be rendered, then sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyBatch {
    pub route: String,
    /// Newest first.
    pub items: Vec<AggItem>,
    pub actions: Vec<String>,
    pub serialize: bool,
}

/// What a batch of planned events leads to.
#[derive(Debug, Default)]
pub struct Decided {
    /// Everything to write (the checkpoint is set by the caller).
    pub commit: RoutingCommit,
    /// Aggregation batches completed by these events: render each, then [`commit_batch`].
    pub ready: Vec<ReadyBatch>,
    /// Routes whose condition could not be evaluated.
    pub condition_errors: u64,
    /// Routes whose template failed.
    pub render_errors: u64,
    /// Events whose planning failed as a whole.
    pub failed: u64,
}

/// Decides a batch of planned events in order: dedup against `holds` (the store's, plus the
/// ones this batch takes), aggregation against `queues` (updated in place; the changed ones
/// are in the commit), deliveries and history.
pub fn decide_batch(
    plans: Vec<EventPlan>,
    mut holds: HashMap<String, DedupHold>,
    queues: &mut BTreeMap<String, AggState>,
    now: u64,
) -> Decided {
    let mut out = Decided::default();
    out.commit.events.reserve(plans.len());
    out.commit.queued.reserve(plans.len());
    for plan in plans {
        let mut record = EventRecord {
            id: plan.id.clone(),
            received_at_ms: plan.entry.received_at_ms,
            tenant: plan.entry.route.clone(),
            body: String::new(),
            routed_at_ms: now,
            routes: Vec::new(),
            error: plan.failure.clone(),
        };
        if plan.failure.is_some() {
            out.failed += 1;
        }
        for rp in plan.routes {
            if let Some(rr) = decide_route(&plan.id, rp, &mut holds, queues, now, &mut out) {
                record.routes.push(rr);
            }
        }
        out.commit.events.push((record, plan.entry.body));
    }
    out
}

fn decide_route(
    event_id: &str,
    rp: RoutePlan,
    holds: &mut HashMap<String, DedupHold>,
    queues: &mut BTreeMap<String, AggState>,
    now: u64,
    out: &mut Decided,
) -> Option<RouteRecord> {
    let target = RouteTarget {
        route: &rp.route,
        actions: &rp.actions,
        serialize: rp.serialize,
    };
    let mut rr = RouteRecord {
        route: rp.route.clone(),
        matched: true,
        note: None,
        actions: Vec::new(),
    };
    let content = match rp.verdict {
        // Routes that did not match are left out: the record stays small (outcomes rewrite
        // it) however many routes there are.
        Verdict::NoMatch => return None,
        Verdict::ConditionFailed(e) => {
            out.condition_errors += 1;
            rr.matched = false;
            rr.note = Some(e);
            return Some(rr);
        }
        Verdict::RenderFailed(e) => {
            out.render_errors += 1;
            let (dead, records) = dead_on_arrival(event_id, &target, Unrendered::Event, &e, now);
            out.commit.dead.extend(dead);
            rr.actions = records;
            rr.note = Some(e);
            return Some(rr);
        }
        Verdict::Rendered(c) => c,
    };
    if let Some((key, ttl)) = &rp.dedup {
        match dedup(holds.get(key), event_id, *ttl, now) {
            DedupDecision::Duplicate { of } => {
                rr.note = Some(format!(
                    "duplicate of event {of} (unique-message-props); not sent"
                ));
                return Some(rr);
            }
            DedupDecision::Hold(h) => {
                holds.insert(key.clone(), h.clone());
                out.commit.holds.push((key.clone(), h));
            }
        }
    }
    if let Some(mode) = rp.aggregate {
        let state = queues.entry(rp.route.clone()).or_default();
        let item = AggItem {
            event_id: event_id.to_string(),
            content,
        };
        if let Some(items) = aggregate(state, mode, item, now) {
            out.ready.push(ReadyBatch {
                route: rp.route.clone(),
                items,
                actions: rp.actions.clone(),
                serialize: rp.serialize,
            });
        }
        out.commit
            .aggregation
            .insert(rp.route.clone(), state.clone());
        rr.note = Some("queued for aggregation".into());
        return Some(rr);
    }
    let dedup_key = rp.dedup.as_ref().map(|(k, _)| k.as_str());
    let (queued, records) = deliveries(event_id, &target, &content, dedup_key, now);
    out.commit.queued.extend(queued);
    rr.actions = records;
    Some(rr)
}

/// Adds a rendered (or failed) aggregation batch to a commit: an event of its own in the
/// history (its body lists the members), with deliveries to every action of the route, or
/// dead letters when the aggregation template failed.
pub fn commit_batch(
    commit: &mut RoutingCommit,
    batch: ReadyBatch,
    rendered: Result<Rendered, String>,
    id: &str,
    now: u64,
) {
    let target = RouteTarget {
        route: &batch.route,
        actions: &batch.actions,
        serialize: batch.serialize,
    };
    let n = batch.items.len();
    let members: Vec<&str> = batch.items.iter().map(|i| i.event_id.as_str()).collect();
    let body = serde_json::json!({ "aggregated": members }).to_string();
    let mut rr = RouteRecord {
        route: batch.route.clone(),
        matched: true,
        note: Some(format!("aggregation of {n} events")),
        actions: Vec::new(),
    };
    match rendered {
        Ok(content) => {
            let (queued, records) = deliveries(id, &target, &content, None, now);
            commit.queued.extend(queued);
            rr.actions = records;
        }
        Err(e) => {
            let error = format!("aggregation of {n} events failed: {e}");
            let items = batch.items.iter().map(|i| i.content.clone()).collect();
            let unrendered = Unrendered::Aggregation { items };
            let (dead, records) = dead_on_arrival(id, &target, unrendered, &error, now);
            commit.dead.extend(dead);
            rr.actions = records;
            rr.note = Some(error);
        }
    }
    let record = EventRecord {
        id: id.to_string(),
        received_at_ms: now,
        tenant: None,
        body: String::new(),
        routed_at_ms: now,
        routes: vec![rr],
        error: None,
    };
    commit.events.push((record, body));
}

#[cfg(test)]
mod tests;
