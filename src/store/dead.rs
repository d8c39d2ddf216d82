//! Dead letters: deliveries that failed for good, kept with their last error until replayed.

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable};

use super::outbox::{queue, update_history};
use super::{DEAD, DUE, EVENTS, OUTBOX};
use super::{DeadLetter, Replay, Result, Status, Store, decode};
use crate::message::Delivery;

impl Store {
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(DEAD)?;
        let mut out = Vec::new();
        for item in t.range::<&str>(..)? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Re-queues dead letters (all when `ids` is `None`) with a fresh attempt count and
    /// max-age, in one durable transaction. Dead letters whose action `can_send` refuses (not
    /// configured now) stay dead and are reported, as are ids that are not dead letters.
    pub fn replay(
        &self,
        ids: Option<&[String]>,
        can_send: &dyn Fn(&str) -> bool,
        now: u64,
    ) -> Result<Replay> {
        let mut out = Replay::default();
        let txn = self.write(true)?;
        {
            let mut dead = txn.open_table(DEAD)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut due = txn.open_table(DUE)?;
            let mut events = txn.open_table(EVENTS)?;
            let keys: Vec<String> = match ids {
                Some(ids) => ids.to_vec(),
                None => {
                    let mut ks = Vec::new();
                    for item in dead.range::<&str>(..)? {
                        ks.push(item?.0.value().to_string());
                    }
                    ks
                }
            };
            for id in keys {
                let Some(dl) = dead
                    .get(id.as_str())?
                    .map(|v| decode::<DeadLetter>(v.value()))
                    .transpose()?
                else {
                    out.unknown.push(id);
                    continue;
                };
                if !can_send(&dl.delivery.action) {
                    out.skipped.push(dl);
                    continue;
                }
                dead.remove(id.as_str())?;
                let d = dl.delivery.replayed(now);
                queue(&mut outbox, &mut due, &d)?;
                update_history(&mut events, &d, Status::Pending, None, now)?;
                out.replayed.push(d);
            }
        }
        txn.commit()?;
        Ok(out)
    }

    /// Queued deliveries whose action is not in `known` (removed or disabled since).
    pub fn orphans(&self, known: &HashSet<String>) -> Result<Vec<Delivery>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for item in t.range::<&str>(..)? {
            let d: Delivery = decode(item?.1.value())?;
            if !known.contains(&d.action) {
                out.push(d);
            }
        }
        Ok(out)
    }
}
