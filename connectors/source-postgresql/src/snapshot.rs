//! The initial load: every existing row once, read inside the snapshot the
//! replication slot exported (`SET TRANSACTION SNAPSHOT`), so the stream that
//! follows starts exactly where the snapshot ends — no gap, no duplicate.
//!
//! Rows come through `COPY (SELECT …) TO STDOUT` in text format: the same
//! text output functions as pgoutput, converted by the same
//! [`crate::types`] mapping, and read as a stream (memory stays bounded).

use futures::StreamExt;
use hstream_io_runtime::stream::Record;
use hstream_io_runtime::{Result, SourceContext};
use tokio_postgres::Client;

use crate::config::{quote_ident, quote_literal};
use crate::error;
use crate::pgoutput::Cell;
use crate::record::Target;

/// How a snapshot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOutcome {
    /// Rows sent.
    pub rows: u64,
    /// Whether the shutdown stopped it before the end.
    pub interrupted: bool,
}

/// Reads every row of `targets` inside `snapshot` (an exported snapshot
/// name, or a fresh repeatable-read snapshot when `None`) and sends them in
/// batches of `batch_rows`, without positions.
pub async fn read(
    client: &Client,
    snapshot: Option<&str>,
    targets: &[Target],
    batch_rows: usize,
    ctx: &SourceContext,
) -> Result<SnapshotOutcome> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| error::sql("cannot start the snapshot transaction", e))?;
    if let Some(name) = snapshot {
        client
            .batch_execute(&format!("SET TRANSACTION SNAPSHOT {}", quote_literal(name)))
            .await
            .map_err(|e| error::sql(format!("cannot import exported snapshot `{name}`"), e))?;
    }
    let mut rows = 0u64;
    for target in targets {
        let started = std::time::Instant::now();
        let table_rows = match copy_table(client, target, batch_rows, ctx).await? {
            Some(n) => n,
            None => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Ok(SnapshotOutcome {
                    rows,
                    interrupted: true,
                });
            }
        };
        rows += table_rows;
        tracing::info!(
            table = %target.table,
            rows = table_rows,
            seconds = started.elapsed().as_secs_f64(),
            "snapshot of table done"
        );
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| error::sql("cannot end the snapshot transaction", e))?;
    Ok(SnapshotOutcome {
        rows,
        interrupted: false,
    })
}

/// Copies one table; `None` when the shutdown interrupted it.
async fn copy_table(
    client: &Client,
    target: &Target,
    batch_rows: usize,
    ctx: &SourceContext,
) -> Result<Option<u64>> {
    let columns = target
        .columns
        .iter()
        .map(|(name, _)| quote_ident(name))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "COPY (SELECT {columns} FROM {}) TO STDOUT",
        target.table.quoted()
    );
    let what = || format!("cannot read the rows of `{}`", target.table);
    let stream = client
        .copy_out(sql.as_str())
        .await
        .map_err(|e| error::sql(what(), e))?;
    futures::pin_mut!(stream);
    let mut pending: Vec<u8> = Vec::new();
    let mut batch: Vec<Record> = Vec::with_capacity(batch_rows);
    let mut rows = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| error::sql(what(), e))?;
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = &pending[start..start + end];
            let cells = parse_line(line);
            batch.push(target.record(target.key(&cells, None), Some(target.value(&cells))));
            rows += 1;
            start += end + 1;
            if batch.len() >= batch_rows {
                ctx.send(&target.stream, std::mem::take(&mut batch), None)
                    .await?;
                if ctx.shutdown().is_triggered() {
                    return Ok(None);
                }
            }
        }
        pending.drain(..start);
    }
    if !batch.is_empty() {
        ctx.send(&target.stream, batch, None).await?;
    }
    Ok(Some(rows))
}

/// One line of COPY text output: tab-separated fields, `\N` for NULL,
/// backslash escapes.
pub fn parse_line(line: &[u8]) -> Vec<Cell> {
    line.split(|&b| b == b'\t').map(parse_field).collect()
}

fn parse_field(field: &[u8]) -> Cell {
    if field == b"\\N" {
        return Cell::Null;
    }
    if !field.contains(&b'\\') {
        return Cell::Text(String::from_utf8_lossy(field).into_owned());
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
    Cell::Text(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_fields_unescape() {
        assert_eq!(
            parse_line(b"1\t\\N\ta\\tb\\nc\\\\d\t\\x41\\101"),
            vec![
                Cell::Text("1".into()),
                Cell::Null,
                Cell::Text("a\tb\nc\\d".into()),
                Cell::Text("AA".into()),
            ]
        );
        assert_eq!(parse_line(b""), vec![Cell::Text(String::new())]);
        // A trailing lone backslash is kept, not a panic.
        assert_eq!(parse_line(b"x\\"), vec![Cell::Text("x\\".into())]);
    }
}
