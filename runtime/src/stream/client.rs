//! [`Client`]: connection management, request routing (lookups) and retries,
//! plus the unary stream RPCs.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::codec::{AppendAck, encode_batch};
use super::error::{StreamError, chain, tls_failure_in, with_sources};
use super::producer::{BufferedProducer, ProducerOptions};
use super::reader::ShardReader;
use super::types::{Compression, ReaderOffset, Record, RecordId, Shard, StreamOptions};
use super::url::ServiceUrl;
use super::wire;
use super::wire::h_stream_api_client::HStreamApiClient;

pub(crate) type Api = HStreamApiClient<Channel>;

/// The generated client on `channel`, with our message size limits.
fn api_on(channel: Channel) -> Api {
    HStreamApiClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// `HStreamApi/Append`, as the generated client makes it, but answered as an [`AppendAck`]
/// (record ids left encoded) instead of an `AppendResponse`.
async fn append_call(
    channel: Channel,
    request: wire::AppendRequest,
) -> Result<tonic::Response<AppendAck>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/hstream.server.HStreamApi/Append");
    let mut request = tonic::Request::new(request);
    request.extensions_mut().insert(tonic::GrpcMethod::new(
        "hstream.server.HStreamApi",
        "Append",
    ));
    let codec = tonic_prost::ProstCodec::<wire::AppendRequest, AppendAck>::default();
    grpc.unary(request, path, codec).await
}

/// Largest gRPC message the client sends or accepts.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Tuning for [`Client::connect_with`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Attempts per operation when the server is unavailable (≥ 1). Default 5.
    pub retry_attempts: u32,
    /// First wait between attempts; doubles up to `retry_backoff_max`. Default 200 ms.
    pub retry_backoff: Duration,
    /// Longest wait between attempts. Default 5 s.
    pub retry_backoff_max: Duration,
    /// TCP connect timeout. Default 5 s.
    pub connect_timeout: Duration,
    /// Per-request timeout. Default 60 s.
    pub request_timeout: Duration,
    /// For `hstreams://`: PEM certificate(s) of the CA(s) to trust instead of
    /// the system CA store. `None` (default): the file named by the
    /// environment variable [`TLS_CA_ENV`] if set, else the system store.
    pub tls_ca_pem: Option<Vec<u8>>,
}

/// Environment variable naming a PEM file with the CA certificate(s) that
/// `hstreams://` connections trust instead of the system CA store (when
/// [`ClientOptions::tls_ca_pem`] is not set).
pub const TLS_CA_ENV: &str = "HSTREAM_TLS_CA";

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retry_attempts: 5,
            retry_backoff: Duration::from_millis(200),
            retry_backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            tls_ca_pem: None,
        }
    }
}

/// A server node of the cluster, as `DescribeCluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node id.
    pub id: u32,
    /// `host:port` clients use to reach it.
    pub address: String,
}

/// A stream's settings, as `GetStream`/`ListStreams` report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Stream name.
    pub name: String,
    /// Number of shards.
    pub shard_count: u32,
    /// Replication factor.
    pub replication_factor: u32,
    /// Retention in seconds.
    pub backlog_duration_secs: u32,
    /// Creation time, milliseconds since the epoch (0 if unknown).
    pub creation_time_ms: i64,
}

impl From<wire::Stream> for StreamInfo {
    fn from(s: wire::Stream) -> Self {
        Self {
            name: s.stream_name,
            shard_count: s.shard_count,
            replication_factor: s.replication_factor,
            backlog_duration_secs: s.backlog_duration,
            creation_time_ms: s
                .creation_time
                .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
        }
    }
}

/// Which node a request must go to.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Any node.
    Any,
    /// The node owning a shard (`LookupShard`).
    Shard(u64),
    /// The node owning a shard reader (`LookupShardReader`).
    Reader(String),
    /// The node owning a subscription (`LookupSubscription`).
    Subscription(String),
}

impl Route {
    fn cache_key(&self) -> Option<String> {
        match self {
            Route::Any => None,
            Route::Shard(id) => Some(format!("shard:{id}")),
            Route::Reader(id) => Some(format!("reader:{id}")),
            Route::Subscription(id) => Some(format!("sub:{id}")),
        }
    }
}

struct Inner {
    opts: ClientOptions,
    /// For `hstreams://`: the TLS settings (roots); the domain is set per node.
    tls: Option<ClientTlsConfig>,
    /// Known nodes (`host:port`); the first is used for unrouted requests.
    nodes: Mutex<Vec<String>>,
    channels: Mutex<HashMap<String, Channel>>,
    routes: Mutex<HashMap<String, String>>,
}

/// A connection to an HStream cluster (cheap to clone; clones share connections).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field(
                "nodes",
                &*self
                    .inner
                    .nodes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            )
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn node_addr(n: &wire::ServerNode) -> String {
    if n.host.contains(':') && !n.host.starts_with('[') {
        format!("[{}]:{}", n.host, n.port)
    } else {
        format!("{}:{}", n.host, n.port)
    }
}

/// The endpoint of `node` (`host:port`): TLS with `tls` (domain = the host).
fn endpoint(
    node: &str,
    opts: &ClientOptions,
    tls: Option<&ClientTlsConfig>,
) -> Result<Endpoint, StreamError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep =
        Endpoint::from_shared(format!("{scheme}://{node}")).map_err(|e| StreamError::Connect {
            node: node.to_string(),
            reason: format!("invalid address: {e}"),
        })?;
    if let Some(tls) = tls {
        let host = node.rsplit_once(':').map_or(node, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ep = ep
            .tls_config(tls.clone().domain_name(host))
            .map_err(|e| StreamError::TlsConfig {
                url: format!("hstreams://{node}"),
                reason: format!(
                    "{e}; install the system CA certificates (e.g. the ca-certificates \
                     package) or set {TLS_CA_ENV} to the PEM file of the CA that signed \
                     the server's certificate"
                ),
            })?;
    }
    Ok(ep
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.request_timeout)
        .tcp_nodelay(true)
        // Large windows: big batches must not wait for WINDOW_UPDATE round trips.
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .initial_connection_window_size(Some(32 * 1024 * 1024)))
}

/// A gRPC channel to the first node of `service_url`, connected now, with TLS
/// for `hstreams://` exactly as [`Client::connect_with`] (CA from
/// [`ClientOptions::tls_ca_pem`], `HSTREAM_TLS_CA` or the system store). For
/// callers that use the raw generated client (e.g. the `sql` CLI).
pub async fn connect_channel(
    service_url: &str,
    opts: &ClientOptions,
) -> Result<Channel, StreamError> {
    let url = ServiceUrl::parse(service_url)?;
    let tls = if url.tls {
        Some(tls_config(
            service_url,
            opts,
            std::env::var_os(TLS_CA_ENV).map(PathBuf::from),
        )?)
    } else {
        None
    };
    let node = url.nodes.first().cloned().unwrap_or_default();
    let ep = endpoint(&node, opts, tls.as_ref())?;
    ep.connect().await.map_err(|e| {
        let src: &(dyn std::error::Error + 'static) = &e;
        match tls_failure_in(Some(src)) {
            Some(reason) => StreamError::Tls {
                node: node.clone(),
                reason,
            },
            None => StreamError::Connect {
                node: node.clone(),
                reason: chain(String::new(), Some(src))
                    .trim_start_matches(": ")
                    .to_string(),
            },
        }
    })
}

/// The TLS settings for `hstreams://`: the CA from `opts.tls_ca_pem`, else
/// from the file `ca_file` (the value of `HSTREAM_TLS_CA`), else the system store.
fn tls_config(
    url: &str,
    opts: &ClientOptions,
    ca_file: Option<PathBuf>,
) -> Result<ClientTlsConfig, StreamError> {
    let bad = |reason: String| StreamError::TlsConfig {
        url: url.to_string(),
        reason,
    };
    let (pem, origin) = match (&opts.tls_ca_pem, ca_file) {
        (Some(pem), _) => (pem.clone(), "ClientOptions::tls_ca_pem".to_string()),
        (None, Some(path)) => {
            let pem = std::fs::read(&path).map_err(|e| {
                bad(format!(
                    "cannot read the CA certificate file {} named by {TLS_CA_ENV}: {e}; \
                     point {TLS_CA_ENV} at a readable PEM file, or unset it to trust the \
                     system CA store",
                    path.display()
                ))
            })?;
            (
                pem,
                format!("the file {} named by {TLS_CA_ENV}", path.display()),
            )
        }
        (None, None) => return Ok(ClientTlsConfig::new().with_native_roots()),
    };
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad(format!(
            "{origin} holds no PEM certificate (no -----BEGIN CERTIFICATE----- line); \
             give the CA certificate in PEM format"
        )));
    }
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
}

fn stream_target(stream: &str) -> String {
    format!("stream {stream:?}")
}

fn shard_target(stream: &str, shard: u64) -> String {
    format!("stream {stream:?} shard {shard}")
}

pub(crate) fn record_id_from_wire(r: &wire::RecordId) -> RecordId {
    RecordId {
        shard_id: r.shard_id,
        batch_id: r.batch_id,
        batch_index: r.batch_index,
    }
}

pub(crate) fn record_id_to_wire(r: &RecordId) -> wire::RecordId {
    wire::RecordId {
        shard_id: r.shard_id,
        batch_id: r.batch_id,
        batch_index: r.batch_index,
    }
}

impl Client {
    /// Connects to the cluster behind `service_url` (`hstream://h1:p1,h2:p2`,
    /// default port 6570) with default [`ClientOptions`].
    ///
    /// Tries the seed nodes in order; the first that answers `DescribeCluster`
    /// provides the node list. `hstreams://` connects with TLS (to every node,
    /// also those `DescribeCluster` and lookups report as `host:port`),
    /// verifying each node's certificate against its host name and the system
    /// CA store, or the CA in [`ClientOptions::tls_ca_pem`] / the PEM file
    /// named by `HSTREAM_TLS_CA` ([`TLS_CA_ENV`]).
    pub async fn connect(service_url: &str) -> Result<Client, StreamError> {
        Self::connect_with(service_url, ClientOptions::default()).await
    }

    /// [`Client::connect`] with explicit options.
    pub async fn connect_with(
        service_url: &str,
        opts: ClientOptions,
    ) -> Result<Client, StreamError> {
        let url = ServiceUrl::parse(service_url)?;
        let tls = if url.tls {
            Some(tls_config(
                service_url,
                &opts,
                std::env::var_os(TLS_CA_ENV).map(PathBuf::from),
            )?)
        } else {
            None
        };
        if opts.retry_attempts == 0 {
            return Err(StreamError::InvalidArgument(
                "ClientOptions::retry_attempts must be at least 1".into(),
            ));
        }
        let client = Client {
            inner: Arc::new(Inner {
                opts,
                tls,
                nodes: Mutex::new(url.nodes.clone()),
                channels: Mutex::new(HashMap::new()),
                routes: Mutex::new(HashMap::new()),
            }),
        };
        let mut last = None;
        for seed in &url.nodes {
            let mut api = client.api(seed)?;
            match api.describe_cluster(()).await {
                Ok(resp) => {
                    let mut nodes = vec![seed.clone()];
                    for n in &resp.into_inner().server_nodes {
                        let a = node_addr(n);
                        if !nodes.contains(&a) {
                            nodes.push(a);
                        }
                    }
                    for s in &url.nodes {
                        if !nodes.contains(s) {
                            nodes.push(s.clone());
                        }
                    }
                    *lock(&client.inner.nodes) = nodes;
                    return Ok(client);
                }
                Err(s) => {
                    client.forget_node(seed);
                    last = Some(
                        match StreamError::from_status("DescribeCluster", "cluster", seed, &s) {
                            e @ StreamError::Tls { .. } => e,
                            _ => StreamError::Connect {
                                node: seed.clone(),
                                reason: format!(
                                    "{}: {}{}",
                                    s.code(),
                                    with_sources(&s),
                                    if url.tls {
                                        ""
                                    } else {
                                        " (if the server serves TLS, connect with hstreams://)"
                                    }
                                ),
                            },
                        },
                    );
                }
            }
        }
        Err(last.unwrap_or_else(|| StreamError::InvalidUrl {
            url: service_url.to_string(),
            reason: "no host given".into(),
        }))
    }

    /// The cluster's nodes as `DescribeCluster` reports them now.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, StreamError> {
        let r = self
            .call(
                "DescribeCluster",
                "cluster",
                Route::Any,
                |mut a| async move { a.describe_cluster(()).await },
            )
            .await?;
        Ok(r.server_nodes
            .iter()
            .map(|n| NodeInfo {
                id: n.id,
                address: node_addr(n),
            })
            .collect())
    }

    /// `Echo`: returns what the server echoes back.
    pub async fn echo(&self, msg: &str) -> Result<String, StreamError> {
        let req = wire::EchoRequest {
            msg: msg.to_string(),
        };
        let r = self
            .call("Echo", "cluster", Route::Any, |mut a| {
                let req = req.clone();
                async move { a.echo(req).await }
            })
            .await?;
        Ok(r.msg)
    }

    /// Creates a stream. Fails with HServer error 201 (StreamExists) if it exists.
    pub async fn create_stream(&self, name: &str, opts: StreamOptions) -> Result<(), StreamError> {
        if opts.shard_count == 0 || opts.replication_factor == 0 {
            return Err(StreamError::InvalidArgument(format!(
                "stream {name:?}: shard_count and replication_factor must be at least 1"
            )));
        }
        let req = wire::Stream {
            stream_name: name.to_string(),
            replication_factor: opts.replication_factor,
            backlog_duration: opts.backlog_duration_secs,
            shard_count: opts.shard_count,
            creation_time: None,
        };
        self.call("CreateStream", &stream_target(name), Route::Any, |mut a| {
            let req = req.clone();
            async move { a.create_stream(req).await }
        })
        .await?;
        Ok(())
    }

    /// Creates the stream unless it already exists (an existing stream is kept as is).
    pub async fn ensure_stream(&self, name: &str, opts: StreamOptions) -> Result<(), StreamError> {
        match self.create_stream(name, opts).await {
            Err(e)
                if e.hserver_code() == Some(201)
                    || e.status() == Some(super::error::StatusCode::AlreadyExists) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Names of all streams.
    pub async fn list_streams(&self) -> Result<Vec<String>, StreamError> {
        Ok(self
            .list_stream_infos()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect())
    }

    /// All streams with their settings.
    pub async fn list_stream_infos(&self) -> Result<Vec<StreamInfo>, StreamError> {
        let r = self
            .call("ListStreams", "cluster", Route::Any, |mut a| async move {
                a.list_streams(wire::ListStreamsRequest {}).await
            })
            .await?;
        Ok(r.streams.into_iter().map(StreamInfo::from).collect())
    }

    /// One stream's settings.
    pub async fn get_stream(&self, name: &str) -> Result<StreamInfo, StreamError> {
        let req = wire::GetStreamRequest {
            name: name.to_string(),
        };
        let target = stream_target(name);
        let r = self
            .call("GetStream", &target, Route::Any, |mut a| {
                let req = req.clone();
                async move { a.get_stream(req).await }
            })
            .await?;
        r.stream
            .map(StreamInfo::from)
            .ok_or_else(|| StreamError::Decode {
                what: "GetStream response",
                target,
                reason: "no stream in the response".into(),
            })
    }

    /// Deletes a stream. With `ignore_non_exist`, a missing stream is not an
    /// error; `force` deletes even if subscriptions still use it.
    pub async fn delete_stream(
        &self,
        name: &str,
        ignore_non_exist: bool,
        force: bool,
    ) -> Result<(), StreamError> {
        let req = wire::DeleteStreamRequest {
            stream_name: name.to_string(),
            ignore_non_exist,
            force,
        };
        self.call("DeleteStream", &stream_target(name), Route::Any, |mut a| {
            let req = req.clone();
            async move { a.delete_stream(req).await }
        })
        .await?;
        Ok(())
    }

    /// The shards of a stream, ordered by hash range.
    pub async fn list_shards(&self, stream: &str) -> Result<Vec<Shard>, StreamError> {
        let req = wire::ListShardsRequest {
            stream_name: stream.to_string(),
        };
        let target = stream_target(stream);
        let r = self
            .call("ListShards", &target, Route::Any, |mut a| {
                let req = req.clone();
                async move { a.list_shards(req).await }
            })
            .await?;
        let mut shards = r
            .shards
            .into_iter()
            .map(|s| {
                let parse = |v: &str| {
                    v.parse::<u128>().map_err(|e| StreamError::Decode {
                        what: "shard hash range key",
                        target: format!("{target} shard {}", s.shard_id),
                        reason: format!("{v:?}: {e}"),
                    })
                };
                Ok(Shard {
                    shard_id: s.shard_id,
                    stream_name: s.stream_name.clone(),
                    start_hash_key: parse(&s.start_hash_range_key)?,
                    end_hash_key: parse(&s.end_hash_range_key)?,
                })
            })
            .collect::<Result<Vec<_>, StreamError>>()?;
        shards.sort_by_key(|s| s.start_hash_key);
        Ok(shards)
    }

    /// Appends `records` as one batch to a shard; returns one id per record, in order.
    pub async fn append(
        &self,
        stream: &str,
        shard_id: u64,
        records: Vec<Record>,
        compression: Compression,
    ) -> Result<Vec<RecordId>, StreamError> {
        if records.is_empty() {
            return Err(StreamError::InvalidArgument(format!(
                "append to {}: no records given",
                shard_target(stream, shard_id)
            )));
        }
        let batch = encode_batch(records, compression)?;
        let target = shard_target(stream, shard_id);
        let ack = self.append_encoded(stream, shard_id, batch).await?;
        ack.ids().map_err(|e| StreamError::Decode {
            what: "Append response",
            target,
            reason: e.to_string(),
        })
    }

    /// Appends an encoded batch to a shard; the answer keeps its record ids encoded
    /// ([`AppendAck::ids`] decodes them) and holds one id per record (checked).
    pub(crate) async fn append_encoded(
        &self,
        stream: &str,
        shard_id: u64,
        batch: wire::BatchedRecord,
    ) -> Result<AppendAck, StreamError> {
        let expected = batch.batch_size as usize;
        let req = wire::AppendRequest {
            stream_name: stream.to_string(),
            shard_id,
            records: Some(batch),
        };
        let target = shard_target(stream, shard_id);
        let ack = self
            .call_channel("Append", &target, Route::Shard(shard_id), |channel| {
                append_call(channel, req.clone())
            })
            .await?;
        if ack.len() != expected {
            return Err(StreamError::Decode {
                what: "Append response",
                target,
                reason: format!("{} record ids returned for {expected} records", ack.len()),
            });
        }
        Ok(ack)
    }

    /// A [`BufferedProducer`] for `stream` (lists the shards once and routes by key).
    pub async fn producer(
        &self,
        stream: &str,
        opts: ProducerOptions,
    ) -> Result<BufferedProducer, StreamError> {
        let shards = self.list_shards(stream).await?;
        BufferedProducer::new(self.clone(), stream, shards, opts)
    }

    /// Opens a reader on one shard, starting at `offset`; `ReadShard` waits up to 1 s for data.
    pub async fn shard_reader(
        &self,
        stream: &str,
        shard_id: u64,
        offset: ReaderOffset,
    ) -> Result<ShardReader, StreamError> {
        self.shard_reader_with_timeout(stream, shard_id, offset, Duration::from_secs(1))
            .await
    }

    /// [`Client::shard_reader`] with an explicit read timeout: how long one
    /// [`ShardReader::read`] waits for data before returning an empty list.
    pub async fn shard_reader_with_timeout(
        &self,
        stream: &str,
        shard_id: u64,
        offset: ReaderOffset,
        timeout: Duration,
    ) -> Result<ShardReader, StreamError> {
        use wire::shard_offset::Offset;
        let reader_id = format!("io_reader_{}", uuid::Uuid::new_v4().simple());
        let off = match offset {
            ReaderOffset::Earliest => Offset::SpecialOffset(wire::SpecialOffset::Earliest as i32),
            ReaderOffset::Latest => Offset::SpecialOffset(wire::SpecialOffset::Latest as i32),
            ReaderOffset::RecordId(r) => Offset::RecordOffset(record_id_to_wire(&r)),
            ReaderOffset::Timestamp(ms) => Offset::TimestampOffset(wire::TimestampOffset {
                timestamp_in_ms: ms,
                strict_accuracy: false,
            }),
        };
        let req = wire::CreateShardReaderRequest {
            stream_name: stream.to_string(),
            shard_id,
            shard_offset: Some(wire::ShardOffset { offset: Some(off) }),
            reader_id: reader_id.clone(),
            timeout: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        };
        self.call(
            "CreateShardReader",
            &shard_target(stream, shard_id),
            Route::Shard(shard_id),
            |mut a| {
                let req = req.clone();
                async move { a.create_shard_reader(req).await }
            },
        )
        .await?;
        Ok(ShardReader::new(self.clone(), stream, shard_id, reader_id))
    }

    /// Ids of all shard readers on the cluster.
    pub async fn list_shard_readers(&self) -> Result<Vec<String>, StreamError> {
        let r = self
            .call(
                "ListShardReaders",
                "cluster",
                Route::Any,
                |mut a| async move { a.list_shard_readers(wire::ListShardReadersRequest {}).await },
            )
            .await?;
        Ok(r.reader_id)
    }

    /// The id of the last record of a shard (`batch_id` 0 if the shard is empty).
    pub async fn get_tail_record_id(
        &self,
        stream: &str,
        shard_id: u64,
    ) -> Result<RecordId, StreamError> {
        let req = wire::GetTailRecordIdRequest {
            stream_name: stream.to_string(),
            shard_id,
        };
        let target = shard_target(stream, shard_id);
        let r = self
            .call(
                "GetTailRecordId",
                &target,
                Route::Shard(shard_id),
                |mut a| {
                    let req = req.clone();
                    async move { a.get_tail_record_id(req).await }
                },
            )
            .await?;
        r.tail_record_id
            .as_ref()
            .map(record_id_from_wire)
            .ok_or_else(|| StreamError::Decode {
                what: "GetTailRecordId response",
                target,
                reason: "no tailRecordId".into(),
            })
    }

    /// Removes, in each id's shard, every record stored before that id.
    /// Returns the trim point applied per shard.
    pub async fn trim_shards(&self, stream: &str, ids: &[RecordId]) -> Result<(), StreamError> {
        if ids.is_empty() {
            return Ok(());
        }
        let req = wire::TrimShardsRequest {
            stream_name: stream.to_string(),
            record_ids: ids.iter().map(ToString::to_string).collect(),
        };
        self.call("TrimShards", &stream_target(stream), Route::Any, |mut a| {
            let req = req.clone();
            async move { a.trim_shards(req).await }
        })
        .await?;
        Ok(())
    }

    // ----- plumbing -----

    pub(crate) fn api(&self, node: &str) -> Result<Api, StreamError> {
        Ok(api_on(self.channel(node)?))
    }

    /// The (lazily connected, shared) channel to `node`.
    fn channel(&self, node: &str) -> Result<Channel, StreamError> {
        let mut chans = lock(&self.inner.channels);
        if let Some(c) = chans.get(node) {
            return Ok(c.clone());
        }
        let ep = endpoint(node, &self.inner.opts, self.inner.tls.as_ref())?;
        let c = ep.connect_lazy();
        chans.insert(node.to_string(), c.clone());
        Ok(c)
    }

    fn forget_node(&self, node: &str) {
        lock(&self.inner.channels).remove(node);
        let mut nodes = lock(&self.inner.nodes);
        if nodes.len() > 1 && nodes[0] == node {
            nodes.rotate_left(1);
        }
    }

    fn any_node(&self) -> String {
        lock(&self.inner.nodes).first().cloned().unwrap_or_default()
    }

    /// The node a request must go to (cached lookups).
    pub(crate) async fn resolve(&self, route: &Route) -> Result<String, StreamError> {
        let Some(key) = route.cache_key() else {
            return Ok(self.any_node());
        };
        if let Some(n) = lock(&self.inner.routes).get(&key) {
            return Ok(n.clone());
        }
        let via = self.any_node();
        let mut api = self.api(&via)?;
        let node = match route {
            Route::Any => return Ok(via),
            Route::Shard(id) => {
                let r = api
                    .lookup_shard(wire::LookupShardRequest { shard_id: *id })
                    .await
                    .map_err(|s| {
                        self.note_failure(&via, &s);
                        StreamError::from_status("LookupShard", format!("shard {id}"), &via, &s)
                    })?
                    .into_inner();
                r.server_node
            }
            Route::Reader(id) => {
                let r = api
                    .lookup_shard_reader(wire::LookupShardReaderRequest {
                        reader_id: id.clone(),
                    })
                    .await
                    .map_err(|s| {
                        self.note_failure(&via, &s);
                        StreamError::from_status(
                            "LookupShardReader",
                            format!("reader {id:?}"),
                            &via,
                            &s,
                        )
                    })?
                    .into_inner();
                r.server_node
            }
            Route::Subscription(id) => {
                let r = api
                    .lookup_subscription(wire::LookupSubscriptionRequest {
                        subscription_id: id.clone(),
                    })
                    .await
                    .map_err(|s| {
                        self.note_failure(&via, &s);
                        StreamError::from_status(
                            "LookupSubscription",
                            format!("subscription {id:?}"),
                            &via,
                            &s,
                        )
                    })?
                    .into_inner();
                r.server_node
            }
        };
        let node = node.map_or(via, |n| node_addr(&n));
        lock(&self.inner.routes).insert(key, node.clone());
        Ok(node)
    }

    fn note_failure(&self, node: &str, s: &tonic::Status) {
        if matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        ) {
            self.forget_node(node);
        }
    }

    /// Runs one RPC on the node `route` designates, retrying retryable
    /// failures (with a fresh lookup) within the retry budget.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        target: &str,
        route: Route,
        f: F,
    ) -> Result<T, StreamError>
    where
        F: Fn(Api) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_channel(operation, target, route, |ch| f(api_on(ch)))
            .await
    }

    /// [`Client::call`] for requests made on the channel itself (a codec of our own).
    async fn call_channel<T, F, Fut>(
        &self,
        operation: &'static str,
        target: &str,
        route: Route,
        f: F,
    ) -> Result<T, StreamError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let opts = &self.inner.opts;
        let mut backoff = opts.retry_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let node = self.resolve(&route).await?;
                let channel = self.channel(&node)?;
                match f(channel).await {
                    Ok(r) => Ok(r.into_inner()),
                    Err(s) => {
                        self.note_failure(&node, &s);
                        Err(StreamError::from_status(operation, target, &node, &s))
                    }
                }
            }
            .await;
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => {
                    if let Some(k) = route.cache_key() {
                        lock(&self.inner.routes).remove(&k);
                    }
                    if attempt >= opts.retry_attempts {
                        return Err(if attempt == 1 {
                            e
                        } else {
                            StreamError::RetriesExhausted {
                                operation,
                                target: target.to_string(),
                                attempts: attempt,
                                last: Box::new(e),
                            }
                        });
                    }
                    tracing::warn!(operation, target, attempt, error = %e, "retrying stream request");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(opts.retry_backoff_max);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn tls_ca_errors_name_the_file_and_the_fix() {
        let opts = ClientOptions::default();
        let e = tls_config(
            "hstreams://h:1",
            &opts,
            Some(PathBuf::from("/nonexistent/ca.pem")),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StreamError::TlsConfig { .. }), "{msg}");
        assert!(
            msg.contains("/nonexistent/ca.pem") && msg.contains(TLS_CA_ENV),
            "{msg}"
        );
        let bad = ClientOptions {
            tls_ca_pem: Some(b"not a certificate".to_vec()),
            ..ClientOptions::default()
        };
        let msg = tls_config("hstreams://h:1", &bad, None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no PEM certificate"), "{msg}");
        // No CA given: the system store (loaded when a node is first dialled).
        assert!(tls_config("hstreams://h:1", &opts, None).is_ok());
    }
}
