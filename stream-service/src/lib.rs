//! # hstream-io stream service
//!
//! An embedded, single-node implementation of the HStreamDB gRPC API subset
//! hstream-io uses (`hstream.server.HStreamApi`): streams split into shards
//! exactly as HServer splits them, durable appends (fsync before ack by
//! default), shard readers, subscriptions, trimming and retention. Connector
//! RPCs are forwarded to a [`ConnectorApi`] when one is plugged in through
//! [`ServeOptions::connectors`] (the IO worker does), else answer UNIMPLEMENTED.
//!
//! Storage: per shard, a segmented append-only log of CRC-checked batches
//! (see `log.rs`); metadata in one atomically replaced JSON file.
//!
//! Use [`serve`] for a long-running server and [`start`] for in-process tests.
#![warn(missing_docs)]

mod connectors;
mod errors;
mod log;
mod meta;
mod service;
mod subscription;
mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hstream_io_runtime::stream::wire;
use hstream_io_runtime::stream::wire::h_stream_api_server::HStreamApiServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use connectors::{ConnectorApi, Connectors};

/// When appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `fdatasync` before acknowledging (group-committed). Safe default.
    #[default]
    Always,
    /// Leave flushing to the OS: acknowledged appends can be lost on power failure
    /// (not on a process crash).
    Never,
}

/// Options for [`serve`] / [`start`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where streams and metadata are stored (created if missing).
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `HOST:PORT` returned by `DescribeCluster` and lookups; defaults to the
    /// bound address (with `127.0.0.1` in place of an unspecified IP).
    pub advertised_address: Option<String>,
    /// Durability of appends.
    pub fsync: FsyncPolicy,
    /// Who answers the connector RPCs on this endpoint (`None`: UNIMPLEMENTED).
    pub connectors: Option<Connectors>,
    /// Serve gRPC over TLS with this certificate and key (`None`: plaintext).
    /// Clients then connect with `hstreams://`; `DescribeCluster` and lookups
    /// still report `host:port` (clients keep the scheme of their URL).
    pub tls: Option<TlsFiles>,
}

/// PEM files of the server's TLS certificate (chain) and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate, leaf first, optionally followed by intermediates (PEM).
    pub cert_pem_path: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_pem_path: PathBuf,
}

impl ServeOptions {
    /// Options for `data_dir`, listening on `127.0.0.1:6570`, fsync before ack.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 6570)),
            advertised_address: None,
            fsync: FsyncPolicy::Always,
            connectors: None,
            tls: None,
        }
    }
}

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The data directory could not be opened or recovered.
    #[error("cannot open the stream data directory {path}: {source}")]
    Storage {
        /// The data directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; pick another --listen address or stop the process using it"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An option is invalid.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The TLS certificate or key could not be read or used.
    #[error("cannot set up TLS for the stream service: {0}")]
    Tls(String),
    /// The gRPC server failed.
    #[error("stream service transport failed: {0}")]
    Transport(String),
}

/// Largest gRPC message accepted or sent.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// How often retention (`backlogDuration`) is applied and subscription positions are checkpointed.
const RETENTION_PERIOD: Duration = Duration::from_secs(10);

fn parse_advertised(adv: &str) -> Result<(String, u32), ServeError> {
    let bad = || {
        ServeError::InvalidOption(format!(
            "advertised address {adv:?} must be HOST:PORT, e.g. 10.0.0.5:6570"
        ))
    };
    let (host, port) = adv.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), u32::from(port)))
}

/// Runs the service until `shutdown` completes.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = load_tls(&opts)?;
    let (listener, addr) = bind(&opts).await?;
    let svc = open_service(&opts, addr)?;
    run(svc, listener, addr, tls, shutdown).await
}

async fn bind(opts: &ServeOptions) -> Result<(tokio::net::TcpListener, SocketAddr), ServeError> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: opts.listen,
        source,
    })?;
    Ok((listener, addr))
}

fn open_service(opts: &ServeOptions, addr: SocketAddr) -> Result<service::Service, ServeError> {
    let (host, port) = match &opts.advertised_address {
        Some(a) => parse_advertised(a)?,
        None => {
            let ip = if addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                addr.ip().to_string()
            };
            (ip, u32::from(addr.port()))
        }
    };
    let node = wire::ServerNode {
        id: 1,
        host,
        port,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let mut svc = service::Service::open(&opts.data_dir, opts.fsync, node).map_err(|source| {
        ServeError::Storage {
            path: opts.data_dir.clone(),
            source,
        }
    })?;
    svc.connectors = opts.connectors.clone();
    Ok(svc)
}

/// Reads and checks the TLS certificate and key of `opts.tls`.
fn load_tls(opts: &ServeOptions) -> Result<Option<tonic::transport::ServerTlsConfig>, ServeError> {
    let Some(files) = &opts.tls else {
        return Ok(None);
    };
    let read = |what: &str, path: &PathBuf, marker: &str| {
        let pem = std::fs::read(path).map_err(|e| {
            ServeError::Tls(format!(
                "cannot read the TLS {what} file {}: {e}; check the path and its permissions",
                path.display()
            ))
        })?;
        if !String::from_utf8_lossy(&pem).contains(marker) {
            return Err(ServeError::Tls(format!(
                "the TLS {what} file {} is not PEM (no {marker} line); give the {what} in PEM format",
                path.display()
            )));
        }
        Ok(pem)
    };
    let cert = read(
        "certificate",
        &files.cert_pem_path,
        "-----BEGIN CERTIFICATE-----",
    )?;
    let key = read("private key", &files.key_pem_path, "PRIVATE KEY-----")?;
    // tonic's TLS server asks rustls for the process's provider.
    hstream_io_runtime::install_crypto_provider();
    let config = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key));
    // Build once now so a bad key or a mismatching pair fails at start, not per connection.
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|e| {
            ServeError::Tls(format!(
                "certificate {} with key {}: {e}; check that the key belongs to the certificate",
                files.cert_pem_path.display(),
                files.key_pem_path.display()
            ))
        })?;
    Ok(Some(config))
}

async fn run(
    svc: service::Service,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    tracing::info!(listen = %addr, tls = tls.is_some(), "stream service started");
    let retention = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(RETENTION_PERIOD);
            loop {
                t.tick().await;
                svc.checkpoint_subscriptions().await;
                let s = svc.clone();
                let _ = tokio::task::spawn_blocking(move || s.apply_retention()).await;
            }
        })
    };
    let server = HStreamApiServer::new(svc.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = match builder.tls_config(tls) {
            Ok(b) => b,
            Err(e) => {
                retention.abort();
                return Err(ServeError::Tls(e.to_string()));
            }
        };
    }
    let result = builder
        .tcp_nodelay(true)
        // Large windows: a 100 KB batch must not wait for WINDOW_UPDATE round trips.
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .initial_connection_window_size(Some(32 * 1024 * 1024))
        .add_service(server)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| ServeError::Transport(e.to_string()));
    retention.abort();
    svc.checkpoint_subscriptions().await;
    tracing::info!(listen = %addr, "stream service stopped");
    result
}

/// A service started with [`start`].
#[derive(Debug)]
pub struct RunningService {
    /// The bound address.
    pub addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningService {
    /// The service URL clients connect with (`hstream://127.0.0.1:PORT`, or
    /// `hstreams://127.0.0.1:PORT` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "hstreams" } else { "hstream" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops the service and waits until it has shut down.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task)
            .await
            .map_err(|e| ServeError::Transport(format!("service task failed: {e}")))?
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts the service in the background (handy for tests): binds first, so
/// the returned [`RunningService::addr`] is ready for clients.
pub async fn start(opts: ServeOptions) -> Result<RunningService, ServeError> {
    let tls = load_tls(&opts)?;
    let is_tls = tls.is_some();
    let (listener, addr) = bind(&opts).await?;
    let svc = open_service(&opts, addr)?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run(svc, listener, addr, tls, async move {
        let _ = rx.await;
    }));
    Ok(RunningService {
        addr,
        tls: is_tls,
        stop: Some(tx),
        task,
    })
}
