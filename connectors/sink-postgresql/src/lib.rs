//! `sink-postgresql`: applies a stream's records to one PostgreSQL table.
//!
//! Records are key/value (`{"key":{…},"value":{…}|null}`, what our CDC sources
//! write) or plain rows, JSON or RAW JSON text ([`hstream_io_runtime::record`]).
//! Each batch is reduced to one net change per key
//! ([`hstream_io_runtime::change`]) and applied in one transaction: deletes
//! through `DELETE … USING unnest(…)`, upserts through a text COPY straight
//! into the table (fresh keys, inside a savepoint) or into a session stage
//! table and `INSERT … SELECT … ON CONFLICT … DO UPDATE` of the columns
//! present. With `exactlyOnce` (default) the shard's position is stored
//! in the same transaction and the sink resumes from it.

mod catalog;
mod check;
mod config;
mod convert;
mod error;
mod progress;
mod sql;
mod writer;

use hstream_io_runtime::validate::ConfigIssue;
use hstream_io_runtime::{CheckFailure, Connector, Kind, Result, SinkConnector, SinkOptions};

pub use config::PgSinkConfig;
pub use writer::PgSinkWriter;

/// The connector's name.
pub const NAME: &str = "sink-postgresql";

/// The connector.
pub struct PgSink;

impl Connector for PgSink {
    type Config = PgSinkConfig;
    const NAME: &'static str = NAME;
    const KIND: Kind = Kind::Sink;
    const TARGET: &'static str = "postgresql";
    const SUMMARY: &'static str =
        "Applies a stream's records (upserts and deletes) to a PostgreSQL table, exactly once.";
    const CHECKS: &'static [hstream_io_runtime::CheckSpec] = &check::CHECKS;
    const NOTES: Option<&'static str> = Some(include_str!("../docs.md"));

    fn validate(config: &Self::Config) -> Vec<ConfigIssue> {
        config.validate()
    }

    async fn check(config: &Self::Config) -> Result<(), CheckFailure> {
        check::check(config).await
    }
}

impl SinkConnector for PgSink {
    type Writer = PgSinkWriter;

    fn stream(config: &Self::Config) -> &str {
        &config.stream
    }

    fn options(config: &Self::Config) -> &SinkOptions {
        &config.options
    }

    async fn open(config: &Self::Config) -> Result<PgSinkWriter> {
        PgSinkWriter::open(config).await
    }
}
