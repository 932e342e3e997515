//! Physical limits: how fast the standard workload goes into each target with its own bulk path
//! (PostgreSQL `COPY … FROM STDIN` text format, MariaDB `LOAD DATA LOCAL INFILE` fed from memory).
//! No connector is involved; a pipeline benchmark compares its rows/s with these.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::workload::{Checksum, Dialect, TABLE, checksum_sql, ddl, load_sql, tsv_chunks};

/// Bytes per COPY / LOAD DATA chunk.
pub const CHUNK_BYTES: usize = 1 << 20;

/// What one load measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub target: Dialect,
    pub rows: u64,
    /// TSV bytes sent.
    pub bytes: u64,
    /// Rendering the rows to TSV in memory (not part of `load`).
    pub generate: Duration,
    /// The bulk load alone, from the statement to its commit.
    pub load: Duration,
    /// The checksum query after the load.
    pub checksum: Duration,
    /// The table's checksum equals the generator's.
    pub verified: bool,
}

impl LoadReport {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.load.as_secs_f64()
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.load.as_secs_f64()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.target {
            Dialect::Postgres => "PostgreSQL COPY FROM STDIN (text)",
            Dialect::MariaDb => "MariaDB LOAD DATA LOCAL INFILE",
        };
        write!(
            f,
            "{how}: {} rows, {:.1} MB in {:.2} s = {:.0} rows/s ({:.1} MB/s); \
             generate {:.2} s, checksum {:.2} s, checksum {}",
            self.rows,
            self.bytes as f64 / 1e6,
            self.load.as_secs_f64(),
            self.rows_per_sec(),
            self.mb_per_sec(),
            self.generate.as_secs_f64(),
            self.checksum.as_secs_f64(),
            if self.verified { "OK" } else { "MISMATCH" }
        )
    }
}

fn render(rows: u64) -> (Vec<Bytes>, u64, Duration) {
    let t = Instant::now();
    let chunks: Vec<Bytes> = tsv_chunks(rows, CHUNK_BYTES).map(Bytes::from).collect();
    let bytes = chunks.iter().map(|c| c.len() as u64).sum();
    (chunks, bytes, t.elapsed())
}

/// Recreate `bench.orders` and COPY `rows` rows into it, then verify the checksum.
pub async fn load_postgres(
    client: &tokio_postgres::Client,
    rows: u64,
) -> Result<LoadReport, String> {
    for stmt in ddl(Dialect::Postgres) {
        client
            .batch_execute(&stmt)
            .await
            .map_err(|e| format!("{stmt}: {e}"))?;
    }
    copy_postgres(client, TABLE, rows).await
}

/// COPY rows `0..rows` into an existing, empty workload table, then verify the checksum.
pub async fn copy_postgres(
    client: &tokio_postgres::Client,
    table: &str,
    rows: u64,
) -> Result<LoadReport, String> {
    let (chunks, bytes, generate) = render(rows);
    let t = Instant::now();
    let sink = client
        .copy_in::<_, Bytes>(&load_sql(Dialect::Postgres, table))
        .await
        .map_err(|e| format!("COPY: {e}"))?;
    futures::pin_mut!(sink);
    for c in chunks {
        sink.send(c).await.map_err(|e| format!("COPY data: {e}"))?;
    }
    let n = sink.finish().await.map_err(|e| format!("COPY end: {e}"))?;
    let load = t.elapsed();
    if n != rows {
        return Err(format!("COPY stored {n} rows, sent {rows}"));
    }
    let t = Instant::now();
    let got = checksum_postgres(client, table).await?;
    let checksum = t.elapsed();
    Ok(LoadReport {
        target: Dialect::Postgres,
        rows,
        bytes,
        generate,
        load,
        checksum,
        verified: got == Checksum::expected(rows),
    })
}

/// [`checksum_sql`] on PostgreSQL.
pub async fn checksum_postgres(
    client: &tokio_postgres::Client,
    table: &str,
) -> Result<Checksum, String> {
    let row = client
        .query_one(&checksum_sql(Dialect::Postgres, table), &[])
        .await
        .map_err(|e| format!("checksum: {e}"))?;
    Checksum::from_sql_row(row.get(0), row.get(1), row.get(2))
}

/// Recreate `bench.orders` and LOAD DATA LOCAL INFILE `rows` rows into it, then verify.
pub async fn load_mariadb(conn: &mut Conn, rows: u64) -> Result<LoadReport, String> {
    for stmt in ddl(Dialect::MariaDb) {
        conn.query_drop(&stmt)
            .await
            .map_err(|e| format!("{stmt}: {e}"))?;
    }
    infile_mariadb(conn, TABLE, rows).await
}

/// LOAD DATA LOCAL INFILE rows `0..rows` into an existing, empty workload table, then verify.
pub async fn infile_mariadb(conn: &mut Conn, table: &str, rows: u64) -> Result<LoadReport, String> {
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .map_err(|e| e.to_string())?;
    let (chunks, bytes, generate) = render(rows);
    conn.set_infile_handler(async move {
        let stream = futures::stream::iter(chunks.into_iter().map(Ok));
        Ok(Box::pin(stream) as mysql_async::InfileData)
    });
    let t = Instant::now();
    conn.query_drop(load_sql(Dialect::MariaDb, table))
        .await
        .map_err(|e| format!("LOAD DATA LOCAL INFILE: {e}"))?;
    let load = t.elapsed();
    let stored = conn.affected_rows();
    if stored != rows {
        return Err(format!("LOAD DATA stored {stored} rows, sent {rows}"));
    }
    let t = Instant::now();
    let got = checksum_mariadb(conn, table).await?;
    let checksum = t.elapsed();
    Ok(LoadReport {
        target: Dialect::MariaDb,
        rows,
        bytes,
        generate,
        load,
        checksum,
        verified: got == Checksum::expected(rows),
    })
}

/// [`checksum_sql`] on MariaDB (sets the session time zone to UTC first).
pub async fn checksum_mariadb(conn: &mut Conn, table: &str) -> Result<Checksum, String> {
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .map_err(|e| e.to_string())?;
    let row: (String, String, String) = conn
        .query_first(checksum_sql(Dialect::MariaDb, table))
        .await
        .map_err(|e| format!("checksum: {e}"))?
        .ok_or("checksum: no row")?;
    Checksum::from_sql_row(&row.0, &row.1, &row.2)
}
