//! Applies batches: records → changes → one net change per key → one
//! transaction (deletes, COPY of the upserts, the exactly-once position) per
//! batch.
//!
//! The work that needs no connection — decoding, conversion, reduction and
//! rendering the COPY data — is the writer's [`SinkWriter::preparer`], which
//! the runtime runs for the next batch while this one is in the database.
//!
//! Upserts of keyed tables go through one of two paths per set of present
//! columns: a COPY straight into the table inside a savepoint (when none of
//! the keys exists yet: the common case of an initial load), or, when that
//! hits a unique violation, a COPY into a session stage table and
//! `INSERT … SELECT … ON CONFLICT … DO UPDATE`. After a violation the direct
//! path is not tried again for a while (longer after each failure).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hstream_io_runtime::change::{DistinctKeys, Merge, Net, Op, reduce};
use hstream_io_runtime::record::{Change, ValueRef, column_mismatch};
use hstream_io_runtime::stream::RecordId;
use hstream_io_runtime::{Error, ErrorKind, Result, SinkBatch, SinkRecord, SinkWriter};
use sqlx::postgres::{PgDatabaseError, PgPool};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::catalog::{self, PgTable};
use crate::config::PgSinkConfig;
use crate::convert::write_text_input;
use crate::error::pg_error;
use crate::progress::PgProgress;
use crate::sql;

/// Bytes of COPY data sent per message. sqlx keeps its write buffer at the
/// largest message it sent, for the connection's life, so this bounds that
/// memory. Small messages need `TCP_NODELAY` (set by the pool): with Nagle on,
/// a message's partial last segment waited for the server's delayed ACK.
const COPY_CHUNK: usize = 64 << 10;

/// SQLSTATE of a unique violation.
const UNIQUE_VIOLATION: &str = "23505";

/// Batches (sets of columns) the direct COPY is not tried after its first
/// failure; doubled after each further failure, up to [`DIRECT_PAUSE_MAX`].
const DIRECT_PAUSE_MIN: u32 = 4;
/// See [`DIRECT_PAUSE_MIN`].
const DIRECT_PAUSE_MAX: u32 = 256;

/// A converted row: the text of its present cells in one buffer, and per
/// table column whether the record has it, NULL, or which part of the buffer
/// (one allocation for the texts instead of one per cell).
#[derive(Debug, Clone)]
struct Row {
    text: String,
    cells: Vec<Cell>,
}

/// One column of a [`Row`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    /// The record does not carry the column (left untouched on update).
    Absent,
    /// SQL NULL.
    Null,
    /// `text[start..end]`.
    Text(usize, usize),
}

impl Row {
    fn new(columns: usize, capacity: usize) -> Self {
        Self {
            text: String::with_capacity(capacity),
            cells: vec![Cell::Absent; columns],
        }
    }

    /// Empties the row for the next record (keeping its allocations).
    fn clear(&mut self) {
        self.text.clear();
        self.cells.fill(Cell::Absent);
    }

    /// Column `i`: `None` absent, `Some(None)` NULL, `Some(Some(text))` a value.
    fn get(&self, i: usize) -> Option<Option<&str>> {
        match self.cells[i] {
            Cell::Absent => None,
            Cell::Null => Some(None),
            Cell::Text(start, end) => Some(Some(&self.text[start..end])),
        }
    }

    /// The indices of the present columns, into `cols` (cleared first).
    fn present(&self, cols: &mut Vec<usize>) {
        cols.clear();
        cols.extend((0..self.cells.len()).filter(|&i| self.cells[i] != Cell::Absent));
    }
}

impl Merge for Row {
    fn merge(&mut self, later: Self) {
        for (i, cell) in later.cells.iter().enumerate() {
            match *cell {
                Cell::Absent => {}
                Cell::Null => self.cells[i] = Cell::Null,
                Cell::Text(start, end) => {
                    let at = self.text.len();
                    self.text.push_str(&later.text[start..end]);
                    self.cells[i] = Cell::Text(at, self.text.len());
                }
            }
        }
    }
}

/// Separates the key column texts in [`Converted::key`]: PostgreSQL text
/// cannot hold NUL, so no key text contains it.
const KEY_SEPARATOR: char = '\0';

/// One record, converted.
struct Converted {
    /// Key column texts, in key order, joined by [`KEY_SEPARATOR`] (empty
    /// for append-only tables).
    key: String,
    op: Op<Row>,
}

/// Rows with the same set of columns, rendered as COPY text data.
struct CopyData {
    /// Indices of the columns, in COPY order.
    cols: Vec<usize>,
    /// COPY text-format lines.
    data: Vec<u8>,
    /// The record each line comes from (line n → `records[n - 1]`).
    records: Vec<RecordId>,
}

impl CopyData {
    fn new(cols: Vec<usize>) -> Self {
        Self {
            cols,
            data: Vec::new(),
            records: Vec::new(),
        }
    }

    fn push(&mut self, row: &Row, record: RecordId) {
        sql::copy_row(
            &mut self.data,
            self.cols.iter().map(|&i| row.get(i).flatten()),
        );
        self.records.push(record);
    }
}

/// What a batch does to the table.
enum Plan {
    /// Keyed tables: delete these keys (one text array per key column), then
    /// upsert each group.
    Keyed {
        deletes: Vec<Vec<String>>,
        groups: Vec<CopyData>,
    },
    /// Append-only tables: insert these runs, in order.
    Append(Vec<CopyData>),
}

/// A batch after [`PgSinkWriter`]'s preparer: converted and rendered.
pub struct PgPrepared {
    /// The table description it was converted for.
    table: Arc<PgTable>,
    plan: Plan,
}

/// The open writer of `sink-postgresql`.
pub struct PgSinkWriter {
    pool: PgPool,
    schema: String,
    table_name: String,
    key_columns: Option<Vec<String>>,
    table: Option<Arc<PgTable>>,
    /// The table description the preparer converts for (the last one read).
    shared_table: Arc<Mutex<Arc<PgTable>>>,
    progress: Option<PgProgress>,
    /// Groups left before the direct COPY is tried again.
    direct_pause: u32,
    /// The pause after the next failure of the direct COPY.
    direct_next_pause: u32,
}

impl PgSinkWriter {
    /// Connects, reads the table, and creates the progress table when exactly-once is on.
    pub(crate) async fn open(config: &PgSinkConfig) -> Result<Self> {
        let (schema, table_name) = config.target();
        let pool = config.pool();
        let progress = config.exactly_once.then(|| {
            PgProgress::new(
                &schema,
                &config.progress_table,
                &config.stream,
                format!("{schema}.{table_name}"),
            )
        });
        let mut conn = pool.acquire().await.map_err(|e| {
            pg_error(
                format!("cannot connect to PostgreSQL for `{schema}.{table_name}`"),
                e,
            )
        })?;
        let table = Arc::new(
            catalog::load(
                &mut conn,
                &schema,
                &table_name,
                config.key_columns.as_deref(),
            )
            .await?,
        );
        if let Some(progress) = &progress {
            progress.ensure(&mut conn).await?;
        }
        drop(conn);
        Ok(Self {
            pool,
            progress,
            schema,
            table_name,
            key_columns: config.key_columns.clone(),
            shared_table: Arc::new(Mutex::new(table.clone())),
            table: Some(table),
            direct_pause: 0,
            direct_next_pause: DIRECT_PAUSE_MIN,
        })
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
        *self.shared_table.lock().expect("table lock") = table.clone();
        Ok(table)
    }

    async fn apply(&mut self, table: &PgTable, batch: &SinkBatch, plan: &Plan) -> Result<()> {
        let target = table.display();
        let Some(last) = batch.records.last().map(|r| r.record_id) else {
            return Ok(());
        };
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| pg_error(format!("cannot begin a transaction on `{target}`"), e))?;
        let after = match &self.progress {
            Some(progress) => progress.lock(&mut tx, batch.shard_id).await?,
            None => None,
        };
        let replanned;
        let plan = match after {
            // Part of the batch is applied already (a re-read after a restart).
            Some(applied) if batch.records[0].record_id <= applied => {
                let records: Vec<&SinkRecord> = batch
                    .records
                    .iter()
                    .filter(|r| r.record_id > applied)
                    .collect();
                if records.is_empty() {
                    return Ok(());
                }
                replanned = plan_batch(table, &records)?;
                &replanned
            }
            _ => plan,
        };
        match plan {
            Plan::Keyed { deletes, groups } => {
                self.apply_keyed(&mut tx, table, deletes, groups).await?;
            }
            Plan::Append(runs) => {
                let into = sql::qualified(&table.schema, &table.name);
                for run in runs {
                    copy_rows(&mut tx, table, &into, run).await?;
                }
            }
        }
        if let Some(progress) = &self.progress {
            progress.save(&mut tx, batch.shard_id, last).await?;
        }
        tx.commit()
            .await
            .map_err(|e| pg_error(format!("cannot commit the batch to `{target}`"), e))
    }

    /// Keyed tables: deletes first (including rows an upsert replaces), then
    /// each group by the direct COPY or through the stage.
    async fn apply_keyed(
        &mut self,
        tx: &mut Transaction<'static, Postgres>,
        table: &PgTable,
        deletes: &[Vec<String>],
        groups: &[CopyData],
    ) -> Result<()> {
        let target = table.display();
        if deletes.first().is_some_and(|keys| !keys.is_empty()) {
            let statement = sql::delete_by_keys(table);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for keys in deletes {
                query = query.bind(keys);
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(|e| pg_error(format!("cannot delete rows from `{target}`"), e))?;
        }
        let mut stage_ready = false;
        for group in groups {
            if self.direct_pause == 0 {
                if self.copy_direct(tx, table, group).await? {
                    self.direct_next_pause = DIRECT_PAUSE_MIN;
                    continue;
                }
                self.direct_pause = self.direct_next_pause;
                self.direct_next_pause = (self.direct_next_pause * 2).min(DIRECT_PAUSE_MAX);
                tracing::debug!(
                    pause = self.direct_pause,
                    "keys exist already: upserting through the stage table"
                );
            } else {
                self.direct_pause -= 1;
            }
            let stage = sql::stage_name(table);
            if stage_ready {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {}",
                    sql::quote(&stage)
                )))
                .execute(&mut **tx)
                .await
                .map_err(|e| pg_error(format!("cannot clear the stage table for `{target}`"), e))?;
            } else {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql::create_stage(table, &stage)))
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| {
                        pg_error(format!("cannot create the stage table for `{target}`"), e)
                    })?;
                stage_ready = true;
            }
            copy_rows(tx, table, &sql::quote(&stage), group).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql::upsert_from_stage(
                table,
                &stage,
                &group.cols,
            )))
            .execute(&mut **tx)
            .await
            .map_err(|e| {
                pg_error(
                    format!(
                        "cannot upsert {} rows (records {}..={}) into `{target}`",
                        group.records.len(),
                        group.records.iter().min().expect("a group has rows"),
                        group.records.iter().max().expect("a group has rows"),
                    ),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// COPYs `group` straight into the table inside a savepoint; `Ok(false)`
    /// (rolled back) when a key exists already.
    async fn copy_direct(
        &mut self,
        tx: &mut Transaction<'static, Postgres>,
        table: &PgTable,
        group: &CopyData,
    ) -> Result<bool> {
        let into = sql::qualified(&table.schema, &table.name);
        savepoint(tx, table, "SAVEPOINT hstream_io_direct").await?;
        match copy_raw(tx, table, &into, group).await {
            Ok(()) => {
                savepoint(tx, table, "RELEASE SAVEPOINT hstream_io_direct").await?;
                Ok(true)
            }
            Err(e)
                if e.as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|code| code == UNIQUE_VIOLATION) =>
            {
                savepoint(tx, table, "ROLLBACK TO SAVEPOINT hstream_io_direct").await?;
                Ok(false)
            }
            Err(e) => Err(copy_error(e, table, group)),
        }
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
    type Prepared = PgPrepared;

    fn preparer(&self) -> impl Fn(&SinkBatch) -> Result<PgPrepared> + Send + Sync + 'static {
        let shared = self.shared_table.clone();
        move |batch| {
            let table = shared.lock().expect("table lock").clone();
            let records: Vec<&SinkRecord> = batch.records.iter().collect();
            let plan = plan_batch(&table, &records)?;
            Ok(PgPrepared { table, plan })
        }
    }

    async fn write_prepared(&mut self, batch: &SinkBatch, prepared: &PgPrepared) -> Result<()> {
        let table = self.table().await?;
        let replanned;
        let plan = if Arc::ptr_eq(&table, &prepared.table) {
            &prepared.plan
        } else {
            // The table was read again since: convert for what it is now.
            let records: Vec<&SinkRecord> = batch.records.iter().collect();
            replanned = plan_batch(&table, &records)?;
            &replanned
        };
        let result = self.apply(&table, batch, plan).await;
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

/// Converts, reduces and renders `records` (in stream order).
fn plan_batch(table: &PgTable, records: &[&SinkRecord]) -> Result<Plan> {
    if table.key.is_empty() {
        return Ok(Plan::Append(plan_append(table, records)?));
    }
    if let Some(groups) = plan_distinct(table, records)? {
        return Ok(Plan::Keyed {
            deletes: vec![Vec::new(); table.key.len()],
            groups,
        });
    }
    let converted = records
        .iter()
        .map(|r| convert_record(table, r))
        .collect::<Result<Vec<_>>>()?;
    let reduced = reduce(converted.into_iter().map(|c| (c.key, c.op)));
    let mut deletes: Vec<Vec<String>> = vec![Vec::new(); table.key.len()];
    let mut groups: BTreeMap<Vec<usize>, CopyData> = BTreeMap::new();
    let mut cols = Vec::with_capacity(table.columns.len());
    for r in reduced {
        let replace = match &r.net {
            Net::Delete => true,
            Net::Upsert { row, replace } => {
                row.present(&mut cols);
                let record = records[r.last].record_id;
                match groups.get_mut(cols.as_slice()) {
                    Some(group) => group.push(row, record),
                    None => {
                        let mut group = CopyData::new(cols.clone());
                        group.push(row, record);
                        groups.insert(cols.clone(), group);
                    }
                }
                *replace
            }
        };
        if replace {
            for (n, text) in r.key.split(KEY_SEPARATOR).enumerate() {
                deletes[n].push(text.to_string());
            }
        }
    }
    Ok(Plan::Keyed {
        deletes,
        groups: groups.into_values().collect(),
    })
}

/// The common case of a keyed batch: every record upserts a different key
/// (an initial load, a stream of inserts). Each record is converted into one
/// reused row and rendered into its group's COPY data at once — no row per
/// record, no reduction. `None` as soon as a record deletes or a key may
/// repeat: [`plan_batch`]'s general path then handles the batch.
fn plan_distinct(table: &PgTable, records: &[&SinkRecord]) -> Result<Option<Vec<CopyData>>> {
    let mut row = Row::new(table.columns.len(), 256);
    let mut key = String::new();
    let mut keys = DistinctKeys::with_capacity(records.len());
    let mut groups: Vec<CopyData> = Vec::new();
    let mut cols = Vec::with_capacity(table.columns.len());
    for record in records {
        if !convert_into(table, record, &mut row, &mut key)? || !keys.insert(key.as_bytes()) {
            return Ok(None);
        }
        push_row(&mut groups, &row, &mut cols, record.record_id);
    }
    Ok(Some(groups))
}

/// Renders `row` into the group of its set of columns (a new one if none).
fn push_row(groups: &mut Vec<CopyData>, row: &Row, cols: &mut Vec<usize>, record: RecordId) {
    row.present(cols);
    // Nearly always the last group (or the only one).
    match groups.iter().rposition(|g| g.cols == *cols) {
        Some(at) => groups[at].push(row, record),
        None => {
            let mut group = CopyData::new(cols.clone());
            group.push(row, record);
            groups.push(group);
        }
    }
}

/// Append-only tables: one run per stretch of rows with the same columns.
fn plan_append(table: &PgTable, records: &[&SinkRecord]) -> Result<Vec<CopyData>> {
    let mut runs: Vec<CopyData> = Vec::new();
    let mut cols = Vec::new();
    let mut row = Row::new(table.columns.len(), 256);
    let mut key = String::new();
    for record in records {
        // A delete is an error for an append-only table (in convert_into).
        convert_into(table, record, &mut row, &mut key)?;
        row.present(&mut cols);
        if runs.last().is_none_or(|run| run.cols != cols) {
            runs.push(CopyData::new(cols.clone()));
        }
        runs.last_mut()
            .expect("just pushed")
            .push(&row, record.record_id);
    }
    Ok(runs)
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
fn convert_record(table: &PgTable, record: &SinkRecord) -> Result<Converted> {
    let mut row = Row::new(table.columns.len(), record.payload.len());
    let mut key = String::new();
    let upsert = convert_into(table, record, &mut row, &mut key)?;
    Ok(Converted {
        key,
        op: if upsert { Op::Upsert(row) } else { Op::Delete },
    })
}

/// Parses and converts one record into `row` and its key texts (joined by
/// [`KEY_SEPARATOR`]; empty for append-only tables) into `key`, both cleared
/// first; `Ok(true)` for an upsert, `Ok(false)` for a delete (`row` then
/// holds only the key columns).
fn convert_into(
    table: &PgTable,
    record: &SinkRecord,
    row: &mut Row,
    key: &mut String,
) -> Result<bool> {
    row.clear();
    key.clear();
    let change = record.change().map_err(|m| conversion(record, table, m))?;
    let put = |row: &mut Row, name: &str, value: ValueRef<'_>| -> Result<()> {
        let index = table.column(name).ok_or_else(|| {
            conversion(record, table, format!("the table has no column `{name}`"))
        })?;
        let column = &table.columns[index];
        let start = row.text.len();
        row.cells[index] = match write_text_input(column, value, &mut row.text) {
            Ok(true) => Cell::Text(start, row.text.len()),
            Ok(false) => Cell::Null,
            Err(expected) => {
                let message = column_mismatch(name, &column.sql_type, &expected, value);
                return Err(conversion(record, table, message));
            }
        };
        Ok(())
    };
    let key_of = |row: &Row, key: &mut String| -> Result<()> {
        for (n, &i) in table.key.iter().enumerate() {
            match row.get(i) {
                Some(Some(text)) => {
                    if n > 0 {
                        key.push(KEY_SEPARATOR);
                    }
                    key.push_str(text);
                }
                Some(None) => return Err(conversion(
                    record,
                    table,
                    format!("key column `{}` is null", table.columns[i].name),
                )),
                None => return Err(conversion(
                    record,
                    table,
                    format!("the record has no value for key column `{}`", table.columns[i].name),
                )
                .with_hint("Send every key column, or set keyColumns to the columns the records identify rows by.")),
            }
        }
        Ok(())
    };
    match change {
        Change::Upsert { row: fields, .. } => {
            for (name, value) in &fields {
                put(row, name, value)?;
            }
            key_of(row, key)?;
            Ok(true)
        }
        Change::Delete { key: fields } => {
            if table.key.is_empty() {
                return Err(conversion(
                    record,
                    table,
                    "it is a delete but the table has no primary key or unique key".into(),
                )
                .with_hint("Add a primary key to the table or set keyColumns."));
            }
            for (name, value) in &fields {
                if let Some(index) = table.column(name)
                    && table.key.contains(&index)
                {
                    put(row, name, value)?;
                }
            }
            key_of(row, key)?;
            Ok(false)
        }
    }
}

/// Runs a savepoint statement.
async fn savepoint(
    tx: &mut Transaction<'static, Postgres>,
    table: &PgTable,
    statement: &'static str,
) -> Result<()> {
    sqlx::raw_sql(statement)
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(|e| {
            pg_error(
                format!("cannot use a savepoint on `{}`", table.display()),
                e,
            )
        })
}

/// COPYs `rows` into `into`; a rejected value is reported with the record it
/// came from.
async fn copy_rows(
    tx: &mut Transaction<'static, Postgres>,
    table: &PgTable,
    into: &str,
    rows: &CopyData,
) -> Result<()> {
    copy_raw(tx, table, into, rows)
        .await
        .map_err(|e| copy_error(e, table, rows))
}

/// [`copy_rows`] with the driver's error.
async fn copy_raw(
    tx: &mut Transaction<'static, Postgres>,
    table: &PgTable,
    into: &str,
    rows: &CopyData,
) -> std::result::Result<(), sqlx::Error> {
    let conn: &mut PgConnection = &mut *tx;
    let mut copy = conn
        .copy_in_raw(&sql::copy_into(into, table, &rows.cols))
        .await?;
    for chunk in rows.data.chunks(COPY_CHUNK) {
        if let Err(e) = copy.send(chunk).await {
            // Ends the COPY; the send error is the one worth reporting.
            let _ = copy.abort("sending the rows failed").await;
            return Err(e);
        }
    }
    copy.finish().await.map(|_| ())
}

/// Names the record behind a COPY error from its `line N, column c` context.
fn copy_error(error: sqlx::Error, table: &PgTable, rows: &CopyData) -> Error {
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
    match located
        .and_then(|(line, column)| Some((*rows.records.get(line.checked_sub(1)?)?, column)))
    {
        Some((record, column)) => {
            let column = column.map_or(String::new(), |c| format!(" column `{c}`"));
            pg_error(
                format!("cannot write record {record} to `{target}`:{column} rejects its value"),
                error,
            )
        }
        None => pg_error(format!("cannot COPY rows into `{target}`"), error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{PgColumn, PgType};
    use hstream_io_runtime::stream::RecordId;

    /// Protobuf encoding of a `google.protobuf.Struct` of numbers and strings.
    fn encode_struct(fields: &[(&str, Result<f64, &str>)]) -> Vec<u8> {
        fn len_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
            out.push(tag);
            let mut n = bytes.len();
            while n >= 0x80 {
                out.push((n as u8) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
            out.extend_from_slice(bytes);
        }
        let mut out = Vec::new();
        for (name, value) in fields {
            let mut v = Vec::new();
            match value {
                Ok(n) => {
                    v.push(0x11);
                    v.extend_from_slice(&n.to_le_bytes());
                }
                Err(s) => len_field(&mut v, 0x1a, s.as_bytes()),
            }
            let mut entry = Vec::new();
            len_field(&mut entry, 0x0a, name.as_bytes());
            len_field(&mut entry, 0x12, &v);
            len_field(&mut out, 0x0a, &entry);
        }
        out
    }

    /// `bench.orders` (the benchmark's table) and `n` of its records.
    fn orders(n: u64) -> (PgTable, Vec<SinkRecord>) {
        let col = |name: &str, sql_type: &str, ty| PgColumn {
            name: name.into(),
            sql_type: sql_type.into(),
            ty,
        };
        let table = PgTable::new(
            "bench".into(),
            "orders".into(),
            vec![
                col("id", "bigint", PgType::Int8),
                col("customer_id", "bigint", PgType::Int8),
                col("amount", "numeric(12,2)", PgType::Numeric),
                col("status", "character varying(16)", PgType::Text),
                col("note", "character varying(64)", PgType::Text),
                col(
                    "created_at",
                    "timestamp without time zone",
                    PgType::Timestamp,
                ),
            ],
            vec![0],
        );
        let statuses = ["new", "paid", "shipped", "cancelled"];
        let records = (0..n)
            .map(|i| {
                let amount = format!("{}.{:02}", (i % 10_000) / 100, i % 100);
                let note = format!("note-{i}");
                let created = format!(
                    "2024-01-{:02} {:02}:{:02}:{:02}",
                    1 + i / 86400 % 28,
                    i / 3600 % 24,
                    i / 60 % 60,
                    i % 60
                );
                // Fields in the Struct's (sorted) order, as the stream stores them.
                let payload = encode_struct(&[
                    ("amount", Err(&amount)),
                    ("created_at", Err(&created)),
                    ("customer_id", Ok((i % 1000) as f64)),
                    ("id", Ok(i as f64)),
                    ("note", Err(&note)),
                    ("status", Err(statuses[(i % 4) as usize])),
                ]);
                SinkRecord {
                    record_id: RecordId {
                        shard_id: 1,
                        batch_id: i / 1000,
                        batch_index: (i % 1000) as u32,
                    },
                    key: Default::default(),
                    payload: payload.into(),
                    is_json: true,
                }
            })
            .collect();
        (table, records)
    }

    /// CPU cost of preparing batches of the benchmark's records (decode,
    /// convert, reduce, COPY text): `cargo test --release -p
    /// hstream-io-sink-postgresql prepare_cost -- --ignored --nocapture`, or
    /// the test binary under `valgrind --tool=callgrind` for instruction counts.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn prepare_cost() {
        let n: u64 = std::env::var("PREPARE_RECORDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let (table, records) = orders(n);
        let refs: Vec<&SinkRecord> = records.iter().collect();
        for round in 0..3 {
            let start = std::time::Instant::now();
            let mut bytes = 0;
            for batch in refs.chunks(8000) {
                let Plan::Keyed { groups, .. } = plan_batch(&table, batch).unwrap() else {
                    panic!("keyed")
                };
                bytes += groups.iter().map(|g| g.data.len()).sum::<usize>();
            }
            let per = start.elapsed().as_nanos() as f64 / n as f64;
            println!("round {round}: {per:.0} ns per record ({bytes} bytes of COPY text)");
        }
    }
}
