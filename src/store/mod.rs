//! The embedded store: the journal of acknowledged events (an append-only log beside the
//! database, [`journal`]) and redb, one file at `PATH_TO_DB`, with the outbox of deliveries
//! and its due-time index, dead letters, dedup keys and the event history.
//!
//! Durability: a journal append is written with fdatasync before the event is acknowledged.
//! Everything after that (routing, outcomes) commits without fsync and is made durable by
//! the next fsync'd commit (`flush`, at most 100 ms later): a crash can only roll those
//! back to a state that is replayed (re-routed from the journal, re-sent), never lose an
//! acknowledged event. Journal segments are deleted only once their routing is durable.

pub mod journal;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};

use crate::templates::Rendered;

/// Journal of stores written before the journal became a log; routed first at start.
const JOURNAL: TableDefinition<&str, &[u8]> = TableDefinition::new("journal");
/// History records (without the body) and, apart, the bodies: outcomes rewrite the small
/// record only.
const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const DUE: TableDefinition<&str, ()> = TableDefinition::new("due");
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead");
const DEDUP: TableDefinition<&str, &[u8]> = TableDefinition::new("dedup");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const AGG: TableDefinition<&str, &[u8]> = TableDefinition::new("aggregation");
/// redb's page cache.
const CACHE_BYTES: usize = 32 * 1024 * 1024;
const BODIES: TableDefinition<&str, &str> = TableDefinition::new("bodies");
/// META key: the journal position routing has reached (committed with the routing).
const CHECKPOINT: &str = "journal_routed";

#[derive(Debug, thiserror::Error)]
#[error("store {path}: {message}")]
pub struct StoreError {
    pub path: String,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An acknowledged event not yet routed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    /// `POST /tenant/{route}`: only this route.
    pub route: Option<String>,
    pub received_at_ms: u64,
    pub body: String,
}

/// One (event, route, action) delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub route: String,
    pub action: String,
    pub content: Rendered,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at_ms: u64,
    pub due_at_ms: u64,
    pub last_error: Option<String>,
    /// The route's dedup key held for this event (released when every delivery is dead).
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// `serialize-actions`: the actions that get this content after this one has finished.
    #[serde(default)]
    pub then: Vec<String>,
}

fn delivery_id(event_id: &str, route: &str, action: &str) -> String {
    format!("{event_id}:{route}:{action}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionRecord {
    pub action: String,
    pub delivery_id: String,
    pub status: Status,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteRecord {
    pub route: String,
    pub matched: bool,
    /// Why nothing was sent although it matched (template error, duplicate, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub actions: Vec<ActionRecord>,
}

/// The history of one routed event.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// What routing decided for one route of one event, to commit.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub route: String,
    pub matched: bool,
    pub note: Option<String>,
    /// The rendered content and the actions to deliver it to (empty when nothing is sent).
    pub content: Option<Rendered>,
    pub actions: Vec<String>,
    /// `serialize-actions`: deliver to one action after the other, in list order.
    pub serialize: bool,
    /// Dedup key (already scoped to the route) and its time to live in seconds (0: forever).
    pub dedup: Option<(String, u64)>,
    /// Queue the content for aggregation instead of sending it now.
    pub aggregate: Option<Aggregate>,
}

/// How a route aggregates (spec §4.7–4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// `aggregate-message-number`: send every N messages.
    Count(usize),
    /// `aggregate-message-timeout`: send what gathered when the window (ms) ends.
    Window(u64),
}

/// One message waiting in an aggregation queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AggItem {
    pub event_id: String,
    pub content: Rendered,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AggState {
    items: Vec<AggItem>,
    window_started_ms: u64,
}

/// Renders a batch of a route into one message (the template's `aggregation_pkg`).
pub type AggregateRenderer<'a> =
    &'a dyn Fn(&str, &[AggItem]) -> std::result::Result<Rendered, String>;

/// A time-window aggregating route, for `flush_windows`.
#[derive(Debug, Clone)]
pub struct WindowRoute {
    pub route: String,
    pub window_ms: u64,
    pub actions: Vec<String>,
    pub serialize: bool,
}

struct Batch<'a> {
    route: &'a str,
    actions: &'a [String],
    serialize: bool,
}

#[derive(Debug, Clone)]
pub struct EventPlan {
    pub id: String,
    pub entry: JournalEntry,
    pub routes: Vec<RoutePlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DedupRecord {
    event_id: String,
    /// 0: never expires.
    expires_at_ms: u64,
}

fn due_key(action: &str, due_at_ms: u64, delivery_id: &str) -> String {
    format!("{action}\u{0}{due_at_ms:020}\u{0}{delivery_id}")
}

fn due_prefix(action: &str) -> (String, String) {
    (format!("{action}\u{0}"), format!("{action}\u{1}"))
}

pub struct Store {
    db: Database,
    path: PathBuf,
    journal_dir: PathBuf,
    /// Where durable journal data ends (kept up to date by the journal's sync threads).
    pub journal_end: std::sync::atomic::AtomicU64,
    /// The segment routing was in when routed segments were last deleted.
    cleaned_segment: std::sync::atomic::AtomicU64,
    /// A commit without fsync happened since the last fsync'd one.
    dirty: AtomicBool,
}

impl Store {
    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Opens (or creates) the store file, creating its directory.
    pub fn open(path: &Path) -> Result<Store> {
        let err = |m: String| StoreError {
            path: path.display().to_string(),
            message: m,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create directory: {e}")))?;
        }
        // redb's default page cache is 1 GiB; the hot pages here are the outbox, the due index
        // and recent history, so a small cache keeps memory bounded at little cost.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| {
                let m = e.to_string();
                if m.contains("already open") || m.contains("lock") {
                    err(
                    "the store is in use by another postee process (stop it, or use its HTTP API)"
                        .into(),
                )
                } else {
                    err(m)
                }
            })?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            journal_dir: journal::dir_for(path),
            journal_end: std::sync::atomic::AtomicU64::new(0),
            cleaned_segment: std::sync::atomic::AtomicU64::new(0),
            dirty: AtomicBool::new(false),
        };
        let txn = store.db.begin_write().map_err(|e| store.err(e))?;
        {
            txn.open_table(JOURNAL).map_err(|e| store.err(e))?;
            txn.open_table(EVENTS).map_err(|e| store.err(e))?;
            txn.open_table(OUTBOX).map_err(|e| store.err(e))?;
            txn.open_table(DUE).map_err(|e| store.err(e))?;
            txn.open_table(DEAD).map_err(|e| store.err(e))?;
            txn.open_table(DEDUP).map_err(|e| store.err(e))?;
            txn.open_table(META).map_err(|e| store.err(e))?;
            txn.open_table(AGG).map_err(|e| store.err(e))?;
            txn.open_table(BODIES).map_err(|e| store.err(e))?;
        }
        txn.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, durable: bool) -> Result<redb::WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(|e| self.err(e))?;
            self.dirty.store(true, Ordering::SeqCst);
        }
        Ok(txn)
    }

    /// The journal's directory (`<db>.journal`).
    pub fn journal_dir(&self) -> &Path {
        &self.journal_dir
    }

    /// Makes every earlier non-fsync'd commit durable, then deletes the journal segments
    /// that durable routing has passed.
    pub fn flush(&self) -> Result<()> {
        let routed = if self.dirty.swap(false, Ordering::SeqCst) {
            let txn = self.write(true)?;
            let routed = checkpoint_in(&txn.open_table(META).map_err(|e| self.err(e))?)
                .map_err(|e| self.err(e))?;
            txn.commit().map_err(|e| self.err(e))?;
            routed
        } else {
            self.checkpoint()?
        };
        // Only when routing has reached a new segment since the last deletion.
        if routed > 0 && journal::segment_of(routed) > self.cleaned_segment.load(Ordering::Relaxed)
        {
            journal::remove_before(&self.journal_dir, routed)
                .map_err(|e| self.err(format!("cannot delete routed journal segments: {e}")))?;
            self.cleaned_segment
                .store(journal::segment_of(routed), Ordering::Relaxed);
        }
        Ok(())
    }

    /// How far routing has got in the journal (committed, maybe not durable yet).
    pub fn checkpoint(&self) -> Result<u64> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(META).map_err(|e| self.err(e))?;
        checkpoint_in(&t).map_err(|e| self.err(e))
    }

    /// Entries of the old in-database journal (stores from before the log), oldest first.
    pub fn journal(&self) -> Result<Vec<(String, JournalEntry)>> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(JOURNAL).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.range::<&str>(..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if let Ok(e) = serde_json::from_slice(v.value()) {
                out.push((k.value().to_string(), e));
            }
        }
        Ok(out)
    }

    /// Commits routing decisions: the journal entries go, the history and the deliveries
    /// (outbox + due index) and dedup keys come, in one transaction. Returns the actions that
    /// got new deliveries.
    pub fn commit_routing(
        &self,
        plans: Vec<EventPlan>,
        checkpoint: Option<u64>,
        render: AggregateRenderer,
    ) -> Result<Vec<Delivery>> {
        let now = now_ms();
        let mut touched = Vec::new();
        let txn = self.write(false)?;
        {
            if let Some(pos) = checkpoint {
                let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                meta.insert(CHECKPOINT, pos.to_string().as_str())
                    .map_err(|e| self.err(e))?;
            }
            let mut bodies = txn.open_table(BODIES).map_err(|e| self.err(e))?;
            let mut agg = txn.open_table(AGG).map_err(|e| self.err(e))?;
            let mut journal = txn.open_table(JOURNAL).map_err(|e| self.err(e))?;
            let mut events = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            let mut outbox = txn.open_table(OUTBOX).map_err(|e| self.err(e))?;
            let mut due = txn.open_table(DUE).map_err(|e| self.err(e))?;
            let mut dedup = txn.open_table(DEDUP).map_err(|e| self.err(e))?;
            for plan in plans {
                journal.remove(plan.id.as_str()).map_err(|e| self.err(e))?;
                let mut record = EventRecord {
                    id: plan.id.clone(),
                    received_at_ms: plan.entry.received_at_ms,
                    tenant: plan.entry.route.clone(),
                    body: String::new(),
                    routed_at_ms: now,
                    routes: Vec::new(),
                };
                for rp in plan.routes {
                    if !rp.matched && rp.note.is_none() {
                        // Routes that did not match are left out: the record stays small
                        // (outcomes rewrite it) however many routes there are.
                        continue;
                    }
                    let mut rr = RouteRecord {
                        route: rp.route.clone(),
                        matched: rp.matched,
                        note: rp.note,
                        actions: Vec::new(),
                    };
                    let Some(content) = rp.content else {
                        record.routes.push(rr);
                        continue;
                    };
                    if let Some((key, ttl)) = &rp.dedup {
                        let existing = dedup
                            .get(key.as_str())
                            .map_err(|e| self.err(e))?
                            .and_then(|v| serde_json::from_slice::<DedupRecord>(v.value()).ok());
                        if let Some(d) = existing
                            && (d.expires_at_ms == 0 || d.expires_at_ms > now)
                        {
                            rr.note = Some(format!(
                                "duplicate of event {} (unique-message-props); not sent",
                                d.event_id
                            ));
                            record.routes.push(rr);
                            continue;
                        }
                        let d = DedupRecord {
                            event_id: plan.id.clone(),
                            expires_at_ms: if *ttl == 0 { 0 } else { now + ttl * 1000 },
                        };
                        let v = serde_json::to_vec(&d).map_err(|e| self.err(e))?;
                        dedup
                            .insert(key.as_str(), v.as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                    if let Some(mode) = rp.aggregate {
                        let flushed = self.aggregate_item(
                            &mut agg,
                            &rp.route,
                            mode,
                            AggItem {
                                event_id: plan.id.clone(),
                                content,
                            },
                            now,
                        )?;
                        rr.note = Some("queued for aggregation".into());
                        if let Some(items) = flushed {
                            let batch = Batch {
                                route: &rp.route,
                                actions: &rp.actions,
                                serialize: rp.serialize,
                            };
                            self.flush_batch(
                                &mut events,
                                &mut outbox,
                                &mut due,
                                &batch,
                                items,
                                render,
                                now,
                                &mut touched,
                            )?;
                        }
                        record.routes.push(rr);
                        continue;
                    }
                    rr.actions = self.create_deliveries(
                        &mut outbox,
                        &mut due,
                        &plan.id,
                        &rp.route,
                        &rp.actions,
                        rp.serialize,
                        &content,
                        rp.dedup.as_ref().map(|(k, _)| k.clone()),
                        now,
                        &mut touched,
                    )?;
                    record.routes.push(rr);
                }
                let v = serde_json::to_vec(&record).map_err(|e| self.err(e))?;
                events
                    .insert(plan.id.as_str(), v.as_slice())
                    .map_err(|e| self.err(e))?;
                bodies
                    .insert(plan.id.as_str(), plan.entry.body.as_str())
                    .map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(touched)
    }

    /// Creates the deliveries of one message to a route's actions and returns their records.
    #[allow(clippy::too_many_arguments)]
    fn create_deliveries(
        &self,
        outbox: &mut redb::Table<&str, &[u8]>,
        due: &mut redb::Table<&str, ()>,
        event_id: &str,
        route: &str,
        actions: &[String],
        serialize: bool,
        content: &Rendered,
        dedup_key: Option<String>,
        now: u64,
        touched: &mut Vec<Delivery>,
    ) -> Result<Vec<ActionRecord>> {
        // With serialize-actions only the first action is queued; each next one is queued
        // when the one before it has finished.
        let queued = if serialize { 1 } else { actions.len() };
        let mut records = Vec::new();
        for (i, action) in actions.iter().enumerate() {
            let id = delivery_id(event_id, route, action);
            if i < queued {
                let d = Delivery {
                    id: id.clone(),
                    event_id: event_id.to_string(),
                    route: route.to_string(),
                    action: action.clone(),
                    content: content.clone(),
                    attempts: 0,
                    created_at_ms: now,
                    due_at_ms: now,
                    last_error: None,
                    dedup_key: dedup_key.clone(),
                    then: if serialize {
                        actions[1..].to_vec()
                    } else {
                        Vec::new()
                    },
                };
                self.queue(outbox, due, &d)?;
                touched.push(d);
            }
            records.push(ActionRecord {
                action: action.clone(),
                delivery_id: id,
                status: Status::Pending,
                attempts: 0,
                last_error: None,
                updated_at_ms: now,
            });
        }
        Ok(records)
    }

    /// Adds an item to a route's aggregation queue; returns the items to send when the batch
    /// is complete (count mode).
    fn aggregate_item(
        &self,
        agg: &mut redb::Table<&str, &[u8]>,
        route: &str,
        mode: Aggregate,
        item: AggItem,
        now: u64,
    ) -> Result<Option<Vec<AggItem>>> {
        let mut state: AggState = agg
            .get(route)
            .map_err(|e| self.err(e))?
            .and_then(|v| serde_json::from_slice(v.value()).ok())
            .unwrap_or_default();
        if state.items.is_empty() {
            state.window_started_ms = now;
        }
        state.items.push(item);
        let flush = matches!(mode, Aggregate::Count(n) if state.items.len() >= n);
        let out = if flush {
            Some(std::mem::take(&mut state.items))
        } else {
            None
        };
        let v = serde_json::to_vec(&state).map_err(|e| self.err(e))?;
        agg.insert(route, v.as_slice()).map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Renders a complete batch and queues it to every action of the route, recording it
    /// as an event of its own in the history.
    #[allow(clippy::too_many_arguments)]
    fn flush_batch(
        &self,
        events: &mut redb::Table<&str, &[u8]>,
        outbox: &mut redb::Table<&str, &[u8]>,
        due: &mut redb::Table<&str, ()>,
        batch: &Batch,
        items: Vec<AggItem>,
        render: AggregateRenderer,
        now: u64,
        touched: &mut Vec<Delivery>,
    ) -> Result<()> {
        let id = crate::intake::new_event_id();
        // Postee hands the aggregation package the newest message first.
        let mut items = items;
        items.reverse();
        let members: Vec<&str> = items.iter().map(|i| i.event_id.as_str()).collect();
        let mut rr = RouteRecord {
            route: batch.route.to_string(),
            matched: true,
            note: Some(format!("aggregation of {} events", items.len())),
            actions: Vec::new(),
        };
        match render(batch.route, &items) {
            Ok(content) => {
                rr.actions = self.create_deliveries(
                    outbox,
                    due,
                    &id,
                    batch.route,
                    batch.actions,
                    batch.serialize,
                    &content,
                    None,
                    now,
                    touched,
                )?;
            }
            Err(e) => {
                tracing::warn!(route = %batch.route, error = %e, "aggregation template failed; batch not sent");
                rr.note = Some(format!("aggregation of {} events failed: {e}", items.len()));
            }
        }
        let record = EventRecord {
            id: id.clone(),
            received_at_ms: now,
            tenant: None,
            body: serde_json::json!({ "aggregated": members }).to_string(),
            routed_at_ms: now,
            routes: vec![rr],
        };
        let v = serde_json::to_vec(&record).map_err(|e| self.err(e))?;
        events
            .insert(id.as_str(), v.as_slice())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Sends the batches of time-window routes whose window has ended (also the ones that
    /// ended while postee was stopped).
    pub fn flush_windows(
        &self,
        routes: &[WindowRoute],
        render: AggregateRenderer,
    ) -> Result<Vec<Delivery>> {
        let now = now_ms();
        let mut touched = Vec::new();
        let due_routes: Vec<&WindowRoute> = {
            let r = self.db.begin_read().map_err(|e| self.err(e))?;
            let agg = r.open_table(AGG).map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for wr in routes {
                let state: Option<AggState> = agg
                    .get(wr.route.as_str())
                    .map_err(|e| self.err(e))?
                    .and_then(|v| serde_json::from_slice(v.value()).ok());
                if let Some(st) = state
                    && !st.items.is_empty()
                    && st.window_started_ms + wr.window_ms <= now
                {
                    out.push(wr);
                }
            }
            out
        };
        if due_routes.is_empty() {
            return Ok(touched);
        }
        let txn = self.write(false)?;
        {
            let mut agg = txn.open_table(AGG).map_err(|e| self.err(e))?;
            let mut events = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            let mut outbox = txn.open_table(OUTBOX).map_err(|e| self.err(e))?;
            let mut due = txn.open_table(DUE).map_err(|e| self.err(e))?;
            for wr in due_routes {
                let Some(state) = agg
                    .remove(wr.route.as_str())
                    .map_err(|e| self.err(e))?
                    .and_then(|v| serde_json::from_slice::<AggState>(v.value()).ok())
                else {
                    continue;
                };
                let batch = Batch {
                    route: &wr.route,
                    actions: &wr.actions,
                    serialize: wr.serialize,
                };
                self.flush_batch(
                    &mut events,
                    &mut outbox,
                    &mut due,
                    &batch,
                    state.items,
                    render,
                    now,
                    &mut touched,
                )?;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(touched)
    }

    fn queue(
        &self,
        outbox: &mut redb::Table<&str, &[u8]>,
        due: &mut redb::Table<&str, ()>,
        d: &Delivery,
    ) -> Result<()> {
        let v = serde_json::to_vec(d).map_err(|e| self.err(e))?;
        outbox
            .insert(d.id.as_str(), v.as_slice())
            .map_err(|e| self.err(e))?;
        due.insert(due_key(&d.action, d.due_at_ms, &d.id).as_str(), ())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// After a serialized delivery finished, queues the next action of its chain.
    fn queue_next(
        &self,
        outbox: &mut redb::Table<&str, &[u8]>,
        due: &mut redb::Table<&str, ()>,
        d: &Delivery,
        now: u64,
    ) -> Result<Option<Delivery>> {
        let Some((next, rest)) = d.then.split_first() else {
            return Ok(None);
        };
        let n = Delivery {
            id: delivery_id(&d.event_id, &d.route, next),
            action: next.clone(),
            attempts: 0,
            created_at_ms: now,
            due_at_ms: now,
            last_error: None,
            then: rest.to_vec(),
            ..d.clone()
        };
        self.queue(outbox, due, &n)?;
        Ok(Some(n))
    }

    /// Moves queued deliveries whose action is no longer configured (removed or disabled)
    /// to the dead letters, so they neither wait forever nor keep their events unfinished.
    /// Replay them once the action is back.
    pub fn dead_letter_orphans(&self, known: &HashSet<String>) -> Result<Vec<Delivery>> {
        let orphans: Vec<Delivery> = {
            let r = self.db.begin_read().map_err(|e| self.err(e))?;
            let t = r.open_table(OUTBOX).map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for item in t.range::<&str>(..).map_err(|e| self.err(e))? {
                let (_, v) = item.map_err(|e| self.err(e))?;
                if let Ok(d) = serde_json::from_slice::<Delivery>(v.value())
                    && !known.contains(&d.action)
                {
                    out.push(d);
                }
            }
            out
        };
        for d in &orphans {
            let msg = format!(
                "action `{}` is not configured (or not enabled) any more",
                d.action
            );
            self.record_dead(d, &msg)?;
        }
        Ok(orphans)
    }

    /// Deliveries of `action` due by `now`, oldest due first, skipping `busy` ones.
    pub fn due(
        &self,
        action: &str,
        now: u64,
        limit: usize,
        busy: &HashSet<String>,
    ) -> Result<Vec<Delivery>> {
        Ok(self.due_scan(action, now, limit, busy)?.0)
    }

    /// [`Store::due`], and when the first delivery not due yet is due (`None`: none).
    pub fn due_scan(
        &self,
        action: &str,
        now: u64,
        limit: usize,
        busy: &HashSet<String>,
    ) -> Result<(Vec<Delivery>, Option<u64>)> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let due = r.open_table(DUE).map_err(|e| self.err(e))?;
        let outbox = r.open_table(OUTBOX).map_err(|e| self.err(e))?;
        let (lo, hi) = due_prefix(action);
        let mut out = Vec::new();
        for item in due
            .range(lo.as_str()..hi.as_str())
            .map_err(|e| self.err(e))?
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            let key = k.value();
            let mut parts = key.splitn(3, '\u{0}');
            let (_, at, id) = (parts.next(), parts.next(), parts.next());
            let (Some(at), Some(id)) = (at.and_then(|a| a.parse::<u64>().ok()), id) else {
                continue;
            };
            if at > now {
                return Ok((out, Some(at)));
            }
            if out.len() >= limit {
                // More are due now.
                return Ok((out, Some(now)));
            }
            if busy.contains(id) {
                continue;
            }
            if let Some(v) = outbox.get(id).map_err(|e| self.err(e))?
                && let Ok(d) = serde_json::from_slice::<Delivery>(v.value())
            {
                out.push(d);
            }
        }
        Ok((out, None))
    }

    /// Number of deliveries not finished yet (all actions).
    pub fn outbox_len(&self) -> Result<u64> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(OUTBOX).map_err(|e| self.err(e))?;
        t.len().map_err(|e| self.err(e))
    }

    fn update_history(
        &self,
        events: &mut redb::Table<&str, &[u8]>,
        d: &Delivery,
        status: Status,
        error: Option<&str>,
        now: u64,
    ) -> Result<Option<EventRecord>> {
        let Some(mut rec) = events
            .get(d.event_id.as_str())
            .map_err(|e| self.err(e))?
            .and_then(|v| serde_json::from_slice::<EventRecord>(v.value()).ok())
        else {
            return Ok(None);
        };
        for r in rec.routes.iter_mut().filter(|r| r.route == d.route) {
            for a in r.actions.iter_mut().filter(|a| a.delivery_id == d.id) {
                a.status = status;
                a.attempts = d.attempts;
                a.last_error = error.map(str::to_string).or(a.last_error.take());
                a.updated_at_ms = now;
            }
        }
        let v = serde_json::to_vec(&rec).map_err(|e| self.err(e))?;
        events
            .insert(d.event_id.as_str(), v.as_slice())
            .map_err(|e| self.err(e))?;
        Ok(Some(rec))
    }

    /// A delivery succeeded (`d.attempts` already counts this attempt). Returns the delivery
    /// queued next (serialize-actions).
    pub fn record_delivered(&self, d: &Delivery) -> Result<Option<Delivery>> {
        self.one_outcome(d, Outcome::Delivered)
    }

    /// A transient failure: try again at `next_at`.
    pub fn record_retry(&self, d: &Delivery, next_at: u64, error: &str) -> Result<()> {
        self.one_outcome(
            d,
            Outcome::Retry {
                next_at,
                error: error.to_string(),
            },
        )
        .map(|_| ())
    }

    /// The delivery failed for good (see [`Outcome::Dead`]).
    pub fn record_dead(&self, d: &Delivery, error: &str) -> Result<Option<Delivery>> {
        self.one_outcome(
            d,
            Outcome::Dead {
                error: error.to_string(),
            },
        )
    }

    fn one_outcome(&self, d: &Delivery, o: Outcome) -> Result<Option<Delivery>> {
        let mut r = self.record_outcomes(&[(d, o)])?;
        Ok(r.pop().flatten())
    }

    /// Records many delivery outcomes in one transaction. Returns, per outcome, the delivery
    /// queued next (serialize-actions).
    pub fn record_outcomes(
        &self,
        outcomes: &[(&Delivery, Outcome)],
    ) -> Result<Vec<Option<Delivery>>> {
        let now = now_ms();
        let txn = self.write(false)?;
        let mut out = Vec::with_capacity(outcomes.len());
        {
            let mut t = OutcomeTables {
                outbox: txn.open_table(OUTBOX).map_err(|e| self.err(e))?,
                due: txn.open_table(DUE).map_err(|e| self.err(e))?,
                events: txn.open_table(EVENTS).map_err(|e| self.err(e))?,
                dead: txn.open_table(DEAD).map_err(|e| self.err(e))?,
                dedup: txn.open_table(DEDUP).map_err(|e| self.err(e))?,
            };
            for (d, o) in outcomes {
                out.push(self.apply_outcome(&mut t, d, o, now)?);
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    fn apply_outcome(
        &self,
        t: &mut OutcomeTables,
        d: &Delivery,
        o: &Outcome,
        now: u64,
    ) -> Result<Option<Delivery>> {
        t.due
            .remove(due_key(&d.action, d.due_at_ms, &d.id).as_str())
            .map_err(|e| self.err(e))?;
        match o {
            Outcome::Delivered => {
                t.outbox.remove(d.id.as_str()).map_err(|e| self.err(e))?;
                self.update_history(&mut t.events, d, Status::Delivered, None, now)?;
                self.queue_next(&mut t.outbox, &mut t.due, d, now)
            }
            Outcome::Retry { next_at, error } => {
                let mut next = d.clone();
                next.due_at_ms = *next_at;
                next.last_error = Some(error.clone());
                self.queue(&mut t.outbox, &mut t.due, &next)?;
                self.update_history(&mut t.events, &next, Status::Pending, Some(error), now)?;
                Ok(None)
            }
            Outcome::Dead { error } => {
                t.outbox.remove(d.id.as_str()).map_err(|e| self.err(e))?;
                let mut last = d.clone();
                last.last_error = Some(error.clone());
                let dl = DeadLetter {
                    delivery: last.clone(),
                    dead_at_ms: now,
                    error: error.clone(),
                };
                let v = serde_json::to_vec(&dl).map_err(|e| self.err(e))?;
                t.dead
                    .insert(d.id.as_str(), v.as_slice())
                    .map_err(|e| self.err(e))?;
                let rec =
                    self.update_history(&mut t.events, &last, Status::Dead, Some(error), now)?;
                let next = self.queue_next(&mut t.outbox, &mut t.due, d, now)?;
                if let (Some(key), Some(rec)) = (d.dedup_key.as_deref(), rec) {
                    let all_dead = rec
                        .routes
                        .iter()
                        .filter(|r| r.route == d.route)
                        .flat_map(|r| &r.actions)
                        .all(|a| a.status == Status::Dead);
                    let held_by_this = t
                        .dedup
                        .get(key)
                        .map_err(|e| self.err(e))?
                        .and_then(|v| serde_json::from_slice::<DedupRecord>(v.value()).ok())
                        .is_some_and(|r| r.event_id == d.event_id);
                    if all_dead && held_by_this {
                        t.dedup.remove(key).map_err(|e| self.err(e))?;
                    }
                }
                Ok(next)
            }
        }
    }

    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(DEAD).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.range::<&str>(..).map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            if let Ok(d) = serde_json::from_slice(v.value()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Re-queues dead letters (all when `ids` is `None`) with a fresh attempt count and
    /// max-age, in one transaction. Dead letters whose action `can_send` refuses (not
    /// configured now) stay dead and are reported, as are ids that are not dead letters.
    pub fn replay(
        &self,
        ids: Option<&[String]>,
        can_send: &dyn Fn(&str) -> bool,
    ) -> Result<Replay> {
        let now = now_ms();
        let mut out = Replay::default();
        let txn = self.write(true)?;
        {
            let mut dead = txn.open_table(DEAD).map_err(|e| self.err(e))?;
            let mut outbox = txn.open_table(OUTBOX).map_err(|e| self.err(e))?;
            let mut due = txn.open_table(DUE).map_err(|e| self.err(e))?;
            let mut events = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            let keys: Vec<String> = match ids {
                Some(ids) => ids.to_vec(),
                None => {
                    let mut ks = Vec::new();
                    for item in dead.range::<&str>(..).map_err(|e| self.err(e))? {
                        let (k, _) = item.map_err(|e| self.err(e))?;
                        ks.push(k.value().to_string());
                    }
                    ks
                }
            };
            for id in keys {
                let Some(dl) = dead
                    .get(id.as_str())
                    .map_err(|e| self.err(e))?
                    .and_then(|v| serde_json::from_slice::<DeadLetter>(v.value()).ok())
                else {
                    out.unknown.push(id);
                    continue;
                };
                if !can_send(&dl.delivery.action) {
                    out.skipped.push(dl);
                    continue;
                }
                dead.remove(id.as_str()).map_err(|e| self.err(e))?;
                let mut d = dl.delivery;
                d.attempts = 0;
                d.due_at_ms = now;
                // A fresh start: attempts and max-age count from the replay.
                d.created_at_ms = now;
                // The chain after it (serialize-actions) was queued when it died.
                d.then.clear();
                self.queue(&mut outbox, &mut due, &d)?;
                self.update_history(&mut events, &d, Status::Pending, None, now)?;
                out.replayed.push(d);
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// The most recent events, newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<EventRecord>> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(EVENTS).map_err(|e| self.err(e))?;
        let bodies = r.open_table(BODIES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.range::<&str>(..).map_err(|e| self.err(e))?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.map_err(|e| self.err(e))?;
            if let Ok(rec) = serde_json::from_slice(v.value()) {
                out.push(self.with_body(&bodies, rec)?);
            }
        }
        Ok(out)
    }

    fn with_body(
        &self,
        bodies: &impl ReadableTable<&'static str, &'static str>,
        mut rec: EventRecord,
    ) -> Result<EventRecord> {
        if rec.body.is_empty()
            && let Some(b) = bodies.get(rec.id.as_str()).map_err(|e| self.err(e))?
        {
            rec.body = b.value().to_string();
        }
        Ok(rec)
    }

    /// One event: routed (its history) or still in the journal.
    pub fn event(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(EVENTS).map_err(|e| self.err(e))?;
        if let Some(v) = t.get(id).map_err(|e| self.err(e))? {
            let rec: EventRecord = serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
            let bodies = r.open_table(BODIES).map_err(|e| self.err(e))?;
            return Ok(Some(event_json(&self.with_body(&bodies, rec)?)));
        }
        let queued = |e: JournalEntry| {
            Some(serde_json::json!({
                "id": id,
                "received_at_ms": e.received_at_ms,
                "state": "queued",
                "event": serde_json::from_str::<serde_json::Value>(&e.body).unwrap_or_default(),
            }))
        };
        let j = r.open_table(JOURNAL).map_err(|e| self.err(e))?;
        if let Some(v) = j.get(id).map_err(|e| self.err(e))? {
            let e: JournalEntry = serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
            return Ok(queued(e));
        }
        // Not routed yet: look in the journal from the checkpoint on.
        let mut pos = checkpoint_in(&r.open_table(META).map_err(|e| self.err(e))?)
            .map_err(|e| self.err(e))?;
        // Only what is acknowledged (a write in progress may be half visible).
        let end = self.journal_end.load(Ordering::SeqCst);
        loop {
            let (recs, next) = journal::read(&self.journal_dir, pos, end, 4096)
                .map_err(|e| self.err(format!("cannot read the journal: {e}")))?;
            if let Some(rec) = recs.into_iter().find(|r| r.id == id) {
                return Ok(queued(rec.entry));
            }
            if next == pos {
                return Ok(None);
            }
            pos = next;
        }
    }

    /// The API key: `configured` when given, else the one kept in the store (made once).
    pub fn api_key(&self, configured: Option<&str>) -> Result<String> {
        if let Some(k) = configured.filter(|k| !k.is_empty()) {
            return Ok(k.to_string());
        }
        {
            let r = self.db.begin_read().map_err(|e| self.err(e))?;
            let t = r.open_table(META).map_err(|e| self.err(e))?;
            if let Some(v) = t.get("POSTEE_API_KEY").map_err(|e| self.err(e))? {
                return Ok(v.value().to_string());
            }
        }
        let key: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let txn = self.write(true)?;
        {
            let mut t = txn.open_table(META).map_err(|e| self.err(e))?;
            t.insert("POSTEE_API_KEY", key.as_str())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(key)
    }

    /// Bytes the store holds: live data and metadata. Pages freed by trimming are reused
    /// before the file grows, so the file stops growing once this stays under the limit.
    pub fn size(&self) -> Result<u64> {
        // redb releases the pages of non-durable transactions only at durable commits; two
        // empty durable commits make sure trimmed data stops counting.
        for _ in 0..2 {
            self.write(true)?.commit().map_err(|e| self.err(e))?;
        }
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let s = txn.stats().map_err(|e| self.err(e))?;
        // Free pages (fragmented bytes) are reused before the file grows, so they do not count.
        let size = s.stored_bytes() + s.metadata_bytes();
        txn.abort().map_err(|e| self.err(e))?;
        Ok(size + self.journal_bytes()?)
    }

    /// Bytes of journal not routed yet.
    pub fn journal_bytes(&self) -> Result<u64> {
        let end = self.journal_end.load(Ordering::SeqCst);
        Ok(journal::span(&self.journal_dir, self.checkpoint()?, end))
    }

    /// Maintenance (spec §7.3, made safe): drops expired dedup keys, then the history of
    /// finished events older than `retention_ms`, then — while over `max_size` — the oldest
    /// finished history and dead letters. Never touches the journal or the outbox.
    pub fn maintain(&self, retention_ms: u64, max_size: Option<u64>) -> Result<Maintenance> {
        let now = now_ms();
        let mut m = Maintenance::default();
        let txn = self.write(false)?;
        {
            let mut dedup = txn.open_table(DEDUP).map_err(|e| self.err(e))?;
            let expired = dedup
                .extract_if(|_, v| {
                    serde_json::from_slice::<DedupRecord>(v)
                        .is_ok_and(|d| d.expires_at_ms != 0 && d.expires_at_ms <= now)
                })
                .map_err(|e| self.err(e))?;
            m.dedup_expired = expired.count() as u64;
            let mut events = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            let old: Vec<String> = events
                .extract_if(|_, v| {
                    serde_json::from_slice::<EventRecord>(v).is_ok_and(|r| {
                        r.finished() && r.routed_at_ms.saturating_add(retention_ms) <= now
                    })
                })
                .map_err(|e| self.err(e))?
                .filter_map(|item| item.ok().map(|(k, _)| k.value().to_string()))
                .collect();
            m.history_trimmed = old.len() as u64;
            let mut bodies = txn.open_table(BODIES).map_err(|e| self.err(e))?;
            for k in &old {
                bodies.remove(k.as_str()).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        if let Some(max) = max_size {
            // Trim in chunks of the oldest finished history, then dead letters, until under.
            let mut guard = 0;
            while self.size()? > max && guard < 1000 {
                guard += 1;
                let n = self.trim_oldest(200)?;
                m.history_trimmed += n;
                if n == 0 {
                    // Full only with undelivered work: with none left, what remains is the
                    // database's own overhead, and refusing events would never end.
                    m.over_limit = self.has_undelivered_work()?;
                    if !m.over_limit {
                        tracing::warn!(
                            size = self.size()?,
                            max,
                            "store is over max-db-size with nothing left to trim (database overhead); accepting events"
                        );
                    }
                    break;
                }
            }
        }
        Ok(m)
    }

    /// Deliveries not finished, events not routed, or messages waiting for aggregation.
    fn has_undelivered_work(&self) -> Result<bool> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let outbox = r.open_table(OUTBOX).map_err(|e| self.err(e))?;
        let agg = r.open_table(AGG).map_err(|e| self.err(e))?;
        Ok(!outbox.is_empty().map_err(|e| self.err(e))?
            || !agg.is_empty().map_err(|e| self.err(e))?
            || self.journal_bytes()? > 0)
    }

    fn trim_oldest(&self, n: usize) -> Result<u64> {
        let txn = self.write(false)?;
        let mut removed = 0u64;
        {
            let mut events = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            let mut victims = Vec::new();
            for item in events.range::<&str>(..).map_err(|e| self.err(e))? {
                if victims.len() >= n {
                    break;
                }
                let (k, v) = item.map_err(|e| self.err(e))?;
                if serde_json::from_slice::<EventRecord>(v.value()).is_ok_and(|r| r.finished()) {
                    victims.push(k.value().to_string());
                }
            }
            let mut bodies = txn.open_table(BODIES).map_err(|e| self.err(e))?;
            for k in &victims {
                events.remove(k.as_str()).map_err(|e| self.err(e))?;
                bodies.remove(k.as_str()).map_err(|e| self.err(e))?;
            }
            removed += victims.len() as u64;
            if victims.is_empty() {
                let mut dead = txn.open_table(DEAD).map_err(|e| self.err(e))?;
                let mut ks = Vec::new();
                for item in dead.range::<&str>(..).map_err(|e| self.err(e))?.take(n) {
                    let (k, _) = item.map_err(|e| self.err(e))?;
                    ks.push(k.value().to_string());
                }
                for k in &ks {
                    dead.remove(k.as_str()).map_err(|e| self.err(e))?;
                }
                removed += ks.len() as u64;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(removed)
    }

    /// Entries per table, for `/stats`.
    pub fn counts(&self) -> Result<BTreeMap<&'static str, u64>> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut out = BTreeMap::new();
        for (name, def) in [
            ("events", EVENTS),
            ("outbox", OUTBOX),
            ("dead", DEAD),
            ("dedup", DEDUP),
            ("aggregation", AGG),
        ] {
            let t = r.open_table(def).map_err(|e| self.err(e))?;
            out.insert(name, t.len().map_err(|e| self.err(e))?);
        }
        let bodies = r.open_table(BODIES).map_err(|e| self.err(e))?;
        out.insert("bodies", bodies.len().map_err(|e| self.err(e))?);
        let due = r.open_table(DUE).map_err(|e| self.err(e))?;
        out.insert("due", due.len().map_err(|e| self.err(e))?);
        Ok(out)
    }
}

/// How one delivery attempt ended, to record.
#[derive(Debug, Clone)]
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

struct OutcomeTables<'t> {
    outbox: redb::Table<'t, &'static str, &'static [u8]>,
    due: redb::Table<'t, &'static str, ()>,
    events: redb::Table<'t, &'static str, &'static [u8]>,
    dead: redb::Table<'t, &'static str, &'static [u8]>,
    dedup: redb::Table<'t, &'static str, &'static [u8]>,
}

fn checkpoint_in(
    t: &impl ReadableTable<&'static str, &'static str>,
) -> std::result::Result<u64, redb::StorageError> {
    Ok(t.get(CHECKPOINT)?
        .and_then(|v| v.value().parse().ok())
        .unwrap_or(0))
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Maintenance {
    pub dedup_expired: u64,
    pub history_trimmed: u64,
    /// Still over `max-db-size` with only undelivered work left.
    pub over_limit: bool,
}

/// An event's history as the API shows it.
pub fn event_json(rec: &EventRecord) -> serde_json::Value {
    let state = if rec.finished() { "done" } else { "delivering" };
    serde_json::json!({
        "id": rec.id,
        "received_at_ms": rec.received_at_ms,
        "routed_at_ms": rec.routed_at_ms,
        "state": state,
        "tenant": rec.tenant,
        "routes": rec.routes,
        "event": serde_json::from_str::<serde_json::Value>(&rec.body).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_agg(_: &str, _: &[AggItem]) -> std::result::Result<Rendered, String> {
        Err("no aggregation here".into())
    }

    fn plan(id: &str, actions: &[&str], dedup: Option<(&str, u64)>) -> EventPlan {
        EventPlan {
            id: id.into(),
            entry: JournalEntry {
                route: None,
                received_at_ms: 1,
                body: "{}".into(),
            },
            routes: vec![RoutePlan {
                route: "r".into(),
                matched: true,
                note: None,
                content: Some(Rendered {
                    title: "t".into(),
                    description: "d".into(),
                    ..Rendered::default()
                }),
                actions: actions.iter().map(|s| s.to_string()).collect(),
                serialize: false,
                dedup: dedup.map(|(k, t)| (k.to_string(), t)),
                aggregate: None,
            }],
        }
    }

    #[test]
    fn journal_routing_outbox_and_outcomes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let touched = s
            .commit_routing(vec![plan("e1", &["a", "b"], None)], Some(77), &no_agg)
            .unwrap();
        assert_eq!(touched.len(), 2);
        assert_eq!(s.checkpoint().unwrap(), 77);
        assert_eq!(
            s.event("e1").unwrap().unwrap()["event"],
            serde_json::json!({})
        );
        let due = s.due("a", now_ms(), 10, &HashSet::new()).unwrap();
        assert_eq!(due.len(), 1);
        let mut d = due[0].clone();
        d.attempts = 1;
        s.record_retry(&d, now_ms() + 60_000, "503").unwrap();
        assert!(
            s.due("a", now_ms(), 10, &HashSet::new())
                .unwrap()
                .is_empty()
        );
        let next = s.due_scan("a", now_ms(), 10, &HashSet::new()).unwrap().1;
        assert!(next.unwrap() > now_ms());
        let mut d = s
            .due("a", now_ms() + 120_000, 10, &HashSet::new())
            .unwrap()
            .remove(0);
        d.attempts = 2;
        s.record_delivered(&d).unwrap();
        let b = s.due("b", now_ms(), 10, &HashSet::new()).unwrap().remove(0);
        s.record_dead(&b, "400 bad").unwrap();
        assert_eq!(s.outbox_len().unwrap(), 0);
        let ev = s.event("e1").unwrap().unwrap();
        assert_eq!(ev["state"], "done");
        assert_eq!(ev["routes"][0]["actions"][0]["status"], "delivered");
        assert_eq!(ev["routes"][0]["actions"][0]["attempts"], 2);
        assert_eq!(ev["routes"][0]["actions"][1]["status"], "dead");
        assert_eq!(s.dead_letters().unwrap().len(), 1);
        assert_eq!(s.replay(None, &|_| false).unwrap().skipped.len(), 1);
        let r = s.replay(Some(&["nope".to_string()]), &|_| true).unwrap();
        assert_eq!(r.unknown, vec!["nope".to_string()]);
        let replayed = s.replay(None, &|_| true).unwrap().replayed;
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].attempts, 0);
        assert!(s.dead_letters().unwrap().is_empty());
        assert_eq!(s.due("b", now_ms(), 10, &HashSet::new()).unwrap().len(), 1);
    }

    #[test]
    fn an_event_in_the_journal_shows_as_queued_until_routed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let mut w = journal::JournalWriter::open(s.journal_dir()).unwrap();
        let e = JournalEntry {
            route: None,
            received_at_ms: 5,
            body: "{\"k\":1}".into(),
        };
        w.write(&[("e9", &e)]).unwrap();
        // Written, not acknowledged yet: not shown.
        assert!(s.event("e9").unwrap().is_none());
        w.file().sync_data().unwrap();
        s.journal_end.store(w.end(), Ordering::SeqCst);
        let q = s.event("e9").unwrap().unwrap();
        assert_eq!(q["state"], "queued");
        assert_eq!(q["event"]["k"], 1);
        assert!(s.journal_bytes().unwrap() > 0);
        let mut p = plan("e9", &["a"], None);
        p.entry = e;
        s.commit_routing(vec![p], Some(w.end()), &no_agg).unwrap();
        assert_eq!(s.journal_bytes().unwrap(), 0);
        assert_eq!(s.event("e9").unwrap().unwrap()["state"], "delivering");
    }

    #[test]
    fn dedup_key_suppresses_copies_until_released_by_dead_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        s.commit_routing(
            vec![plan("e1", &["a"], Some(("r\u{0}k", 0)))],
            None,
            &no_agg,
        )
        .unwrap();
        s.commit_routing(
            vec![plan("e2", &["a"], Some(("r\u{0}k", 0)))],
            None,
            &no_agg,
        )
        .unwrap();
        let e2 = s.event("e2").unwrap().unwrap();
        assert!(
            e2["routes"][0]["note"]
                .as_str()
                .unwrap()
                .contains("duplicate of event e1")
        );
        assert_eq!(s.outbox_len().unwrap(), 1);
        let d = s.due("a", now_ms(), 10, &HashSet::new()).unwrap().remove(0);
        s.record_dead(&d, "gone").unwrap();
        s.commit_routing(
            vec![plan("e3", &["a"], Some(("r\u{0}k", 0)))],
            None,
            &no_agg,
        )
        .unwrap();
        assert_eq!(
            s.outbox_len().unwrap(),
            1,
            "released key lets a later copy through"
        );
    }

    #[test]
    fn serialized_actions_are_queued_one_after_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let mut p = plan("e1", &["a", "b"], None);
        p.routes[0].serialize = true;
        s.commit_routing(vec![p], None, &no_agg).unwrap();
        assert!(
            s.due("b", now_ms(), 10, &HashSet::new())
                .unwrap()
                .is_empty()
        );
        let a = s.due("a", now_ms(), 10, &HashSet::new()).unwrap().remove(0);
        assert_eq!(
            s.record_dead(&a, "x").unwrap().map(|d| d.action).as_deref(),
            Some("b")
        );
        let b = s.due("b", now_ms(), 10, &HashSet::new()).unwrap().remove(0);
        assert!(s.record_delivered(&b).unwrap().is_none());
        assert_eq!(s.event("e1").unwrap().unwrap()["state"], "done");
    }

    #[test]
    fn expired_dedup_keys_no_longer_match() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let txn = s.write(true).unwrap();
        {
            let mut t = txn.open_table(DEDUP).unwrap();
            let v = serde_json::to_vec(&DedupRecord {
                event_id: "old".into(),
                expires_at_ms: now_ms() - 1,
            })
            .unwrap();
            t.insert("r\u{0}k", v.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        s.commit_routing(
            vec![plan("e1", &["a"], Some(("r\u{0}k", 60)))],
            None,
            &no_agg,
        )
        .unwrap();
        assert_eq!(s.outbox_len().unwrap(), 1);
        assert_eq!(s.maintain(0, None).unwrap().dedup_expired, 0);
    }

    #[test]
    fn the_store_is_full_only_with_undelivered_work() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        // Over a 1-byte limit with nothing to trim: database overhead, not full.
        assert!(!s.maintain(u64::MAX, Some(1)).unwrap().over_limit);
        s.commit_routing(vec![plan("e1", &["a"], None)], None, &no_agg)
            .unwrap();
        assert!(s.maintain(u64::MAX, Some(1)).unwrap().over_limit);
        let d = s.due("a", now_ms(), 10, &HashSet::new()).unwrap().remove(0);
        s.record_delivered(&d).unwrap();
        let m = s.maintain(u64::MAX, Some(1)).unwrap();
        assert_eq!(m.history_trimmed, 1);
        assert!(!m.over_limit);
    }

    #[test]
    fn a_second_process_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let _s = Store::open(&p).unwrap();
        let err = Store::open(&p).err().unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[test]
    fn the_api_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let k = s.api_key(None).unwrap();
        assert_eq!(k.len(), 64);
        assert_eq!(s.api_key(None).unwrap(), k);
        assert_eq!(s.api_key(Some("mine")).unwrap(), "mine");
    }
}
