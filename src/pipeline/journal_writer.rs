//! The journal writer: a thread that appends every waiting request in one write, and sync
//! threads that make writes durable (several fdatasyncs in flight, so throughput does not stop
//! at one flush per disk round trip), then acknowledge and hand the events to the router.

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Duration;

use regorus::Value;
use tokio::sync::{mpsc, oneshot};

use super::{Shared, StartError};
use crate::event::JournalEntry;
use crate::store::journal::{self, JournalWriter};

/// How many fdatasyncs may be in flight at once, unless `POSTEE_JOURNAL_SYNCS` says otherwise
/// (1 to 16): more overlap flushes on a disk with a long flush latency; fewer make each flush
/// carry more events (less CPU per event) when the disk is fast.
const SYNC_THREADS: usize = 4;

fn sync_threads() -> usize {
    let Ok(v) = std::env::var("POSTEE_JOURNAL_SYNCS") else {
        return SYNC_THREADS;
    };
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=16).contains(&n) => n,
        _ => {
            tracing::warn!(value = %v, default = SYNC_THREADS, "POSTEE_JOURNAL_SYNCS must be a whole number from 1 to 16; using the default");
            SYNC_THREADS
        }
    }
}

/// An event to journal, and where to say it is durable.
pub(super) struct Request {
    pub id: String,
    pub entry: JournalEntry,
    pub input: Value,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// An acknowledged event handed to the router in memory.
pub(super) struct Job {
    pub id: String,
    pub entry: JournalEntry,
    pub input: Value,
}

/// One journal write, as the router learns of it. `jobs` is `None` when memory was full:
/// the router then reads those events from the journal file.
pub(super) struct Appended {
    pub start: u64,
    pub end: u64,
    pub jobs: Option<(Vec<Job>, usize)>,
}

/// A written batch waiting for its fdatasync.
struct Written {
    start: u64,
    batch: Vec<Request>,
}

struct SyncShared {
    shared: Arc<Shared>,
    route_tx: mpsc::UnboundedSender<Appended>,
}

pub(super) fn spawn(
    writer: JournalWriter,
    rx: std_mpsc::Receiver<Request>,
    route_tx: mpsc::UnboundedSender<Appended>,
    shared: Arc<Shared>,
) -> Result<std::thread::JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name("postee-journal".into())
        .spawn(move || run(writer, rx, SyncShared { shared, route_tx }))
        .map_err(StartError::Thread)
}

/// Writes batches on its own thread: every request waiting when a write starts goes into
/// that write.
fn run(mut writer: JournalWriter, rx: std_mpsc::Receiver<Request>, sync: SyncShared) {
    let syncer = journal::Syncer::<Written>::new(writer.end());
    let stop = sync.shared.stop.subscribe();
    let batch_max = sync.shared.limits.journal_batch;
    let sync = Arc::new(sync);
    let threads: Vec<_> = (0..sync_threads())
        .filter_map(|i| {
            let (syncer, sync) = (syncer.clone(), sync.clone());
            std::thread::Builder::new()
                .name(format!("postee-sync-{i}"))
                .spawn(move || syncer.run(&|batches, res| synced(&sync, batches, res)))
                .ok()
        })
        .collect();
    if threads.is_empty() {
        tracing::error!("cannot start the journal's sync threads");
        return;
    }
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                if *stop.borrow() {
                    // Answer what was already handed over, then take nothing new.
                    match rx.try_recv() {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                } else {
                    continue;
                }
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if let Some(e) = syncer.broken() {
            for r in batch {
                let _ = r.reply.send(Err(e.clone()));
            }
            continue;
        }
        let items: Vec<(&str, &JournalEntry)> =
            batch.iter().map(|r| (r.id.as_str(), &r.entry)).collect();
        match writer.write(&items) {
            Ok(starts) => {
                let start = starts.first().copied().unwrap_or(writer.end());
                syncer.push(writer.end(), writer.file(), Written { start, batch });
            }
            Err(e) => {
                let e = format!("journal write failed: {e}");
                tracing::error!(error = %e, events = batch.len(), "events refused");
                for r in batch {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }
    syncer.close();
    for t in threads {
        let _ = t.join();
    }
}

/// Batches made durable (or not): answer intake, hand the events to the router.
fn synced(sync: &SyncShared, batches: Vec<(u64, Written)>, res: Result<(), String>) {
    let s = &sync.shared;
    if let Err(e) = res {
        tracing::error!(error = %e, "journal cannot be made durable; events refused until restart");
        for (_, w) in batches {
            for r in w.batch {
                let _ = r.reply.send(Err(e.clone()));
            }
        }
        return;
    }
    for (end, w) in batches {
        s.store.set_journal_end(end);
        s.unrouted
            .fetch_add(w.batch.len() as i64, Ordering::Relaxed);
        // A parsed event takes several times its text in memory.
        let bytes: usize = w.batch.iter().map(|r| r.entry.body.len() * 6 + 512).sum();
        let keep = s.handoff.load(Ordering::Relaxed) + bytes <= s.limits.handoff_bytes;
        let mut jobs = Vec::with_capacity(if keep { w.batch.len() } else { 0 });
        for r in w.batch {
            let _ = r.reply.send(Ok(()));
            if keep {
                jobs.push(Job {
                    id: r.id,
                    entry: r.entry,
                    input: r.input,
                });
            }
        }
        if keep {
            s.handoff.fetch_add(bytes, Ordering::Relaxed);
        }
        let _ = sync.route_tx.send(Appended {
            start: w.start,
            end,
            jobs: keep.then_some((jobs, bytes)),
        });
    }
}
