//! Applies batches: records → changes → one net change per key → one
//! transaction (deletes, COPY into a stage table + `INSERT … ON CONFLICT`, the
//! exactly-once position) per batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use hstream_io_runtime::change::{Net, Op, reduce};
use hstream_io_runtime::record::{Change, excerpt, parse};
use hstream_io_runtime::stream::RecordId;
use hstream_io_runtime::{Error, ErrorKind, Result, SinkBatch, SinkRecord, SinkWriter};
use sqlx::postgres::{PgDatabaseError, PgPool};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::catalog::{self, PgTable};
use crate::config::PgSinkConfig;
use crate::convert::to_text;
use crate::error::pg_error;
use crate::progress::PgProgress;
use crate::sql;

/// Bytes of COPY data sent per message.
const COPY_CHUNK: usize = 1 << 20;

/// A row by column index: `None` absent, `Some(None)` NULL, `Some(Some(text))` a value.
type Row = Vec<Option<Option<String>>>;

/// One record, converted.
struct Prepared {
    /// Key column texts, in key order (empty for append-only tables).
    key: Vec<String>,
    op: Op<Row>,
}

/// The open writer of `sink-postgresql`.
pub struct PgSinkWriter {
    pool: PgPool,
    schema: String,
    table_name: String,
    key_columns: Option<Vec<String>>,
    table: Option<Arc<PgTable>>,
    progress: Option<PgProgress>,
}

impl PgSinkWriter {
    /// Connects, reads the table, and creates the progress table when exactly-once is on.
    pub(crate) async fn open(config: &PgSinkConfig) -> Result<Self> {
        let (schema, table_name) = config.target();
        let pool = config.pool();
        let mut writer = Self {
            pool,
            progress: config.exactly_once.then(|| {
                PgProgress::new(
                    &schema,
                    &config.progress_table,
                    &config.stream,
                    format!("{schema}.{table_name}"),
                )
            }),
            schema,
            table_name,
            key_columns: config.key_columns.clone(),
            table: None,
        };
        let mut conn = writer.acquire().await?;
        writer.table = Some(Arc::new(
            catalog::load(
                &mut conn,
                &writer.schema,
                &writer.table_name,
                writer.key_columns.as_deref(),
            )
            .await?,
        ));
        if let Some(progress) = &writer.progress {
            progress.ensure(&mut conn).await?;
        }
        Ok(writer)
    }

    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(|e| {
            pg_error(
                format!(
                    "cannot connect to PostgreSQL for `{}.{}`",
                    self.schema, self.table_name
                ),
                e,
            )
        })
    }

    async fn table(&mut self) -> Result<Arc<PgTable>> {
        if let Some(table) = &self.table {
            return Ok(table.clone());
        }
        let mut conn = self.acquire().await?;
        let table = Arc::new(
            catalog::load(
                &mut conn,
                &self.schema,
                &self.table_name,
                self.key_columns.as_deref(),
            )
            .await?,
        );
        self.table = Some(table.clone());
        Ok(table)
    }

    async fn apply(&self, table: &PgTable, batch: &SinkBatch) -> Result<()> {
        let target = table.display();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| pg_error(format!("cannot begin a transaction on `{target}`"), e))?;
        let after = match &self.progress {
            Some(progress) => progress.lock(&mut tx, batch.shard_id).await?,
            None => None,
        };
        let records: Vec<&SinkRecord> = batch
            .records
            .iter()
            .filter(|r| after.is_none_or(|applied| r.record_id > applied))
            .collect();
        let Some(last) = records.last().map(|r| r.record_id) else {
            return Ok(());
        };
        let prepared = records
            .iter()
            .map(|r| prepare(table, r))
            .collect::<Result<Vec<_>>>()?;
        if table.key.is_empty() {
            append(&mut tx, table, &records, prepared).await?;
        } else {
            apply_keyed(&mut tx, table, &records, prepared).await?;
        }
        if let Some(progress) = &self.progress {
            progress.save(&mut tx, batch.shard_id, last).await?;
        }
        tx.commit()
            .await
            .map_err(|e| pg_error(format!("cannot commit the batch to `{target}`"), e))
    }

    /// The exactly-once positions stored in the target database.
    async fn positions(&self) -> Result<Option<BTreeMap<u64, RecordId>>> {
        let Some(progress) = &self.progress else {
            return Ok(None);
        };
        let mut conn = self.acquire().await?;
        progress.load(&mut conn).await.map(Some)
    }
}

impl SinkWriter for PgSinkWriter {
    async fn write(&mut self, batch: &SinkBatch) -> Result<()> {
        let table = self.table().await?;
        let result = self.apply(&table, batch).await;
        if let Err(error) = &result
            && matches!(error.kind(), ErrorKind::Setup | ErrorKind::Connection)
        {
            // The table may have changed (or the session with its stage): re-read it.
            self.table = None;
        }
        result
    }

    async fn stored_offsets(&mut self) -> Result<Option<BTreeMap<u64, RecordId>>> {
        self.positions().await
    }
}

fn conversion(record: &SinkRecord, table: &PgTable, message: String) -> Error {
    Error::new(
        ErrorKind::Conversion,
        format!(
            "cannot write record {} to `{}`: {message}",
            record.record_id,
            table.display()
        ),
    )
    .with_hint("Fix the record or the table, or set task.error.skipStrategy to skip such batches.")
}

/// Parses and converts one record.
fn prepare(table: &PgTable, record: &SinkRecord) -> Result<Prepared> {
    let change = parse(&record.payload).map_err(|m| conversion(record, table, m))?;
    let cell = |name: &str, value: &serde_json::Value| -> Result<(usize, Option<String>)> {
        let index = table.column(name).ok_or_else(|| {
            conversion(record, table, format!("the table has no column `{name}`"))
        })?;
        let column = &table.columns[index];
        let text = to_text(column, value).map_err(|expected| {
            conversion(
                record,
                table,
                format!(
                    "column `{name}` ({}) expects {expected}, got {}",
                    column.sql_type,
                    excerpt(value, 40)
                ),
            )
        })?;
        Ok((index, text))
    };
    let key_of = |cells: &dyn Fn(usize) -> Option<Option<String>>| -> Result<Vec<String>> {
        table
            .key
            .iter()
            .map(|&i| match cells(i) {
                Some(Some(text)) => Ok(text),
                Some(None) => Err(conversion(
                    record,
                    table,
                    format!("key column `{}` is null", table.columns[i].name),
                )),
                None => Err(conversion(
                    record,
                    table,
                    format!("the record has no value for key column `{}`", table.columns[i].name),
                )
                .with_hint("Send every key column, or set keyColumns to the columns the records identify rows by.")),
            })
            .collect()
    };
    match change {
        Change::Upsert { row, .. } => {
            let mut cells: Row = vec![None; table.columns.len()];
            for (name, value) in &row {
                let (index, text) = cell(name, value)?;
                cells[index] = Some(text);
            }
            let key = key_of(&|i| cells[i].clone())?;
            Ok(Prepared {
                key,
                op: Op::Upsert(cells),
            })
        }
        Change::Delete { key } => {
            if table.key.is_empty() {
                return Err(conversion(
                    record,
                    table,
                    "it is a delete but the table has no primary key or unique key".into(),
                )
                .with_hint("Add a primary key to the table or set keyColumns."));
            }
            let mut cells: Row = vec![None; table.columns.len()];
            for (name, value) in &key {
                if let Some(index) = table.column(name)
                    && table.key.contains(&index)
                {
                    cells[index] = Some(cell(name, value)?.1);
                }
            }
            let key = key_of(&|i| cells[i].clone())?;
            Ok(Prepared {
                key,
                op: Op::Delete,
            })
        }
    }
}

/// Keyed tables: deletes first (including rows an upsert replaces), then one
/// COPY + `INSERT … ON CONFLICT` per set of present columns.
async fn apply_keyed(
    tx: &mut Transaction<'static, Postgres>,
    table: &PgTable,
    records: &[&SinkRecord],
    prepared: Vec<Prepared>,
) -> Result<()> {
    let target = table.display();
    let reduced = reduce(prepared.into_iter().map(|p| (p.key, p.op)));
    let mut delete_keys: Vec<Vec<String>> = vec![Vec::new(); table.key.len()];
    let mut groups: BTreeMap<Vec<usize>, Vec<(&Row, usize)>> = BTreeMap::new();
    for r in &reduced {
        let replace = match &r.net {
            Net::Delete => true,
            Net::Upsert { row, replace } => {
                let cols: Vec<usize> = (0..row.len()).filter(|&i| row[i].is_some()).collect();
                groups.entry(cols).or_default().push((row, r.last));
                *replace
            }
        };
        if replace {
            for (n, text) in r.key.iter().enumerate() {
                delete_keys[n].push(text.clone());
            }
        }
    }
    if !delete_keys[0].is_empty() {
        let statement = sql::delete_by_keys(table);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        for keys in delete_keys {
            query = query.bind(keys);
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(|e| pg_error(format!("cannot delete rows from `{target}`"), e))?;
    }
    if groups.is_empty() {
        return Ok(());
    }
    let stage = sql::stage_name(table);
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql::create_stage(table, &stage)))
        .execute(&mut **tx)
        .await
        .map_err(|e| pg_error(format!("cannot create the stage table for `{target}`"), e))?;
    for (n, (cols, rows)) in groups.iter().enumerate() {
        if n > 0 {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {}",
                sql::quote(&stage)
            )))
            .execute(&mut **tx)
            .await
            .map_err(|e| pg_error(format!("cannot clear the stage table for `{target}`"), e))?;
        }
        copy_rows(tx, table, &sql::quote(&stage), cols, rows, records).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql::upsert_from_stage(
            table, &stage, cols,
        )))
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            let first = rows.iter().map(|r| r.1).min().unwrap_or(0);
            let last = rows.iter().map(|r| r.1).max().unwrap_or(0);
            pg_error(
                format!(
                    "cannot upsert {} rows (records {}..={}) into `{target}`",
                    rows.len(),
                    records[first].record_id,
                    records[last].record_id
                ),
                e,
            )
        })?;
    }
    Ok(())
}

/// Append-only tables: rows are inserted in order, one COPY per run of rows
/// with the same columns.
async fn append(
    tx: &mut Transaction<'static, Postgres>,
    table: &PgTable,
    records: &[&SinkRecord],
    prepared: Vec<Prepared>,
) -> Result<()> {
    let into = sql::qualified(&table.schema, &table.name);
    let mut run: Vec<(&Row, usize)> = Vec::new();
    let mut run_cols: Vec<usize> = Vec::new();
    let rows: Vec<Row> = prepared
        .into_iter()
        .map(|p| match p.op {
            Op::Upsert(row) => row,
            Op::Delete => unreachable!("deletes into append-only tables are rejected in prepare"),
        })
        .collect();
    for (position, row) in rows.iter().enumerate() {
        let cols: Vec<usize> = (0..row.len()).filter(|&i| row[i].is_some()).collect();
        if !run.is_empty() && cols != run_cols {
            copy_rows(tx, table, &into, &run_cols, &run, records).await?;
            run.clear();
        }
        run_cols = cols;
        run.push((row, position));
    }
    if !run.is_empty() {
        copy_rows(tx, table, &into, &run_cols, &run, records).await?;
    }
    Ok(())
}

/// COPYs `rows` (row, index of its record) into `into`; a rejected value is
/// reported with the record it came from.
async fn copy_rows(
    tx: &mut Transaction<'static, Postgres>,
    table: &PgTable,
    into: &str,
    cols: &[usize],
    rows: &[(&Row, usize)],
    records: &[&SinkRecord],
) -> Result<()> {
    let target = table.display();
    let conn: &mut PgConnection = &mut *tx;
    let statement = sql::copy_into(into, table, cols);
    let mut copy = conn
        .copy_in_raw(&statement)
        .await
        .map_err(|e| pg_error(format!("cannot start COPY into `{target}`"), e))?;
    let mut buffer = Vec::with_capacity(COPY_CHUNK.min(rows.len() * 64 + 64));
    let mut outcome = Ok(());
    for (row, _) in rows {
        sql::copy_row(
            &mut buffer,
            cols.iter()
                .map(|&i| row[i].as_ref().and_then(|cell| cell.as_deref())),
        );
        if buffer.len() >= COPY_CHUNK
            && let Err(e) = copy.send(std::mem::take(&mut buffer)).await
        {
            outcome = Err(e);
            break;
        }
    }
    let result = match outcome {
        Ok(()) => {
            let sent = if buffer.is_empty() {
                Ok(())
            } else {
                copy.send(buffer).await.map(|_| ())
            };
            match sent {
                Ok(()) => copy.finish().await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    result.map_err(|e| copy_error(e, table, rows, records))
}

/// Names the record behind a COPY error from its `line N, column c` context.
fn copy_error(
    error: sqlx::Error,
    table: &PgTable,
    rows: &[(&Row, usize)],
    records: &[&SinkRecord],
) -> Error {
    let target = table.display();
    let context = error
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
        .and_then(|d| d.r#where().map(str::to_string));
    let located = context.as_deref().and_then(|w| {
        let rest = &w[w.find(", line ")? + 7..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let line: usize = digits.parse().ok()?;
        let column = rest
            .find(", column ")
            .map(|at| rest[at + 9..].split(':').next().unwrap_or("").to_string());
        Some((line, column))
    });
    match located.and_then(|(line, column)| Some((rows.get(line.checked_sub(1)?)?.1, column))) {
        Some((position, column)) => {
            let column = column.map_or(String::new(), |c| format!(" column `{c}`"));
            pg_error(
                format!(
                    "cannot write record {} to `{target}`:{column} rejects its value",
                    records[position].record_id
                ),
                error,
            )
        }
        None => pg_error(format!("cannot COPY rows into `{target}`"), error),
    }
}
