//! `hstream-io-bench source-mysql`: the `source-mysql` task process (as HServer
//! runs it, under the fake HServer of the tests) capturing the standard
//! workload from a private MariaDB into a stream on `hstream-io serve`.
//!
//! Phases, one task lineage on one table:
//! 1. **snapshot**: `rows` rows loaded with LOAD DATA, then the task starts
//!    (`snapshotMode: initial`); time until the stream holds them all. Limit:
//!    the same rows read by one client with the binary protocol, in this run.
//! 2. **streaming**: once the task streams, `rows` more rows are inserted in
//!    transactions of 1000 rows (one multi-row INSERT each); rows/s of the
//!    capture from the first insert until the stream holds them all, and the
//!    lag after the last insert. Limit: the insert rate itself.
//! 3. **backlog**: the task is stopped, `rows` more rows are inserted, the task
//!    restarts from its stored position; rows/s until the stream holds them.
//!    Also the time from `run` to "binlog streaming started" of that restart.
//!
//! Memory: VmHWM (peak RSS) of each task process, read from /proc before it
//! stops. The stream is counted by a shard reader in this process, which
//! leaves the payloads encoded (it only counts them).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hstream_io_runtime::stream::{Client, ReaderOffset};
use hstream_io_tests::harness;
use hstream_io_tests::hserver::{Serve, TaskProcess};
use mysql_async::prelude::Queryable;
use serde_json::json;

use crate::load::infile_mariadb;
use crate::workload::{Dialect, create_table};

/// Rows per inserted transaction.
const TXN_ROWS: u64 = 1000;
/// Longest wait for the stream to catch up.
const TIMEOUT: Duration = Duration::from_secs(600);

/// What one run measured.
#[derive(Debug, Default)]
pub struct SourceMysqlReport {
    /// Rows per phase.
    pub rows: u64,
    /// Client read of the table (binary protocol), rows/s: the snapshot's limit.
    pub select_rate: f64,
    /// Snapshot: rows/s from `run` until the stream held every row.
    pub snapshot_rate: f64,
    /// Inserts (transactions of 1000 rows), rows/s: the streaming limit.
    pub insert_rate: f64,
    /// Capture while inserting: rows/s from the first insert until the stream held all.
    pub stream_rate: f64,
    /// From the last insert's commit until the stream held every row.
    pub lag: Duration,
    /// Backlog: rows/s from `run` until the stream held the rows written while stopped.
    pub backlog_rate: f64,
    /// From `run` to "binlog streaming started" (restart with a stored position).
    pub start_to_streaming: Option<Duration>,
    /// Peak RSS (VmHWM) of the first task process (snapshot + streaming), KiB.
    pub hwm_first_kib: u64,
    /// Peak RSS of the restarted process (backlog), KiB.
    pub hwm_backlog_kib: u64,
}

/// Counts the records of `stream` as they arrive (one shard: the default).
struct Counter {
    count: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    fn start(url: &str, stream: &str) -> Self {
        let count = Arc::new(AtomicU64::new(0));
        let (url, stream, c) = (url.to_string(), stream.to_string(), count.clone());
        let task = tokio::spawn(async move {
            let Ok(client) = Client::connect(&url).await else {
                return;
            };
            let shard = loop {
                if let Ok(shards) = client.list_shards(&stream).await
                    && let Some(s) = shards.first()
                {
                    break s.shard_id;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let Ok(mut reader) = client
                .shard_reader(&stream, shard, ReaderOffset::Earliest)
                .await
            else {
                return;
            };
            loop {
                // Payloads left encoded: the count needs no JSON, and decoding
                // every Struct here took CPU from the task on the same cores.
                match reader.read_encoded(100).await {
                    Ok(got) if got.is_empty() => tokio::time::sleep(Duration::from_millis(2)).await,
                    Ok(got) => {
                        c.fetch_add(got.len() as u64, Ordering::Relaxed);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        Self { count, task }
    }

    fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` records were counted; returns when.
    async fn reach(&self, n: u64, task: &TaskProcess) -> Result<Instant, String> {
        let start = Instant::now();
        while self.get() < n {
            if start.elapsed() > TIMEOUT {
                return Err(format!(
                    "the stream holds {} of {n} records after {} s; task stderr:\n{}",
                    self.get(),
                    TIMEOUT.as_secs(),
                    task.stderr()
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(Instant::now())
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds since midnight UTC of a log line's RFC 3339 timestamp
/// (`2026-11-24T19:30:11.123456Z …`).
fn log_time_of_day(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split_once('T')?.1;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn time_of_day(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() % 86_400.0)
        .unwrap_or(0.0)
}

/// Inserts rows `from..to` in transactions of [`TXN_ROWS`]; returns the duration.
async fn insert(conn: &mut mysql_async::Conn, from: u64, to: u64) -> Result<Duration, String> {
    let start = Instant::now();
    let mut i = from;
    while i < to {
        let end = (i + TXN_ROWS).min(to);
        conn.query_drop(crate::workload::mariadb_insert_sql(i, end))
            .await
            .map_err(|e| format!("insert: {e}"))?;
        i = end;
    }
    Ok(start.elapsed())
}

fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64().max(1e-9)
}

/// Runs the three phases with `rows` rows each; `work` holds the service's data and the task logs.
pub async fn run(rows: u64, work: &Path) -> Result<SourceMysqlReport, String> {
    harness::own_servers();
    let mut r = SourceMysqlReport {
        rows,
        ..SourceMysqlReport::default()
    };
    println!("==> private MariaDB; {rows} rows loaded with LOAD DATA");
    let my = harness::mariadb().await.create_database().await;
    let mut conn = my.connect().await;
    conn.query_drop(create_table(Dialect::MariaDb, "orders"))
        .await
        .map_err(|e| e.to_string())?;
    infile_mariadb(&mut conn, "orders", rows).await?;
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .map_err(|e| e.to_string())?;

    // The snapshot's limit: one client reading the table (binary protocol).
    let t = Instant::now();
    let mut read = 0u64;
    {
        let mut result = conn
            .exec_iter(
                "SELECT id, customer_id, amount, status, note, created_at FROM orders ORDER BY id",
                (),
            )
            .await
            .map_err(|e| e.to_string())?;
        while let Some(row) = result.next().await.map_err(|e| e.to_string())? {
            drop(row);
            read += 1;
        }
    }
    r.select_rate = rate(read, t.elapsed());
    println!(
        "    client SELECT of the table: {:.0} rows/s",
        r.select_rate
    );

    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let serve = Serve::start(&work.join("data"));
    let config = json!({
        "hstream": {"serviceUrl": serve.url},
        "task": "bench-source-mysql",
        "connector": {"stream": "orders", "host": my.host, "port": my.port, "user": my.user,
                      "password": my.password, "database": my.name, "table": "orders"},
    });
    let counter = Counter::start(&serve.url, "orders");

    println!("==> snapshot of {rows} rows");
    let t = Instant::now();
    let mut task = TaskProcess::start(
        &work.join("task1"),
        "source-mysql",
        &config,
        HashMap::new(),
        &[],
    );
    let done = counter.reach(rows, &task).await?;
    r.snapshot_rate = rate(rows, done - t);
    println!("    {:.0} rows/s", r.snapshot_rate);

    // Wait until streaming has started (the position after the snapshot is committed).
    let deadline = Instant::now() + TIMEOUT;
    while !task.app_log().contains("binlog streaming started") {
        if Instant::now() > deadline {
            return Err(format!("streaming did not start: {}", task.stderr()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    println!("==> streaming: {rows} rows inserted in transactions of {TXN_ROWS}");
    let t = Instant::now();
    let took = insert(&mut conn, rows, 2 * rows).await?;
    let inserted = Instant::now();
    r.insert_rate = rate(rows, took);
    let done = counter.reach(2 * rows, &task).await?;
    r.stream_rate = rate(rows, done - t);
    r.lag = done.saturating_duration_since(inserted);
    println!(
        "    inserts {:.0} rows/s; captured {:.0} rows/s; lag {:.3} s",
        r.insert_rate,
        r.stream_rate,
        r.lag.as_secs_f64()
    );
    r.hwm_first_kib = crate::peak_rss_kib(task.pid()).unwrap_or(0);
    task.send_stop();
    task.wait_exit(TIMEOUT).ok_or("the task did not stop")?;
    let kv = task.kv();

    println!("==> backlog: {rows} rows inserted while the task is stopped");
    insert(&mut conn, 2 * rows, 3 * rows).await?;
    let started_at = SystemTime::now();
    let t = Instant::now();
    let mut task = TaskProcess::start(&work.join("task2"), "source-mysql", &config, kv, &[]);
    let done = counter.reach(3 * rows, &task).await?;
    r.backlog_rate = rate(rows, done - t);
    r.hwm_backlog_kib = crate::peak_rss_kib(task.pid()).unwrap_or(0);
    r.start_to_streaming = task
        .app_log()
        .lines()
        .find(|l| l.contains("binlog streaming started"))
        .and_then(log_time_of_day)
        .map(|at| Duration::from_secs_f64((at - time_of_day(started_at)).max(0.0)));
    println!("    {:.0} rows/s", r.backlog_rate);
    task.send_stop();
    task.wait_exit(TIMEOUT).ok_or("the task did not stop")?;
    let _ = conn.disconnect().await;
    Ok(r)
}
