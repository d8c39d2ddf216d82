//! The embedded store, and the seam the pipeline talks to. The journal of acknowledged events
//! is an append-only log beside the database ([`journal`]); redb, one file at `PATH_TO_DB`,
//! holds the outbox of deliveries and its due-time index, dead letters, dedup holds,
//! aggregation queues and the event history.
//!
//! The seam: the pipeline uses only the operations of [`Store`] below, whose arguments and
//! results are the pipeline's own types ([`records`], [`crate::message`], [`crate::event`]),
//! never redb's. Writes are two operations, each one transaction: [`Store::commit_routing`]
//! (what routing decided for a batch of events) and [`Store::record_outcomes`] (what delivery
//! attempts did). Decisions are made before, in `routing`; the store only persists them and
//! keeps its invariants (a dedup hold is released when every delivery of its event on that
//! route is dead). A second backend (NATS JetStream: streams for the journal and outbox, KV
//! with compare-and-set for holds and aggregation queues) implements the same operations.
//!
//! Durability: a journal append is written with fdatasync before the event is acknowledged.
//! Everything after that (routing, outcomes) commits without fsync and is made durable by
//! the next fsync'd commit (`flush`, at most 100 ms later): a crash can only roll those
//! back to a state that is replayed (re-routed from the journal, re-sent), never lose an
//! acknowledged event. Journal segments are deleted only once their routing is durable.

mod commit;
mod dead;
mod history;
pub mod journal;
mod outbox;
pub mod records;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

pub use outbox::DueScan;
pub use records::*;

/// History records (without the body) and, apart, the bodies: outcomes rewrite the small
/// record only.
const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
const BODIES: TableDefinition<&str, &str> = TableDefinition::new("bodies");
const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const DUE: TableDefinition<&str, ()> = TableDefinition::new("due");
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead");
const DEDUP: TableDefinition<&str, &[u8]> = TableDefinition::new("dedup");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const AGG: TableDefinition<&str, &[u8]> = TableDefinition::new("aggregation");
/// redb's page cache.
const CACHE_BYTES: usize = 32 * 1024 * 1024;
/// META key: the journal position routing has reached (committed with the routing).
const CHECKPOINT: &str = "journal_routed";
/// META key: the generated API key.
const API_KEY: &str = "POSTEE_API_KEY";

/// What can go wrong in the store. Each redb error converts with `?`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store {0} is in use by another postee process (stop it, or use its HTTP API)")]
    InUse(String),
    #[error("cannot create the store's directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    #[error("store: a record cannot be encoded or decoded: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("store: journal: {0}")]
    Journal(#[from] std::io::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    db: Database,
    path: PathBuf,
    journal_dir: PathBuf,
    /// Where durable journal data ends (kept up to date by the journal's sync threads).
    journal_end: AtomicU64,
    /// The segment routing was in when routed segments were last deleted.
    cleaned_segment: AtomicU64,
    /// A commit without fsync happened since the last fsync'd one.
    dirty: AtomicBool,
    /// Counts routing and outcome commits: a read that starts after reading `n` sees every
    /// commit numbered up to `n` (the lanes use this to drop stale hand-overs).
    commits: AtomicU64,
    /// Held while a commit becomes visible and is numbered, and while a read takes its
    /// snapshot with the number: so a read numbered `n` sees exactly the commits up to `n`.
    gate: std::sync::Mutex<()>,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

impl Store {
    /// Opens (or creates) the store file, creating its directory.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        // redb's default page cache is 1 GiB; the hot pages here are the outbox, the due index
        // and recent history, so a small cache keeps memory bounded at little cost.
        let db = match redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
        {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse(path.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let store = Store {
            db,
            path: path.to_path_buf(),
            journal_dir: journal::dir_for(path),
            journal_end: AtomicU64::new(0),
            cleaned_segment: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            gate: std::sync::Mutex::new(()),
        };
        let txn = store.db.begin_write()?;
        {
            txn.open_table(EVENTS)?;
            txn.open_table(BODIES)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(DUE)?;
            txn.open_table(DEAD)?;
            txn.open_table(DEDUP)?;
            txn.open_table(META)?;
            txn.open_table(AGG)?;
        }
        txn.commit()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, durable: bool) -> Result<redb::WriteTransaction> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
            self.dirty.store(true, Ordering::SeqCst);
        }
        Ok(txn)
    }

    /// Commits `txn` and numbers it, as one step for readers (see `gate`).
    fn commit_numbered(&self, txn: redb::WriteTransaction) -> Result<u64> {
        let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        txn.commit()?;
        Ok(self.commits.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// A read snapshot and the number of the last commit it sees.
    fn read_numbered(&self) -> Result<(redb::ReadTransaction, u64)> {
        let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        let r = self.db.begin_read()?;
        Ok((r, self.commits.load(Ordering::SeqCst)))
    }

    /// The journal's directory (`<db>.journal`).
    pub fn journal_dir(&self) -> &Path {
        &self.journal_dir
    }

    /// Where acknowledged (durable) journal data ends.
    pub fn journal_end(&self) -> u64 {
        self.journal_end.load(Ordering::SeqCst)
    }

    /// The journal's sync threads moved the durable end.
    pub fn set_journal_end(&self, end: u64) {
        self.journal_end.store(end, Ordering::SeqCst);
    }

    /// Opens the journal for appending, and takes its end as the acknowledged end.
    pub fn open_journal(&self) -> Result<journal::JournalWriter> {
        let w = journal::JournalWriter::open(&self.journal_dir)?;
        self.set_journal_end(w.end());
        Ok(w)
    }

    /// Acknowledged journal records from `from` on (at most `max`), and where the next read
    /// starts.
    pub fn read_journal(&self, from: u64, max: usize) -> Result<(Vec<journal::Record>, u64)> {
        Ok(journal::read(
            &self.journal_dir,
            from,
            self.journal_end(),
            max,
        )?)
    }

    /// Makes every earlier non-fsync'd commit durable, then deletes the journal segments
    /// that durable routing has passed.
    pub fn flush(&self) -> Result<()> {
        let routed = if self.dirty.swap(false, Ordering::SeqCst) {
            let txn = self.write(true)?;
            let routed = checkpoint_in(&txn.open_table(META)?)?;
            txn.commit()?;
            routed
        } else {
            self.checkpoint()?
        };
        // Only when routing has reached a new segment since the last deletion.
        if routed > 0 && journal::segment_of(routed) > self.cleaned_segment.load(Ordering::Relaxed)
        {
            journal::remove_before(&self.journal_dir, routed)?;
            self.cleaned_segment
                .store(journal::segment_of(routed), Ordering::Relaxed);
        }
        Ok(())
    }

    /// How far routing has got in the journal (committed, maybe not durable yet).
    pub fn checkpoint(&self) -> Result<u64> {
        let r = self.db.begin_read()?;
        checkpoint_in(&r.open_table(META)?)
    }

    /// The API key: `configured` when given, else the one kept in the store (made once).
    pub fn api_key(&self, configured: Option<&str>) -> Result<String> {
        if let Some(k) = configured.filter(|k| !k.is_empty()) {
            return Ok(k.to_string());
        }
        {
            let r = self.db.begin_read()?;
            if let Some(v) = r.open_table(META)?.get(API_KEY)? {
                return Ok(v.value().to_string());
            }
        }
        let key: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let txn = self.write(true)?;
        txn.open_table(META)?.insert(API_KEY, key.as_str())?;
        txn.commit()?;
        Ok(key)
    }
}

fn checkpoint_in(t: &impl ReadableTable<&'static str, &'static str>) -> Result<u64> {
    Ok(t.get(CHECKPOINT)?
        .and_then(|v| v.value().parse().ok())
        .unwrap_or(0))
}

fn due_key(action: &str, due_at_ms: u64, delivery_id: &str) -> String {
    format!("{action}\u{0}{due_at_ms:020}\u{0}{delivery_id}")
}

fn due_prefix(action: &str) -> (String, String) {
    (format!("{action}\u{0}"), format!("{action}\u{1}"))
}

#[cfg(test)]
mod tests;
