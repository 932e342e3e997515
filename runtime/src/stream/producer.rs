//! [`BufferedProducer`]: per-shard batching by count, bytes and age, one
//! in-flight append per shard (so appends are ordered per shard), and a
//! byte-bounded flow-control window shared by all shards.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::Client;
use super::codec::encode_batch;
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

enum Cmd {
    Record {
        record: Record,
        len: usize,
        ack: Ack,
        _permit: OwnedSemaphorePermit,
    },
    /// Flush now; reply with the first error since the previous flush, if any.
    Flush(oneshot::Sender<Option<StreamError>>),
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
        let shard =
            shard_for_key(&self.shards, &record.key).ok_or_else(|| StreamError::NoShard {
                stream: self.stream.clone(),
                key: record.key.clone(),
            })?;
        let len = record.encoded_len();
        let need = u32::try_from(len.min(self.window_bytes)).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.window)
            .acquire_many_owned(need)
            .await
            .map_err(|_| self.closed())?;
        let (ack, rx) = oneshot::channel();
        self.senders
            .get(&shard.shard_id)
            .ok_or_else(|| self.closed())?
            .send(Cmd::Record {
                record,
                len,
                ack,
                _permit: permit,
            })
            .map_err(|_| self.closed())?;
        Ok(AppendHandle {
            rx,
            stream: self.stream.clone(),
        })
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

struct Pending {
    records: Vec<Record>,
    acks: Vec<Ack>,
    permits: Vec<OwnedSemaphorePermit>,
    bytes: usize,
}

async fn run_shard(
    client: Client,
    stream: String,
    shard_id: u64,
    opts: ProducerOptions,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut buf = Pending {
        records: Vec::new(),
        acks: Vec::new(),
        permits: Vec::new(),
        bytes: 0,
    };
    let mut deadline: Option<Instant> = None;
    let mut failure: Option<StreamError> = None;
    loop {
        let cmd = match deadline {
            Some(d) => tokio::select! {
                c = rx.recv() => c,
                () = tokio::time::sleep_until(d) => {
                    deadline = None;
                    flush(&client, &stream, shard_id, opts.compression, &mut buf, &mut failure).await;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        match cmd {
            None => {
                flush(
                    &client,
                    &stream,
                    shard_id,
                    opts.compression,
                    &mut buf,
                    &mut failure,
                )
                .await;
                return;
            }
            Some(Cmd::Record {
                record,
                len,
                ack,
                _permit,
            }) => {
                if buf.records.is_empty() && !opts.batch_age.is_zero() {
                    deadline = Some(Instant::now() + opts.batch_age);
                }
                buf.records.push(record);
                buf.acks.push(ack);
                buf.permits.push(_permit);
                buf.bytes += len;
                let full = (opts.batch_records > 0 && buf.records.len() >= opts.batch_records)
                    || (opts.batch_bytes > 0 && buf.bytes >= opts.batch_bytes);
                if full {
                    deadline = None;
                    flush(
                        &client,
                        &stream,
                        shard_id,
                        opts.compression,
                        &mut buf,
                        &mut failure,
                    )
                    .await;
                }
            }
            Some(Cmd::Flush(done)) => {
                deadline = None;
                flush(
                    &client,
                    &stream,
                    shard_id,
                    opts.compression,
                    &mut buf,
                    &mut failure,
                )
                .await;
                let _ = done.send(failure.take());
            }
        }
    }
}

async fn flush(
    client: &Client,
    stream: &str,
    shard_id: u64,
    compression: Compression,
    buf: &mut Pending,
    failure: &mut Option<StreamError>,
) {
    if buf.records.is_empty() {
        return;
    }
    let records = std::mem::take(&mut buf.records);
    let acks = std::mem::take(&mut buf.acks);
    let permits = std::mem::take(&mut buf.permits);
    buf.bytes = 0;
    let result = match encode_batch(records, compression) {
        Ok(batch) => client.append_encoded(stream, shard_id, batch).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(ids) => {
            for (ack, id) in acks.into_iter().zip(ids) {
                let _ = ack.send(Ok(id));
            }
        }
        Err(e) => {
            tracing::warn!(stream, shard_id, error = %e, "buffered append failed");
            for ack in acks {
                let _ = ack.send(Err(e.clone()));
            }
            failure.get_or_insert(e);
        }
    }
    drop(permits);
}
