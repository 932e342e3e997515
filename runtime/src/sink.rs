//! The sink driver: reads every shard of the stream, hands ready batches to the
//! connector's [`SinkWriter`], retries or skips failed batches by the sink
//! options, and stores per-shard offsets in the reference's KV format.
//!
//! Offsets: after a batch is written, the shard's offset becomes the RecordId of
//! its last record; changed offsets are stored every
//! `offset.flush.interval.seconds` and once more at shutdown under
//! `SinkOffsetsManagerImpl_offsets` as `{"<shardId>":"<recordId>"}`. On start a
//! shard is read from its stored RecordId — the server then re-reads that whole
//! batch — and records at or before the stored id are dropped, so the writer is
//! not handed records it already applied.
//!
//! Pipelining: shard readers, the preparation of the next batch
//! ([`SinkWriter::preparer`]: decoding, conversion) and the write of the
//! current one run concurrently; at most one prepared batch waits for the
//! writer, so memory stays bounded by a few `buffer.batch.maxBytesSize`.
//!
//! Shutdown: readers stop, the batch being written finishes, offsets are stored
//! (batches prepared but not written are dropped and read again next time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::connector::{SinkConnector, SinkWriter};
use crate::error::{Error, ErrorKind, Result};
use crate::record::Change;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::stream::{Client, EncodedRecord, ReaderOffset, Record, RecordId};
use crate::task::TaskEnv;

/// Stream batches fetched per `ReadShard` call. One: a read is one source
/// append batch (up to 1000 records from our sources), and keeping it whole
/// means a skipped batch never takes other appends' good records with it.
const READ_BATCHES: u32 = 1;

/// Reads per shard that may wait for the preparing stage: while a batch is
/// written, the next reads pile up here and are then gathered into one batch.
/// Four, not eight: on the sink benchmark (1M rows, PostgreSQL) eight held
/// ~8 MB more peak RSS (42–44 MB against 34 MB) for the same rows/s, since
/// the gathering already takes up to 1 MiB of reads per batch.
const READS_AHEAD_PER_SHARD: usize = 4;

/// Without `buffer.batch.maxBytesSize`: the most payload bytes gathered from
/// reads that have arrived already into one batch.
pub const BACKLOG_BATCH_BYTES: u64 = 1 << 20;

/// KV key of the sink offsets (the reference toolkit's key, so offsets carry over).
pub const OFFSETS_KEY: &str = "SinkOffsetsManagerImpl_offsets";

/// The groups of shared sink options, in the order HServer's front ends show them.
pub const OPTION_GROUPS: &[(&str, &[&str])] = &[
    (
        "Error Handling",
        &[
            "task.error.skipStrategy",
            "task.error.skipCount",
            "task.error.stream",
            "task.error.maxRetries",
        ],
    ),
    ("Reader", &["task.reader.fromOffset", "reader.max.retry"]),
    (
        "Buffer Strategy",
        &[
            "buffer.batch.maxBytesSize",
            "buffer.batch.maxAge",
            "buffer.enableBackgroundFlush",
        ],
    ),
    ("Offsets", &["offset.flush.interval.seconds"]),
];

/// What to do with a batch the target still rejects after the retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SkipStrategy {
    /// Skip every failed batch (recorded to `task.error.stream` when set).
    SkipAll,
    /// Never skip: the task fails and keeps its offsets.
    #[default]
    NeverSkip,
    /// Skip failed batches while the skipped records stay within `task.error.skipCount`.
    SkipSome,
}

/// Where to start reading a shard that has no stored offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FromOffset {
    /// The oldest record still in the stream.
    #[default]
    EARLIEST,
    /// Only records appended after the task starts.
    LATEST,
}

const fn default_skip_count() -> u64 {
    5
}
const fn default_max_retries() -> i64 {
    3
}
const fn default_offset_flush_secs() -> u32 {
    1
}
const fn default_reader_max_retry() -> u32 {
    3
}

/// Options every sink shares, with the reference's names; flattened into each
/// sink's config type.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct SinkOptions {
    /// What to do with a batch the target rejects after the retries.
    #[serde(rename = "task.error.skipStrategy", default)]
    pub skip_strategy: SkipStrategy,
    /// With `SkipSome`: how many records may be skipped in total before the task fails.
    #[serde(rename = "task.error.skipCount", default = "default_skip_count")]
    pub skip_count: u64,
    /// Stream that receives a JSON record for every skipped batch (created if missing).
    #[serde(rename = "task.error.stream", default)]
    #[schemars(length(min = 1))]
    pub error_stream: Option<String>,
    /// Retries of a failed batch before it is skipped or fails the task:
    /// -1 none, below -1 unlimited.
    #[serde(rename = "task.error.maxRetries", default = "default_max_retries")]
    pub max_retries: i64,
    /// Where to start a shard that has no stored offset.
    #[serde(rename = "task.reader.fromOffset", default)]
    pub from_offset: FromOffset,
    /// Read retries of a shard (reset after each successful read) before the task fails.
    #[serde(rename = "reader.max.retry", default = "default_reader_max_retry")]
    pub reader_max_retry: u32,
    /// Gather reads of a shard into batches of up to this many payload bytes (0: gather only the reads that have arrived already, up to 1 MiB, without waiting).
    #[serde(rename = "buffer.batch.maxBytesSize", default)]
    pub batch_max_bytes: u64,
    /// With `buffer.batch.maxBytesSize`: write a gathering batch at the latest after this many milliseconds.
    #[serde(rename = "buffer.batch.maxAge", default)]
    pub batch_max_age_ms: u64,
    /// Accepted for compatibility; reading always overlaps writing here.
    #[serde(rename = "buffer.enableBackgroundFlush", default)]
    pub background_flush: bool,
    /// How often changed offsets are stored, in seconds.
    #[serde(
        rename = "offset.flush.interval.seconds",
        default = "default_offset_flush_secs"
    )]
    #[schemars(range(min = 1, max = 3600))]
    pub offset_flush_interval_secs: u32,
}

/// One record as a sink sees it.
///
/// The payload is handed over as it is stored in the stream: a JSON (HRecord)
/// record's payload is its encoded `google.protobuf.Struct`, which the
/// connector decodes where it converts records ([`SinkRecord::change`] for the
/// SQL sinks: straight into the change, without JSON text). RAW payloads are
/// the record's bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// Its id in the stream.
    pub record_id: RecordId,
    /// Partition key (`""` when none) as UTF-8 bytes; [`SinkRecord::key_str`] reads it.
    pub key: bytes::Bytes,
    /// The payload: the encoded `google.protobuf.Struct` when `is_json`, the
    /// bytes of a RAW record otherwise. Read from a stream, it is a slice of the
    /// batch that was read (no copy per record).
    pub payload: bytes::Bytes,
    /// True when the record was a JSON (HRecord) record.
    pub is_json: bool,
}

impl SinkRecord {
    fn from_stream(record_id: RecordId, record: EncodedRecord) -> Self {
        Self {
            record_id,
            key: record.key_bytes().clone(),
            payload: record.payload,
            is_json: record.is_json,
        }
    }

    /// The partition key (`""` when none or not UTF-8).
    pub fn key_str(&self) -> &str {
        std::str::from_utf8(&self.key).unwrap_or_default()
    }

    /// The change the record asks for, by the SQL sinks' record formats
    /// ([`crate::record`]): a JSON record's `Struct` decoded with
    /// [`crate::record::parse_struct`], a RAW record's bytes read as JSON text
    /// with [`crate::record::parse`]. The error is a lowercase fragment saying
    /// what is wrong with the payload.
    pub fn change(&self) -> std::result::Result<Change<'_>, String> {
        if self.is_json {
            crate::record::parse_struct(&self.payload)
        } else {
            crate::record::parse(&self.payload)
        }
    }
}

/// Consecutive records of one shard.
#[derive(Debug, Clone)]
pub struct SinkBatch {
    /// The stream read.
    pub stream: String,
    /// The shard they come from.
    pub shard_id: u64,
    /// The records, in stream order.
    pub records: Vec<SinkRecord>,
    /// When the newest of them was appended to the stream (unix ms), for the
    /// task's lag; `None` when unknown.
    pub appended_ms: Option<i64>,
}

impl SinkBatch {
    /// Sum of payload bytes (as stored: a JSON record counts its encoded `Struct`).
    pub fn bytes(&self) -> u64 {
        self.records.iter().map(|r| r.payload.len() as u64).sum()
    }
}

/// Parses the stored offsets map.
pub fn parse_offsets(text: &str) -> Result<BTreeMap<u64, RecordId>> {
    let raw: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("stored `{OFFSETS_KEY}` is not a JSON object of strings"),
        )
        .with_source(e)
    })?;
    raw.into_iter()
        .map(|(shard, id)| {
            let shard_id = shard.parse::<u64>().map_err(|_| {
                Error::new(
                    ErrorKind::Internal,
                    format!("stored offset has a bad shard id `{shard}`"),
                )
            })?;
            let record_id = id.parse::<RecordId>().map_err(|_| {
                Error::new(
                    ErrorKind::Internal,
                    format!("stored offset of shard {shard} has a bad record id `{id}`"),
                )
            })?;
            Ok((shard_id, record_id))
        })
        .collect()
}

fn offsets_text(offsets: &BTreeMap<u64, RecordId>) -> String {
    let map: BTreeMap<String, String> = offsets
        .iter()
        .map(|(s, id)| (s.to_string(), id.to_string()))
        .collect();
    serde_json::to_string(&map).expect("a string map always encodes")
}

fn offsets_report(offsets: &BTreeMap<u64, RecordId>) -> Vec<Value> {
    offsets
        .iter()
        .map(|(s, id)| json!({"shardId": s, "offset": id.to_string()}))
        .collect()
}

/// Runs sink `C` under the runtime (called by `run`).
pub async fn drive<C: SinkConnector>(config: C::Config, env: TaskEnv) -> Result<()> {
    // TLS of any library must find one provider (also when embedded in a test or another program).
    crate::install_crypto_provider();
    let TaskEnv {
        file,
        shutdown,
        kv,
        metrics,
        ..
    } = env;
    let options = C::options(&config).clone();
    let stream = C::stream(&config).to_string();
    let service_url = file.require_service_url()?.to_string();
    let client = Client::connect(&service_url).await.map_err(|e| {
        Error::new(
            ErrorKind::Connection,
            format!("cannot connect to HStream at {service_url}"),
        )
        .with_source(e)
        .with_hint(
            "Check hstream.serviceUrl (or HSTREAM_SERVICE_URL) and that the server is running.",
        )
    })?;
    let mut stored = match kv.get(OFFSETS_KEY).await? {
        Some(text) => parse_offsets(&text)?,
        None => BTreeMap::new(),
    };
    metrics.set_offsets(offsets_report(&stored));
    let shards = client.list_shards(&stream).await.map_err(|e| {
        Error::new(
            ErrorKind::Setup,
            format!("cannot list the shards of stream `{stream}`"),
        )
        .with_source(e)
        .with_hint("Create the stream first (e.g. `CREATE STREAM name;`) or fix `stream`.")
    })?;
    if let Some(error_stream) = &options.error_stream {
        client
            .ensure_stream(error_stream, Default::default())
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Stream,
                    format!("cannot create error stream `{error_stream}`"),
                )
                .with_source(e)
            })?;
    }
    let mut writer = C::open(&config).await?;
    if let Some(own) = writer.stored_offsets().await? {
        tracing::info!(
            shards = own.len(),
            "resuming from the offsets the target stores"
        );
        stored.extend(own);
    }
    tracing::info!(%stream, shards = shards.len(), "sink started");

    let (tx, rx) = mpsc::channel::<SinkBatch>(READS_AHEAD_PER_SHARD * shards.len().max(1));
    let mut readers = JoinSet::new();
    for shard in &shards {
        let resume = stored.get(&shard.shard_id).copied();
        readers.spawn(read_shard(ShardReading {
            client: client.clone(),
            stream: stream.clone(),
            shard_id: shard.shard_id,
            start: resume.map_or(
                match options.from_offset {
                    FromOffset::EARLIEST => ReaderOffset::Earliest,
                    FromOffset::LATEST => ReaderOffset::Latest,
                },
                ReaderOffset::RecordId,
            ),
            applied: resume,
            max_retry: options.reader_max_retry,
            tx: tx.clone(),
            shutdown: shutdown.clone(),
        }));
    }
    drop(tx);

    // Pipeline: readers -> `rx` -> gather + prepare (own task) -> `prepared_rx`
    // -> write here. While one batch is written, at most PREPARED_AHEAD
    // prepared batches wait and nothing else is gathered or prepared, so memory
    // stays bounded by two `buffer.batch.maxBytesSize` (plus the readers' channel).
    let (prepared_tx, mut prepared_rx) = mpsc::channel(PREPARED_AHEAD);
    let mut preparing = tokio::spawn(prepare_batches(
        rx,
        Arc::new(writer.preparer()),
        options.clone(),
        prepared_tx,
    ));

    let mut policy = Policy::new(&options);
    let mut dirty = false;
    let mut last_trim: Option<std::time::Instant> = None;
    let flush_every = Duration::from_secs(options.offset_flush_interval_secs.into());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + flush_every, flush_every);
    // When the writer last became free: the wait for the next prepared batch is logged with it.
    let mut idle_since = std::time::Instant::now();
    let outcome: Result<()> = loop {
        let next = tokio::select! {
            next = prepared_rx.recv() => next,
            Some(joined) = readers.join_next() => match joined {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => break Err(error),
                Err(e) => break Err(Error::internal("a shard reader panicked").with_source(e)),
            },
            _ = tick.tick() => {
                if dirty {
                    match store(kv.as_ref(), &stored).await {
                        Ok(()) => { dirty = false; metrics.set_offsets(offsets_report(&stored)); }
                        Err(error) => tracing::warn!(%error, "cannot store offsets; will retry"),
                    }
                }
                continue;
            }
            _ = shutdown.wait() => break Ok(()),
        };
        let Some((batch, parts, prepared)) = next else {
            // The preparing stage ended: the readers are done, or it failed.
            break match (&mut preparing).await {
                Ok(result) => result,
                Err(e) => Err(Error::internal("the batch preparation panicked").with_source(e)),
            };
        };
        if shutdown.is_triggered() {
            break Ok(());
        }
        let writing = std::time::Instant::now();
        let written = policy
            .write(&mut writer, &batch, &parts, prepared, &client, &shutdown)
            .await;
        tracing::debug!(
            shard = batch.shard_id,
            records = batch.records.len(),
            reads = parts.len(),
            waited_us = (writing - idle_since).as_micros() as u64,
            write_us = writing.elapsed().as_micros() as u64,
            "batch written"
        );
        idle_since = std::time::Instant::now();
        match written {
            Ok((records, bytes)) => {
                if records > 0 {
                    metrics.delivered(records, bytes);
                }
                if let Some(appended) = batch.appended_ms {
                    metrics.observe_lag(appended);
                }
                if let Some(last) = batch.records.last() {
                    stored.insert(batch.shard_id, last.record_id);
                    dirty = true;
                }
                // A large batch leaves its memory free but scattered over the
                // allocator's heap, where it would count in the task's RSS
                // until reused: give it back (measured: 6-7 MB less peak RSS
                // in the pipeline benchmark). At most once per
                // TRIM_INTERVAL: trimming after every batch of a backlog made
                // the next batch fault its pages in again (~8 % of the sink's
                // CPU in page faults, perf; 100 ms: -12 to -20 % task CPU in
                // the sink benchmark, pipeline peak RSS unchanged).
                let large = batch.bytes() >= TRIM_AFTER_BYTES;
                drop((batch, parts));
                if large && last_trim.is_none_or(|t| t.elapsed() >= TRIM_INTERVAL) {
                    crate::release_free_memory();
                    last_trim = Some(std::time::Instant::now());
                }
            }
            Err(error) => break Err(error),
        }
    };
    readers.abort_all();
    preparing.abort();
    // The final offsets are stored whatever happened: they only cover written batches.
    let stored_result = if dirty {
        store(kv.as_ref(), &stored).await
    } else {
        Ok(())
    };
    metrics.set_offsets(offsets_report(&stored));
    outcome?;
    stored_result
}

/// Payload bytes of a written batch from which the allocator's free memory
/// is given back to the system afterwards (smaller batches leave little).
const TRIM_AFTER_BYTES: u64 = 256 << 10;

/// Shortest time between two such trims.
const TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Prepared batches that may wait for the writer.
const PREPARED_AHEAD: usize = 1;

/// A batch, the record count of each read gathered into it, and the outcome
/// of its preparation.
type PreparedBatch<P> = (SinkBatch, Vec<usize>, Result<P>);

/// The pipeline's middle stage: gathers reads into batches and prepares each
/// (on a blocking thread: it is CPU work) while the writer applies the
/// previous one. Ends when the readers are gone or the writer stops listening.
async fn prepare_batches<P, F>(
    mut rx: mpsc::Receiver<SinkBatch>,
    preparer: Arc<F>,
    options: SinkOptions,
    tx: mpsc::Sender<PreparedBatch<P>>,
) -> Result<()>
where
    P: Send + 'static,
    F: Fn(&SinkBatch) -> Result<P> + Send + Sync + 'static,
{
    let mut carried: Option<SinkBatch> = None;
    loop {
        // Wait until the writer has taken the previous prepared batch before
        // gathering the next: one batch is written while the next is
        // prepared, and no third one waits fully prepared (a whole batch of
        // memory). The reads that arrive meanwhile are gathered next.
        let Ok(slot) = tx.reserve().await else {
            return Ok(());
        };
        let first = match carried.take() {
            Some(batch) => batch,
            None => match rx.recv().await {
                Some(batch) => batch,
                None => return Ok(()),
            },
        };
        let (batch, parts, other) = gather(first, &mut rx, &options).await;
        carried = other;
        let preparer = preparer.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let prepared = preparer(&batch);
            tracing::debug!(
                records = batch.records.len(),
                prepare_us = started.elapsed().as_micros() as u64,
                "batch prepared"
            );
            (batch, parts, prepared)
        })
        .await
        .map_err(|e| Error::internal("the batch preparation panicked").with_source(e))?;
        slot.send(prepared);
    }
}

async fn store(kv: &dyn crate::kv::KvStore, offsets: &BTreeMap<u64, RecordId>) -> Result<()> {
    kv.set(OFFSETS_KEY, offsets_text(offsets)).await
}

/// Gathers more reads of the same shard into `batch`: with
/// `buffer.batch.maxBytesSize`, up to that size (waiting up to
/// `buffer.batch.maxAge` for more); without, the reads that have arrived
/// already, up to [`BACKLOG_BATCH_BYTES`] (no waiting, so a backlog is written
/// in large batches and a trickle without delay). A read of another shard ends
/// the gathering and is returned, to be written next (batches of different
/// shards are never merged). Also returns the record count of each read.
async fn gather(
    mut batch: SinkBatch,
    rx: &mut mpsc::Receiver<SinkBatch>,
    options: &SinkOptions,
) -> (SinkBatch, Vec<usize>, Option<SinkBatch>) {
    let mut parts = vec![batch.records.len()];
    let (limit, wait) = match options.batch_max_bytes {
        0 => (BACKLOG_BATCH_BYTES, 0),
        max => (max, options.batch_max_age_ms),
    };
    let deadline = Instant::now() + Duration::from_millis(wait);
    let mut bytes = batch.bytes();
    while bytes < limit {
        let next = if wait == 0 {
            rx.try_recv().ok()
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, rx.recv()).await.ok().flatten()
        };
        match next {
            Some(more) if more.shard_id == batch.shard_id => {
                bytes += more.bytes();
                parts.push(more.records.len());
                batch.records.extend(more.records);
                batch.appended_ms = batch.appended_ms.max(more.appended_ms);
            }
            Some(other) => return (batch, parts, Some(other)),
            None => break,
        }
    }
    (batch, parts, None)
}

struct ShardReading {
    client: Client,
    stream: String,
    shard_id: u64,
    start: ReaderOffset,
    applied: Option<RecordId>,
    max_retry: u32,
    tx: mpsc::Sender<SinkBatch>,
    shutdown: Shutdown,
}

async fn read_shard(mut r: ShardReading) -> Result<()> {
    let mut failures = 0u32;
    loop {
        let offset = r.applied.map_or(r.start, ReaderOffset::RecordId);
        let opened = tokio::select! {
            opened = r.client.shard_reader(&r.stream, r.shard_id, offset) => opened,
            _ = r.shutdown.wait() => return Ok(()),
        };
        let mut reader = match opened {
            Ok(reader) => reader,
            Err(e) => {
                failures += 1;
                if failures > r.max_retry {
                    return Err(Error::new(
                        ErrorKind::Stream,
                        format!(
                            "cannot open a reader on shard {} of stream `{}` after {} attempts",
                            r.shard_id, r.stream, failures
                        ),
                    )
                    .with_source(e));
                }
                tracing::warn!(shard = r.shard_id, error = %e, "cannot open shard reader; retrying");
                Backoff::default().wait(failures, &r.shutdown).await;
                continue;
            }
        };
        loop {
            let read = tokio::select! {
                read = reader.read_encoded(READ_BATCHES) => read,
                _ = r.shutdown.wait() => {
                    let _ = reader.close().await;
                    return Ok(());
                }
            };
            match read {
                Ok(received) => {
                    failures = 0;
                    let appended_ms = received.iter().filter_map(|rr| rr.publish_time_ms).max();
                    let records: Vec<SinkRecord> = received
                        .into_iter()
                        .filter(|rr| r.applied.is_none_or(|applied| rr.record_id > applied))
                        .map(|rr| SinkRecord::from_stream(rr.record_id, rr.record))
                        .collect();
                    let Some(last) = records.last() else { continue };
                    r.applied = Some(last.record_id);
                    let batch = SinkBatch {
                        stream: r.stream.clone(),
                        shard_id: r.shard_id,
                        records,
                        appended_ms,
                    };
                    tokio::select! {
                        sent = r.tx.send(batch) => if sent.is_err() { return Ok(()) },
                        _ = r.shutdown.wait() => return Ok(()),
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures > r.max_retry {
                        return Err(Error::new(
                            ErrorKind::Stream,
                            format!(
                                "cannot read shard {} of stream `{}` after {} attempts",
                                r.shard_id, r.stream, failures
                            ),
                        )
                        .with_source(e)
                        .with_hint(
                            "Raise `reader.max.retry` if the stream service is restarting.",
                        ));
                    }
                    tracing::warn!(shard = r.shard_id, error = %e, "shard read failed; reopening the reader");
                    let _ = reader.close().await;
                    Backoff::default().wait(failures, &r.shutdown).await;
                    break;
                }
            }
        }
    }
}

/// Retry and skip decisions for failed batches.
struct Policy {
    max_retries: i64,
    strategy: SkipStrategy,
    skip_count: u64,
    skipped: u64,
    error_stream: Option<String>,
}

impl Policy {
    fn new(options: &SinkOptions) -> Self {
        Self {
            max_retries: options.max_retries,
            strategy: options.skip_strategy,
            skip_count: options.skip_count,
            skipped: 0,
            error_stream: options.error_stream.clone(),
        }
    }

    fn may_retry(&self, attempt: u32, error: &Error) -> bool {
        let retryable = !matches!(error.kind(), ErrorKind::Config | ErrorKind::Conversion);
        retryable && (self.max_retries < -1 || i64::from(attempt) < self.max_retries.max(0))
    }

    /// Writes `batch` (prepared as `prepared`); `Ok` with the records and
    /// payload bytes written (the rest was skipped), `Err` fails the task. A failed preparation
    /// counts as a failed first attempt; its retries prepare the batch again.
    /// A batch gathered from several reads (`parts`: record counts) that fails
    /// for good is written read by read before anything is skipped or the task
    /// fails: a skip takes no more than the failing read with it, and the reads
    /// before it are applied (as if they had not been gathered).
    async fn write<W: SinkWriter>(
        &mut self,
        writer: &mut W,
        batch: &SinkBatch,
        parts: &[usize],
        prepared: Result<W::Prepared>,
        client: &Client,
        shutdown: &Shutdown,
    ) -> Result<(u64, u64)> {
        let error = match self.attempt(writer, batch, prepared, shutdown).await {
            Ok(()) => return Ok((batch.records.len() as u64, batch.bytes())),
            Err(error) => error,
        };
        if parts.len() > 1 && !shutdown.is_triggered() {
            tracing::warn!(%error, reads = parts.len(), shard = batch.shard_id,
                "a gathered batch failed; writing its reads one by one");
            let mut written = (0, 0);
            let mut start = 0;
            for &len in parts {
                let part = SinkBatch {
                    stream: batch.stream.clone(),
                    shard_id: batch.shard_id,
                    records: batch.records[start..start + len].to_vec(),
                    appended_ms: batch.appended_ms,
                };
                start += len;
                let prepared = (writer.preparer())(&part);
                match self.attempt(writer, &part, prepared, shutdown).await {
                    Ok(()) => {
                        written.0 += part.records.len() as u64;
                        written.1 += part.bytes();
                    }
                    Err(error) => self.skip(error, &part, client).await?,
                }
            }
            return Ok(written);
        }
        self.skip(error, batch, client).await?;
        Ok((0, 0))
    }

    /// Writes `batch` with the retries; the last error when it still fails.
    async fn attempt<W: SinkWriter>(
        &mut self,
        writer: &mut W,
        batch: &SinkBatch,
        prepared: Result<W::Prepared>,
        shutdown: &Shutdown,
    ) -> Result<(), Error> {
        let mut attempt = 0u32;
        let (mut result, prepared) = match prepared {
            Ok(p) => (writer.write_prepared(batch, &p).await, Some(p)),
            Err(error) => (Err(error), None),
        };
        loop {
            match result {
                Ok(()) => return Ok(()),
                Err(error) if self.may_retry(attempt, &error) && !shutdown.is_triggered() => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, shard = batch.shard_id, "batch write failed; retrying");
                    if !Backoff::default().wait(attempt, shutdown).await {
                        return Err(error);
                    }
                    result = match &prepared {
                        Some(p) => writer.write_prepared(batch, p).await,
                        None => writer.write(batch).await,
                    };
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Skips `batch` after `error` if the strategy allows (recording it to the
    /// error stream), else returns `error`.
    async fn skip(&mut self, error: Error, batch: &SinkBatch, client: &Client) -> Result<()> {
        let count = batch.records.len() as u64;
        let skip = match self.strategy {
            SkipStrategy::SkipAll => true,
            SkipStrategy::NeverSkip => false,
            SkipStrategy::SkipSome => self.skipped + count <= self.skip_count,
        };
        if !skip {
            return Err(error);
        }
        self.skipped += count;
        tracing::warn!(%error, records = count, shard = batch.shard_id, "skipping a batch the target rejects");
        if let Some(stream) = &self.error_stream {
            let body = json!({
                "type": "InvalidBatchSinkRecord",
                "reason": error.to_string(),
                "beginRecordId": batch.records.first().map(|r| r.record_id.to_string()),
                "tailRecordId": batch.records.last().map(|r| r.record_id.to_string()),
                "count": count,
            });
            let record = Record::raw(String::new(), body.to_string().into_bytes());
            let shards = client.list_shards(stream).await.map_err(|e| {
                Error::new(
                    ErrorKind::Stream,
                    format!("cannot list shards of error stream `{stream}`"),
                )
                .with_source(e)
            })?;
            let shard = shards.first().ok_or_else(|| {
                Error::new(
                    ErrorKind::Stream,
                    format!("error stream `{stream}` has no shard"),
                )
            })?;
            client
                .append(stream, shard.shard_id, vec![record], Default::default())
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Stream,
                        format!("cannot record a skipped batch to `{stream}`"),
                    )
                    .with_source(e)
                })?;
        }
        Ok(())
    }
}
