//! `source-postgresql`: change data capture from PostgreSQL through logical
//! replication (pgoutput).
//!
//! One replication slot per task, created once — exporting the snapshot that
//! the initial load reads, so existing rows and later changes meet with no gap
//! and no duplicate — and reused on every restart. The initial load reads
//! each table in primary-key chunks and resumes after the last acknowledged
//! chunk when it is interrupted, exactly (see [`resume`] for the rule that
//! keeps a resumed snapshot and the stream consistent). Each change becomes a
//! record `{"key":{<primary key>},"value":{<row>}|null}` keyed by the primary
//! key. The slot's confirmed flush LSN only ever moves to a position the
//! runtime committed (everything before it acknowledged by HStream); while
//! nothing is in flight, keepalives move it along so idle databases do not
//! retain WAL.

mod catalog;
mod check;
mod cleanup;
mod config;
mod ddl;
mod error;
mod pgoutput;
mod record;
mod replication;
pub mod resume;
mod snapshot;
mod tls;
mod types;

use hstream_io_runtime::validate::ConfigIssue;
use hstream_io_runtime::{CheckFailure, Connector, Kind, Result, Source, SourceContext};

pub use config::{PgSourceConfig, RecordFormat, SlotOnDelete, SnapshotMode, TruncatePolicy};

/// The connector's name.
pub const NAME: &str = "source-postgresql";

/// The connector.
pub struct PgSource;

impl Connector for PgSource {
    type Config = PgSourceConfig;
    const NAME: &'static str = NAME;
    const KIND: Kind = Kind::Source;
    const TARGET: &'static str = "postgresql";
    const SUMMARY: &'static str = "Captures row changes of PostgreSQL tables through logical replication (pgoutput), after a consistent snapshot.";
    const CHECKS: &'static [hstream_io_runtime::CheckSpec] = &check::CHECKS;
    const NOTES: Option<&'static str> = Some(include_str!("../docs.md"));

    fn validate(config: &Self::Config) -> Vec<ConfigIssue> {
        config.validate()
    }

    async fn check(config: &Self::Config) -> Result<(), CheckFailure> {
        check::check(config).await
    }

    async fn cleanup(config: &Self::Config, task_id: Option<&str>) -> Result<()> {
        cleanup::cleanup(config, task_id).await
    }
}

impl Source for PgSource {
    async fn run(config: PgSourceConfig, ctx: SourceContext) -> Result<()> {
        replication::run(config, ctx).await
    }
}
