//! The source driver: appends what a source produces and commits its positions
//! in order, only once every record before a position is acknowledged.
//!
//! A source calls [`SourceContext::send`] with records and, optionally, the
//! position reached after them. Appends go through one buffered producer per
//! stream. A single finalizer awaits the append results in send order; a
//! position becomes *committed* when all its records and everything sent
//! before it were acknowledged, and committed positions are stored in the KV
//! (every second while changed, and once more at shutdown). A failed append
//! stops the task without committing anything after it: nothing acknowledged
//! to the database is ever lost, at worst re-sent after a restart.
//!
//! A source that must acknowledge progress to its database (a replication
//! slot's confirmed LSN, a consumer offset) reads the committed positions
//! back through [`SourceContext::committed_positions`], so it never
//! acknowledges anything HStream has not acknowledged first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::connector::Source;
use crate::error::{Error, ErrorKind, Result};
use crate::kv::KvStore;
use crate::report::Metrics;
use crate::shutdown::{Shutdown, StopReason};
use crate::stream::{
    BatchHandle, BufferedProducer, Client, ProducerOptions, Record, StreamOptions,
};
use crate::task::TaskEnv;

/// KV key under which a source's committed position is stored (JSON text).
pub const POSITION_KEY: &str = "source_position";
/// How often a changed position is stored.
pub const POSITION_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Sends awaiting acknowledgement before `send` waits (back-pressure).
const MAX_PENDING_SENDS: usize = 256;

struct PendingSend {
    /// Acknowledges the send's records; `None` for a send without records.
    handle: Option<BatchHandle>,
    count: u64,
    bytes: u64,
    position: Option<Value>,
    /// The origin time (unix ms) of the newest change in the send, for lag.
    event_unix_ms: Option<i64>,
}

/// What a running source gets from the runtime; cheap to clone.
#[derive(Clone)]
pub struct SourceContext {
    inner: Arc<Inner>,
}

struct Inner {
    shutdown: Shutdown,
    kv: Arc<dyn KvStore>,
    task_id: Option<String>,
    start_position: Option<Value>,
    client: Client,
    producers: tokio::sync::Mutex<HashMap<String, BufferedProducer>>,
    producer_options: ProducerOptions,
    pending: mpsc::Sender<PendingSend>,
    failure: Arc<Mutex<Option<String>>>,
    committed_rx: watch::Receiver<Option<Value>>,
    metrics: Arc<Metrics>,
}

impl SourceContext {
    /// Fires when the task must stop; check it between batches.
    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    /// The task's KV store, for connector state other than the position
    /// (e.g. snapshot progress). Keys are private to the task.
    pub fn kv(&self) -> &dyn KvStore {
        self.inner.kv.as_ref()
    }

    /// The task id HServer assigned, if any (e.g. to derive a slot name).
    pub fn task_id(&self) -> Option<&str> {
        self.inner.task_id.as_deref()
    }

    /// The last committed position, from which the source resumes; `None` on the first run.
    pub fn start_position(&self) -> Option<&Value> {
        self.inner.start_position.as_ref()
    }

    /// The committed positions as they happen: the receiver holds the newest
    /// position whose records, and everything sent before them, HStream has
    /// acknowledged (starting with [`SourceContext::start_position`]). A
    /// position committed here may not be stored in the KV yet; it is stored
    /// within [`POSITION_FLUSH_INTERVAL`] and at shutdown, and a restart
    /// before that resumes from an older position (records are re-sent, never
    /// lost). Use it to acknowledge progress to the source database.
    pub fn committed_positions(&self) -> watch::Receiver<Option<Value>> {
        self.inner.committed_rx.clone()
    }

    /// Waits until `position` (sent with [`SourceContext::send`]) is committed, then stores it
    /// in the KV at once instead of within [`POSITION_FLUSH_INTERVAL`]. For milestones a restart
    /// must not repeat, such as the end of an initial snapshot: a restart before the periodic
    /// store would take the snapshot again, and a snapshot cannot emit the deletes made since
    /// (their rows would stay in the targets). Call it right after the send that carries
    /// `position`, before sending more. Returns early, storing nothing, on shutdown.
    pub async fn checkpoint(&self, position: &Value) -> Result<()> {
        let mut committed = self.committed_positions();
        let reached = tokio::select! {
            r = committed.wait_for(|p| p.as_ref() == Some(position)) => r.is_ok(),
            _ = self.inner.shutdown.wait() => false,
        };
        if !reached {
            return Ok(());
        }
        put_position(self.inner.kv.as_ref(), &self.inner.metrics, position).await
    }

    /// The task's counters: use [`Metrics::snapshot_progress`] to publish
    /// initial-snapshot progress (rows done, estimate) in Reports and metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The stream client, for anything beyond `send` (creating streams with options).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Creates `stream` with `options` unless it exists.
    pub async fn ensure_stream(&self, stream: &str, options: StreamOptions) -> Result<()> {
        self.inner
            .client
            .ensure_stream(stream, options)
            .await
            .map_err(|e| stream_error(format!("cannot create stream `{stream}`"), e))
    }

    /// Appends `records` to `stream` (created with defaults if missing). When
    /// `position` is given, it is committed once these records and everything
    /// sent before them are acknowledged. Waits only for buffer space.
    pub async fn send(
        &self,
        stream: &str,
        records: Vec<Record>,
        position: Option<Value>,
    ) -> Result<()> {
        self.send_at(stream, records, position, None).await
    }

    /// [`SourceContext::send`], plus the origin time (unix ms; e.g. the
    /// binlog event's or the WAL commit's timestamp) of the newest change in
    /// `records`: when they are acknowledged the task's lag (Reports' `lagMs`,
    /// the worker's metrics) becomes now − that time.
    pub async fn send_at(
        &self,
        stream: &str,
        records: Vec<Record>,
        position: Option<Value>,
        event_unix_ms: Option<i64>,
    ) -> Result<()> {
        if let Some(failure) = self.inner.failure.lock().expect("lock poisoned").clone() {
            return Err(Error::new(ErrorKind::Stream, failure));
        }
        let mut producers = self.inner.producers.lock().await;
        if !producers.contains_key(stream) {
            self.ensure_stream(stream, StreamOptions::default()).await?;
            let producer = self
                .inner
                .client
                .producer(stream, self.inner.producer_options.clone())
                .await
                .map_err(|e| {
                    stream_error(format!("cannot open a producer for stream `{stream}`"), e)
                })?;
            producers.insert(stream.to_string(), producer);
        }
        let producer = producers.get(stream).expect("inserted above");
        let count = records.len() as u64;
        let bytes: u64 = records.iter().map(|r| r.encoded_len() as u64).sum();
        // One flow-control wait and one acknowledgement for the whole send.
        let handle = if records.is_empty() {
            None
        } else {
            Some(
                producer
                    .append_batch(records)
                    .await
                    .map_err(|e| stream_error(format!("cannot append to stream `{stream}`"), e))?,
            )
        };
        drop(producers);
        self.inner
            .pending
            .send(PendingSend {
                handle,
                count,
                bytes,
                position,
                event_unix_ms,
            })
            .await
            .map_err(|_| Error::new(ErrorKind::Stream, "the append finalizer has stopped"))
    }

    async fn close_producers(&self) -> Result<()> {
        let producers: Vec<(String, BufferedProducer)> =
            self.inner.producers.lock().await.drain().collect();
        let mut first_error = None;
        for (stream, producer) in producers {
            if let Err(e) = producer.close().await {
                first_error
                    .get_or_insert(stream_error(format!("cannot flush stream `{stream}`"), e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn stream_error(message: String, source: crate::stream::StreamError) -> Error {
    Error::new(ErrorKind::Stream, message).with_source(source)
}

/// The committed position and whether it still has to be stored.
#[derive(Default)]
struct Committed {
    position: Option<Value>,
    dirty: bool,
}

/// Batching for sources: bigger and quicker than the reference client's
/// defaults (100 records / 4 KiB / 100 ms), which cap a CDC source at a few
/// thousand rows per second; a batch is also what a sink later applies in one
/// transaction.
///
/// In flight at most 1 MiB of payload (the client's default is 100 MiB): with
/// one append in flight per shard, ~6 batches of 1000 records of the standard
/// workload keep the stream service busy, and a source reading a backlog
/// faster than HStream acknowledges waits here instead of holding hundreds of
/// thousands of decoded records. Since a send is acknowledged as one batch,
/// 2 MiB was as fast as 4 MiB and saved 6 – 10 MB of the task's peak RSS; 1 MiB
/// saves ~3 MB more of source-mysql's backlog process (docs/benchmarks.md,
/// "Task memory" and source-mysql).
fn source_producer_options() -> ProducerOptions {
    ProducerOptions {
        batch_records: 1000,
        batch_bytes: 512 * 1024,
        batch_age: Duration::from_millis(20),
        flow_control_bytes: SOURCE_IN_FLIGHT_BYTES,
        ..ProducerOptions::default()
    }
}

/// Payload bytes a source may have buffered or in flight to HStream.
const SOURCE_IN_FLIGHT_BYTES: usize = 1024 * 1024;

/// Runs source `C` under the runtime (called by `run`).
pub async fn drive<C: Source>(config: C::Config, env: TaskEnv) -> Result<()> {
    // TLS of any library must find one provider (also when embedded in a test or another program).
    crate::install_crypto_provider();
    let TaskEnv {
        file,
        shutdown,
        trigger,
        kv,
        metrics,
    } = env;
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
    let start_position = match kv.get(POSITION_KEY).await? {
        Some(text) => Some(serde_json::from_str::<Value>(&text).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("stored `{POSITION_KEY}` is not JSON"),
            )
            .with_source(e)
        })?),
        None => None,
    };
    if let Some(position) = &start_position {
        metrics.set_offsets(vec![position.clone()]);
        tracing::info!(%position, "resuming from the committed position");
    }
    let committed = Arc::new(Mutex::new(Committed {
        position: start_position.clone(),
        dirty: false,
    }));
    let failure = Arc::new(Mutex::new(None));
    let (tx, rx) = mpsc::channel(MAX_PENDING_SENDS);
    let (committed_tx, committed_rx) = watch::channel(start_position.clone());
    let finalizer = tokio::spawn(finalize(
        rx,
        committed.clone(),
        committed_tx,
        metrics.clone(),
        failure.clone(),
        trigger.clone(),
    ));
    let (stop_flusher, flusher_stopped) = tokio::sync::oneshot::channel::<()>();
    let flusher = tokio::spawn(flush_positions(
        kv.clone(),
        committed.clone(),
        metrics.clone(),
        flusher_stopped,
    ));
    let ctx = SourceContext {
        inner: Arc::new(Inner {
            shutdown: shutdown.clone(),
            kv: kv.clone(),
            task_id: file.task_id.clone(),
            start_position,
            client,
            producers: tokio::sync::Mutex::new(HashMap::new()),
            producer_options: source_producer_options(),
            pending: tx,
            failure: failure.clone(),
            committed_rx,
            metrics: metrics.clone(),
        }),
    };
    let run_result = C::run(config, ctx.clone()).await;
    // Drain: flush every producer, let the finalizer see every result, store the position.
    let flush_result = ctx.close_producers().await;
    drop(ctx);
    let _ = finalizer.await;
    // Let a store in progress finish rather than cancel it halfway.
    let _ = stop_flusher.send(());
    let _ = flusher.await;
    let store_result = store_position(kv.as_ref(), &committed, &metrics).await;
    if let Some(failure) = failure.lock().expect("lock poisoned").clone() {
        return Err(Error::new(ErrorKind::Stream, failure).with_hint(
            "Records after the last committed position will be captured again on restart.",
        ));
    }
    run_result?;
    flush_result?;
    store_result
}

async fn finalize(
    mut rx: mpsc::Receiver<PendingSend>,
    committed: Arc<Mutex<Committed>>,
    committed_tx: watch::Sender<Option<Value>>,
    metrics: Arc<Metrics>,
    failure: Arc<Mutex<Option<String>>>,
    trigger: crate::shutdown::ShutdownTrigger,
) {
    while let Some(send) = rx.recv().await {
        if failure.lock().expect("lock poisoned").is_some() {
            continue; // never commit past a failure
        }
        if let Some(handle) = send.handle
            && let Err(error) = handle.wait().await
        {
            tracing::error!(%error, "append failed; no later position will be committed");
            *failure.lock().expect("lock poisoned") = Some(format!("append failed: {error}"));
            trigger.trigger(StopReason::Failed);
            continue;
        }
        metrics.delivered(send.count, send.bytes);
        if let Some(at) = send.event_unix_ms {
            metrics.observe_lag(at);
        }
        if let Some(position) = send.position {
            {
                let mut c = committed.lock().expect("lock poisoned");
                c.position = Some(position.clone());
                c.dirty = true;
            }
            committed_tx.send_replace(Some(position));
        }
    }
}

async fn flush_positions(
    kv: Arc<dyn KvStore>,
    committed: Arc<Mutex<Committed>>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(POSITION_FLUSH_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return,
        }
        if let Err(error) = store_position(kv.as_ref(), &committed, &metrics).await {
            tracing::warn!(%error, "cannot store the source position; will retry");
        }
    }
}

async fn store_position(
    kv: &dyn KvStore,
    committed: &Mutex<Committed>,
    metrics: &Metrics,
) -> Result<()> {
    let position = {
        let c = committed.lock().expect("lock poisoned");
        if !c.dirty {
            return Ok(());
        }
        c.position.clone()
    };
    let Some(position) = position else {
        return Ok(());
    };
    put_position(kv, metrics, &position).await?;
    let mut c = committed.lock().expect("lock poisoned");
    if c.position.as_ref() == Some(&position) {
        c.dirty = false;
    }
    Ok(())
}

/// Stores `position` under [`POSITION_KEY`] and shows it as the task's offset.
async fn put_position(kv: &dyn KvStore, metrics: &Metrics, position: &Value) -> Result<()> {
    kv.set(POSITION_KEY, position.to_string()).await?;
    metrics.set_offsets(vec![position.clone()]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn committed_positions_follow_the_finalizer_in_order() {
        let (tx, rx) = mpsc::channel(4);
        let committed = Arc::new(Mutex::new(Committed::default()));
        let (committed_tx, mut committed_rx) = watch::channel(None);
        let failure = Arc::new(Mutex::new(None));
        let (trigger, _shutdown) = crate::shutdown::channel();
        let metrics = Arc::new(Metrics::default());
        let finalizer = tokio::spawn(finalize(
            rx,
            committed.clone(),
            committed_tx,
            metrics.clone(),
            failure,
            trigger,
        ));
        let an_hour_ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 3_600_000;
        for (position, lsn) in [(None, 0), (Some(1), 1), (None, 1), (Some(2), 2)] {
            tx.send(PendingSend {
                handle: None,
                count: 0,
                bytes: 0,
                position: position.map(|p| serde_json::json!({ "lsn": p })),
                event_unix_ms: position.map(|_| an_hour_ago),
            })
            .await
            .unwrap();
            if position.is_some() {
                committed_rx.changed().await.unwrap();
            }
            let seen = committed_rx.borrow_and_update().clone();
            let expected = (lsn > 0).then(|| serde_json::json!({ "lsn": lsn }));
            assert_eq!(seen, expected);
        }
        drop(tx);
        finalizer.await.unwrap();
        assert_eq!(
            committed.lock().unwrap().position,
            Some(serde_json::json!({ "lsn": 2 }))
        );
        // The lag of the acknowledged changes: about an hour.
        let lag = metrics.lag_ms().expect("lag observed");
        assert!((3_600_000..3_660_000).contains(&lag), "{lag}");
    }
}
