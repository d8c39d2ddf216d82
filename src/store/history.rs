//! The event history: what each routed event matched and what became of its deliveries,
//! and events still waiting in the journal.

use redb::{ReadableDatabase, ReadableTable};

use super::{BODIES, EVENTS, META, checkpoint_in, journal};
use super::{EventRecord, EventView, Result, Store, decode};

impl Store {
    /// The most recent events, newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<EventRecord>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(EVENTS)?;
        let bodies = r.open_table(BODIES)?;
        let mut out = Vec::new();
        for item in t.range::<&str>(..)?.rev().take(limit) {
            let rec = decode(item?.1.value())?;
            out.push(with_body(&bodies, rec)?);
        }
        Ok(out)
    }

    /// The body of a routed event (what replays of failed renders render again).
    pub fn event_body(&self, id: &str) -> Result<Option<String>> {
        let r = self.db.begin_read()?;
        Ok(r.open_table(BODIES)?
            .get(id)?
            .map(|v| v.value().to_string()))
    }

    /// One event: routed (its history) or still in the journal.
    pub fn event(&self, id: &str) -> Result<Option<EventView>> {
        let r = self.db.begin_read()?;
        if let Some(v) = r.open_table(EVENTS)?.get(id)? {
            let rec = decode(v.value())?;
            let bodies = r.open_table(BODIES)?;
            return Ok(Some(EventView::Routed(with_body(&bodies, rec)?)));
        }
        // Not routed yet: look in the journal from the checkpoint on, up to what is
        // acknowledged (a write in progress may be half visible).
        let mut pos = checkpoint_in(&r.open_table(META)?)?;
        let end = self.journal_end();
        loop {
            let (recs, next) = journal::read(&self.journal_dir, pos, end, 4096)?;
            if let Some(rec) = recs.into_iter().find(|r| r.id == id) {
                return Ok(Some(EventView::Queued {
                    id: rec.id,
                    entry: rec.entry,
                }));
            }
            if next == pos {
                return Ok(None);
            }
            pos = next;
        }
    }
}

fn with_body(
    bodies: &impl ReadableTable<&'static str, &'static str>,
    mut rec: EventRecord,
) -> Result<EventRecord> {
    if rec.body.is_empty()
        && let Some(b) = bodies.get(rec.id.as_str())?
    {
        rec.body = b.value().to_string();
    }
    Ok(rec)
}
