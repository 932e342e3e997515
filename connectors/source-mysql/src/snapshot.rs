//! The initial snapshot: every existing row once, consistent with the binlog
//! position streaming starts from.
//!
//! Method (no gap, no duplicate at the seam): one connection opens
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` and reads the binlog position
//! that snapshot corresponds to.
//! - MariaDB: the session status variables `binlog_snapshot_file` /
//!   `binlog_snapshot_position` give it exactly and without any lock (MariaDB
//!   takes them inside its group commit), and `BINLOG_GTID_POS()` turns it
//!   into a GTID state.
//! - MySQL: `FLUSH TABLES WITH READ LOCK` is held only while the transaction
//!   starts and `SHOW MASTER STATUS` is read, then released (needs RELOAD).
//!
//! Every table is then read inside that transaction (binary protocol, session
//! time zone UTC, UTF-8), and streaming starts at the recorded position, so a
//! change committed before it is in the snapshot and one committed after it is
//! in the stream. The position is committed only after the last snapshot
//! record is acknowledged; a crash mid-snapshot copies again from the start
//! (records are upserts, so the copy is idempotent downstream).

use hstream_io_runtime::{Error, ErrorKind, Result, SourceContext};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::config::{MysqlSourceConfig, quote_ident};
use crate::error::{classify, connect};
use crate::events::Position;
use crate::output::{FLUSH_RECORDS, Output};
use crate::types::{Origin, TableSchema};

/// Rows between two progress log lines.
const PROGRESS_EVERY: u64 = 100_000;

/// True when the server is MariaDB.
pub async fn is_mariadb(conn: &mut Conn) -> Result<bool> {
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| classify(e, "cannot read the server version"))?;
    Ok(version.is_some_and(|v| v.contains("MariaDB")))
}

/// The current end of the binlog (for streaming without a snapshot).
pub async fn current_position(conn: &mut Conn, mariadb: bool) -> Result<Position> {
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(|e| classify(e, "cannot read the binlog position (SHOW MASTER STATUS)"))?;
    let Some(mut row) = row else {
        return Err(Error::new(ErrorKind::Setup, "the binary log is disabled on the server")
            .with_hint("Enable it: start the server with log_bin=mysql-bin, binlog_format=ROW and binlog_row_image=FULL."));
    };
    let file: String = row.take(0).unwrap_or_default();
    let pos: u64 = row.take(1).unwrap_or(4);
    let gtid = if mariadb {
        gtid_at(conn, &file, pos).await?
    } else {
        String::new()
    };
    Ok(Position {
        file,
        pos,
        gtid,
        skip: 0,
    })
}

async fn gtid_at(conn: &mut Conn, file: &str, pos: u64) -> Result<String> {
    let gtid: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
        .await
        .map_err(|e| classify(e, format!("cannot read the GTID state at {file}:{pos}")))?;
    Ok(gtid.flatten().unwrap_or_default())
}

/// Copies every captured table; returns the position streaming continues
/// from, or `None` when the shutdown interrupted the copy.
pub async fn run(
    config: &MysqlSourceConfig,
    ctx: &SourceContext,
    out: &mut Output,
    schemas: &[TableSchema],
) -> Result<Option<Position>> {
    let mut conn = connect(config).await?;
    for sql in [
        "SET NAMES utf8mb4",
        "SET time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    ] {
        conn.query_drop(sql)
            .await
            .map_err(|e| classify(e, "cannot prepare the snapshot session"))?;
    }
    let mariadb = is_mariadb(&mut conn).await?;
    let position = if mariadb {
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(|e| classify(e, "cannot start the snapshot transaction"))?;
        let vars: Vec<(String, String)> = conn
            .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            .await
            .map_err(|e| classify(e, "cannot read the snapshot's binlog position"))?;
        let get = |name: &str| {
            vars.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let (Some(file), Some(pos)) = (
            get("binlog_snapshot_file"),
            get("binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok()),
        ) else {
            return Err(Error::new(
                ErrorKind::Setup,
                "the server reports no binlog_snapshot_file / binlog_snapshot_position",
            )
            .with_hint("Enable the binary log (log_bin) and restart the server."));
        };
        if file.is_empty() {
            return Err(Error::new(ErrorKind::Setup, "the binary log is disabled on the server")
                .with_hint("Enable it: start the server with log_bin=mysql-bin, binlog_format=ROW and binlog_row_image=FULL."));
        }
        let gtid = gtid_at(&mut conn, &file, pos).await?;
        Position {
            file,
            pos,
            gtid,
            skip: 0,
        }
    } else {
        conn.query_drop("FLUSH TABLES WITH READ LOCK")
            .await
            .map_err(|e| classify(e, "cannot lock tables to start the snapshot (needs RELOAD)"))?;
        let started = async {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await
                .map_err(|e| classify(e, "cannot start the snapshot transaction"))?;
            current_position(&mut conn, false).await
        }
        .await;
        let unlocked = conn
            .query_drop("UNLOCK TABLES")
            .await
            .map_err(|e| classify(e, "cannot unlock tables after starting the snapshot"));
        let position = started?;
        unlocked?;
        position
    };
    tracing::info!(position = %position, tables = schemas.len(), "snapshot started");

    for schema in schemas {
        let Some(index) = out.index_of(&schema.table.database, &schema.table.name) else {
            continue;
        };
        let estimate: Option<Option<u64>> = conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&schema.table.database, &schema.table.name),
            )
            .await
            .map_err(|e| classify(e, format!("cannot estimate the rows of `{}`", schema.table)))?;
        let estimate = estimate.flatten().unwrap_or(0);
        tracing::info!(table = %schema.table, estimated_rows = estimate, "snapshot of table started");
        let columns = schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {columns} FROM {}", schema.table.quoted());
        let mut result = conn
            .exec_iter(sql, ())
            .await
            .map_err(|e| classify(e, format!("cannot read table `{}`", schema.table)))?;
        let mut rows = 0u64;
        let started = std::time::Instant::now();
        while let Some(row) = result
            .next()
            .await
            .map_err(|e| classify(e, format!("cannot read table `{}`", schema.table)))?
        {
            let (value, key) = schema
                .row_to_json(row.unwrap_raw(), Origin::Snapshot, config.zero_date)
                .map_err(|e| conversion(&schema.table.to_string(), e))?;
            out.push(index, key, Some(value));
            rows += 1;
            if out.buffered() >= FLUSH_RECORDS {
                out.flush(ctx, None).await?;
                if ctx.shutdown().is_triggered() {
                    tracing::info!(table = %schema.table, rows, "snapshot interrupted by the shutdown; it restarts on the next run");
                    return Ok(None);
                }
            }
            if rows.is_multiple_of(PROGRESS_EVERY) {
                let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let eta = estimate.saturating_sub(rows) as f64 / rate.max(1.0);
                tracing::info!(table = %schema.table, rows, estimated_rows = estimate, rows_per_second = rate as u64, eta_seconds = eta as u64, "snapshot progress");
            }
        }
        drop(result);
        out.flush(ctx, None).await?;
        tracing::info!(table = %schema.table, rows, "snapshot of table done");
    }
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| classify(e, "cannot end the snapshot transaction"))?;
    let _ = conn.disconnect().await;
    Ok(Some(position))
}

/// A conversion failure as a task error naming the table and column.
pub fn conversion(table: &str, e: crate::types::ConvError) -> Error {
    Error::new(
        ErrorKind::Conversion,
        format!("cannot convert a row of `{table}`"),
    )
    .with_source(e)
}
