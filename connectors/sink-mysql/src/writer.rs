//! Applies batches: records → changes → one net change per key → one
//! transaction (multi-row deletes, multi-row `INSERT … ON DUPLICATE KEY
//! UPDATE`, the exactly-once position) per batch.
//!
//! Decoding and conversion are the writer's [`SinkWriter::preparer`], which the
//! runtime runs for the next batch while this one is in the database.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hstream_io_runtime::change::{Net, Op, reduce};
use hstream_io_runtime::record::{Change, ValueRef, excerpt};
use hstream_io_runtime::stream::RecordId;
use hstream_io_runtime::{Error, ErrorKind, Result, SinkBatch, SinkRecord, SinkWriter};
use sqlx::mysql::{MySqlArguments, MySqlPool};
use sqlx::query::Query;
use sqlx::{MySql, Transaction};

use crate::catalog::{self, MysqlTable};
use crate::config::MysqlSinkConfig;
use crate::convert::{Cell, to_cell};
use crate::error::mysql_error;
use crate::progress::MysqlProgress;
use crate::sql;

/// A row by column index: `None` absent, `Some(cell)` present.
type Row = Vec<Option<Cell>>;

/// One record, converted.
struct Converted {
    /// Key column values, in key order (empty for append-only tables).
    key: Vec<Cell>,
    op: Op<Row>,
}

/// The open writer of `sink-mysql`.
pub struct MysqlSinkWriter {
    pool: MySqlPool,
    database: String,
    table_name: String,
    key_columns: Option<Vec<String>>,
    table: Option<Arc<MysqlTable>>,
    /// The table description the preparer converts for (the last one read).
    shared_table: Arc<Mutex<Option<Arc<MysqlTable>>>>,
    progress: Option<MysqlProgress>,
}

/// A batch after [`MysqlSinkWriter`]'s preparer: every record converted.
pub struct MysqlPrepared {
    /// The table description it was converted for.
    table: Arc<MysqlTable>,
    /// Taken by the first attempt; a retry converts again.
    converted: Mutex<Option<Vec<Converted>>>,
}

impl MysqlSinkWriter {
    /// Connects, reads the table, and creates the progress table when exactly-once is on.
    pub(crate) async fn open(config: &MysqlSinkConfig) -> Result<Self> {
        let mut writer = Self {
            pool: config.pool(),
            database: config.database.clone(),
            table_name: config.table.clone(),
            key_columns: config.key_columns.clone(),
            table: None,
            shared_table: Arc::new(Mutex::new(None)),
            progress: config.exactly_once.then(|| {
                MysqlProgress::new(
                    &config.database,
                    &config.progress_table,
                    &config.stream,
                    format!("{}.{}", config.database, config.table),
                )
            }),
        };
        writer.table().await?;
        if let Some(progress) = &writer.progress {
            let mut conn = writer.acquire().await?;
            progress.ensure(&mut conn).await?;
        }
        Ok(writer)
    }

    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<MySql>> {
        self.pool.acquire().await.map_err(|e| {
            mysql_error(
                format!(
                    "cannot connect to MySQL for `{}.{}`",
                    self.database, self.table_name
                ),
                e,
            )
        })
    }

    async fn table(&mut self) -> Result<Arc<MysqlTable>> {
        if let Some(table) = &self.table {
            return Ok(table.clone());
        }
        let mut conn = self.acquire().await?;
        let table = Arc::new(
            catalog::load(
                &mut conn,
                &self.database,
                &self.table_name,
                self.key_columns.as_deref(),
            )
            .await?,
        );
        self.table = Some(table.clone());
        *self.shared_table.lock().expect("table lock") = Some(table.clone());
        Ok(table)
    }

    async fn apply(
        &self,
        table: &MysqlTable,
        batch: &SinkBatch,
        converted: Vec<Converted>,
    ) -> Result<()> {
        let target = table.display();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| mysql_error(format!("cannot begin a transaction on `{target}`"), e))?;
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
        let converted = if records.len() == batch.records.len() {
            converted
        } else {
            // Part of the batch is applied already (a re-read after a restart).
            convert_all(table, &records)?
        };
        if table.key.is_empty() {
            append(&mut tx, table, &records, converted).await?;
        } else {
            apply_keyed(&mut tx, table, &records, converted).await?;
        }
        if let Some(progress) = &self.progress {
            progress.save(&mut tx, batch.shard_id, last).await?;
        }
        tx.commit()
            .await
            .map_err(|e| mysql_error(format!("cannot commit the batch to `{target}`"), e))
    }
}

impl SinkWriter for MysqlSinkWriter {
    type Prepared = MysqlPrepared;

    fn preparer(&self) -> impl Fn(&SinkBatch) -> Result<MysqlPrepared> + Send + Sync + 'static {
        let shared = self.shared_table.clone();
        move |batch| {
            let table = shared
                .lock()
                .expect("table lock")
                .clone()
                .ok_or_else(|| Error::internal("the table was not read before preparing"))?;
            let records: Vec<&SinkRecord> = batch.records.iter().collect();
            let converted = convert_all(&table, &records)?;
            Ok(MysqlPrepared {
                table,
                converted: Mutex::new(Some(converted)),
            })
        }
    }

    async fn write_prepared(&mut self, batch: &SinkBatch, prepared: &MysqlPrepared) -> Result<()> {
        let table = self.table().await?;
        let records: Vec<&SinkRecord> = batch.records.iter().collect();
        let taken = prepared.converted.lock().expect("prepared lock").take();
        let converted = match taken {
            Some(converted) if Arc::ptr_eq(&table, &prepared.table) => converted,
            // A retry, or the table was read again since: convert (again).
            _ => convert_all(&table, &records)?,
        };
        let result = self.apply(&table, batch, converted).await;
        if let Err(error) = &result
            && matches!(error.kind(), ErrorKind::Setup | ErrorKind::Connection)
        {
            // The table may have changed: re-read it before the retry.
            self.table = None;
        }
        result
    }

    async fn stored_offsets(&mut self) -> Result<Option<BTreeMap<u64, RecordId>>> {
        let Some(progress) = &self.progress else {
            return Ok(None);
        };
        let mut conn = self.acquire().await?;
        progress.load(&mut conn).await.map(Some)
    }
}

/// Converts `records`.
fn convert_all(table: &MysqlTable, records: &[&SinkRecord]) -> Result<Vec<Converted>> {
    records.iter().map(|r| convert_record(table, r)).collect()
}

fn conversion(record: &SinkRecord, table: &MysqlTable, message: String) -> Error {
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
fn convert_record(table: &MysqlTable, record: &SinkRecord) -> Result<Converted> {
    let change = record.change().map_err(|m| conversion(record, table, m))?;
    let cell = |name: &str, value: ValueRef<'_>| -> Result<(usize, Cell)> {
        let index = table.column(name).ok_or_else(|| {
            conversion(record, table, format!("the table has no column `{name}`"))
        })?;
        let column = &table.columns[index];
        let cell = to_cell(column, value).map_err(|expected| {
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
        Ok((index, cell))
    };
    let key_of = |cells: &Row| -> Result<Vec<Cell>> {
        table
            .key
            .iter()
            .map(|&i| match &cells[i] {
                Some(Cell::Null) => Err(conversion(
                    record,
                    table,
                    format!("key column `{}` is null", table.columns[i].name),
                )),
                Some(cell) => Ok(cell.clone()),
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
                let (index, cell) = cell(name, value)?;
                cells[index] = Some(cell);
            }
            Ok(Converted {
                key: key_of(&cells)?,
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
            Ok(Converted {
                key: key_of(&cells)?,
                op: Op::Delete,
            })
        }
    }
}

/// Binds `cell` by reference (the arguments buffer copies it; no owned copy per cell).
fn bind<'q>(
    query: Query<'q, MySql, MySqlArguments>,
    cell: &'q Cell,
) -> Query<'q, MySql, MySqlArguments> {
    match cell {
        Cell::Null => query.bind(None::<&str>),
        Cell::Text(text) => query.bind(text.as_str()),
        Cell::Bytes(bytes) => query.bind(bytes.as_slice()),
        Cell::Uint(n) => query.bind(*n),
    }
}

/// Keyed tables: deletes first (including rows an upsert replaces), then
/// multi-row upserts per set of present columns.
async fn apply_keyed(
    tx: &mut Transaction<'static, MySql>,
    table: &MysqlTable,
    records: &[&SinkRecord],
    prepared: Vec<Converted>,
) -> Result<()> {
    let target = table.display();
    let reduced = reduce(prepared.into_iter().map(|p| (p.key, p.op)));
    let mut deletes: Vec<&Vec<Cell>> = Vec::new();
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
            deletes.push(&r.key);
        }
    }
    for chunk in deletes.chunks(sql::rows_per_statement(table.key.len())) {
        let statement = sql::delete(table, chunk.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        for key in chunk {
            for cell in key.iter() {
                query = bind(query, cell);
            }
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(|e| mysql_error(format!("cannot delete rows from `{target}`"), e))?;
    }
    for (cols, rows) in &groups {
        insert_rows(tx, table, cols, rows, records, true).await?;
    }
    Ok(())
}

/// Append-only tables: rows are inserted in order, one multi-row insert per
/// run of rows with the same columns.
async fn append(
    tx: &mut Transaction<'static, MySql>,
    table: &MysqlTable,
    records: &[&SinkRecord],
    prepared: Vec<Converted>,
) -> Result<()> {
    let rows: Vec<Row> = prepared
        .into_iter()
        .filter_map(|p| match p.op {
            Op::Upsert(row) => Some(row),
            Op::Delete => None,
        })
        .collect();
    let mut run: Vec<(&Row, usize)> = Vec::new();
    let mut run_cols: Vec<usize> = Vec::new();
    for (position, row) in rows.iter().enumerate() {
        let cols: Vec<usize> = (0..row.len()).filter(|&i| row[i].is_some()).collect();
        if !run.is_empty() && cols != run_cols {
            insert_rows(tx, table, &run_cols, &run, records, false).await?;
            run.clear();
        }
        run_cols = cols;
        run.push((row, position));
    }
    if !run.is_empty() {
        insert_rows(tx, table, &run_cols, &run, records, false).await?;
    }
    Ok(())
}

/// Inserts (or upserts) `rows` (row, index of its record) in multi-row
/// statements; a rejected value is reported with the record it came from.
async fn insert_rows(
    tx: &mut Transaction<'static, MySql>,
    table: &MysqlTable,
    cols: &[usize],
    rows: &[(&Row, usize)],
    records: &[&SinkRecord],
    upsert: bool,
) -> Result<()> {
    let target = table.display();
    for chunk in rows.chunks(sql::rows_per_statement(cols.len())) {
        let statement = sql::insert(table, cols, chunk.len(), upsert);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
        for (row, _) in chunk {
            for &i in cols {
                query = bind(query, row[i].as_ref().unwrap_or(&Cell::Null));
            }
        }
        if let Err(e) = query.execute(&mut **tx).await {
            // "… for column 'c' at row N": N counts rows of this statement from 1.
            let at_row = e.as_database_error().and_then(|d| {
                let message = d.message();
                let rest = &message[message.rfind(" at row ")? + 8..];
                rest.trim().parse::<usize>().ok()
            });
            let error = match at_row.and_then(|n| chunk.get(n.checked_sub(1)?)) {
                Some((_, position)) => mysql_error(
                    format!(
                        "cannot write record {} to `{target}`",
                        records[*position].record_id
                    ),
                    e,
                ),
                None => mysql_error(
                    format!(
                        "cannot write {} rows (records {}..={}) to `{target}`",
                        chunk.len(),
                        records[chunk.iter().map(|r| r.1).min().unwrap_or(0)].record_id,
                        records[chunk.iter().map(|r| r.1).max().unwrap_or(0)].record_id
                    ),
                    e,
                ),
            };
            return Err(error);
        }
    }
    Ok(())
}
