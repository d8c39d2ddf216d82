//! The outbox: deliveries waiting to be sent, by action and due time, and the outcome writes
//! that move them on (delivered, retry later, dead).

use std::collections::HashSet;

use redb::{ReadableTable, Table};

use super::decode;
use super::{DEAD, DEDUP, DUE, EVENTS, OUTBOX, due_key, due_prefix};
use super::{DeadLetter, DedupHold, EventRecord, Outcome, OutcomeCommit, Result, Status, Store};
use crate::message::Delivery;

/// What one read of an action's due deliveries found.
#[derive(Debug)]
pub struct DueScan {
    pub due: Vec<Delivery>,
    /// When the first delivery not due yet is due (`None`: none).
    pub next_at: Option<u64>,
    /// The number of the last commit the read saw (commits are numbered in order; see `Store::gate`).
    pub seen: u64,
}

type Bytes<'t> = Table<'t, &'static str, &'static [u8]>;

/// Puts a delivery in the outbox, due at its `due_at_ms`.
pub(super) fn queue(outbox: &mut Bytes, due: &mut Table<&str, ()>, d: &Delivery) -> Result<()> {
    outbox.insert(d.id.as_str(), serde_json::to_vec(d)?.as_slice())?;
    due.insert(due_key(&d.action, d.due_at_ms, &d.id).as_str(), ())?;
    Ok(())
}

/// Sets the status of a delivery in its event's history; returns the record as updated.
pub(super) fn update_history(
    events: &mut Bytes,
    d: &Delivery,
    status: Status,
    error: Option<&str>,
    now: u64,
) -> Result<Option<EventRecord>> {
    let Some(mut rec) = events
        .get(d.event_id.as_str())?
        .map(|v| decode::<EventRecord>(v.value()))
        .transpose()?
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
    events.insert(d.event_id.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
    Ok(Some(rec))
}

impl Store {
    /// Deliveries of `action` due by `now` (at most `limit`, oldest due first, skipping
    /// `busy` ones), when the first one not due yet is due, and what the read saw.
    pub fn due_scan(
        &self,
        action: &str,
        now: u64,
        limit: usize,
        busy: &HashSet<String>,
    ) -> Result<DueScan> {
        let (r, seen) = self.read_numbered()?;
        let (due, next_at) = Self::scan_due(&r, action, now, limit, busy)?;
        Ok(DueScan { due, next_at, seen })
    }

    fn scan_due(
        r: &redb::ReadTransaction,
        action: &str,
        now: u64,
        limit: usize,
        busy: &HashSet<String>,
    ) -> Result<(Vec<Delivery>, Option<u64>)> {
        let due = r.open_table(DUE)?;
        let outbox = r.open_table(OUTBOX)?;
        let (lo, hi) = due_prefix(action);
        let mut out = Vec::new();
        for item in due.range(lo.as_str()..hi.as_str())? {
            let (k, _) = item?;
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
            if let Some(v) = outbox.get(id)? {
                out.push(decode(v.value())?);
            }
        }
        Ok((out, None))
    }

    /// Records many delivery outcomes in one transaction, each with the delivery its chain
    /// queues next. Returns the commit's number (commits are numbered in order; see `Store::gate`).
    pub fn record_outcomes(&self, outcomes: &[OutcomeCommit], now: u64) -> Result<u64> {
        let txn = self.write(false)?;
        {
            let mut t = OutcomeTables {
                outbox: txn.open_table(OUTBOX)?,
                due: txn.open_table(DUE)?,
                events: txn.open_table(EVENTS)?,
                dead: txn.open_table(DEAD)?,
                dedup: txn.open_table(DEDUP)?,
            };
            for o in outcomes {
                t.apply(o, now)?;
            }
        }
        self.commit_numbered(txn)
    }
}

struct OutcomeTables<'t> {
    outbox: Bytes<'t>,
    due: Table<'t, &'static str, ()>,
    events: Bytes<'t>,
    dead: Bytes<'t>,
    dedup: Bytes<'t>,
}

impl OutcomeTables<'_> {
    fn apply(&mut self, o: &OutcomeCommit, now: u64) -> Result<()> {
        let d = &o.delivery;
        self.due
            .remove(due_key(&d.action, d.due_at_ms, &d.id).as_str())?;
        match &o.outcome {
            Outcome::Delivered => {
                self.outbox.remove(d.id.as_str())?;
                update_history(&mut self.events, d, Status::Delivered, None, now)?;
            }
            Outcome::Retry { next_at, error } => {
                let mut next = d.clone();
                next.due_at_ms = *next_at;
                next.last_error = Some(error.clone());
                queue(&mut self.outbox, &mut self.due, &next)?;
                update_history(&mut self.events, &next, Status::Pending, Some(error), now)?;
            }
            Outcome::Dead { error } => {
                self.outbox.remove(d.id.as_str())?;
                let mut last = d.clone();
                last.last_error = Some(error.clone());
                let rec = update_history(&mut self.events, &last, Status::Dead, Some(error), now)?;
                let dl = DeadLetter {
                    delivery: last,
                    dead_at_ms: now,
                    error: error.clone(),
                };
                self.dead
                    .insert(d.id.as_str(), serde_json::to_vec(&dl)?.as_slice())?;
                if let (Some(key), Some(rec)) = (d.dedup_key.as_deref(), rec) {
                    self.release_if_all_dead(key, &rec, d)?;
                }
            }
        }
        if let Some(next) = &o.next {
            queue(&mut self.outbox, &mut self.due, next)?;
        }
        Ok(())
    }

    /// The store's one invariant on holds: a dedup key held by an event stops holding once
    /// every delivery of that event on that route is dead, so a failed send never silences
    /// later copies of the alert.
    fn release_if_all_dead(&mut self, key: &str, rec: &EventRecord, d: &Delivery) -> Result<()> {
        let all_dead = rec
            .routes
            .iter()
            .filter(|r| r.route == d.route)
            .flat_map(|r| &r.actions)
            .all(|a| a.status == Status::Dead);
        let held_by_this = self
            .dedup
            .get(key)?
            .map(|v| decode::<DedupHold>(v.value()))
            .transpose()?
            .is_some_and(|h| h.event_id == d.event_id);
        if all_dead && held_by_this {
            self.dedup.remove(key)?;
        }
        Ok(())
    }
}
