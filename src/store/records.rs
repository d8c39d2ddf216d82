//! What the store keeps, in the pipeline's own types: history records, dead letters, dedup
//! holds, aggregation queues, and the inputs of its two write operations (a routing commit
//! and delivery outcomes). No redb type appears here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::JournalEntry;
use crate::message::{Delivery, Rendered};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub delivery: Delivery,
    pub dead_at_ms: u64,
    pub error: String,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Replay {
    pub replayed: Vec<Delivery>,
    /// Dead letters left dead because their action is not configured now.
    pub skipped: Vec<DeadLetter>,
    /// Asked-for ids that are not dead letters.
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Delivered,
    Dead,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub action: String,
    pub delivery_id: String,
    pub status: Status,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub route: String,
    pub matched: bool,
    /// Why nothing was sent although it matched (template error, duplicate, ...), or why the
    /// condition could not be evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub actions: Vec<ActionRecord>,
}

/// The history of one routed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    pub received_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Kept in its own table; filled in when read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    pub routed_at_ms: u64,
    pub routes: Vec<RouteRecord>,
    /// Routing itself failed for this event (e.g. a panic while planning it): nothing was
    /// sent, and this says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl EventRecord {
    /// Every delivery of the event has ended (delivered or dead).
    pub fn finished(&self) -> bool {
        self.routes
            .iter()
            .flat_map(|r| &r.actions)
            .all(|a| a.status != Status::Pending)
    }
}

/// One event as the store knows it: routed (its history) or acknowledged and waiting in the
/// journal.
#[derive(Debug, Clone, PartialEq)]
pub enum EventView {
    Routed(EventRecord),
    Queued { id: String, entry: JournalEntry },
}

/// A route's dedup key held by an event (`unique-message-props`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupHold {
    pub event_id: String,
    /// 0: never expires.
    pub expires_at_ms: u64,
}

impl DedupHold {
    pub fn active(&self, now: u64) -> bool {
        self.expires_at_ms == 0 || self.expires_at_ms > now
    }
}

/// One message waiting in an aggregation queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggItem {
    pub event_id: String,
    pub content: Rendered,
}

/// A route's aggregation queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AggState {
    pub items: Vec<AggItem>,
    pub window_started_ms: u64,
}

/// Everything one routing step decided, written in one transaction: how far the journal is
/// routed, the history of each event, the deliveries to queue (and those dead on arrival
/// because their template failed), the dedup keys taken, and the aggregation queues as they
/// are now (an empty queue is removed).
#[derive(Debug, Default)]
pub struct RoutingCommit {
    pub checkpoint: Option<u64>,
    /// History records with their bodies.
    pub events: Vec<(EventRecord, String)>,
    pub queued: Vec<Delivery>,
    pub dead: Vec<DeadLetter>,
    pub holds: Vec<(String, DedupHold)>,
    pub aggregation: BTreeMap<String, AggState>,
}

/// How one delivery attempt ended, to record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// A transient failure: try again at `next_at`.
    Retry {
        next_at: u64,
        error: String,
    },
    /// Failed for good: the delivery moves to the dead letters. When every delivery of its
    /// (event, route) is dead, the route's dedup key for that event is released so a later
    /// copy of the alert gets through.
    Dead {
        error: String,
    },
}

/// One outcome to record: the delivery (its attempts counting this one), what happened, and
/// the delivery queued next by `serialize-actions` when this one has finished.
#[derive(Debug, Clone)]
pub struct OutcomeCommit {
    pub delivery: Delivery,
    pub outcome: Outcome,
    pub next: Option<Delivery>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Maintenance {
    pub dedup_expired: u64,
    pub history_trimmed: u64,
    /// Still over `max-db-size` with only undelivered work left.
    pub over_limit: bool,
}
