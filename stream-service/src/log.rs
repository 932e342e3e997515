//! One shard's durable log: append-only segment files of CRC-checked
//! batches, an in-memory index, group commit with fsync before ack, trimming.
//!
//! On disk, `<shard dir>/<base lsn, 20 digits>.log` segments hold entries:
//! a 36-byte header (`magic u32, payload len u32, crc32 u32, lsn u64,
//! timestamp ms i64, batch size u32, compression u8, 3 zero bytes`, little
//! endian) followed by the
//! batch payload exactly as the client sent it (compressed or not). The CRC
//! covers everything after it. Recovery scans segments and truncates a torn
//! tail. `trim` holds the first LSN still readable.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::FsyncPolicy;

const MAGIC: u32 = 0x4853_4231; // "HSB1"
/// Header bytes before each payload.
pub(crate) const HEADER_LEN: usize = 36;
/// A segment is closed once it grows past this size.
const SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
/// First LSN of a shard (epoch 1, sequence 1, like LogDevice LSNs).
pub(crate) const FIRST_LSN: u64 = (1 << 32) | 1;
/// Payload bytes one read returns at most (unless a single batch is larger),
/// so a `ReadShard` response stays far below the gRPC message limit.
pub(crate) const MAX_READ_BYTES: usize = 32 * 1024 * 1024;
/// Most appends written with one fsync.
const MAX_GROUP: usize = 512;

/// A batch read back from the log.
#[derive(Debug, Clone)]
pub(crate) struct StoredBatch {
    pub lsn: u64,
    pub timestamp_ms: i64,
    pub batch_size: u32,
    pub compression: i32,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    lsn: u64,
    segment: u64,
    offset: u64,
    len: u32,
    batch_size: u32,
    compression: i32,
    timestamp_ms: i64,
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
}

struct State {
    index: VecDeque<IndexEntry>,
    segments: BTreeMap<u64, Segment>,
    /// First LSN not trimmed.
    trim_lsn: u64,
}

struct Writer {
    next_lsn: u64,
    last_ts: i64,
    active: u64,
    active_file: Arc<File>,
    active_size: u64,
}

struct Shared {
    dir: PathBuf,
    fsync: FsyncPolicy,
    segment_bytes: u64,
    state: Mutex<State>,
    writer: Mutex<Writer>,
    /// Next LSN to be written (readers wait on changes).
    tail: watch::Sender<u64>,
}

struct AppendReq {
    payload: Bytes,
    batch_size: u32,
    compression: i32,
    done: oneshot::Sender<io::Result<(u64, i64)>>,
}

/// A shard's log. Dropping it stops its writer task.
pub(crate) struct ShardLog {
    shared: Arc<Shared>,
    tx: mpsc::Sender<AppendReq>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode_entry(buf: &mut Vec<u8>, lsn: u64, ts: i64, r: &AppendReq) {
    let len = u32::try_from(r.payload.len()).unwrap_or(u32::MAX);
    let mut body = Vec::with_capacity(20);
    body.extend_from_slice(&lsn.to_le_bytes());
    body.extend_from_slice(&ts.to_le_bytes());
    body.extend_from_slice(&r.batch_size.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&body);
    crc.update(&(r.compression as u8).to_le_bytes());
    crc.update(&r.payload);
    buf.extend_from_slice(&MAGIC.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(&body);
    buf.push(r.compression as u8);
    buf.extend_from_slice(&[0u8; 3]);
    buf.extend_from_slice(&r.payload);
}

/// Scans one segment; returns its valid entries and the byte length they span.
fn scan_segment(path: &Path, base: u64) -> io::Result<(Vec<IndexEntry>, u64)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + HEADER_LEN <= data.len() {
        let h = &data[pos..pos + HEADER_LEN];
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        if u32_at(0) != MAGIC {
            break;
        }
        let len = u32_at(4) as usize;
        let Some(end) = (pos + HEADER_LEN)
            .checked_add(len)
            .filter(|e| *e <= data.len())
        else {
            break;
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&h[12..33]);
        crc.update(&data[pos + HEADER_LEN..end]);
        if crc.finalize() != u32_at(8) {
            break;
        }
        out.push(IndexEntry {
            lsn: u64_at(12),
            segment: base,
            offset: pos as u64,
            len: len as u32,
            batch_size: u32_at(28),
            compression: i32::from(h[32]),
            timestamp_ms: u64_at(20) as i64,
        });
        pos = end;
    }
    Ok((out, pos as u64))
}

impl ShardLog {
    /// Opens (or creates) the log in `dir`, recovering its index.
    pub(crate) fn open(dir: &Path, fsync: FsyncPolicy) -> io::Result<Self> {
        Self::open_with(dir, fsync, SEGMENT_BYTES)
    }

    /// [`ShardLog::open`] with an explicit segment size.
    fn open_with(dir: &Path, fsync: FsyncPolicy, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| ctx(e, "cannot create shard directory", dir))?;
        let trim_lsn = match fs::read_to_string(dir.join("trim")) {
            Ok(s) => s.trim().parse().unwrap_or(FIRST_LSN),
            Err(e) if e.kind() == io::ErrorKind::NotFound => FIRST_LSN,
            Err(e) => return Err(ctx(e, "cannot read trim point", dir)),
        };
        let mut bases: Vec<u64> = fs::read_dir(dir)
            .map_err(|e| ctx(e, "cannot list shard directory", dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        let mut index = VecDeque::new();
        let mut segments = BTreeMap::new();
        let mut last_size = 0;
        for (i, base) in bases.iter().enumerate() {
            let path = segment_path(dir, *base);
            let (entries, valid) =
                scan_segment(&path, *base).map_err(|e| ctx(e, "cannot read segment", &path))?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| ctx(e, "cannot open segment", &path))?;
            let size = file.metadata()?.len();
            if valid < size {
                tracing::warn!(segment = %path.display(), valid, size, "truncating torn or corrupt tail of shard log");
                file.set_len(valid)?;
                file.sync_all()?;
            }
            if i + 1 == bases.len() {
                last_size = valid;
            }
            index.extend(entries.into_iter().filter(|e| e.lsn >= trim_lsn));
            segments.insert(
                *base,
                Segment {
                    file: Arc::new(file),
                    path,
                },
            );
        }
        let last_lsn = index.back().map_or(0, |e| e.lsn);
        let last_ts = index.back().map_or(0, |e| e.timestamp_ms);
        let next_lsn = (last_lsn + 1).max(trim_lsn).max(FIRST_LSN);
        let (active, active_file) = match segments.iter().next_back() {
            Some((b, s)) => (*b, Arc::clone(&s.file)),
            None => {
                let path = segment_path(dir, next_lsn);
                let f = Arc::new(
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)
                        .map_err(|e| ctx(e, "cannot create segment", &path))?,
                );
                sync_dir(dir)?;
                segments.insert(
                    next_lsn,
                    Segment {
                        file: Arc::clone(&f),
                        path,
                    },
                );
                (next_lsn, f)
            }
        };
        let (tail, _) = watch::channel(next_lsn);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            fsync,
            segment_bytes,
            state: Mutex::new(State {
                index,
                segments,
                trim_lsn,
            }),
            writer: Mutex::new(Writer {
                next_lsn,
                last_ts,
                active,
                active_file,
                active_size: last_size,
            }),
            tail,
        });
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer_loop(Arc::clone(&shared), rx));
        Ok(Self { shared, tx })
    }

    /// Appends one batch; resolves once it is written (and fsynced per policy).
    /// Returns its LSN and timestamp.
    pub(crate) async fn append(
        &self,
        payload: Bytes,
        batch_size: u32,
        compression: i32,
    ) -> io::Result<(u64, i64)> {
        let (done, rx) = oneshot::channel();
        let req = AppendReq {
            payload,
            batch_size,
            compression,
            done,
        };
        let closed = || io::Error::other("shard log is closed (stream deleted or server stopping)");
        self.tx.send(req).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Up to `max` batches with LSN ≥ `from` (and about [`MAX_READ_BYTES`] of
    /// payload, at least one batch), and the LSN to continue from.
    pub(crate) fn read(&self, from: u64, max: usize) -> io::Result<(Vec<StoredBatch>, u64)> {
        let picked: Vec<(IndexEntry, Arc<File>)> = {
            let st = lock(&self.shared.state);
            let start = st.index.partition_point(|e| e.lsn < from);
            let mut bytes = 0usize;
            let mut out = Vec::new();
            for e in st.index.range(start..).take(max) {
                if !out.is_empty() && bytes + e.len as usize > MAX_READ_BYTES {
                    break;
                }
                if let Some(seg) = st.segments.get(&e.segment) {
                    bytes += e.len as usize;
                    out.push((*e, Arc::clone(&seg.file)));
                }
            }
            out
        };
        let next = picked.last().map_or(from, |(e, _)| e.lsn + 1);
        let mut out = Vec::with_capacity(picked.len());
        for (e, f) in picked {
            let mut payload = vec![0u8; e.len as usize];
            f.read_exact_at(&mut payload, e.offset + HEADER_LEN as u64)?;
            out.push(StoredBatch {
                lsn: e.lsn,
                timestamp_ms: e.timestamp_ms,
                batch_size: e.batch_size,
                compression: e.compression,
                payload,
            });
        }
        Ok((out, next))
    }

    /// First readable LSN (after trims) — where EARLIEST starts.
    pub(crate) fn first_lsn(&self) -> u64 {
        let st = lock(&self.shared.state);
        st.index.front().map_or(st.trim_lsn, |e| e.lsn)
    }

    /// The LSN the next append gets — where LATEST starts.
    pub(crate) fn next_lsn(&self) -> u64 {
        *self.shared.tail.borrow()
    }

    /// The last batch's LSN and size, if any batch is stored.
    pub(crate) fn tail(&self) -> Option<(u64, u32)> {
        lock(&self.shared.state)
            .index
            .back()
            .map(|e| (e.lsn, e.batch_size))
    }

    /// The first LSN whose batch was stored at or after `ts_ms` (or the next LSN).
    pub(crate) fn lsn_at_time(&self, ts_ms: i64) -> u64 {
        let st = lock(&self.shared.state);
        let i = st.index.partition_point(|e| e.timestamp_ms < ts_ms);
        st.index.get(i).map_or_else(|| self.next_lsn(), |e| e.lsn)
    }

    /// Subscribes to tail changes (the value is the next LSN to be written).
    pub(crate) fn watch_tail(&self) -> watch::Receiver<u64> {
        self.shared.tail.subscribe()
    }

    /// Makes every batch with LSN < `lsn` unreadable and deletes whole
    /// segments below it. Returns the trim point now in force.
    pub(crate) fn trim_before(&self, lsn: u64) -> io::Result<u64> {
        let active = lock(&self.shared.writer).active;
        let (point, doomed) = {
            let mut st = lock(&self.shared.state);
            if lsn <= st.trim_lsn {
                return Ok(st.trim_lsn);
            }
            st.trim_lsn = lsn;
            while st.index.front().is_some_and(|e| e.lsn < lsn) {
                st.index.pop_front();
            }
            // A segment can go when the next one starts at or below the trim point.
            let bases: Vec<u64> = st.segments.keys().copied().collect();
            let mut doomed = Vec::new();
            for w in bases.windows(2) {
                if w[1] <= lsn
                    && w[0] != active
                    && let Some(s) = st.segments.remove(&w[0])
                {
                    doomed.push(s.path);
                }
            }
            (st.trim_lsn, doomed)
        };
        let dir = &self.shared.dir;
        let tmp = dir.join("trim.tmp");
        fs::write(&tmp, point.to_string()).map_err(|e| ctx(e, "cannot write trim point", &tmp))?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, dir.join("trim")).map_err(|e| ctx(e, "cannot save trim point", dir))?;
        sync_dir(dir)?;
        for p in doomed {
            if let Err(e) = fs::remove_file(&p) {
                tracing::warn!(segment = %p.display(), error = %e, "cannot delete trimmed segment");
            }
        }
        Ok(point)
    }

    /// Trims every batch stored before `cutoff_ms` (retention).
    pub(crate) fn trim_older_than(&self, cutoff_ms: i64) -> io::Result<()> {
        let target = {
            let st = lock(&self.shared.state);
            let i = st.index.partition_point(|e| e.timestamp_ms < cutoff_ms);
            if i == 0 {
                return Ok(());
            }
            st.index.get(i).map_or_else(|| self.next_lsn(), |e| e.lsn)
        };
        self.trim_before(target).map(|_| ())
    }
}

async fn writer_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<AppendReq>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let sh = Arc::clone(&shared);
        let res = tokio::task::spawn_blocking(move || {
            let r = write_group(&sh, &group);
            (group, r)
        })
        .await;
        let Ok((group, result)) = res else {
            tracing::error!("shard log writer panicked");
            return;
        };
        match result {
            Ok(placed) => {
                for (req, at) in group.into_iter().zip(placed) {
                    let _ = req.done.send(Ok(at));
                }
            }
            Err(e) => {
                tracing::error!(dir = %shared.dir.display(), error = %e, "shard log write failed");
                for req in group {
                    let _ = req.done.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }
}

/// Writes a group of appends with one write and one fsync; publishes them to readers.
fn write_group(sh: &Shared, group: &[AppendReq]) -> io::Result<Vec<(u64, i64)>> {
    let mut w = lock(&sh.writer);
    let total: u64 = group
        .iter()
        .map(|r| (HEADER_LEN + r.payload.len()) as u64)
        .sum();
    if w.active_size > 0 && w.active_size + total > sh.segment_bytes {
        let base = w.next_lsn;
        let path = segment_path(&sh.dir, base);
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| ctx(e, "cannot create segment", &path))?,
        );
        sync_dir(&sh.dir)?;
        lock(&sh.state).segments.insert(
            base,
            Segment {
                file: Arc::clone(&f),
                path,
            },
        );
        w.active = base;
        w.active_file = f;
        w.active_size = 0;
    }
    let mut buf = Vec::with_capacity(total as usize);
    let mut entries = Vec::with_capacity(group.len());
    let mut lsn = w.next_lsn;
    let ts = now_ms().max(w.last_ts);
    for r in group {
        let offset = w.active_size + buf.len() as u64;
        encode_entry(&mut buf, lsn, ts, r);
        entries.push(IndexEntry {
            lsn,
            segment: w.active,
            offset,
            len: r.payload.len() as u32,
            batch_size: r.batch_size,
            compression: r.compression,
            timestamp_ms: ts,
        });
        lsn += 1;
    }
    w.active_file.write_all_at(&buf, w.active_size)?;
    if sh.fsync == FsyncPolicy::Always {
        w.active_file.sync_data()?;
    }
    w.active_size += buf.len() as u64;
    w.next_lsn = lsn;
    w.last_ts = ts;
    let placed = entries.iter().map(|e| (e.lsn, e.timestamp_ms)).collect();
    lock(&sh.state).index.extend(entries);
    drop(w);
    sh.tail.send_replace(lsn);
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count()
    }

    #[tokio::test]
    async fn recovers_and_continues_lsns() {
        let d = tempfile::tempdir().unwrap();
        let log = ShardLog::open(d.path(), FsyncPolicy::Always).unwrap();
        let (a, _) = log
            .append(Bytes::from(b"one".to_vec()), 1, 0)
            .await
            .unwrap();
        let (b, _) = log
            .append(Bytes::from(b"two".to_vec()), 2, 1)
            .await
            .unwrap();
        assert_eq!(a, FIRST_LSN);
        assert_eq!(b, a + 1);
        drop(log);
        let log = ShardLog::open(d.path(), FsyncPolicy::Always).unwrap();
        let (got, next) = log.read(0, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[1].payload.as_slice(),
                got[1].batch_size,
                got[1].compression
            ),
            (&b"two"[..], 2, 1)
        );
        assert_eq!(next, b + 1);
        let (c, _) = log
            .append(Bytes::from(b"three".to_vec()), 1, 0)
            .await
            .unwrap();
        assert_eq!(c, b + 1);
        assert_eq!(log.tail(), Some((c, 1)));
    }

    #[tokio::test]
    async fn torn_tail_is_truncated() {
        let d = tempfile::tempdir().unwrap();
        let log = ShardLog::open(d.path(), FsyncPolicy::Always).unwrap();
        for i in 0..3u8 {
            log.append(Bytes::from(vec![i; 50]), 1, 0).await.unwrap();
        }
        drop(log);
        let seg = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "log"))
            .unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        let good = bytes.len();
        bytes.extend_from_slice(&MAGIC.to_le_bytes());
        bytes.extend_from_slice(&[7u8; 20]);
        fs::write(&seg, &bytes).unwrap();
        let log = ShardLog::open(d.path(), FsyncPolicy::Always).unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len() as usize, good);
        assert_eq!(log.read(0, 10).unwrap().0.len(), 3);
        log.append(Bytes::from(vec![9; 5]), 1, 0).await.unwrap();
        drop(log);
        // a flipped payload byte fails the CRC: the entry and what follows are dropped
        let mut bytes = fs::read(&seg).unwrap();
        bytes[HEADER_LEN + 3] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        let log = ShardLog::open(d.path(), FsyncPolicy::Always).unwrap();
        assert!(log.read(0, 10).unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn segments_roll_and_trim_deletes_them() {
        let d = tempfile::tempdir().unwrap();
        let log = ShardLog::open_with(d.path(), FsyncPolicy::Never, 1000).unwrap();
        let mut lsns = Vec::new();
        for i in 0..10u8 {
            lsns.push(log.append(Bytes::from(vec![i; 300]), 1, 0).await.unwrap().0);
        }
        assert!(segments(d.path()) >= 4, "segments rolled");
        let before = segments(d.path());
        assert_eq!(log.trim_before(lsns[7]).unwrap(), lsns[7]);
        assert!(segments(d.path()) < before, "old segments deleted");
        assert_eq!(log.first_lsn(), lsns[7]);
        assert_eq!(log.read(0, 100).unwrap().0.len(), 3);
        drop(log);
        let log = ShardLog::open_with(d.path(), FsyncPolicy::Never, 1000).unwrap();
        let (got, _) = log.read(0, 100).unwrap();
        assert_eq!(
            got.iter().map(|b| b.lsn).collect::<Vec<_>>(),
            lsns[7..].to_vec()
        );
        assert_eq!(got[0].payload, vec![7u8; 300]);
        assert_eq!(log.lsn_at_time(0), lsns[7]);
        assert_eq!(log.lsn_at_time(i64::MAX), lsns[9] + 1);
    }

    #[tokio::test]
    async fn retention_trims_by_time() {
        let d = tempfile::tempdir().unwrap();
        let log = ShardLog::open(d.path(), FsyncPolicy::Never).unwrap();
        let (a, ts) = log.append(Bytes::from(vec![1]), 1, 0).await.unwrap();
        log.append(Bytes::from(vec![2]), 1, 0).await.unwrap();
        log.trim_older_than(ts).unwrap();
        assert_eq!(log.first_lsn(), a, "nothing older than the first batch");
        log.trim_older_than(ts + 60_000).unwrap();
        assert!(
            log.read(0, 10).unwrap().0.is_empty(),
            "everything older than the cutoff is gone"
        );
        let (b, _) = log.append(Bytes::from(vec![3]), 1, 0).await.unwrap();
        assert_eq!(log.read(0, 10).unwrap().0[0].lsn, b);
    }

    #[tokio::test]
    async fn trim_of_everything_keeps_lsns_increasing() {
        let d = tempfile::tempdir().unwrap();
        let log = ShardLog::open(d.path(), FsyncPolicy::Never).unwrap();
        let (a, _) = log.append(Bytes::from(vec![1]), 1, 0).await.unwrap();
        log.trim_before(a + 1).unwrap();
        drop(log);
        let log = ShardLog::open(d.path(), FsyncPolicy::Never).unwrap();
        assert!(log.read(0, 10).unwrap().0.is_empty());
        let (b, _) = log.append(Bytes::from(vec![2]), 1, 0).await.unwrap();
        assert!(b > a);
    }
}
