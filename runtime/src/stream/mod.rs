//! HStreamDB stream client.
//!
//! Everything a task needs to read and write HStream streams over gRPC,
//! behind a hand-written API (no tonic or prost types leak out):
//!
//! - [`Client`]: connect with a service URL (`hstream://h1:6570,h2:6570`),
//!   manage streams, list shards, append batches, trim, read tails.
//! - [`BufferedProducer`]: per-shard batching by count, bytes and age,
//!   ordered per shard, with a byte-bounded flow-control window.
//! - [`ShardReader`]: read one shard from EARLIEST, LATEST, a record id or a
//!   timestamp.
//! - [`Consumer`]: a subscription consumer (`StreamingFetch`) with batched acks.
//! - [`hash_key`] / [`shard_for_key`]: HServer's MD5 partition-key routing.
//!
//! Records are [`Record`]s with a JSON (`google.protobuf.Struct`) or RAW
//! payload, identified by a [`RecordId`] (`"shard-batch-index"`).
//! [`PayloadWriter`] builds either payload directly in its wire form, for
//! sources that write many records.

mod client;
pub(crate) mod codec;
mod error;
mod producer;
mod reader;
mod routing;
mod subscription;
mod types;
mod url;
mod writer;

/// Generated gRPC types for `hstream.server` (from `runtime/proto/hstream.proto`).
///
/// Internal: exposed only so the embedded stream service
/// (`hstream-io-stream-service`) can implement the same wire protocol.
/// Connectors must use the hand-written API of this module instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod wire {
    tonic::include_proto!("hstream.server");
}

pub use client::{Client, ClientOptions, NodeInfo, StreamInfo, TLS_CA_ENV, connect_channel};
pub use codec::EncodedRecord;
pub use error::{StatusCode, StreamError};
pub use producer::{AppendHandle, BatchHandle, BufferedProducer, ProducerOptions};
pub use reader::{ReceivedEncoded, ShardReader};
pub use routing::{hash_key, shard_for_key, split_key_space};
pub use subscription::{Consumer, SubscriptionInfo};
pub use types::{
    Compression, Payload, ReaderOffset, ReceivedRecord, Record, RecordId, Shard, StreamOptions,
    SubscriptionOffset,
};
pub use url::{DEFAULT_PORT, ServiceUrl};
pub use writer::{Field, JsonOut, PayloadEncoding, PayloadWriter, ValueOut};
