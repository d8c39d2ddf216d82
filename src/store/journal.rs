//! The journal: an append-only log of acknowledged, not yet routed events.
//!
//! Intake appends a batch of events with one `write` and one `fdatasync` (group commit) and
//! answers 200 only after that. The router commits its decisions to redb without fsync and
//! records how far it got (the checkpoint, in the same transaction); the flusher makes that
//! durable, and segments wholly before a durable checkpoint are deleted. After a crash the
//! router starts again at the durable checkpoint: events can be routed twice, never lost.
//!
//! Files: `<db>.journal/<segment>.log`, each at most about [`SEGMENT_BYTES`]. A record is
//! `len: u32 LE | crc32(payload): u32 LE | payload`, the payload
//! `id_len: u8 | id | route_len: u16 LE (0xFFFF: none) | route | received_at_ms: u64 LE | body`.
//! A position is `segment << 40 | offset`, so positions only grow.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::event::JournalEntry;

/// A new segment is started when the current one is at least this big.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const OFFSET_BITS: u32 = 40;
const HEADER: usize = 8;
/// Largest payload a reader accepts (a longer length field is corruption).
const MAX_RECORD: usize = 1 << 31;

pub fn position(segment: u64, offset: u64) -> u64 {
    (segment << OFFSET_BITS) | offset
}
pub fn segment_of(pos: u64) -> u64 {
    pos >> OFFSET_BITS
}
fn offset_of(pos: u64) -> u64 {
    pos & ((1 << OFFSET_BITS) - 1)
}

/// The journal directory of a store file: `<db>.journal` beside it.
pub fn dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    db.with_file_name(name)
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:012}.log"))
}

/// Segment numbers present, in order.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".log").and_then(|s| s.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// One journal record and where it sits.
#[derive(Debug, Clone)]
pub struct Record {
    pub start: u64,
    pub end: u64,
    pub id: String,
    pub entry: JournalEntry,
}

fn encode(buf: &mut Vec<u8>, id: &str, e: &JournalEntry) {
    let at = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    let id = prefix(id, 255);
    buf.push(id.len() as u8);
    buf.extend_from_slice(id.as_bytes());
    match &e.route {
        Some(r) => {
            let r = prefix(r, 0xFFFE);
            buf.extend_from_slice(&(r.len() as u16).to_le_bytes());
            buf.extend_from_slice(r.as_bytes());
        }
        None => buf.extend_from_slice(&0xFFFFu16.to_le_bytes()),
    }
    buf.extend_from_slice(&e.received_at_ms.to_le_bytes());
    buf.extend_from_slice(e.body.as_bytes());
    let payload = &buf[at + HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// At most `max` bytes of `s`, cut at a character boundary: a cut inside a character would
/// write a record that `decode` rejects, and reading would skip the rest of its segment
/// (found by fuzzing).
fn prefix(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

fn decode(payload: &[u8]) -> Option<(String, JournalEntry)> {
    let (&id_len, rest) = payload.split_first()?;
    let id = std::str::from_utf8(rest.get(..id_len as usize)?).ok()?;
    let rest = &rest[id_len as usize..];
    let route_len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?);
    let rest = &rest[2..];
    let (route, rest) = if route_len == 0xFFFF {
        (None, rest)
    } else {
        let r = std::str::from_utf8(rest.get(..route_len as usize)?).ok()?;
        (Some(r.to_string()), &rest[route_len as usize..])
    };
    let received_at_ms = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let body = std::str::from_utf8(&rest[8..]).ok()?.to_string();
    Some((
        id.to_string(),
        JournalEntry {
            route,
            received_at_ms,
            body,
        },
    ))
}

/// Reads the record at the reader's position: `Ok(None)` at a clean end of data, `Err` with
/// kind `InvalidData` for a torn or corrupt record.
fn read_record(r: &mut impl Read) -> io::Result<Option<(String, JournalEntry, u64)>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = r.read(&mut header[got..])?;
        if n == 0 {
            // The end of a zero-filled segment can cut a header of zeros short.
            return if header[..got].iter().all(|&b| b == 0) {
                Ok(None)
            } else {
                Err(io::Error::new(io::ErrorKind::InvalidData, "torn header"))
            };
        }
        got += n;
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 && crc == 0 {
        // The zero-filled rest of a segment.
        return Ok(None);
    }
    if len > MAX_RECORD {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad length"));
    }
    // The buffer grows with the bytes actually there: a damaged length field (up to 2 GiB)
    // must not allocate that much up front (found by fuzzing).
    let mut payload = Vec::with_capacity(len.min(1 << 20));
    (&mut *r).take(len as u64).read_to_end(&mut payload)?;
    if payload.len() < len {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "torn record"));
    }
    if crc32fast::hash(&payload) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    let (id, entry) =
        decode(&payload).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad record"))?;
    Ok(Some((id, entry, (HEADER + len) as u64)))
}

/// Writes records at the end of the journal. Segments are zero-filled and fsync'd when made,
/// so a later write changes no file metadata and its fdatasync is a pure data flush; many
/// fdatasyncs may run at once (see [`Syncer`]), which the block layer merges.
pub struct JournalWriter {
    dir: PathBuf,
    seg: u64,
    file: Arc<File>,
    len: u64,
    spare: Option<std::thread::JoinHandle<io::Result<(u64, File)>>>,
}

fn spare_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:012}.spare"))
}

/// Makes a zero-filled, fsync'd file of `size` bytes.
fn prefilled(path: &Path, size: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    let mut w = &file;
    let res = (|| {
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            w.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

impl JournalWriter {
    /// Opens the journal for writing after its last whole record. Bytes after it (a write
    /// cut by a crash, so never acknowledged) are kept aside in a `.torn` file and zeroed.
    pub fn open(dir: &Path) -> io::Result<JournalWriter> {
        fs::create_dir_all(dir)?;
        for e in fs::read_dir(dir)?.flatten() {
            if e.file_name().to_string_lossy().ends_with(".spare") {
                let _ = fs::remove_file(e.path());
            }
        }
        let seg = segments(dir)?.last().copied().unwrap_or(1);
        let path = segment_path(dir, seg);
        if !path.exists() {
            let tmp = spare_path(dir, seg);
            prefilled(&tmp, SEGMENT_BYTES)?;
            fs::rename(&tmp, &path)?;
            sync_dir(dir)?;
        }
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let size = file.metadata()?.len();
        let mut good = 0u64;
        {
            file.seek(SeekFrom::Start(0))?;
            let mut r = io::BufReader::with_capacity(1 << 20, &mut file);
            loop {
                match read_record(&mut r) {
                    Ok(Some((_, _, n))) => good += n,
                    Ok(None) => break,
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => break,
                    Err(e) => return Err(e),
                }
            }
        }
        // Where the last non-zero byte after the records is (read in chunks: the zero-filled
        // rest of a segment is most of it).
        let mut torn_end = good;
        {
            let mut chunk = vec![0u8; 1 << 20];
            let mut at = good;
            while at < size {
                let n = file.read_at(&mut chunk, at)?;
                if n == 0 {
                    break;
                }
                if let Some(i) = chunk[..n].iter().rposition(|&b| b != 0) {
                    torn_end = at + i as u64 + 1;
                }
                at += n as u64;
            }
        }
        if torn_end > good {
            let mut torn = vec![0u8; (torn_end - good) as usize];
            file.read_exact_at(&mut torn, good)?;
            let aside = path.with_extension(format!("log.torn-{}", crate::event::now_ms()));
            fs::write(&aside, &torn)?;
            torn.fill(0);
            file.write_all_at(&torn, good)?;
            tracing::warn!(segment = %path.display(), bytes = torn.len(), kept_in = %aside.display(),
                "journal ends with an incomplete record (a write cut by a crash, never acknowledged); cut off");
        }
        if size < SEGMENT_BYTES {
            file.set_len(SEGMENT_BYTES)?;
            let zeros = vec![0u8; 1 << 20];
            let mut at = size;
            while at < SEGMENT_BYTES {
                let n = (SEGMENT_BYTES - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
        }
        file.sync_all()?;
        Ok(JournalWriter {
            dir: dir.to_path_buf(),
            seg,
            file: Arc::new(file),
            len: good,
            spare: None,
        })
    }

    /// The position after the last record written (maybe not durable yet).
    pub fn end(&self) -> u64 {
        position(self.seg, self.len)
    }

    /// The segment file being written, for [`Syncer`].
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Writes records (not durable until synced); returns their start positions.
    pub fn write(&mut self, items: &[(&str, &JournalEntry)]) -> io::Result<Vec<u64>> {
        let mut buf = Vec::with_capacity(items.iter().map(|(_, e)| e.body.len() + 64).sum());
        for (id, e) in items {
            encode(&mut buf, id, e);
        }
        if self.len > 0 && self.len + buf.len() as u64 > SEGMENT_BYTES {
            self.roll(buf.len() as u64)?;
        }
        let mut starts = Vec::with_capacity(items.len());
        let mut at = 0usize;
        for _ in items {
            starts.push(position(self.seg, self.len + at as u64));
            let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            at += HEADER + len;
        }
        self.file.write_all_at(&buf, self.len)?;
        self.len += buf.len() as u64;
        Ok(starts)
    }

    /// Moves to the next segment (made ahead of time by a helper thread when possible).
    fn roll(&mut self, need: u64) -> io::Result<()> {
        let seg = self.seg + 1;
        let ready = match self.spare.take().map(|h| h.join()) {
            Some(Ok(Ok((s, f)))) if s == seg && need <= SEGMENT_BYTES => Some(f),
            _ => None,
        };
        let file = match ready {
            Some(f) => f,
            None => prefilled(&spare_path(&self.dir, seg), SEGMENT_BYTES.max(need))?,
        };
        fs::rename(spare_path(&self.dir, seg), segment_path(&self.dir, seg))?;
        sync_dir(&self.dir)?;
        self.file = Arc::new(file);
        self.seg = seg;
        self.len = 0;
        let dir = self.dir.clone();
        let next = seg + 1;
        self.spare = std::thread::Builder::new()
            .name("postee-journal-spare".into())
            .spawn(move || Ok((next, prefilled(&spare_path(&dir, next), SEGMENT_BYTES)?)))
            .ok();
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Called with the batches (and their end positions) a sync made durable, or its error.
pub type SyncDone<'a, T> = dyn Fn(Vec<(u64, T)>, Result<(), String>) + 'a;

/// Group commit with fdatasyncs in flight at once: the writer [`Syncer::push`]es each
/// written batch; sync threads flush and call `done` for every batch whose bytes are durable,
/// in order, under a lock (so in order across threads).
pub struct Syncer<T> {
    state: Mutex<SyncState<T>>,
    cv: Condvar,
}

struct SyncState<T> {
    /// Written, not durable yet: (end position, its file, the batch).
    pending: VecDeque<(u64, Arc<File>, T)>,
    /// The furthest position a sync has been started for.
    requested: u64,
    durable: u64,
    closed: bool,
    broken: Option<String>,
}

impl<T: Send + 'static> Syncer<T> {
    pub fn new(durable: u64) -> Arc<Syncer<T>> {
        Arc::new(Syncer {
            state: Mutex::new(SyncState {
                pending: VecDeque::new(),
                requested: durable,
                durable,
                closed: false,
                broken: None,
            }),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the journal refuses writes: an fdatasync failed (what it held is unknown).
    pub fn broken(&self) -> Option<String> {
        self.lock().broken.clone()
    }

    /// A batch written up to `end` in `file`, to make durable.
    pub fn push(&self, end: u64, file: Arc<File>, batch: T) {
        self.lock().pending.push_back((end, file, batch));
        self.cv.notify_one();
    }

    /// No more batches: sync threads finish what is pending and return.
    pub fn close(&self) {
        self.lock().closed = true;
        self.cv.notify_all();
    }

    /// A sync thread's loop. `done(batches, result)` runs under the lock.
    pub fn run(&self, done: &SyncDone<'_, T>) {
        let mut st = self.lock();
        loop {
            let target = st.pending.back().map(|p| p.0);
            match target {
                Some(t) if t > st.requested => {
                    st.requested = t;
                    let mut files: Vec<Arc<File>> = Vec::new();
                    for (end, f, _) in &st.pending {
                        if *end > st.durable && !files.iter().any(|g| Arc::ptr_eq(g, f)) {
                            files.push(f.clone());
                        }
                    }
                    drop(st);
                    let res = files
                        .iter()
                        .try_for_each(|f| f.sync_data())
                        .map_err(|e| format!("journal fdatasync failed: {e}"));
                    st = self.lock();
                    let mut batches = Vec::new();
                    if res.is_ok() {
                        st.durable = st.durable.max(t);
                    } else {
                        st.broken = res.clone().err();
                    }
                    while st.pending.front().is_some_and(|p| p.0 <= t) {
                        let Some((end, _, b)) = st.pending.pop_front() else {
                            break;
                        };
                        batches.push((end, b));
                    }
                    if !batches.is_empty() {
                        done(batches, res);
                    }
                    // Others may wait for this to end (close) or for work it left.
                    self.cv.notify_all();
                }
                _ if st.closed && st.pending.is_empty() => return,
                _ => st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// Reads up to `max` records from `from` (a record boundary) up to `to` (exclusive).
/// Returns the records and the position to continue from.
pub fn read(dir: &Path, from: u64, to: u64, max: usize) -> io::Result<(Vec<Record>, u64)> {
    let mut out = Vec::new();
    let mut pos = from;
    let segs = segments(dir)?;
    while pos < to && out.len() < max {
        let seg = segment_of(pos);
        let Some(&seg) = segs.iter().find(|&&s| s >= seg) else {
            break;
        };
        if seg != segment_of(pos) {
            pos = position(seg, 0);
            continue;
        }
        let mut f = match File::open(segment_path(dir, seg)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(offset_of(pos)))?;
        let mut r = io::BufReader::with_capacity(256 * 1024, f);
        let mut ended = false;
        while pos < to && out.len() < max {
            match read_record(&mut r) {
                Ok(Some((id, entry, n))) => {
                    out.push(Record {
                        start: pos,
                        end: pos + n,
                        id,
                        entry,
                    });
                    pos += n;
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    // Only the open segment's tail can be incomplete, and `to` stops before it.
                    tracing::error!(segment = seg, offset = offset_of(pos), error = %e, "journal segment is damaged; skipping the rest of it");
                    ended = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if ended {
            match segs.iter().find(|&&s| s > seg) {
                Some(&next) => pos = position(next, 0),
                None => break,
            }
        }
    }
    Ok((out, pos))
}

/// Deletes the segments wholly before `pos` (everything before it is routed durably).
pub fn remove_before(dir: &Path, pos: u64) -> io::Result<usize> {
    let mut n = 0;
    for seg in segments(dir)? {
        if seg < segment_of(pos) {
            fs::remove_file(segment_path(dir, seg))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Bytes of the journal between two positions (events written and not routed yet).
pub fn span(dir: &Path, from: u64, to: u64) -> u64 {
    if to <= from {
        return 0;
    }
    if segment_of(from) == segment_of(to) {
        return offset_of(to) - offset_of(from);
    }
    let full: u64 = segments(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|&s| s >= segment_of(from) && s < segment_of(to))
        .filter_map(|s| fs::metadata(segment_path(dir, s)).ok().map(|m| m.len()))
        .sum();
    full.saturating_sub(offset_of(from)) + offset_of(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(w: &mut JournalWriter, items: &[(&str, &JournalEntry)]) {
        w.write(items).unwrap();
        w.file().sync_data().unwrap();
    }

    fn entry(body: &str, route: Option<&str>) -> JournalEntry {
        JournalEntry {
            route: route.map(str::to_string),
            received_at_ms: 42,
            body: body.into(),
        }
    }

    #[test]
    fn records_round_trip_across_segments_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("j");
        let mut w = JournalWriter::open(&d).unwrap();
        let start = w.end();
        let big = "x".repeat(1000);
        let e1 = entry(&big, None);
        let e2 = entry("{\"a\":1}", Some("r:1"));
        append(&mut w, &[("a", &e1), ("b", &e2)]);
        // Force a new segment.
        w.len = SEGMENT_BYTES;
        append(&mut w, &[("c", &e1)]);
        let end = w.end();
        drop(w);
        let (recs, next) = read(&d, start, end, 100).unwrap();
        assert_eq!(next, end);
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(recs[1].entry.route.as_deref(), Some("r:1"));
        assert_eq!(recs[1].entry.body, "{\"a\":1}");
        assert_eq!(recs[0].entry.received_at_ms, 42);
        // Partial reads continue where they stopped.
        let (first, mid) = read(&d, start, end, 2).unwrap();
        assert_eq!(first.len(), 2);
        let (rest, _) = read(&d, mid, end, 100).unwrap();
        assert_eq!(rest[0].id, "c");
        // Reopening appends after the last record.
        let mut w = JournalWriter::open(&d).unwrap();
        assert_eq!(w.end(), end);
        append(&mut w, &[("d", &e2)]);
        let (recs, _) = read(&d, start, w.end(), 100).unwrap();
        assert_eq!(recs.len(), 4);
        // Routed segments go.
        assert_eq!(remove_before(&d, recs[2].start).unwrap(), 1);
        let (recs, _) = read(&d, start, u64::MAX, 100).unwrap();
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["c", "d"]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("j");
        let mut w = JournalWriter::open(&d).unwrap();
        let start = w.end();
        append(&mut w, &[("a", &entry("{}", None))]);
        let good = w.end();
        drop(w);
        let seg = segment_path(&d, segment_of(good));
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[200, 0, 0, 0, 1, 2], offset_of(good))
            .unwrap();
        drop(f);
        let w = JournalWriter::open(&d).unwrap();
        assert_eq!(w.end(), good);
        let bytes = fs::read(&seg).unwrap();
        assert!(
            bytes[offset_of(good) as usize..].iter().all(|&b| b == 0),
            "the torn tail is zeroed"
        );
        let torn: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
            .collect();
        assert_eq!(torn.len(), 1);
        let (recs, _) = read(&d, start, u64::MAX, 10).unwrap();
        assert_eq!(recs.len(), 1);
    }

    #[test]
    fn batches_are_acknowledged_in_order_once_synced() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("j");
        let mut w = JournalWriter::open(&d).unwrap();
        let syncer = Syncer::<usize>::new(w.end());
        let done = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (s, done) = (syncer.clone(), done.clone());
                std::thread::spawn(move || {
                    s.run(&|batches, res| {
                        assert!(res.is_ok());
                        done.lock()
                            .unwrap()
                            .extend(batches.into_iter().map(|(_, b)| b));
                    })
                })
            })
            .collect();
        let e = entry("{}", None);
        for i in 0..200 {
            w.write(&[("x", &e)]).unwrap();
            syncer.push(w.end(), w.file(), i);
        }
        syncer.close();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*done.lock().unwrap(), (0..200).collect::<Vec<_>>());
        assert!(syncer.broken().is_none());
    }

    #[test]
    fn an_overlong_id_is_cut_at_a_character_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("j");
        let mut w = JournalWriter::open(&d).unwrap();
        let start = w.end();
        // 260 bytes; byte 255 is inside the 128th `é`.
        let long = "é".repeat(130);
        let e = entry("{}", Some("r"));
        append(&mut w, &[(&long, &e), ("next", &e)]);
        let (recs, _) = read(&d, start, w.end(), 10).unwrap();
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["é".repeat(127).as_str(), "next"]);
    }

    #[test]
    fn a_damaged_length_reads_as_a_torn_record() {
        // A header claiming the largest length accepted, then a few bytes: an error, not an
        // allocation of 2 GiB (libFuzzer's malloc limit caught that).
        let mut bytes = (MAX_RECORD as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7]);
        let err = read_record(&mut io::Cursor::new(bytes)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "torn record");
    }

    #[test]
    fn a_corrupt_record_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("j");
        let mut w = JournalWriter::open(&d).unwrap();
        let start = w.end();
        append(&mut w, &[("a", &entry("{\"k\":1}", None))]);
        let end = w.end();
        drop(w);
        let seg = segment_path(&d, segment_of(end));
        let mut bytes = fs::read(&seg).unwrap();
        let last = offset_of(end) as usize - 2;
        bytes[last] ^= 0xFF;
        fs::write(&seg, bytes).unwrap();
        let (recs, _) = read(&d, start, end, 10).unwrap();
        assert!(
            recs.is_empty(),
            "a record with a bad checksum is not returned"
        );
    }
}
