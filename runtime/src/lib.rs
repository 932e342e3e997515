//! # hstream-io runtime: the connector SDK
//!
//! Concepts:
//! - A **connector** (`source-mysql`, `sink-postgresql`, …) is a type implementing
//!   [`connector::Connector`] plus [`connector::Source`] or
//!   [`connector::SinkConnector`]. It declares a name, a kind, one config type
//!   (serde + schemars: the single source of its spec, validation and docs), its
//!   environment checks, and how to run.
//! - A **task** is one running instance of a connector: one OS process started
//!   as `hstream-io <connector> run --config <task dir>/config.json` by HServer
//!   or by our worker. It talks to its launcher over the **channel**
//!   (JSON lines on stdin/stdout: `KvGet`, `KvSet`, `Report`, `stop`).
//! - A **stream** is an HStream stream, split into shards by partition key;
//!   records never cross the channel, tasks read and write streams over gRPC
//!   ([`stream`]).
//! - A **position** (sources) or **offset** (sinks, one RecordId per shard) is
//!   how far a task got; it lives in the task's **KV** ([`kv`]) and is stored
//!   only once everything before it is durable downstream.
//!
//! The runtime owns what every connector shares — config loading and
//! validation ([`task`], [`validate`]), the channel ([`channel`]), KV, offsets
//! ([`source`], [`sink`]), reports ([`report`]), retries and shutdown
//! ([`shutdown`]) — so a connector only reads or writes.
#![warn(missing_docs)]

pub mod change;
pub mod channel;
pub mod check;
pub mod cli;
pub mod config;
pub mod connector;
pub mod error;
pub mod kv;
pub mod logging;
pub mod net;
pub mod record;
pub mod report;
pub mod retry;
pub mod secret;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod spec;
pub mod sql_values;
pub mod stream;
pub mod task;
pub mod validate;

/// Makes ring the process-wide rustls crypto provider, unless one is
/// installed already (then nothing changes). Call it at start-up, before any
/// TLS: `pgwire-replication` (source-postgresql) compiles aws-lc into rustls
/// beside ring, and with two providers compiled in, the libraries that call
/// `ClientConfig::builder()` / `ServerConfig::builder()` without naming one
/// (mysql_async, tonic's TLS server) panic unless a default is installed.
pub fn install_crypto_provider() {
    // An error only says that a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub use check::{CheckFailure, CheckResult, CheckSpec, CheckType};
pub use config::TlsMode;
pub use connector::{Connector, ConnectorInfo, Kind, SinkConnector, SinkWriter, Source};
pub use error::{Error, ErrorKind, Result};
pub use secret::Secret;
pub use sink::{SinkBatch, SinkOptions, SinkRecord};
pub use source::SourceContext;

/// Gives the allocator's free pages back to the system (glibc `malloc_trim`).
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
