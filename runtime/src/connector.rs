//! What a connector is: a name, a kind, one config type, its checks, and a run
//! function. The runtime does everything else.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::check::{CheckFailure, CheckSpec};
use crate::error::Result;
use crate::sink::{SinkBatch, SinkOptions};
use crate::source::SourceContext;
use crate::validate::ConfigIssue;

/// Whether a connector writes into HStream (source) or reads from it (sink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Captures data into a stream.
    Source,
    /// Applies a stream's records to a target.
    Sink,
}

impl Kind {
    /// `source` or `sink`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Sink => "sink",
        }
    }

    /// HServer's connector type: `SOURCE` or `SINK`.
    pub fn hserver_type(self) -> &'static str {
        match self {
            Self::Source => "SOURCE",
            Self::Sink => "SINK",
        }
    }
}

/// The parts every connector declares.
pub trait Connector: Send + Sync + 'static {
    /// The one config type: its serde shape is the config, its schemars schema is
    /// the spec, its doc comments are the docs.
    type Config: DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static;
    /// e.g. `source-generator`.
    const NAME: &'static str;
    /// Source or sink.
    const KIND: Kind;
    /// HServer's target name (`CREATE SOURCE CONNECTOR … FROM <target>`), e.g. `generator`.
    const TARGET: &'static str;
    /// One sentence for listings and docs.
    const SUMMARY: &'static str;
    /// The environment checks `check` runs, in order (also listed in the docs).
    const CHECKS: &'static [CheckSpec] = &[];
    /// Hand-written Markdown appended to the generated docs page.
    const NOTES: Option<&'static str> = None;

    /// Cross-field rules the schema cannot express; each issue carries a JSON pointer.
    fn validate(_config: &Self::Config) -> Vec<ConfigIssue> {
        Vec::new()
    }

    /// Environment checks beyond the schema (reach the database, read the keys…).
    /// Runs the checks of [`Connector::CHECKS`] in order and stops at the first failure.
    fn check(_config: &Self::Config) -> impl Future<Output = Result<(), CheckFailure>> + Send {
        async { Ok(()) }
    }

    /// Drops what the task owns outside HStream once it is deleted for good
    /// (e.g. a replication slot), as its config says; the `cleanup` verb runs
    /// it after the task process has stopped. `task_id` is the task file's
    /// `task`. Must be idempotent (a retried delete runs it again) and must
    /// return an error, never silently skip, when something it should drop
    /// cannot be dropped. Default: nothing to clean up.
    fn cleanup(
        _config: &Self::Config,
        _task_id: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// A source: produces records and positions; the runtime appends them and
/// commits each position once everything before it is acknowledged.
pub trait Source: Connector {
    /// Runs until the source is done or `ctx.shutdown()` fires. Must check the
    /// shutdown between batches and return promptly (never inside a transaction).
    fn run(config: Self::Config, ctx: SourceContext) -> impl Future<Output = Result<()>> + Send;
}

/// A sink: receives ready batches; the runtime reads the stream, batches,
/// retries, stores offsets and reports.
pub trait SinkConnector: Connector {
    /// The open writer.
    type Writer: SinkWriter;

    /// The stream to read.
    fn stream(config: &Self::Config) -> &str;

    /// The options every sink shares (`task.error.*`, `buffer.*`, …).
    fn options(config: &Self::Config) -> &SinkOptions;

    /// Opens the writer (connects to the target).
    fn open(config: &Self::Config) -> impl Future<Output = Result<Self::Writer>> + Send;
}

/// Writes batches to a sink's target, in two steps so the runtime can overlap
/// them: [`SinkWriter::preparer`] does the work that needs no connection
/// (decoding, conversion, rendering) for batch N+1 on a task of its own while
/// [`SinkWriter::write_prepared`] applies batch N.
pub trait SinkWriter: Send + 'static {
    /// A batch after the preparer's work.
    type Prepared: Send + Sync + 'static;

    /// The preparation step, detached from the writer (it runs concurrently
    /// with a write). An `Err` is handled like a failed write (retried or
    /// skipped by the sink options); conversion errors should use
    /// [`crate::ErrorKind::Conversion`] so they are not retried.
    fn preparer(&self) -> impl Fn(&SinkBatch) -> Result<Self::Prepared> + Send + Sync + 'static;

    /// Applies one prepared batch. Contract: records of one shard arrive in
    /// stream order; after a restart the runtime may deliver records again
    /// that were written before the last stored offset, so writes must be
    /// idempotent. An `Err` is retried or skipped by the runtime according to
    /// the sink options; a retry passes the same `prepared` again.
    fn write_prepared(
        &mut self,
        batch: &SinkBatch,
        prepared: &Self::Prepared,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Prepares and applies one batch (no overlap).
    fn write(&mut self, batch: &SinkBatch) -> impl Future<Output = Result<()>> + Send {
        let prepared = (self.preparer())(batch);
        async move { self.write_prepared(batch, &prepared?).await }
    }

    /// Offsets the writer keeps itself, transactionally with the rows (an
    /// exactly-once sink's progress table): shard id → RecordId of the last
    /// applied record. When `Some`, they take precedence over the KV offsets
    /// for where each shard resumes. Default: `None` (offsets live in the KV).
    fn stored_offsets(
        &mut self,
    ) -> impl Future<
        Output = Result<Option<std::collections::BTreeMap<u64, crate::stream::RecordId>>>,
    > + Send {
        async { Ok(None) }
    }
}

/// The connector-independent view of a connector, for the registry and the CLI.
#[derive(Clone, Copy)]
pub struct ConnectorInfo {
    /// e.g. `sink-blackhole`.
    pub name: &'static str,
    /// Source or sink.
    pub kind: Kind,
    /// HServer target name.
    pub target: &'static str,
    /// One sentence.
    pub summary: &'static str,
    /// Declared checks.
    pub checks: &'static [CheckSpec],
    /// Hand-written docs.
    pub notes: Option<&'static str>,
    /// The spec (JSON Schema).
    pub spec: fn() -> Value,
    /// Runs one verb; returns the process exit code.
    pub main: fn(crate::task::TaskCommand) -> i32,
}

impl ConnectorInfo {
    /// The registry entry of source `C`.
    pub fn source<C: Source>() -> Self {
        Self::common::<C>(crate::task::source_main::<C>)
    }

    /// The registry entry of sink `C`.
    pub fn sink<C: SinkConnector>() -> Self {
        Self::common::<C>(crate::task::sink_main::<C>)
    }

    fn common<C: Connector>(main: fn(crate::task::TaskCommand) -> i32) -> Self {
        Self {
            name: C::NAME,
            kind: C::KIND,
            target: C::TARGET,
            summary: C::SUMMARY,
            checks: C::CHECKS,
            notes: C::NOTES,
            spec: crate::spec::spec::<C>,
            main,
        }
    }
}
