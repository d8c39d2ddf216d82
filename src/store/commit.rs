//! The routing commit: one transaction per batch of routed events, and the reads routing's
//! decisions need (dedup holds, aggregation queues).

use std::collections::{BTreeMap, HashMap};

use redb::ReadableDatabase;

use super::{AGG, AggState, BODIES, DEAD, DEDUP, DUE, DedupHold, EVENTS, META, OUTBOX};
use super::{CHECKPOINT, Result, RoutingCommit, Store, decode};

impl Store {
    /// Writes what routing decided, in one transaction (durable at the next flush). Returns
    /// the commit's number (commits are numbered in order; see `Store::gate`).
    pub fn commit_routing(&self, c: &RoutingCommit) -> Result<u64> {
        let txn = self.write(false)?;
        {
            if let Some(pos) = c.checkpoint {
                txn.open_table(META)?
                    .insert(CHECKPOINT, pos.to_string().as_str())?;
            }
            let mut events = txn.open_table(EVENTS)?;
            let mut bodies = txn.open_table(BODIES)?;
            for (record, body) in &c.events {
                events.insert(record.id.as_str(), serde_json::to_vec(record)?.as_slice())?;
                if !body.is_empty() {
                    bodies.insert(record.id.as_str(), body.as_str())?;
                }
            }
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut due = txn.open_table(DUE)?;
            for d in &c.queued {
                super::outbox::queue(&mut outbox, &mut due, d)?;
            }
            let mut dead = txn.open_table(DEAD)?;
            for dl in &c.dead {
                dead.insert(dl.delivery.id.as_str(), serde_json::to_vec(dl)?.as_slice())?;
            }
            let mut dedup = txn.open_table(DEDUP)?;
            for (key, hold) in &c.holds {
                dedup.insert(key.as_str(), serde_json::to_vec(hold)?.as_slice())?;
            }
            let mut agg = txn.open_table(AGG)?;
            for (route, state) in &c.aggregation {
                if state.items.is_empty() {
                    agg.remove(route.as_str())?;
                } else {
                    agg.insert(route.as_str(), serde_json::to_vec(state)?.as_slice())?;
                }
            }
        }
        self.commit_numbered(txn)
    }

    /// The holds of these dedup keys (expired ones included: the decision reads the time).
    pub fn dedup_holds<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, DedupHold>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(DEDUP)?;
        let mut out = HashMap::new();
        for k in keys {
            if let Some(v) = t.get(k)? {
                out.insert(k.to_string(), decode(v.value())?);
            }
        }
        Ok(out)
    }

    /// Every route's aggregation queue.
    pub fn aggregation_states(&self) -> Result<BTreeMap<String, AggState>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(AGG)?;
        let mut out = BTreeMap::new();
        for item in t.range::<&str>(..)? {
            let (k, v) = item?;
            out.insert(k.value().to_string(), decode(v.value())?);
        }
        Ok(out)
    }
}
