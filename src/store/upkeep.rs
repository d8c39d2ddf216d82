//! Upkeep: dedup expiry, history retention, `max-db-size`, and the sizes and counts `/stats`
//! shows.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{AGG, BODIES, DEAD, DEDUP, DUE, EVENTS, OUTBOX, journal};
use super::{DedupHold, EventRecord, Maintenance, Result, Store};

impl Store {
    /// Bytes the store holds: live data and metadata. Pages freed by trimming are reused
    /// before the file grows, so the file stops growing once this stays under the limit.
    pub fn size(&self) -> Result<u64> {
        // redb releases the pages of non-durable transactions only at durable commits; two
        // empty durable commits make sure trimmed data stops counting.
        for _ in 0..2 {
            self.write(true)?.commit()?;
        }
        let txn = self.db.begin_write()?;
        let s = txn.stats()?;
        // Free pages (fragmented bytes) are reused before the file grows, so they do not count.
        let size = s.stored_bytes() + s.metadata_bytes();
        txn.abort()?;
        Ok(size + self.journal_bytes()?)
    }

    /// Bytes of journal not routed yet.
    pub fn journal_bytes(&self) -> Result<u64> {
        Ok(journal::span(
            &self.journal_dir,
            self.checkpoint()?,
            self.journal_end(),
        ))
    }

    /// Maintenance (spec §7.3, made safe): drops expired dedup keys, then the history of
    /// finished events older than `retention_ms`, then — while over `max_size` — the oldest
    /// finished history and dead letters. Never touches the journal or the outbox.
    pub fn maintain(
        &self,
        retention_ms: u64,
        max_size: Option<u64>,
        now: u64,
    ) -> Result<Maintenance> {
        let mut m = Maintenance::default();
        let txn = self.write(false)?;
        {
            let mut dedup = txn.open_table(DEDUP)?;
            let expired = dedup.extract_if(|_, v| {
                serde_json::from_slice::<DedupHold>(v).is_ok_and(|d| !d.active(now))
            })?;
            m.dedup_expired = expired.count() as u64;
            let mut events = txn.open_table(EVENTS)?;
            let old: Vec<String> = events
                .extract_if(|_, v| {
                    serde_json::from_slice::<EventRecord>(v).is_ok_and(|r| {
                        r.finished() && r.routed_at_ms.saturating_add(retention_ms) <= now
                    })
                })?
                .filter_map(|item| item.ok().map(|(k, _)| k.value().to_string()))
                .collect();
            m.history_trimmed = old.len() as u64;
            let mut bodies = txn.open_table(BODIES)?;
            for k in &old {
                bodies.remove(k.as_str())?;
            }
        }
        txn.commit()?;
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
        let r = self.db.begin_read()?;
        Ok(!r.open_table(OUTBOX)?.is_empty()?
            || !r.open_table(AGG)?.is_empty()?
            || self.journal_bytes()? > 0)
    }

    fn trim_oldest(&self, n: usize) -> Result<u64> {
        let txn = self.write(false)?;
        let mut removed = 0u64;
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut victims = Vec::new();
            for item in events.range::<&str>(..)? {
                if victims.len() >= n {
                    break;
                }
                let (k, v) = item?;
                if serde_json::from_slice::<EventRecord>(v.value()).is_ok_and(|r| r.finished()) {
                    victims.push(k.value().to_string());
                }
            }
            let mut bodies = txn.open_table(BODIES)?;
            for k in &victims {
                events.remove(k.as_str())?;
                bodies.remove(k.as_str())?;
            }
            removed += victims.len() as u64;
            if victims.is_empty() {
                let mut dead = txn.open_table(DEAD)?;
                let mut ks = Vec::new();
                for item in dead.range::<&str>(..)?.take(n) {
                    ks.push(item?.0.value().to_string());
                }
                for k in &ks {
                    dead.remove(k.as_str())?;
                }
                removed += ks.len() as u64;
            }
        }
        txn.commit()?;
        Ok(removed)
    }

    /// Entries per table, for `/stats`.
    pub fn counts(&self) -> Result<BTreeMap<&'static str, u64>> {
        let r = self.db.begin_read()?;
        let mut out = BTreeMap::new();
        let tables: [(&'static str, TableDefinition<&str, &[u8]>); 5] = [
            ("events", EVENTS),
            ("outbox", OUTBOX),
            ("dead", DEAD),
            ("dedup", DEDUP),
            ("aggregation", AGG),
        ];
        for (name, def) in tables {
            out.insert(name, r.open_table(def)?.len()?);
        }
        out.insert("bodies", r.open_table(BODIES)?.len()?);
        out.insert("due", r.open_table(DUE)?.len()?);
        Ok(out)
    }
}
