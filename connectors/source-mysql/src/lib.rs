//! `source-mysql`: change data capture from MySQL and MariaDB through the
//! binlog, with a consistent initial snapshot.
//!
//! Flow of a task: read the captured tables' definitions → if no position is
//! stored, copy the tables ([`snapshot`]) and commit the binlog position the
//! copy is consistent with → stream the binlog from the stored position
//! ([`binlog`]), one send per transaction with the position after its commit.
//! Records have the reference shape `{"key":{…},"value":{…}|null}`
//! ([`output`]); values convert the same way in snapshot and stream
//! ([`types`]).

mod binlog;
mod check;
mod config;
mod error;
mod events;
mod gtid_set;
mod output;
pub mod resume;
mod rows;
mod snapshot;
mod types;

pub use config::{DdlPolicy, MysqlSourceConfig, RecordFormat, SnapshotMode, ZeroDate};

use std::sync::{Arc, Mutex};

use hstream_io_runtime::retry::Reconnects;
use hstream_io_runtime::validate::ConfigIssue;
use hstream_io_runtime::{
    CheckFailure, CheckSpec, Connector, Error, ErrorKind, Kind, Result, Source, SourceContext,
};

use crate::binlog::Ended;
use crate::events::Position;
use crate::output::Output;

/// The connector's name.
pub const NAME: &str = "source-mysql";

/// The connector.
pub struct MysqlSource;

impl Connector for MysqlSource {
    type Config = MysqlSourceConfig;
    const NAME: &'static str = NAME;
    const KIND: Kind = Kind::Source;
    const TARGET: &'static str = "mysql";
    const SUMMARY: &'static str = "Captures inserts, updates and deletes of MySQL / MariaDB tables from the binlog, after a consistent snapshot.";
    const CHECKS: &'static [CheckSpec] = check::CHECKS;
    const NOTES: Option<&'static str> = Some(include_str!("../docs.md"));

    fn validate(config: &MysqlSourceConfig) -> Vec<ConfigIssue> {
        config.validate()
    }

    async fn check(config: &MysqlSourceConfig) -> Result<(), CheckFailure> {
        check::run(config).await
    }
}

impl Source for MysqlSource {
    async fn run(config: MysqlSourceConfig, ctx: SourceContext) -> Result<()> {
        let stored = match ctx.start_position() {
            None => None,
            Some(v) => Some(serde_json::from_value::<Position>(v.clone()).map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    "the stored position (KV `source_position`) is not a source-mysql position",
                )
                .with_source(e)
                .with_hint("Delete the task's stored position to start again with a snapshot.")
            })?),
        };
        let unfinished = stored.as_ref().is_some_and(|p| p.snapshot.is_some());
        if stored.is_some() && !unfinished && config.snapshot_mode == SnapshotMode::InitialOnly {
            tracing::info!("snapshot already done (initial_only); nothing to do");
            return Ok(());
        }
        let mut start = match stored {
            Some(p) if unfinished => match initial_position(&config, &ctx, Some(p)).await? {
                Some(p) => p,
                None => return Ok(()), // shutdown during the snapshot
            },
            Some(p) => p,
            None => match initial_position(&config, &ctx, None).await? {
                Some(p) => p,
                None => return Ok(()), // shutdown during the snapshot
            },
        };
        if config.snapshot_mode == SnapshotMode::InitialOnly {
            tracing::info!("snapshot done (initial_only); stopping");
            return Ok(());
        }
        let mut reconnects = Reconnects::default();
        loop {
            let resume = Arc::new(Mutex::new(start.clone()));
            reconnects.connected();
            let result = binlog::stream(
                config.clone(),
                ctx.clone(),
                Output::new(&config),
                resume.clone(),
            )
            .await;
            start = resume.lock().map(|p| p.clone()).unwrap_or(start);
            let error = match result {
                Ok(Ended::Shutdown) => return Ok(()),
                Ok(Ended::Refused(e)) if config.snapshot_mode == SnapshotMode::WhenNeeded => {
                    tracing::warn!(position = %start, error = %e, "the binlog position is gone; copying the tables again (when_needed)");
                    match initial_position(&config, &ctx, None).await? {
                        Some(p) => {
                            start = p;
                            continue;
                        }
                        None => return Ok(()),
                    }
                }
                Ok(Ended::Refused(e)) => return Err(e),
                Ok(Ended::ServerClosed) => Error::new(
                    ErrorKind::Connection,
                    format!("the server closed the binlog stream at {start}"),
                ),
                Err(e) => e,
            };
            if !error.kind().is_retryable() || ctx.shutdown().is_triggered() {
                return Err(error);
            }
            tracing::warn!(error = %error, position = %start, "binlog stream lost");
            match reconnects.next(ctx.shutdown()).await {
                Some(attempt) => tracing::info!(attempt, position = %start, "reconnecting"),
                None if ctx.shutdown().is_triggered() => return Ok(()),
                None => return Err(error),
            }
        }
    }
}

/// The first position: after a snapshot (committed once its records are
/// acknowledged; `resume` continues an unfinished one), or the binlog's
/// current end with `snapshotMode: never`. `None` when the shutdown
/// interrupted the snapshot.
async fn initial_position(
    config: &MysqlSourceConfig,
    ctx: &SourceContext,
    resume: Option<Position>,
) -> Result<Option<Position>> {
    let mut conn = error::connect(config).await?;
    let mariadb = snapshot::is_mariadb(&mut conn).await?;
    let mut schemas = Vec::new();
    for table in config.table_refs() {
        schemas.push(types::load_schema(&mut conn, &table).await?);
    }
    let mut out = Output::new(config);
    let position = if config.snapshot_mode == SnapshotMode::Never && resume.is_none() {
        snapshot::current_position(&mut conn, mariadb).await?
    } else {
        match snapshot::run(config, ctx, &mut out, &schemas, resume).await? {
            Some(p) => p,
            None => return Ok(None),
        }
    };
    let _ = conn.disconnect().await;
    out.flush(ctx, Some(&position)).await?;
    // Stored now, not within the periodic store's second: a restart must not take the
    // snapshot again (it could not emit the deletes made since).
    let stored = serde_json::to_value(&position).map_err(|e| {
        Error::new(ErrorKind::Internal, "cannot encode the position").with_source(e)
    })?;
    ctx.checkpoint(&stored).await?;
    tracing::info!(position = %position, "initial position recorded");
    // The snapshot's chunks and row buffers are free now; give their pages back so the
    // streaming process does not keep the snapshot's peak for its whole life.
    drop((out, schemas));
    hstream_io_runtime::release_free_memory();
    Ok(Some(position))
}
