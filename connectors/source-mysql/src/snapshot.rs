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
//! time zone UTC, UTF-8) in primary-key order, and streaming starts at the
//! recorded position, so a change committed before it is in the snapshot and
//! one committed after it is in the stream.
//!
//! Chunks: every `snapshotChunkSize` rows the chunk is sent with a position
//! carrying the progress (rows, last key), which the runtime commits once the
//! chunk and everything before it are acknowledged. A run that finds such a
//! position continues after the last key in a new consistent snapshot; how
//! that stays exact is in [`crate::resume`]. Before a chunk is sent, its last
//! key is stored under [`SENT_KEY`], so the next run knows which keys a killed
//! run may have sent with no acknowledged progress.

use hstream_io_runtime::{Error, ErrorKind, Result, SourceContext};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::config::{MysqlSourceConfig, quote_ident};
use crate::error::{classify, connect};
use crate::events::Position;
use crate::gtid_set::GtidSet;
use crate::output::Output;
use crate::resume::{KeyOrder, Segment, SnapshotProgress};
use crate::types::{Origin, TableSchema};

/// Shortest interval between two progress log lines.
const PROGRESS_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// True when the server is MariaDB.
pub async fn is_mariadb(conn: &mut Conn) -> Result<bool> {
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| classify(e, "cannot read the server version"))?;
    Ok(version.is_some_and(|v| v.contains("MariaDB")))
}

/// The row of `SHOW MASTER STATUS` (File, Position, Binlog_Do_DB,
/// Binlog_Ignore_DB, Executed_Gtid_Set); `None` when the binlog is off.
///
/// MySQL 8.4 removed that statement in favour of `SHOW BINARY LOG STATUS`
/// (8.2+, same columns), which MariaDB does not know: the old form is tried
/// first and the new one only when the server rejects the old syntax.
pub async fn binlog_status(conn: &mut Conn) -> mysql_async::Result<Option<mysql_async::Row>> {
    match conn.query_first("SHOW MASTER STATUS").await {
        Err(e) if is_syntax_error(&e) => conn.query_first("SHOW BINARY LOG STATUS").await,
        other => other,
    }
}

/// True for the server's "you have an error in your SQL syntax" (1064).
fn is_syntax_error(e: &mysql_async::Error) -> bool {
    const ER_PARSE_ERROR: u16 = 1064;
    matches!(e, mysql_async::Error::Server(s) if s.code == ER_PARSE_ERROR)
}

/// The current end of the binlog (for streaming without a snapshot).
pub async fn current_position(conn: &mut Conn, mariadb: bool) -> Result<Position> {
    let row = binlog_status(conn)
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
        // MySQL: Executed_Gtid_Set (empty with GTID mode off).
        let set: Option<String> = row.take(4);
        set.and_then(|s| GtidSet::parse(&s).ok())
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    Ok(Position {
        file,
        pos,
        gtid,
        ..Position::default()
    })
}

async fn gtid_at(conn: &mut Conn, file: &str, pos: u64) -> Result<String> {
    let gtid: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
        .await
        .map_err(|e| classify(e, format!("cannot read the GTID state at {file}:{pos}")))?;
    Ok(gtid.flatten().unwrap_or_default())
}

/// Copies every captured table (or, when `resume` holds an unfinished
/// snapshot, what is left of it); returns the position streaming continues
/// from, or `None` when the shutdown interrupted the copy.
pub async fn run(
    config: &MysqlSourceConfig,
    ctx: &SourceContext,
    out: &mut Output,
    schemas: &[TableSchema],
    resume: Option<Position>,
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
    let here = start_snapshot(&mut conn, mariadb).await?;
    // Streaming starts where the first snapshot transaction started.
    let (start, mut segments, mut progress) = match resume {
        Some(p) => {
            let progress = p.snapshot.clone().unwrap_or_default();
            let segments = p.segments.clone();
            let start = Position {
                segments: Vec::new(),
                snapshot: None,
                ..p
            };
            (start, segments, progress)
        }
        None => (here.clone(), Vec::new(), SnapshotProgress::new()),
    };
    let resumed = start.file != here.file || start.pos != here.pos;
    let mut sent = if resumed {
        Sent::load(ctx).await?
    } else {
        Sent::default()
    };
    if resumed {
        tracing::info!(stream_start = %start, snapshot_at = %here, "snapshot resumed in a new consistent snapshot");
    } else {
        tracing::info!(position = %here, tables = schemas.len(), "snapshot started");
    }
    for schema in schemas {
        let name = schema.table.to_string();
        let p = progress.entry(name.clone()).or_default();
        if p.done {
            ctx.metrics().snapshot_progress(&name, p.rows, p.rows, true);
        } else if p.after.is_none() {
            p.rows = 0; // a table without a resumable key starts again
        }
    }
    let chunk = u64::from(config.snapshot_chunk_size.max(1));
    let position_of = |progress: &SnapshotProgress, segments: &[Segment]| Position {
        segments: segments.to_vec(),
        snapshot: Some(progress.clone()),
        ..start.clone()
    };

    for schema in schemas {
        let Some(index) = out.index_of(&schema.table.database, &schema.table.name) else {
            continue;
        };
        let name = schema.table.to_string();
        let table_progress = progress.get(&name).cloned().unwrap_or_default();
        if table_progress.done {
            continue;
        }
        // Resumable mid-table when Rust orders its key as the server does.
        let order = key_order(&mut conn, schema).await?;
        let resumable = order.is_some();
        let order = order.unwrap_or_default();
        let after = table_progress
            .after
            .clone()
            .filter(|a| resumable && order.accepts(a));
        if resumed {
            // This range is read at `here`: it replaces what earlier runs
            // recorded for keys after `after`.
            let mut kept = Vec::with_capacity(segments.len());
            for s in segments.drain(..) {
                let keep = s.table != name
                    || match (&after, &s.after) {
                        (_, None) => after.is_some(),
                        (None, Some(_)) => false,
                        (Some(a), Some(b)) => {
                            order.compare_on(b, a, &mut conn).await?
                                == Some(std::cmp::Ordering::Less)
                        }
                    };
                if keep {
                    kept.push(s);
                }
            }
            segments = kept;
            // Keys a killed run may have sent beyond its last acknowledged
            // chunk: their records are stale (a row deleted since is not read
            // again), so every change since the stream start is streamed for
            // them — none skipped — and the last one wins.
            let stale_to = match (sent.get(&name), &after) {
                (Some(serde_json::Value::Bool(true)), _) => Some(None),
                (Some(serde_json::Value::Array(high)), Some(a)) => {
                    let beyond = order.compare_on(a, high, &mut conn).await?
                        == Some(std::cmp::Ordering::Less);
                    beyond.then(|| Some(high.clone()))
                }
                (Some(serde_json::Value::Array(high)), None) => Some(Some(high.clone())),
                _ => None,
            };
            match stale_to {
                None => segments.push(Segment {
                    table: name.clone(),
                    after: after.clone(),
                    file: here.file.clone(),
                    pos: here.pos,
                    order: order.clone(),
                }),
                Some(high) => {
                    segments.push(Segment {
                        table: name.clone(),
                        after: after.clone(),
                        file: start.file.clone(),
                        pos: start.pos,
                        order: order.clone(),
                    });
                    if let Some(high) = high {
                        segments.push(Segment {
                            table: name.clone(),
                            after: Some(high),
                            file: here.file.clone(),
                            pos: here.pos,
                            order: order.clone(),
                        });
                    }
                }
            }
        }
        let estimate: Option<Option<u64>> = conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&schema.table.database, &schema.table.name),
            )
            .await
            .map_err(|e| classify(e, format!("cannot estimate the rows of `{}`", schema.table)))?;
        let estimate = estimate.flatten().unwrap_or(0);
        let mut rows = table_progress.rows;
        tracing::info!(table = %schema.table, estimated_rows = estimate, rows_done = rows, after = ?after, "snapshot of table started");
        ctx.metrics()
            .snapshot_progress(&name, rows, estimate, false);
        let (sql, params) = chunk_query(schema, &order, after.as_deref());
        let mut result = conn
            .exec_iter(sql, params)
            .await
            .map_err(|e| classify(e, format!("cannot read table `{}`", schema.table)))?;
        let started = std::time::Instant::now();
        let mut in_chunk = 0u64;
        let mut last_key: Option<Vec<serde_json::Value>> = None;
        let mut last_logged = started;
        if !resumable {
            sent.mark(ctx, &name, serde_json::Value::Bool(true)).await?;
        }
        // A chunk is buffered whole, the highest key it holds is stored
        // (`snapshot_sent`) before any of it is sent, then it is sent with the
        // progress position committed once it is acknowledged.
        loop {
            let row = result
                .next()
                .await
                .map_err(|e| classify(e, format!("cannot read table `{}`", schema.table)))?;
            let end = row.is_none();
            if let Some(row) = row {
                let conv = |e| conversion(&schema.table.to_string(), e);
                let values = row.unwrap_raw();
                let key = schema
                    .key_of(&values[..], Origin::Snapshot, config.zero_date)
                    .map_err(conv)?;
                out.push(index, schema, &key, Some(&values[..]), Origin::Snapshot)
                    .map_err(conv)?;
                // A key without its column's shape (a zero date as null)
                // cannot be a bound: the table then restarts from its first row.
                if resumable && order.accepts(&key) {
                    last_key = Some(key);
                } else {
                    last_key = None;
                }
                rows += 1;
                in_chunk += 1;
            }
            if in_chunk == 0 || (!end && in_chunk < chunk) {
                if end {
                    break;
                }
                continue;
            }
            in_chunk = 0;
            if let Some(key) = &last_key {
                sent.mark(ctx, &name, serde_json::Value::from(key.clone()))
                    .await?;
            }
            let p = progress.entry(name.clone()).or_default();
            p.rows = rows;
            p.after = last_key.clone();
            out.flush(ctx, Some(&position_of(&progress, &segments)))
                .await?;
            ctx.metrics()
                .snapshot_progress(&name, rows, estimate, false);
            if ctx.shutdown().is_triggered() {
                tracing::info!(table = %schema.table, rows, "snapshot interrupted by the shutdown; it resumes after the last acknowledged chunk");
                return Ok(None);
            }
            if last_logged.elapsed() >= PROGRESS_LOG_INTERVAL {
                last_logged = std::time::Instant::now();
                let read = rows - table_progress.rows;
                let rate = read as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let eta = estimate.saturating_sub(rows) as f64 / rate.max(1.0);
                tracing::info!(table = %schema.table, rows, estimated_rows = estimate, rows_per_second = rate as u64, eta_seconds = eta as u64, "snapshot progress");
            }
            if end {
                break;
            }
        }
        drop(result);
        let p = progress.entry(name.clone()).or_default();
        p.rows = rows;
        p.done = true;
        p.after = None;
        out.flush(ctx, Some(&position_of(&progress, &segments)))
            .await?;
        ctx.metrics().snapshot_progress(&name, rows, estimate, true);
        tracing::info!(table = %schema.table, rows, "snapshot of table done");
    }
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| classify(e, "cannot end the snapshot transaction"))?;
    let _ = conn.disconnect().await;
    Ok(Some(Position { segments, ..start }))
}

/// KV key holding, per table, the highest key a snapshot run may have sent
/// (`true` for a table whose key is not an integer): stored before the
/// records are sent, so a resumed run knows which keys have stale records.
pub const SENT_KEY: &str = "mysql_snapshot_sent";

/// The [`SENT_KEY`] map.
#[derive(Default)]
struct Sent(serde_json::Map<String, serde_json::Value>);

impl Sent {
    async fn load(ctx: &SourceContext) -> Result<Self> {
        let Some(text) = ctx.kv().get(SENT_KEY).await? else {
            return Ok(Self::default());
        };
        match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(map)) => Ok(Self(map)),
            _ => Err(Error::new(
                ErrorKind::Internal,
                format!("the stored `{SENT_KEY}` is not a JSON object: {text}"),
            )
            .with_hint(
                "Delete the task's stored state (position and this key) to copy the tables again.",
            )),
        }
    }

    fn get(&self, table: &str) -> Option<&serde_json::Value> {
        self.0.get(table)
    }

    /// Stores `value` for `table` (durable when this returns) unless already stored.
    async fn mark(
        &mut self,
        ctx: &SourceContext,
        table: &str,
        value: serde_json::Value,
    ) -> Result<()> {
        if self.0.get(table) == Some(&value) {
            return Ok(());
        }
        self.0.insert(table.to_string(), value);
        ctx.kv()
            .set(
                SENT_KEY,
                serde_json::Value::Object(self.0.clone()).to_string(),
            )
            .await
    }
}

/// Opens the consistent-snapshot transaction on `conn`; returns the binlog
/// position it is consistent with.
async fn start_snapshot(conn: &mut Conn, mariadb: bool) -> Result<Position> {
    if mariadb {
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
        let gtid = gtid_at(conn, &file, pos).await?;
        Ok(Position {
            file,
            pos,
            gtid,
            ..Position::default()
        })
    } else {
        conn.query_drop("FLUSH TABLES WITH READ LOCK")
            .await
            .map_err(|e| classify(e, "cannot lock tables to start the snapshot (needs RELOAD)"))?;
        let started = async {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await
                .map_err(|e| classify(e, "cannot start the snapshot transaction"))?;
            current_position(conn, false).await
        }
        .await;
        let unlocked = conn
            .query_drop("UNLOCK TABLES")
            .await
            .map_err(|e| classify(e, "cannot unlock tables after starting the snapshot"));
        let position = started?;
        unlocked?;
        Ok(position)
    }
}

/// The rows of `schema` in primary-key order, after the key `after` when
/// given: `k1 > ? OR (k1 = ? AND k2 > ?) OR …`, which the server answers with
/// a range scan of the primary key.
fn chunk_query(
    schema: &TableSchema,
    order: &KeyOrder,
    after: Option<&[serde_json::Value]>,
) -> (String, Vec<mysql_async::Value>) {
    let columns = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let keys: Vec<String> = schema
        .key
        .iter()
        .map(|&i| quote_ident(&schema.columns[i].name))
        .collect();
    let mut sql = format!("SELECT {columns} FROM {}", schema.table.quoted());
    let mut params = Vec::new();
    if let Some(after) = after.filter(|a| a.len() == keys.len()) {
        let mut bound = |n: usize| {
            let (text, param) = order.column(n).sql_bound(&after[n]);
            params.extend(param);
            text
        };
        let mut alternatives = Vec::new();
        for n in 0..keys.len() {
            let mut terms = Vec::new();
            for (i, k) in keys.iter().enumerate().take(n) {
                terms.push(format!("{k} = {}", bound(i)));
            }
            terms.push(format!("{} > {}", keys[n], bound(n)));
            alternatives.push(format!("({})", terms.join(" AND ")));
        }
        sql.push_str(" WHERE ");
        sql.push_str(&alternatives.join(" OR "));
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(&keys.join(", "));
    (sql, params)
}

/// The order of `schema`'s key (the key columns' character sets and
/// collations decide for text); `None` for a key type without one.
async fn key_order(conn: &mut Conn, schema: &TableSchema) -> Result<Option<KeyOrder>> {
    let rows: Vec<(String, Option<String>, Option<String>)> = conn
        .exec(
            "SELECT COLUMN_NAME, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&schema.table.database, &schema.table.name),
        )
        .await
        .map_err(|e| classify(e, format!("cannot read the collations of `{}`", schema.table)))?;
    let collations: Vec<(Option<String>, Option<String>)> = schema
        .key
        .iter()
        .map(|&i| {
            rows.iter()
                .find(|(name, _, _)| *name == schema.columns[i].name)
                .map(|(_, charset, collation)| (charset.clone(), collation.clone()))
                .unwrap_or_default()
        })
        .collect();
    Ok(KeyOrder::of(schema, &collations))
}

/// A conversion failure as a task error naming the table and column.
pub fn conversion(table: &str, e: crate::types::ConvError) -> Error {
    Error::new(
        ErrorKind::Conversion,
        format!("cannot convert a row of `{table}`"),
    )
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::is_syntax_error;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "m".into(),
            state: "42000".into(),
        })
    }

    #[test]
    fn only_a_syntax_error_switches_to_show_binary_log_status() {
        // MySQL 8.4 answers `SHOW MASTER STATUS` with 1064.
        assert!(is_syntax_error(&server(1064)));
        // A missing privilege (1227) must surface as it is, not be retried.
        assert!(!is_syntax_error(&server(1227)));
    }
}
