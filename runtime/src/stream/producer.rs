//! [`BufferedProducer`]: per-shard batching by count, bytes and age, one
//! in-flight append per shard (so appends are ordered per shard), and a
//! byte-bounded flow-control window shared by all shards.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::Client;
use super::codec::{AppendAck, encode_batch};
use super::error::StreamError;
use super::routing::shard_for_key;
use super::types::{Compression, Record, RecordId, Shard};

/// Batching and flow-control settings (defaults as in HStream's Java client).
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Flush a shard's buffer once it holds this many records (0 = no count limit). Default 100.
    pub batch_records: usize,
    /// Flush once the buffered payload reaches this many bytes (0 = no byte limit). Default 4096.
    pub batch_bytes: usize,
    /// Flush this long after the first record entered an empty buffer (0 = no age limit). Default 100 ms.
    pub batch_age: Duration,
    /// Most payload bytes buffered or in flight at once; `append` waits for room. Default 100 MiB.
    pub flow_control_bytes: usize,
    /// Compression of each batch. Default none.
    pub compression: Compression,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            batch_records: 100,
            batch_bytes: 4096,
            batch_age: Duration::from_millis(100),
            flow_control_bytes: 100 * 1024 * 1024,
            compression: Compression::None,
        }
    }
}

type Ack = oneshot::Sender<Result<RecordId, StreamError>>;
type BatchAck = oneshot::Sender<Result<(), StreamError>>;

enum Cmd {
    /// Records for this shard, in order, acknowledged together.
    Records {
        records: Vec<Record>,
        bytes: usize,
        ack: Waiting,
        permit: OwnedSemaphorePermit,
    },
    /// Flush now; reply with the first error since the previous flush, if any.
    Flush(oneshot::Sender<Option<StreamError>>),
}

/// Who waits for a piece of appended records.
enum Waiting {
    /// [`BufferedProducer::append`]: the id of its one record.
    One(Ack),
    /// [`BufferedProducer::append_batch`]: that all its records in this shard are stored.
    All(BatchAck),
}

/// The result of one buffered append: await it (or call [`AppendHandle::wait`])
/// for the record's id once its batch is acknowledged.
#[derive(Debug)]
pub struct AppendHandle {
    rx: oneshot::Receiver<Result<RecordId, StreamError>>,
    stream: String,
}

impl AppendHandle {
    /// Waits for the record's id (or the error of its batch).
    pub async fn wait(self) -> Result<RecordId, StreamError> {
        self.rx.await.unwrap_or(Err(StreamError::ProducerClosed {
            stream: self.stream,
        }))
    }
}

impl IntoFuture for AppendHandle {
    type Output = Result<RecordId, StreamError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

/// The result of [`BufferedProducer::append_batch`]: [`BatchHandle::wait`]
/// resolves once every record of the batch is acknowledged, or with the
/// first error of any of them.
#[derive(Debug)]
pub struct BatchHandle {
    /// One receiver per shard the batch touched.
    pieces: Vec<oneshot::Receiver<Result<(), StreamError>>>,
    stream: String,
}

impl BatchHandle {
    /// Waits until all the batch's records are stored (or one failed).
    pub async fn wait(self) -> Result<(), StreamError> {
        for piece in self.pieces {
            match piece.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(StreamError::ProducerClosed {
                        stream: self.stream,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Batches records per shard and appends them in the background.
///
/// Created by [`Client::producer`]. Records with the same key go to the same
/// shard and are appended in `append` order.
#[derive(Debug)]
pub struct BufferedProducer {
    stream: String,
    shards: Vec<Shard>,
    senders: HashMap<u64, mpsc::UnboundedSender<Cmd>>,
    window: Arc<Semaphore>,
    window_bytes: usize,
    workers: Vec<JoinHandle<()>>,
}

impl BufferedProducer {
    pub(crate) fn new(
        client: Client,
        stream: &str,
        shards: Vec<Shard>,
        opts: ProducerOptions,
    ) -> Result<Self, StreamError> {
        if opts.batch_records == 0 && opts.batch_bytes == 0 && opts.batch_age.is_zero() {
            return Err(StreamError::InvalidArgument(
                "ProducerOptions: enable at least one of batch_records, batch_bytes, batch_age"
                    .into(),
            ));
        }
        if opts.flow_control_bytes == 0 || opts.batch_bytes > opts.flow_control_bytes {
            return Err(StreamError::InvalidArgument(format!(
                "ProducerOptions: flow_control_bytes ({}) must be > 0 and ≥ batch_bytes ({})",
                opts.flow_control_bytes, opts.batch_bytes
            )));
        }
        if shards.is_empty() {
            return Err(StreamError::InvalidArgument(format!(
                "stream {stream:?} has no shards; does it exist?"
            )));
        }
        let window_bytes = opts
            .flow_control_bytes
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        let mut senders = HashMap::new();
        let mut workers = Vec::new();
        for s in &shards {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.insert(s.shard_id, tx);
            workers.push(tokio::spawn(run_shard(
                client.clone(),
                stream.to_string(),
                s.shard_id,
                opts.clone(),
                rx,
            )));
        }
        Ok(Self {
            stream: stream.to_string(),
            shards,
            senders,
            window: Arc::new(Semaphore::new(window_bytes)),
            window_bytes,
            workers,
        })
    }

    /// Buffers a record for its key's shard. Waits only while the flow-control
    /// window is full; the returned handle resolves when the batch is acknowledged.
    pub async fn append(&self, record: Record) -> Result<AppendHandle, StreamError> {
        let shard_id = self.shard_of(&record)?;
        let (ack, rx) = oneshot::channel();
        self.send_piece(shard_id, vec![record], Waiting::One(ack))
            .await?;
        Ok(AppendHandle {
            rx,
            stream: self.stream.clone(),
        })
    }

    /// Buffers `records` (each for its key's shard, in order per shard) with
    /// one flow-control wait and one acknowledgement per shard touched,
    /// instead of one per record as [`BufferedProducer::append`]: the way to
    /// append many records that are only ever acknowledged together.
    pub async fn append_batch(&self, records: Vec<Record>) -> Result<BatchHandle, StreamError> {
        let mut pieces = Vec::new();
        if let [only] = self.shards.as_slice() {
            // The common single-shard stream: no routing, no regrouping.
            if let Some(first) = records.first() {
                self.shard_of(first)?;
                let (ack, rx) = oneshot::channel();
                self.send_piece(only.shard_id, records, Waiting::All(ack))
                    .await?;
                pieces.push(rx);
            }
        } else {
            let mut by_shard: Vec<(u64, Vec<Record>)> = Vec::new();
            for record in records {
                let shard_id = self.shard_of(&record)?;
                match by_shard.iter_mut().find(|(id, _)| *id == shard_id) {
                    Some((_, piece)) => piece.push(record),
                    None => by_shard.push((shard_id, vec![record])),
                }
            }
            for (shard_id, piece) in by_shard {
                let (ack, rx) = oneshot::channel();
                self.send_piece(shard_id, piece, Waiting::All(ack)).await?;
                pieces.push(rx);
            }
        }
        Ok(BatchHandle {
            pieces,
            stream: self.stream.clone(),
        })
    }

    fn shard_of(&self, record: &Record) -> Result<u64, StreamError> {
        shard_for_key(&self.shards, &record.key)
            .map(|s| s.shard_id)
            .ok_or_else(|| StreamError::NoShard {
                stream: self.stream.clone(),
                key: record.key.clone(),
            })
    }

    /// Takes room for `records` in the flow-control window (at most the whole
    /// window, so one large piece cannot wait forever) and hands them to their shard.
    async fn send_piece(
        &self,
        shard_id: u64,
        records: Vec<Record>,
        ack: Waiting,
    ) -> Result<(), StreamError> {
        let bytes: usize = records.iter().map(Record::encoded_len).sum();
        let need = u32::try_from(bytes.clamp(1, self.window_bytes)).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.window)
            .acquire_many_owned(need)
            .await
            .map_err(|_| self.closed())?;
        self.senders
            .get(&shard_id)
            .ok_or_else(|| self.closed())?
            .send(Cmd::Records {
                records,
                bytes,
                ack,
                permit,
            })
            .map_err(|_| self.closed())
    }

    /// Flushes every shard and waits until everything appended so far is
    /// acknowledged or failed. Returns the first append error since the last flush.
    pub async fn flush(&self) -> Result<(), StreamError> {
        let mut waits = Vec::new();
        for tx in self.senders.values() {
            let (done, rx) = oneshot::channel();
            tx.send(Cmd::Flush(done)).map_err(|_| self.closed())?;
            waits.push(rx);
        }
        let mut first = None;
        for w in waits {
            match w.await {
                Ok(None) => {}
                Ok(Some(e)) => {
                    first.get_or_insert(e);
                }
                Err(_) => {
                    first.get_or_insert(self.closed());
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Flushes, then stops the shard workers.
    pub async fn close(mut self) -> Result<(), StreamError> {
        let r = self.flush().await;
        self.senders.clear();
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
        r
    }

    fn closed(&self) -> StreamError {
        StreamError::ProducerClosed {
            stream: self.stream.clone(),
        }
    }
}

/// A piece of records whose ack is not sent yet; its records are the
/// sequence numbers `start..end` of its shard.
struct Waiter {
    start: u64,
    end: u64,
    ack: Waiting,
    /// The first error of a flush that held some of its records.
    error: Option<StreamError>,
    _permit: OwnedSemaphorePermit,
}

/// A shard worker's buffer: records not sent yet and who waits for them.
struct Pending {
    /// Records not sent yet; `records[0]` has sequence number `base`.
    records: VecDeque<Record>,
    bytes: usize,
    base: u64,
    /// Waiters in sequence order; the first may have records already sent.
    waiters: VecDeque<Waiter>,
}

impl Pending {
    fn push(
        &mut self,
        records: Vec<Record>,
        bytes: usize,
        ack: Waiting,
        permit: OwnedSemaphorePermit,
    ) {
        let start = self.base + self.records.len() as u64;
        let end = start + records.len() as u64;
        self.records.extend(records);
        self.bytes += bytes;
        self.waiters.push_back(Waiter {
            start,
            end,
            ack,
            error: None,
            _permit: permit,
        });
    }

    /// Whether the buffer holds a full batch.
    fn full(&self, opts: &ProducerOptions) -> bool {
        (opts.batch_records > 0 && self.records.len() >= opts.batch_records)
            || (opts.batch_bytes > 0 && self.bytes >= opts.batch_bytes)
    }

    /// Takes the next batch: everything, or the first `batch_records` records /
    /// `batch_bytes` bytes (at least one record) when more is buffered.
    fn take_batch(&mut self, opts: &ProducerOptions) -> Vec<Record> {
        let mut n = 0;
        let mut bytes = 0;
        for record in &self.records {
            if n > 0
                && ((opts.batch_records > 0 && n >= opts.batch_records)
                    || (opts.batch_bytes > 0 && bytes >= opts.batch_bytes))
            {
                break;
            }
            n += 1;
            bytes += record.encoded_len();
        }
        self.bytes -= bytes.min(self.bytes);
        self.base += n as u64;
        self.records.drain(..n).collect()
    }

    /// Answers the waiters of the records before `sent` (the sequence number
    /// after the batch just appended, whose first record is `first`).
    fn settle(&mut self, first: u64, sent: u64, result: &Result<AppendAck, StreamError>) {
        if let Err(e) = result {
            for w in self.waiters.iter_mut().take_while(|w| w.start < sent) {
                w.error.get_or_insert_with(|| e.clone());
            }
        }
        // Record ids are decoded only when a single append waits for its own.
        let mut ids: Option<Result<Vec<RecordId>, StreamError>> = None;
        while self.waiters.front().is_some_and(|w| w.end <= sent) {
            let w = self.waiters.pop_front().expect("checked above");
            match (w.ack, &w.error, result) {
                (Waiting::One(ack), None, Ok(answer)) => {
                    let ids = ids.get_or_insert_with(|| {
                        answer.ids().map_err(|e| StreamError::Decode {
                            what: "append response",
                            target: "record ids".into(),
                            reason: e.to_string(),
                        })
                    });
                    let id = match ids {
                        Ok(ids) => usize::try_from(w.start - first)
                            .ok()
                            .and_then(|i| ids.get(i).copied())
                            .ok_or_else(|| StreamError::Decode {
                                what: "append response",
                                target: "record ids".into(),
                                reason: "fewer ids than records".into(),
                            }),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = ack.send(id);
                }
                (Waiting::One(ack), Some(e), _) => {
                    let _ = ack.send(Err(e.clone()));
                }
                (Waiting::All(ack), error, _) => {
                    let _ = ack.send(error.clone().map_or(Ok(()), Err));
                }
                (Waiting::One(ack), None, Err(e)) => {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }
}

async fn run_shard(
    client: Client,
    stream: String,
    shard_id: u64,
    opts: ProducerOptions,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut buf = Pending {
        records: VecDeque::new(),
        bytes: 0,
        base: 0,
        waiters: VecDeque::new(),
    };
    let mut deadline: Option<Instant> = None;
    let mut failure: Option<StreamError> = None;
    let shard = ShardWorker {
        client: &client,
        stream: &stream,
        shard_id,
        opts: &opts,
    };
    loop {
        let cmd = match deadline {
            Some(d) => tokio::select! {
                c = rx.recv() => c,
                () = tokio::time::sleep_until(d) => {
                    deadline = None;
                    shard.flush_all(&mut buf, &mut failure).await;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        match cmd {
            None => {
                shard.flush_all(&mut buf, &mut failure).await;
                return;
            }
            Some(Cmd::Records {
                records,
                bytes,
                ack,
                permit,
            }) => {
                if buf.records.is_empty() && !opts.batch_age.is_zero() {
                    deadline = Some(Instant::now() + opts.batch_age);
                }
                buf.push(records, bytes, ack, permit);
                if buf.full(&opts) {
                    while buf.full(&opts) {
                        shard.flush_one(&mut buf, &mut failure).await;
                    }
                    // What is left waits for more records or its age.
                    deadline = (!buf.records.is_empty() && !opts.batch_age.is_zero())
                        .then(|| Instant::now() + opts.batch_age);
                }
            }
            Some(Cmd::Flush(done)) => {
                deadline = None;
                shard.flush_all(&mut buf, &mut failure).await;
                let _ = done.send(failure.take());
            }
        }
    }
}

/// One shard worker's fixed parts.
struct ShardWorker<'a> {
    client: &'a Client,
    stream: &'a str,
    shard_id: u64,
    opts: &'a ProducerOptions,
}

impl ShardWorker<'_> {
    async fn flush_all(&self, buf: &mut Pending, failure: &mut Option<StreamError>) {
        while !buf.records.is_empty() {
            self.flush_one(buf, failure).await;
        }
    }

    /// Appends the next batch and answers its waiters.
    async fn flush_one(&self, buf: &mut Pending, failure: &mut Option<StreamError>) {
        let first = buf.base;
        let records = buf.take_batch(self.opts);
        if records.is_empty() {
            return;
        }
        let result = match encode_batch(records, self.opts.compression) {
            Ok(batch) => {
                self.client
                    .append_encoded(self.stream, self.shard_id, batch)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(stream = self.stream, shard_id = self.shard_id, error = %e, "buffered append failed");
            failure.get_or_insert_with(|| e.clone());
        }
        buf.settle(first, buf.base, &result);
    }
}
