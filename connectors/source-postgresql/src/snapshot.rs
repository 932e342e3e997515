//! The initial load: every existing row once, read table by table in
//! primary-key chunks (`snapshotChunkSize` rows each, `WHERE (pk) > (last
//! key) ORDER BY pk LIMIT n`, through `COPY … TO STDOUT` in text format: the
//! same text output functions as pgoutput, converted by the same
//! [`crate::types`] mapping).
//!
//! The first run reads inside the snapshot the replication slot exported
//! (`SET TRANSACTION SNAPSHOT`), so the stream that follows starts exactly
//! where the snapshot ends. Progress is the position of the chunk's last
//! send ([`progress_position`]): committed — and stored by the runtime —
//! only once HStream acknowledged every row of the chunk. A crash resumes
//! after the last committed chunk, in a new repeatable-read snapshot; the
//! [`crate::resume`] module keeps that exact.

use std::borrow::Cow;

use futures::StreamExt;
use hstream_io_runtime::stream::{PayloadWriter, Record};
use hstream_io_runtime::{Error, ErrorKind, Result, SourceContext};
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::catalog::{TableInfo, simple_rows};
use crate::config::{quote_ident, quote_literal};
use crate::error;
use crate::record::{CellRef, Row, Target, encoding};
use crate::resume::{Point, Run, SNAPSHOT_STATE_KEY, SnapshotState};

/// How a snapshot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOutcome {
    /// Rows sent by this run.
    pub rows: u64,
    /// Whether the shutdown stopped it before the end.
    pub interrupted: bool,
}

/// Committed snapshot progress: the position's `"snapshot"` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The slot's consistent point the snapshot belongs to (`None` for `initial_only`).
    pub consistent_point: Option<String>,
    /// Where the next row is read.
    pub point: Point,
    /// Rows done per table.
    pub rows: Vec<u64>,
}

impl Progress {
    /// Nothing read yet.
    pub fn start(consistent_point: Option<String>, tables: usize) -> Self {
        Self {
            consistent_point,
            point: Point::start(),
            rows: vec![0; tables],
        }
    }

    /// The progress stored in `position` (`{"snapshot":{…}}`), if any.
    pub fn from_position(position: Option<&Value>, tables: usize) -> Option<Self> {
        let s = position?.get("snapshot")?;
        let point = Point {
            table: usize::try_from(s.get("table")?.as_u64()?).ok()?,
            after: match s.get("after")? {
                Value::Null => None,
                Value::Array(values) => Some(
                    values
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<_>>()?,
                ),
                _ => return None,
            },
        };
        let mut rows: Vec<u64> = s
            .get("rows")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|n| n.as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        rows.resize(tables, 0);
        Some(Self {
            consistent_point: s
                .get("consistentPoint")
                .and_then(Value::as_str)
                .map(str::to_string),
            point,
            rows,
        })
    }
}

/// The position committed after a chunk: `{"snapshot":{"consistentPoint":
/// "0/16B3748","table":0,"after":["42"],"rows":[42]}}` (table index in
/// reading order, text of the last key's columns, rows done per table).
pub fn progress_position(progress: &Progress) -> Value {
    let mut snapshot = json!({
        "table": progress.point.table,
        "after": progress.point.after,
        "rows": progress.rows,
    });
    if let Some(lsn) = &progress.consistent_point {
        snapshot["consistentPoint"] = Value::String(lsn.clone());
    }
    json!({ "snapshot": snapshot })
}

/// What a snapshot run reads and where it sends it.
pub struct Snapshot<'a> {
    /// The SQL session.
    pub sql: &'a Client,
    /// The tables' targets, in reading order.
    pub targets: &'a [Target],
    /// The tables, in reading order.
    pub infos: &'a [TableInfo],
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// Rows per send.
    pub batch_rows: usize,
    /// The task.
    pub ctx: &'a SourceContext,
}

impl Snapshot<'_> {
    /// Reads every row after `progress` inside `exported` (a snapshot name)
    /// or a fresh repeatable-read snapshot. With `state`, the run is
    /// recorded in it (and the KV) before anything is sent.
    pub async fn read(
        &self,
        exported: Option<&str>,
        mut progress: Progress,
        mut state: Option<&mut SnapshotState>,
    ) -> Result<SnapshotOutcome> {
        let sql = self.sql;
        sql.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| error::sql("cannot start the snapshot transaction", e))?;
        if let Some(name) = exported {
            sql.batch_execute(&format!("SET TRANSACTION SNAPSHOT {}", quote_literal(name)))
                .await
                .map_err(|e| error::sql(format!("cannot import exported snapshot `{name}`"), e))?;
        }
        // The first statement fixes the snapshot; the WAL position read after
        // it is past the commit of every transaction it sees.
        let rows = simple_rows(
            sql,
            "SELECT pg_catalog.pg_current_snapshot()::text, \
             (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
              ELSE pg_catalog.pg_current_wal_insert_lsn() END)::text",
            "cannot read the snapshot's transaction ids",
        )
        .await?;
        let (snapshot_text, wal_lsn) = match rows.first().map(Vec::as_slice) {
            Some([Some(s), Some(l)]) => (s.clone(), l.clone()),
            _ => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "pg_current_snapshot() answered nothing",
                ));
            }
        };
        if let Some(state) = state.as_deref_mut() {
            state.runs.push(Run {
                exported: exported.is_some(),
                snapshot: snapshot_text.clone(),
                wal_lsn: wal_lsn.clone(),
                start: progress.point.clone(),
                reached: progress.point.clone(),
            });
            store_state(self.ctx, state).await?;
        }
        tracing::info!(
            snapshot = snapshot_text,
            wal_lsn,
            exported = exported.is_some(),
            table = progress.point.table,
            after = ?progress.point.after,
            "snapshot run starts"
        );
        for (i, info) in self.infos.iter().enumerate() {
            if i < progress.point.table {
                self.ctx.metrics().snapshot_progress(
                    &info.name.to_string(),
                    progress.rows[i],
                    info.rows_estimate,
                    true,
                );
            }
        }
        let mut sent = 0u64;
        // The next chunk of the table, read while the previous one was sent.
        let mut ahead = None;
        while progress.point.table < self.targets.len() {
            if self.ctx.shutdown().is_triggered() {
                let _ = sql.batch_execute("ROLLBACK").await;
                return Ok(SnapshotOutcome {
                    rows: sent,
                    interrupted: true,
                });
            }
            sent += self
                .chunk(&mut progress, state.as_deref_mut(), &mut ahead)
                .await?;
        }
        sql.batch_execute("COMMIT")
            .await
            .map_err(|e| error::sql("cannot end the snapshot transaction", e))?;
        Ok(SnapshotOutcome {
            rows: sent,
            interrupted: false,
        })
    }

    /// Reads and sends the next chunk of `progress`'s table, advancing it.
    /// `ahead` holds that chunk when it was read already; the chunk after it
    /// is read into `ahead` while this one is converted and sent (one SQL
    /// session: the COPY of the next chunk is drained between sends).
    async fn chunk(
        &self,
        progress: &mut Progress,
        state: Option<&mut SnapshotState>,
        ahead: &mut Option<ChunkText>,
    ) -> Result<u64> {
        let t = progress.point.table;
        let target = &self.targets[t];
        let info = &self.infos[t];
        if info.whole_row_key {
            return self.whole_table(progress, state).await;
        }
        let started = std::time::Instant::now();
        let text = match ahead.take() {
            Some(text) => text,
            None => {
                self.read_chunk(target, progress.point.after.as_deref())
                    .await?
            }
        };
        let n = text.rows;
        let table_done = n < self.chunk_rows;
        let last_key: Option<Vec<String>> = text
            .last_line()
            .map(|line| key_text(target, &parse_line_str(line)));
        progress.point = if table_done {
            Point {
                table: t + 1,
                after: None,
            }
        } else {
            Point {
                table: t,
                after: last_key,
            }
        };
        progress.rows[t] += n as u64;
        if let Some(state) = state {
            if let Some(run) = state.runs.last_mut() {
                run.reached = progress.point.clone();
            }
            // Before any row of the chunk is sent (see `crate::resume`).
            store_state(self.ctx, state).await?;
        }
        let next = progress.point.after.clone().filter(|_| !table_done);
        let read_next = async {
            match &next {
                Some(after) => self.read_chunk(target, Some(after)).await.map(Some),
                None => Ok(None),
            }
        };
        let send = self.send_chunk(target, &text, progress_position(progress));
        let (next, ()) = tokio::try_join!(read_next, send)?;
        *ahead = next;
        let name = info.name.to_string();
        self.ctx.metrics().snapshot_progress(
            &name,
            progress.rows[t],
            info.rows_estimate.max(progress.rows[t]),
            table_done,
        );
        tracing::debug!(
            table = name,
            rows = n,
            seconds = started.elapsed().as_secs_f64(),
            "snapshot chunk sent"
        );
        if table_done || progress.rows[t].is_multiple_of(self.chunk_rows as u64 * 10) {
            tracing::info!(
                table = name,
                rows_done = progress.rows[t],
                rows_estimate = info.rows_estimate,
                finished = table_done,
                "snapshot progress"
            );
        }
        Ok(n as u64)
    }

    /// Converts the rows of `text` into records and sends them in batches;
    /// the last send carries `position`. Yields after each batch so that the
    /// COPY of the next chunk (polled beside it) keeps draining.
    async fn send_chunk(&self, target: &Target, text: &ChunkText, position: Value) -> Result<()> {
        let mut records: Vec<Record> = Vec::with_capacity(text.rows.min(self.batch_rows));
        let mut remaining = text.rows;
        let mut w = PayloadWriter::new(encoding(target.format));
        let mut fields = Vec::with_capacity(target.columns.len());
        for line in text.lines() {
            parse_line_into(line, &mut fields);
            records.push(target.record(&mut w, &fields[..], None, Some(&fields[..])));
            remaining -= 1;
            if records.len() >= self.batch_rows && remaining > 0 {
                self.ctx
                    .send(&target.stream, std::mem::take(&mut records), None)
                    .await?;
                tokio::task::yield_now().await;
            }
        }
        self.ctx.send(&target.stream, records, Some(position)).await
    }

    /// A table keyed by the whole row (no primary key, REPLICA IDENTITY
    /// FULL) has no order to chunk by: it is read in one pass, streamed in
    /// batches, and a crash reads it again from its start.
    async fn whole_table(
        &self,
        progress: &mut Progress,
        state: Option<&mut SnapshotState>,
    ) -> Result<u64> {
        let t = progress.point.table;
        let target = &self.targets[t];
        let info = &self.infos[t];
        progress.point = Point {
            table: t + 1,
            after: None,
        };
        if let Some(state) = state {
            if let Some(run) = state.runs.last_mut() {
                run.reached = progress.point.clone();
            }
            store_state(self.ctx, state).await?;
        }
        let columns = column_list(target);
        let sql = format!(
            "COPY (SELECT {columns} FROM {}) TO STDOUT",
            target.table.quoted()
        );
        let what = || format!("cannot read the rows of `{}`", target.table);
        let stream = self
            .sql
            .copy_out(sql.as_str())
            .await
            .map_err(|e| error::sql(what(), e))?;
        futures::pin_mut!(stream);
        let mut pending: Vec<u8> = Vec::new();
        let mut records: Vec<Record> = Vec::with_capacity(self.batch_rows);
        let mut n = 0u64;
        let name = info.name.to_string();
        let mut w = PayloadWriter::new(encoding(target.format));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| error::sql(what(), e))?;
            pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
                let row = parse_line(&pending[start..start + end]);
                records.push(target.record(&mut w, &row[..], None, Some(&row[..])));
                start += end + 1;
                n += 1;
                if records.len() >= self.batch_rows {
                    self.ctx
                        .send(&target.stream, std::mem::take(&mut records), None)
                        .await?;
                    self.ctx.metrics().snapshot_progress(
                        &name,
                        n,
                        info.rows_estimate.max(n),
                        false,
                    );
                }
            }
            pending.drain(..start);
        }
        progress.rows[t] = n;
        self.ctx
            .send(&target.stream, records, Some(progress_position(progress)))
            .await?;
        self.ctx
            .metrics()
            .snapshot_progress(&name, n, info.rows_estimate.max(n), true);
        tracing::info!(
            table = name,
            rows_done = n,
            finished = true,
            "snapshot progress"
        );
        Ok(n)
    }

    /// The rows of the chunk after `after` (all columns), as COPY text.
    async fn read_chunk(&self, target: &Target, after: Option<&[String]>) -> Result<ChunkText> {
        let columns = column_list(target);
        let key_columns = target
            .key
            .iter()
            .map(|&i| quote_ident(&target.columns[i].0))
            .collect::<Vec<_>>()
            .join(", ");
        let filter = match after {
            Some(after) => format!(
                " WHERE ({key_columns}) > ({})",
                after
                    .iter()
                    .map(|v| quote_literal(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => String::new(),
        };
        let sql = format!(
            "COPY (SELECT {columns} FROM {}{filter} ORDER BY {key_columns} LIMIT {}) TO STDOUT",
            target.table.quoted(),
            self.chunk_rows
        );
        let what = || format!("cannot read the rows of `{}`", target.table);
        let stream = self
            .sql
            .copy_out(sql.as_str())
            .await
            .map_err(|e| error::sql(what(), e))?;
        futures::pin_mut!(stream);
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| error::sql(what(), e))?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(ChunkText::new(bytes))
    }
}

/// A chunk's rows as the COPY text they came in (a few bytes a row, no
/// allocation per cell); converted line by line when sent.
#[derive(Debug, Default)]
struct ChunkText {
    /// The lines, each ended by a newline.
    text: String,
    /// Complete lines in `text`.
    rows: usize,
}

impl ChunkText {
    /// The chunk of COPY data `bytes` (whole lines, as PostgreSQL sends
    /// them), checked as UTF-8 once (the session's client encoding); bytes
    /// that are not become U+FFFD, as each field would.
    fn new(bytes: Vec<u8>) -> Self {
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let rows = text.bytes().filter(|&b| b == b'\n').count();
        Self { text, rows }
    }

    /// The complete lines, without their newline.
    fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n').take(self.rows)
    }

    /// The last complete line.
    fn last_line(&self) -> Option<&str> {
        let body = &self.text[..self.text.rfind('\n')?];
        Some(&body[body.rfind('\n').map_or(0, |p| p + 1)..])
    }
}

/// The quoted column list of `target`.
fn column_list(target: &Target) -> String {
    target
        .columns
        .iter()
        .map(|(name, _)| quote_ident(name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of the key columns of `row`.
fn key_text(target: &Target, row: &[CopyField<'_>]) -> Vec<String> {
    target
        .key
        .iter()
        .map(|&i| match row.get(i) {
            Some(CopyField::Text(text)) => text.to_string(),
            _ => String::new(),
        })
        .collect()
}

/// Stores `state` under [`SNAPSHOT_STATE_KEY`] (durable when it returns).
pub async fn store_state(ctx: &SourceContext, state: &SnapshotState) -> Result<()> {
    let text = serde_json::to_string(state).map_err(|e| {
        Error::new(ErrorKind::Internal, "cannot encode the snapshot state").with_source(e)
    })?;
    ctx.kv().set(SNAPSHOT_STATE_KEY, text).await
}

/// The stored snapshot state, if any (an unreadable one is treated as absent: the snapshot restarts).
pub async fn load_state(ctx: &SourceContext) -> Result<Option<SnapshotState>> {
    Ok(match ctx.kv().get(SNAPSHOT_STATE_KEY).await? {
        Some(text) => match serde_json::from_str(&text) {
            Ok(state) => Some(state),
            Err(error) => {
                tracing::warn!(%error, "the stored snapshot state is unreadable; ignoring it");
                None
            }
        },
        None => None,
    })
}

/// One field of a line of COPY text: NULL or its text, borrowed from the
/// line unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyField<'a> {
    /// `\N`.
    Null,
    /// The unescaped text.
    Text(Cow<'a, str>),
}

impl Row for [CopyField<'_>] {
    fn cell(&self, i: usize) -> Option<CellRef<'_>> {
        self.get(i).map(|f| match f {
            CopyField::Null => CellRef::Null,
            CopyField::Text(text) => CellRef::Text(text),
        })
    }
}

/// One line of COPY text output: tab-separated fields, `\N` for NULL,
/// backslash escapes.
pub fn parse_line(line: &[u8]) -> Vec<CopyField<'_>> {
    match std::str::from_utf8(line) {
        Ok(line) => parse_line_str(line),
        // Not UTF-8: each field's text with U+FFFD for what is not.
        Err(_) => line
            .split(|&b| b == b'\t')
            .map(|field| match parse_field(field) {
                CopyField::Text(text) => CopyField::Text(Cow::Owned(text.into_owned())),
                CopyField::Null => CopyField::Null,
            })
            .collect(),
    }
}

/// [`parse_line`] of a line known to be UTF-8.
pub fn parse_line_str(line: &str) -> Vec<CopyField<'_>> {
    let mut fields = Vec::new();
    parse_line_into(line, &mut fields);
    fields
}

/// [`parse_line_str`] into `fields` (emptied first), reusing its room. One
/// pass over the line: a field without a backslash is its text (no NULL, no
/// escape), borrowed.
pub fn parse_line_into<'a>(line: &'a str, fields: &mut Vec<CopyField<'a>>) {
    fields.clear();
    let field = |start: usize, end: usize, escaped: bool| {
        // Tabs are ASCII, so the bounds are character boundaries.
        let text = &line[start..end];
        if escaped {
            parse_field(text.as_bytes())
        } else {
            CopyField::Text(Cow::Borrowed(text))
        }
    };
    let mut start = 0;
    let mut escaped = false;
    for (i, &b) in line.as_bytes().iter().enumerate() {
        if b == b'\t' {
            fields.push(field(start, i, escaped));
            start = i + 1;
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        }
    }
    fields.push(field(start, line.len(), escaped));
}

fn parse_field(field: &[u8]) -> CopyField<'_> {
    if field == b"\\N" {
        return CopyField::Null;
    }
    if !field.contains(&b'\\') {
        return CopyField::Text(String::from_utf8_lossy(field));
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' || i + 1 >= field.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = field[i + 1];
        i += 2;
        match next {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                let mut digits = 1;
                while digits < 3 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    value = value * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            b'x' => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 && i < field.len() && field[i].is_ascii_hexdigit() {
                    value = value * 16 + (field[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    digits += 1;
                }
                if digits == 0 {
                    out.push(b'x');
                } else {
                    out.push(value as u8);
                }
            }
            other => out.push(other),
        }
    }
    CopyField::Text(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_fields_unescape() {
        assert_eq!(
            parse_line(b"1\t\\N\ta\\tb\\nc\\\\d\t\\x41\\101"),
            vec![
                CopyField::Text("1".into()),
                CopyField::Null,
                CopyField::Text("a\tb\nc\\d".into()),
                CopyField::Text("AA".into()),
            ]
        );
        assert_eq!(parse_line(b""), vec![CopyField::Text("".into())]);
        // A trailing lone backslash is kept, not a panic.
        assert_eq!(parse_line(b"x\\"), vec![CopyField::Text("x\\".into())]);
        // Fields without escapes borrow the line.
        assert!(matches!(
            parse_line(b"abc\tx")[0],
            CopyField::Text(Cow::Borrowed("abc"))
        ));
    }

    #[test]
    fn chunk_text_counts_whole_lines() {
        let text = ChunkText::new(Vec::new());
        assert_eq!(text.last_line(), None);
        let text = ChunkText::new(b"1\ta\n".to_vec());
        assert_eq!(text.last_line(), Some("1\ta"));
        let text = ChunkText::new(b"1\ta\n2\tb\n3\t\\N\n".to_vec());
        assert_eq!(text.rows, 3);
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            vec!["1\ta", "2\tb", "3\t\\N"]
        );
        assert_eq!(text.last_line(), Some("3\t\\N"));
    }

    #[test]
    fn text_that_is_not_utf8_reads_as_each_field_would() {
        let line = b"1\tx\xffy\t\\N\tz\\x41\xfe";
        let text = ChunkText::new([&line[..], b"\n"].concat());
        let fast = parse_line_str(text.lines().next().unwrap());
        assert_eq!(fast, parse_line(line));
        assert_eq!(
            fast,
            vec![
                CopyField::Text("1".into()),
                CopyField::Text("x\u{fffd}y".into()),
                CopyField::Null,
                CopyField::Text("zA\u{fffd}".into()),
            ]
        );
    }
}
