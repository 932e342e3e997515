//! The `HStreamApi` implementation over the local store.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hstream_io_runtime::stream::split_key_space;
use hstream_io_runtime::stream::wire;
use hstream_io_runtime::stream::wire::h_stream_api_server::HStreamApi;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::FsyncPolicy;
use crate::errors::{self, internal, invalid_argument};
use crate::log::{ShardLog, StoredBatch};
use crate::meta::{Meta, ReaderMeta, ShardMeta, StreamMeta, SubscriptionMeta};
use crate::subscription::{self, SubState};
use crate::validate::identifier;

/// Most shards per stream.
pub(crate) const MAX_SHARDS: u32 = 4096;
/// Largest accepted batch payload.
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Most batches one ReadShard returns.
const MAX_READ_BATCHES: usize = 10_000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Converts a stored batch into the wire's `ReceivedRecord` for `shard_id`.
pub(crate) fn received(shard_id: u64, b: StoredBatch) -> wire::ReceivedRecord {
    wire::ReceivedRecord {
        record_ids: (0..b.batch_size)
            .map(|i| wire::RecordId {
                shard_id,
                batch_id: b.lsn,
                batch_index: i,
            })
            .collect(),
        record: Some(wire::BatchedRecord {
            compression_type: b.compression,
            publish_time: Some(timestamp(b.timestamp_ms)),
            batch_size: b.batch_size,
            payload: b.payload.into(),
        }),
    }
}

struct ReaderState {
    next_lsn: u64,
    timeout_ms: u32,
    log: Arc<ShardLog>,
}

/// A shard reader: its shard, and its position behind an async lock
/// (one ReadShard at a time per reader).
struct Reader {
    shard_id: u64,
    state: tokio::sync::Mutex<ReaderState>,
}

/// Shared server state.
pub(crate) struct Inner {
    dir: PathBuf,
    fsync: FsyncPolicy,
    node: wire::ServerNode,
    started: Instant,
    meta: Mutex<Meta>,
    /// shard id → (stream, log)
    shards: RwLock<HashMap<u64, (String, Arc<ShardLog>)>>,
    readers: Mutex<HashMap<String, Arc<Reader>>>,
    pub(crate) subs: Mutex<HashMap<String, Arc<SubState>>>,
}

/// The gRPC service.
#[derive(Clone)]
pub(crate) struct Service {
    pub(crate) inner: Arc<Inner>,
    /// Where the connector RPCs go (see `connectors.rs`).
    pub(crate) connectors: Option<crate::connectors::Connectors>,
}

fn shard_dir(dir: &Path, id: u64) -> PathBuf {
    dir.join("shards").join(id.to_string())
}

impl Service {
    /// Opens the store in `dir` (recovering every shard log).
    pub(crate) fn open(
        dir: &Path,
        fsync: FsyncPolicy,
        node: wire::ServerNode,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("shards"))?;
        let base = 1_000_000_000_000_000 + (now_ms().unsigned_abs() % 1_000_000_000) * 1000;
        let meta = Meta::load(dir, base)?;
        let mut shards = HashMap::new();
        for (name, s) in &meta.streams {
            for sh in &s.shards {
                let log = ShardLog::open(&shard_dir(dir, sh.id), fsync)?;
                shards.insert(sh.id, (name.clone(), Arc::new(log)));
            }
        }
        let mut readers = HashMap::new();
        for (id, r) in &meta.readers {
            if let Some((_, log)) = shards.get(&r.shard_id) {
                readers.insert(
                    id.clone(),
                    Arc::new(Reader {
                        shard_id: r.shard_id,
                        state: tokio::sync::Mutex::new(ReaderState {
                            next_lsn: r.start_lsn,
                            timeout_ms: r.timeout_ms,
                            log: Arc::clone(log),
                        }),
                    }),
                );
            }
        }
        let mut subs = HashMap::new();
        for (id, s) in &meta.subscriptions {
            subs.insert(id.clone(), Arc::new(SubState::new(id.clone(), s.clone())));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                fsync,
                node,
                started: Instant::now(),
                meta: Mutex::new(meta),
                shards: RwLock::new(shards),
                readers: Mutex::new(readers),
                subs: Mutex::new(subs),
            }),
            connectors: None,
        })
    }

    pub(crate) fn shard_log(&self, id: u64) -> Option<(String, Arc<ShardLog>)> {
        self.inner
            .shards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// The log of `shard` if it belongs to `stream`, else the right NOT_FOUND.
    fn stream_shard(&self, stream: &str, shard: u64) -> Result<Arc<ShardLog>, Status> {
        match self.shard_log(shard) {
            Some((s, log)) if s == stream => Ok(log),
            _ if lock(&self.inner.meta).streams.contains_key(stream) => {
                Err(errors::shard_not_found(Some(stream), shard))
            }
            _ => Err(errors::stream_not_found(stream)),
        }
    }

    /// Shards of a stream with their logs.
    pub(crate) fn stream_logs(&self, stream: &str) -> Result<Vec<(u64, Arc<ShardLog>)>, Status> {
        let ids: Vec<u64> = lock(&self.inner.meta)
            .streams
            .get(stream)
            .ok_or_else(|| errors::stream_not_found(stream))?
            .shards
            .iter()
            .map(|s| s.id)
            .collect();
        Ok(ids
            .into_iter()
            .filter_map(|id| self.shard_log(id).map(|(_, l)| (id, l)))
            .collect())
    }

    fn save(&self, meta: &Meta) -> Result<(), Status> {
        meta.save(&self.inner.dir)
            .map_err(|e| internal("cannot save metadata", &e))
    }

    fn stream_msg(name: &str, s: &StreamMeta) -> wire::Stream {
        wire::Stream {
            stream_name: name.to_string(),
            replication_factor: s.replication_factor,
            backlog_duration: s.backlog_secs,
            shard_count: u32::try_from(s.shards.len()).unwrap_or(u32::MAX),
            creation_time: Some(timestamp(s.creation_ms)),
        }
    }

    /// Saves every subscription's acknowledged position into the metadata.
    pub(crate) async fn checkpoint_subscriptions(&self) {
        let subs: Vec<(String, Arc<SubState>)> = lock(&self.inner.subs)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut points = Vec::new();
        for (id, s) in subs {
            points.push((id, s.checkpoint().await));
        }
        let mut meta = lock(&self.inner.meta);
        let mut changed = false;
        for (id, p) in points {
            if let Some(m) = meta.subscriptions.get_mut(&id)
                && m.start_lsns != p
            {
                m.start_lsns = p;
                changed = true;
            }
        }
        if changed && let Err(e) = self.save(&meta) {
            tracing::warn!(error = %e.message(), "cannot checkpoint subscriptions");
        }
    }

    /// Applies every stream's retention (`backlogDuration`).
    pub(crate) fn apply_retention(&self) {
        let plan: Vec<(u32, Vec<u64>)> = lock(&self.inner.meta)
            .streams
            .values()
            .filter(|s| s.backlog_secs > 0)
            .map(|s| (s.backlog_secs, s.shards.iter().map(|x| x.id).collect()))
            .collect();
        let now = now_ms();
        for (secs, ids) in plan {
            for id in ids {
                if let Some((_, log)) = self.shard_log(id)
                    && let Err(e) = log.trim_older_than(now - i64::from(secs) * 1000)
                {
                    tracing::warn!(shard = id, error = %e, "retention trim failed");
                }
            }
        }
    }

    fn node(&self) -> wire::ServerNode {
        self.inner.node.clone()
    }
}

#[tonic::async_trait]
impl HStreamApi for Service {
    async fn echo(
        &self,
        req: Request<wire::EchoRequest>,
    ) -> Result<Response<wire::EchoResponse>, Status> {
        Ok(Response::new(wire::EchoResponse {
            msg: req.into_inner().msg,
        }))
    }

    async fn create_stream(
        &self,
        req: Request<wire::Stream>,
    ) -> Result<Response<wire::Stream>, Status> {
        let req = req.into_inner();
        identifier("stream name", &req.stream_name)?;
        if req.shard_count == 0 || req.shard_count > MAX_SHARDS {
            return Err(errors::invalid_shard_count(req.shard_count));
        }
        if req.replication_factor == 0 {
            return Err(errors::invalid_replica_factor(req.replication_factor));
        }
        let mut meta = lock(&self.inner.meta);
        if meta.streams.contains_key(&req.stream_name) {
            return Err(errors::stream_exists(&req.stream_name));
        }
        let mut shards = Vec::new();
        let mut logs = Vec::new();
        for (start, end) in split_key_space(req.shard_count) {
            let id = meta.next_shard_id;
            meta.next_shard_id += 1;
            let log = ShardLog::open(&shard_dir(&self.inner.dir, id), self.inner.fsync)
                .map_err(|e| internal("cannot create shard log", &e))?;
            logs.push((id, Arc::new(log)));
            shards.push(ShardMeta {
                id,
                start: start.to_string(),
                end: end.to_string(),
            });
        }
        let sm = StreamMeta {
            replication_factor: req.replication_factor,
            backlog_secs: req.backlog_duration,
            creation_ms: now_ms(),
            shards,
        };
        let resp = Self::stream_msg(&req.stream_name, &sm);
        meta.streams.insert(req.stream_name.clone(), sm);
        self.save(&meta)?;
        let mut map = self
            .inner
            .shards
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (id, log) in logs {
            map.insert(id, (req.stream_name.clone(), log));
        }
        Ok(Response::new(resp))
    }

    async fn delete_stream(
        &self,
        req: Request<wire::DeleteStreamRequest>,
    ) -> Result<Response<()>, Status> {
        let req = req.into_inner();
        let removed = {
            let mut meta = lock(&self.inner.meta);
            if !meta.streams.contains_key(&req.stream_name) {
                return if req.ignore_non_exist {
                    Ok(Response::new(()))
                } else {
                    Err(errors::stream_not_found(&req.stream_name))
                };
            }
            let subs: Vec<String> = meta
                .subscriptions
                .iter()
                .filter(|(_, s)| s.stream == req.stream_name)
                .map(|(k, _)| k.clone())
                .collect();
            if !subs.is_empty() && !req.force {
                return Err(errors::stream_has_subscriptions(&req.stream_name, &subs));
            }
            for s in &subs {
                meta.subscriptions.remove(s);
                lock(&self.inner.subs).remove(s);
            }
            let sm = meta.streams.remove(&req.stream_name);
            let ids: Vec<u64> = sm
                .map(|s| s.shards.iter().map(|x| x.id).collect())
                .unwrap_or_default();
            meta.readers.retain(|_, r| r.stream != req.stream_name);
            self.save(&meta)?;
            ids
        };
        {
            let mut map = self
                .inner
                .shards
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for id in &removed {
                map.remove(id);
            }
        }
        lock(&self.inner.readers).retain(|_, r| !removed.contains(&r.shard_id));
        for id in removed {
            let d = shard_dir(&self.inner.dir, id);
            if let Err(e) = std::fs::remove_dir_all(&d) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot delete shard directory");
            }
        }
        Ok(Response::new(()))
    }

    async fn get_stream(
        &self,
        req: Request<wire::GetStreamRequest>,
    ) -> Result<Response<wire::GetStreamResponse>, Status> {
        let name = req.into_inner().name;
        let meta = lock(&self.inner.meta);
        let s = meta
            .streams
            .get(&name)
            .ok_or_else(|| errors::stream_not_found(&name))?;
        Ok(Response::new(wire::GetStreamResponse {
            stream: Some(Self::stream_msg(&name, s)),
        }))
    }

    async fn list_streams(
        &self,
        _req: Request<wire::ListStreamsRequest>,
    ) -> Result<Response<wire::ListStreamsResponse>, Status> {
        let meta = lock(&self.inner.meta);
        Ok(Response::new(wire::ListStreamsResponse {
            streams: meta
                .streams
                .iter()
                .map(|(n, s)| Self::stream_msg(n, s))
                .collect(),
        }))
    }

    async fn lookup_shard(
        &self,
        req: Request<wire::LookupShardRequest>,
    ) -> Result<Response<wire::LookupShardResponse>, Status> {
        let id = req.into_inner().shard_id;
        if self.shard_log(id).is_none() {
            return Err(errors::shard_not_found(None, id));
        }
        Ok(Response::new(wire::LookupShardResponse {
            shard_id: id,
            server_node: Some(self.node()),
        }))
    }

    async fn append(
        &self,
        req: Request<wire::AppendRequest>,
    ) -> Result<Response<wire::AppendResponse>, Status> {
        let req = req.into_inner();
        let log = self.stream_shard(&req.stream_name, req.shard_id)?;
        let batch = req.records.ok_or_else(|| {
            errors::empty_batch(&req.stream_name, req.shard_id, "no records field")
        })?;
        if batch.batch_size == 0 {
            return Err(errors::empty_batch(
                &req.stream_name,
                req.shard_id,
                "batchSize is 0",
            ));
        }
        if batch.payload.is_empty() {
            return Err(errors::empty_batch(
                &req.stream_name,
                req.shard_id,
                "payload is empty",
            ));
        }
        if batch.payload.len() > MAX_BATCH_BYTES {
            return Err(errors::invalid_record_size(
                &req.stream_name,
                req.shard_id,
                batch.payload.len(),
                MAX_BATCH_BYTES,
            ));
        }
        if wire::CompressionType::try_from(batch.compression_type).is_err() {
            return Err(invalid_argument(format!(
                "append to stream {:?} shard {}: unknown compressionType {} (use 0 None, 1 Gzip, 2 Zstd)",
                req.stream_name, req.shard_id, batch.compression_type
            )));
        }
        let size = batch.batch_size;
        let (lsn, _) = log
            .append(batch.payload, size, batch.compression_type)
            .await
            .map_err(|e| internal("cannot store the batch", &e))?;
        Ok(Response::new(wire::AppendResponse {
            record_ids: (0..size)
                .map(|i| wire::RecordId {
                    shard_id: req.shard_id,
                    batch_id: lsn,
                    batch_index: i,
                })
                .collect(),
            stream_name: req.stream_name,
            shard_id: req.shard_id,
        }))
    }

    async fn get_tail_record_id(
        &self,
        req: Request<wire::GetTailRecordIdRequest>,
    ) -> Result<Response<wire::GetTailRecordIdResponse>, Status> {
        let req = req.into_inner();
        let log = self.stream_shard(&req.stream_name, req.shard_id)?;
        let (batch_id, batch_index) = log.tail().map_or((0, 0), |(l, n)| (l, n.saturating_sub(1)));
        Ok(Response::new(wire::GetTailRecordIdResponse {
            tail_record_id: Some(wire::RecordId {
                shard_id: req.shard_id,
                batch_id,
                batch_index,
            }),
        }))
    }

    async fn trim_shards(
        &self,
        req: Request<wire::TrimShardsRequest>,
    ) -> Result<Response<wire::TrimShardsResponse>, Status> {
        let req = req.into_inner();
        let mut targets: BTreeMap<u64, hstream_io_runtime::stream::RecordId> = BTreeMap::new();
        for s in &req.record_ids {
            let id: hstream_io_runtime::stream::RecordId = s
                .parse()
                .map_err(|e| invalid_argument(format!("TrimShards: {e}")))?;
            let e = targets.entry(id.shard_id).or_insert(id);
            if id > *e {
                *e = id;
            }
        }
        let mut points = HashMap::new();
        for (shard, id) in targets {
            let log = self.stream_shard(&req.stream_name, shard)?;
            log.trim_before(id.batch_id)
                .map_err(|e| internal("cannot trim the shard", &e))?;
            points.insert(shard, id.to_string());
        }
        Ok(Response::new(wire::TrimShardsResponse {
            trim_points: points,
        }))
    }

    async fn list_shards(
        &self,
        req: Request<wire::ListShardsRequest>,
    ) -> Result<Response<wire::ListShardsResponse>, Status> {
        let name = req.into_inner().stream_name;
        let meta = lock(&self.inner.meta);
        let s = meta
            .streams
            .get(&name)
            .ok_or_else(|| errors::stream_not_found(&name))?;
        Ok(Response::new(wire::ListShardsResponse {
            shards: s
                .shards
                .iter()
                .map(|x| wire::Shard {
                    stream_name: name.clone(),
                    shard_id: x.id,
                    start_hash_range_key: x.start.clone(),
                    end_hash_range_key: x.end.clone(),
                    epoch: 0,
                    is_active: true,
                })
                .collect(),
        }))
    }

    async fn create_shard_reader(
        &self,
        req: Request<wire::CreateShardReaderRequest>,
    ) -> Result<Response<wire::CreateShardReaderResponse>, Status> {
        use wire::shard_offset::Offset;
        let req = req.into_inner();
        identifier("shard reader id", &req.reader_id)?;
        let log = self.stream_shard(&req.stream_name, req.shard_id)?;
        let start = match req.shard_offset.as_ref().and_then(|o| o.offset.as_ref()) {
            None => log.first_lsn(),
            Some(Offset::SpecialOffset(x)) => match wire::SpecialOffset::try_from(*x) {
                Ok(wire::SpecialOffset::Earliest) => log.first_lsn(),
                Ok(wire::SpecialOffset::Latest) => log.next_lsn(),
                Err(_) => {
                    return Err(invalid_argument(format!(
                        "unknown specialOffset {x} (0 EARLIEST, 1 LATEST)"
                    )));
                }
            },
            Some(Offset::RecordOffset(r)) => {
                if r.shard_id != req.shard_id {
                    return Err(errors::conflict_reader_offset(req.shard_id, r.shard_id));
                }
                r.batch_id
            }
            Some(Offset::TimestampOffset(t)) => log.lsn_at_time(t.timestamp_in_ms),
        };
        {
            let mut meta = lock(&self.inner.meta);
            if meta.readers.contains_key(&req.reader_id) {
                return Err(errors::reader_exists(&req.reader_id));
            }
            meta.readers.insert(
                req.reader_id.clone(),
                ReaderMeta {
                    stream: req.stream_name.clone(),
                    shard_id: req.shard_id,
                    start_lsn: start,
                    timeout_ms: req.timeout,
                },
            );
            self.save(&meta)?;
            lock(&self.inner.readers).insert(
                req.reader_id.clone(),
                Arc::new(Reader {
                    shard_id: req.shard_id,
                    state: tokio::sync::Mutex::new(ReaderState {
                        next_lsn: start,
                        timeout_ms: req.timeout,
                        log,
                    }),
                }),
            );
        }
        Ok(Response::new(wire::CreateShardReaderResponse {
            stream_name: req.stream_name,
            shard_id: req.shard_id,
            shard_offset: req.shard_offset,
            reader_id: req.reader_id,
            timeout: req.timeout,
        }))
    }

    async fn lookup_shard_reader(
        &self,
        req: Request<wire::LookupShardReaderRequest>,
    ) -> Result<Response<wire::LookupShardReaderResponse>, Status> {
        let id = req.into_inner().reader_id;
        if !lock(&self.inner.readers).contains_key(&id) {
            return Err(errors::reader_not_found(&id));
        }
        Ok(Response::new(wire::LookupShardReaderResponse {
            reader_id: id,
            server_node: Some(self.node()),
        }))
    }

    async fn read_shard(
        &self,
        req: Request<wire::ReadShardRequest>,
    ) -> Result<Response<wire::ReadShardResponse>, Status> {
        let req = req.into_inner();
        let st = lock(&self.inner.readers)
            .get(&req.reader_id)
            .cloned()
            .ok_or_else(|| errors::reader_not_found(&req.reader_id))?;
        let shard = st.shard_id;
        let mut r = st.state.lock().await;
        let max = (req.max_records.max(1) as usize).min(MAX_READ_BATCHES);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(r.timeout_ms));
        let mut tail = r.log.watch_tail();
        loop {
            let first = r.log.first_lsn();
            if r.next_lsn < first {
                r.next_lsn = first;
            }
            let (batches, next) = r
                .log
                .read(r.next_lsn, max)
                .map_err(|e| internal("cannot read the shard log", &e))?;
            if !batches.is_empty() {
                r.next_lsn = next;
                return Ok(Response::new(wire::ReadShardResponse {
                    received_records: batches.into_iter().map(|b| received(shard, b)).collect(),
                }));
            }
            match tokio::time::timeout_at(deadline, tail.changed()).await {
                Ok(Ok(())) => {}
                _ => return Ok(Response::new(wire::ReadShardResponse::default())),
            }
        }
    }

    async fn list_shard_readers(
        &self,
        _req: Request<wire::ListShardReadersRequest>,
    ) -> Result<Response<wire::ListShardReadersResponse>, Status> {
        Ok(Response::new(wire::ListShardReadersResponse {
            reader_id: lock(&self.inner.meta).readers.keys().cloned().collect(),
        }))
    }

    async fn delete_shard_reader(
        &self,
        req: Request<wire::DeleteShardReaderRequest>,
    ) -> Result<Response<()>, Status> {
        let id = req.into_inner().reader_id;
        let mut meta = lock(&self.inner.meta);
        if meta.readers.remove(&id).is_none() {
            return Err(errors::reader_not_found(&id));
        }
        self.save(&meta)?;
        lock(&self.inner.readers).remove(&id);
        Ok(Response::new(()))
    }

    async fn create_subscription(
        &self,
        req: Request<wire::Subscription>,
    ) -> Result<Response<wire::Subscription>, Status> {
        let mut req = req.into_inner();
        identifier("subscription id", &req.subscription_id)?;
        let logs = self.stream_logs(&req.stream_name)?;
        let latest = match wire::SpecialOffset::try_from(req.offset) {
            Ok(wire::SpecialOffset::Earliest) => false,
            Ok(wire::SpecialOffset::Latest) => true,
            Err(_) => {
                return Err(invalid_argument(format!(
                    "unknown subscription offset {}",
                    req.offset
                )));
            }
        };
        if req.ack_timeout_seconds <= 0 {
            req.ack_timeout_seconds = 600;
        }
        if req.max_unacked_records <= 0 {
            req.max_unacked_records = 10_000;
        }
        let sm = SubscriptionMeta {
            stream: req.stream_name.clone(),
            ack_timeout_secs: req.ack_timeout_seconds,
            max_unacked: req.max_unacked_records,
            offset: req.offset,
            creation_ms: now_ms(),
            start_lsns: logs
                .iter()
                .map(|(id, l)| (*id, if latest { l.next_lsn() } else { l.first_lsn() }))
                .collect(),
        };
        req.creation_time = Some(timestamp(sm.creation_ms));
        let mut meta = lock(&self.inner.meta);
        if meta.subscriptions.contains_key(&req.subscription_id) {
            return Err(errors::subscription_exists(&req.subscription_id));
        }
        meta.subscriptions
            .insert(req.subscription_id.clone(), sm.clone());
        self.save(&meta)?;
        lock(&self.inner.subs).insert(
            req.subscription_id.clone(),
            Arc::new(SubState::new(req.subscription_id.clone(), sm)),
        );
        Ok(Response::new(req))
    }

    async fn list_subscriptions(
        &self,
        _req: Request<wire::ListSubscriptionsRequest>,
    ) -> Result<Response<wire::ListSubscriptionsResponse>, Status> {
        let meta = lock(&self.inner.meta);
        Ok(Response::new(wire::ListSubscriptionsResponse {
            subscription: meta
                .subscriptions
                .iter()
                .map(|(id, s)| wire::Subscription {
                    subscription_id: id.clone(),
                    stream_name: s.stream.clone(),
                    ack_timeout_seconds: s.ack_timeout_secs,
                    max_unacked_records: s.max_unacked,
                    offset: s.offset,
                    creation_time: Some(timestamp(s.creation_ms)),
                })
                .collect(),
        }))
    }

    async fn delete_subscription(
        &self,
        req: Request<wire::DeleteSubscriptionRequest>,
    ) -> Result<Response<()>, Status> {
        let id = req.into_inner().subscription_id;
        let mut meta = lock(&self.inner.meta);
        if meta.subscriptions.remove(&id).is_none() {
            return Err(errors::subscription_not_found(&id));
        }
        self.save(&meta)?;
        if let Some(s) = lock(&self.inner.subs).remove(&id) {
            s.close();
        }
        Ok(Response::new(()))
    }

    async fn lookup_subscription(
        &self,
        req: Request<wire::LookupSubscriptionRequest>,
    ) -> Result<Response<wire::LookupSubscriptionResponse>, Status> {
        let id = req.into_inner().subscription_id;
        if !lock(&self.inner.subs).contains_key(&id) {
            return Err(errors::subscription_not_found(&id));
        }
        Ok(Response::new(wire::LookupSubscriptionResponse {
            subscription_id: id,
            server_node: Some(self.node()),
        }))
    }

    async fn streaming_fetch(
        &self,
        req: Request<Streaming<wire::StreamingFetchRequest>>,
    ) -> Result<Response<BoxStream<wire::StreamingFetchResponse>>, Status> {
        subscription::streaming_fetch(self.clone(), req.into_inner()).await
    }

    async fn describe_cluster(
        &self,
        _req: Request<()>,
    ) -> Result<Response<wire::DescribeClusterResponse>, Status> {
        Ok(Response::new(wire::DescribeClusterResponse {
            protocol_version: "0.1.0".into(),
            server_version: env!("CARGO_PKG_VERSION").into(),
            server_nodes: vec![self.node()],
            server_nodes_status: vec![wire::ServerNodeStatus {
                node: Some(self.node()),
                state: wire::NodeState::Running as i32,
            }],
            cluster_up_time: self.inner.started.elapsed().as_secs(),
        }))
    }

    async fn lookup_resource(
        &self,
        req: Request<wire::LookupResourceRequest>,
    ) -> Result<Response<wire::ServerNode>, Status> {
        let req = req.into_inner();
        match wire::ResourceType::try_from(req.res_type) {
            Ok(wire::ResourceType::ResStream) => {
                if !lock(&self.inner.meta).streams.contains_key(&req.res_id) {
                    return Err(errors::stream_not_found(&req.res_id));
                }
            }
            Ok(wire::ResourceType::ResShard) => {
                let id: u64 = req.res_id.parse().map_err(|_| {
                    invalid_argument(format!(
                        "shard id {:?} is not an unsigned integer",
                        req.res_id
                    ))
                })?;
                if self.shard_log(id).is_none() {
                    return Err(errors::shard_not_found(None, id));
                }
            }
            Ok(_) => {}
            Err(_) => {
                return Err(invalid_argument(format!(
                    "unknown resType {}",
                    req.res_type
                )));
            }
        }
        Ok(Response::new(self.node()))
    }

    // Connector RPCs: forwarded to the plugged-in `ConnectorApi`, if any.

    async fn create_connector(
        &self,
        req: Request<wire::CreateConnectorRequest>,
    ) -> Result<Response<wire::Connector>, Status> {
        match &self.connectors {
            Some(c) => c.0.create_connector(req).await,
            None => Err(crate::connectors::not_served("CreateConnector")),
        }
    }

    async fn list_connectors(
        &self,
        req: Request<wire::ListConnectorsRequest>,
    ) -> Result<Response<wire::ListConnectorsResponse>, Status> {
        match &self.connectors {
            Some(c) => c.0.list_connectors(req).await,
            None => Err(crate::connectors::not_served("ListConnectors")),
        }
    }

    async fn get_connector(
        &self,
        req: Request<wire::GetConnectorRequest>,
    ) -> Result<Response<wire::Connector>, Status> {
        match &self.connectors {
            Some(c) => c.0.get_connector(req).await,
            None => Err(crate::connectors::not_served("GetConnector")),
        }
    }

    async fn get_connector_spec(
        &self,
        req: Request<wire::GetConnectorSpecRequest>,
    ) -> Result<Response<wire::GetConnectorSpecResponse>, Status> {
        match &self.connectors {
            Some(c) => c.0.get_connector_spec(req).await,
            None => Err(crate::connectors::not_served("GetConnectorSpec")),
        }
    }

    async fn get_connector_logs(
        &self,
        req: Request<wire::GetConnectorLogsRequest>,
    ) -> Result<Response<wire::GetConnectorLogsResponse>, Status> {
        match &self.connectors {
            Some(c) => c.0.get_connector_logs(req).await,
            None => Err(crate::connectors::not_served("GetConnectorLogs")),
        }
    }

    async fn delete_connector(
        &self,
        req: Request<wire::DeleteConnectorRequest>,
    ) -> Result<Response<()>, Status> {
        match &self.connectors {
            Some(c) => c.0.delete_connector(req).await,
            None => Err(crate::connectors::not_served("DeleteConnector")),
        }
    }

    async fn pause_connector(
        &self,
        req: Request<wire::PauseConnectorRequest>,
    ) -> Result<Response<()>, Status> {
        match &self.connectors {
            Some(c) => c.0.pause_connector(req).await,
            None => Err(crate::connectors::not_served("PauseConnector")),
        }
    }

    async fn resume_connector(
        &self,
        req: Request<wire::ResumeConnectorRequest>,
    ) -> Result<Response<()>, Status> {
        match &self.connectors {
            Some(c) => c.0.resume_connector(req).await,
            None => Err(crate::connectors::not_served("ResumeConnector")),
        }
    }

    async fn alter_connector_config(
        &self,
        req: Request<wire::AlterConnectorConfigRequest>,
    ) -> Result<Response<()>, Status> {
        match &self.connectors {
            Some(c) => c.0.alter_connector_config(req).await,
            None => Err(crate::connectors::not_served("AlterConnectorConfig")),
        }
    }

    async fn get_stats(
        &self,
        req: Request<wire::GetStatsRequest>,
    ) -> Result<Response<wire::GetStatsResponse>, Status> {
        match &self.connectors {
            Some(c) => c.0.get_stats(req).await,
            None => Err(crate::connectors::not_served("GetStats")),
        }
    }
}
