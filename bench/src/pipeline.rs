//! The whole pipeline on one machine: MariaDB → `source-mysql` → stream →
//! `sink-postgresql` → PostgreSQL, managed by `hstream-io serve` through SQL.
//!
//! Two runs:
//! - [`run`], used by `scripts/quickstart` (the README's main job): private
//!   MariaDB and PostgreSQL servers, the standard workload loaded into MariaDB,
//!   connectors created with HStreamDB's SQL, then live updates, deletes and
//!   inserts; success = identical row count and checksum on both sides.
//! - [`run_live`], the issue's benchmark: the workload **written** to MariaDB
//!   in transactions while the pipeline runs, measured until PostgreSQL
//!   matches: rows/s, lag when the load ends, worker and per-task peak RSS.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hstream_io_tests::harness;
use hstream_io_tests::hserver::{Serve, binary};
use mysql_async::prelude::Queryable;

use crate::load::{checksum_postgres, infile_mariadb};
use crate::workload::{Checksum, Dialect, checksum_sql, create_table};

/// What a pipeline run measured.
#[derive(Debug)]
pub struct PipelineReport {
    /// Rows loaded before the connectors were created.
    pub rows: u64,
    /// From CREATE CONNECTOR until PostgreSQL matched MariaDB.
    pub initial_sync: Duration,
    /// From the end of the live changes until PostgreSQL matched again.
    pub catch_up: Duration,
    /// The final checksums (equal on success).
    pub mariadb: Checksum,
    /// See `mariadb`.
    pub postgres: Checksum,
}

/// Sink options the pipeline sets (the defaults write one transaction per
/// stream read, i.e. per 1000-row source batch): gather up to 2 MB or 50 ms
/// (as fast here as 4 MB, with ~17 MB less sink RSS; docs/benchmarks.md).
pub const SINK_BATCHING: &str =
    r#", "buffer.batch.maxBytesSize" = 2000000, "buffer.batch.maxAge" = 50"#;

/// [`SINK_BATCHING`], or nothing (the sink's defaults) when the environment
/// has `HSTREAM_IO_BENCH_SINK_DEFAULTS=1`, or the SQL `WITH` options in
/// `HSTREAM_IO_BENCH_SINK_OPTIONS` (e.g. `, "buffer.batch.maxBytesSize" = 1000000`),
/// for A/B comparisons.
fn sink_batching() -> String {
    if std::env::var("HSTREAM_IO_BENCH_SINK_DEFAULTS").as_deref() == Ok("1") {
        String::new()
    } else if let Ok(options) = std::env::var("HSTREAM_IO_BENCH_SINK_OPTIONS") {
        options
    } else {
        SINK_BATCHING.to_string()
    }
}

fn sql(url: &str, statement: &str) -> Result<String, String> {
    let out = Command::new(binary())
        .args(["sql", "--service-url", url, statement])
        .output()
        .map_err(|e| format!("cannot run hstream-io sql: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "`{statement}` failed: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn checksum_mariadb(conn: &mut mysql_async::Conn) -> Result<Checksum, String> {
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .map_err(|e| e.to_string())?;
    let row: Option<(String, String, String)> = conn
        .query_first(checksum_sql(Dialect::MariaDb, "orders"))
        .await
        .map_err(|e| format!("checksum: {e}"))?;
    let (r, i, h) = row.ok_or("checksum: no row")?;
    Checksum::from_sql_row(&r, &i, &h)
}

/// The SQL that creates the pipeline's two connectors: `orders` in MariaDB →
/// stream `orders` → `orders` in PostgreSQL.
fn connector_statements(
    my: &harness::MariaDbDatabase,
    pg: &harness::PostgresDatabase,
) -> (String, String) {
    let source = format!(
        r#"CREATE SOURCE CONNECTOR orders_source FROM mysql WITH ("host" = "{}", "port" = {}, "user" = "{}", "password" = "{}", "database" = "{}", "table" = "orders", "stream" = "orders");"#,
        my.host, my.port, my.user, my.password, my.name
    );
    let sink = format!(
        r#"CREATE SINK CONNECTOR orders_sink TO postgresql WITH ("host" = "{}", "port" = {}, "user" = "{}", "password" = "{}", "database" = "{}", "table" = "orders", "stream" = "orders"{});"#,
        pg.host,
        pg.port,
        pg.user,
        pg.password,
        pg.name,
        sink_batching()
    );
    (source, sink)
}

/// Polls until PostgreSQL's checksum equals `target`; prints progress.
async fn wait_for(
    pg: &tokio_postgres::Client,
    target: Checksum,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last_rows = u64::MAX;
    loop {
        let got = checksum_postgres(pg, "orders").await?;
        if got == target {
            return Ok(start.elapsed());
        }
        if got.rows != last_rows {
            println!(
                "    postgresql: {} rows (mariadb: {})",
                got.rows, target.rows
            );
            last_rows = got.rows;
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "PostgreSQL did not match MariaDB within {} s (postgresql {got:?}, mariadb {target:?}); \
                 see the task logs under the data folder",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the pipeline with `rows` initial rows; `work` holds the service's data and logs.
pub async fn run(rows: u64, work: &Path) -> Result<PipelineReport, String> {
    harness::own_servers();
    println!("==> starting private MariaDB and PostgreSQL servers");
    let my = harness::mariadb().await.create_database().await;
    let pgdb = harness::postgres().await.create_database().await;
    let mut conn = my.connect().await;
    conn.query_drop(create_table(Dialect::MariaDb, "orders"))
        .await
        .map_err(|e| e.to_string())?;
    println!("==> loading {rows} rows into MariaDB {}.orders", my.name);
    infile_mariadb(&mut conn, "orders", rows).await?;
    let pg = pgdb.connect().await;
    pg.batch_execute(&create_table(Dialect::Postgres, "orders"))
        .await
        .map_err(|e| e.to_string())?;

    println!("==> starting hstream-io serve (stream service + IO worker)");
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let serve = Serve::start(&work.join("data"));
    let (source, sink) = connector_statements(&my, &pgdb);
    println!(
        "==> CREATE SOURCE CONNECTOR orders_source FROM mysql …; CREATE SINK CONNECTOR orders_sink TO postgresql …"
    );
    let started = Instant::now();
    sql(&serve.url, &source)?;
    sql(&serve.url, &sink)?;
    print!("{}", sql(&serve.url, "SHOW CONNECTORS;")?);
    let target = checksum_mariadb(&mut conn).await?;
    wait_for(&pg, target, Duration::from_secs(600)).await?;
    let initial_sync = started.elapsed();
    println!(
        "==> initial sync: {rows} rows in {:.1} s",
        initial_sync.as_secs_f64()
    );

    println!("==> live changes in MariaDB: updates, deletes, inserts");
    let changes = [
        "UPDATE orders SET amount = amount + 1, status = 'paid' WHERE id % 10 = 0".to_string(),
        "DELETE FROM orders WHERE id % 7 = 3".to_string(),
        format!(
            "INSERT INTO orders VALUES ({rows}, 1, 12.34, 'new', 'live insert', '2024-06-01 12:00:00'), \
             ({}, 2, 0.01, 'new', 'another', '2024-06-01 12:00:01')",
            rows + 1
        ),
    ];
    for change in &changes {
        conn.query_drop(change)
            .await
            .map_err(|e| format!("{change}: {e}"))?;
    }
    let changed = Instant::now();
    let target = checksum_mariadb(&mut conn).await?;
    let catch_up = wait_for(&pg, target, Duration::from_secs(300))
        .await
        .map(|_| changed.elapsed())?;
    let postgres = checksum_postgres(&pg, "orders").await?;
    sql(&serve.url, "DROP CONNECTOR orders_source;")?;
    sql(&serve.url, "DROP CONNECTOR orders_sink;")?;
    drop(serve);
    Ok(PipelineReport {
        rows,
        initial_sync,
        catch_up,
        mariadb: target,
        postgres,
    })
}

/// What a live run measured.
#[derive(Debug)]
pub struct LiveReport {
    /// Rows written to MariaDB.
    pub rows: u64,
    /// Rows per MariaDB transaction.
    pub txn_rows: u64,
    /// From the first write until the last commit (the writer alone).
    pub write: Duration,
    /// From the first write until PostgreSQL matched.
    pub total: Duration,
    /// From the last MariaDB commit until PostgreSQL matched.
    pub lag_at_end: Duration,
    /// Peak RSS (VmHWM) of `hstream-io serve` (stream service + worker), bytes.
    pub serve_hwm: u64,
    /// Peak RSS (VmHWM) of each task process: (connector, bytes).
    pub task_hwm: Vec<(String, u64)>,
    /// The final checksums (equal on success).
    pub mariadb: Checksum,
    /// See `mariadb`.
    pub postgres: Checksum,
    /// The expected checksum of the workload.
    pub expected: Checksum,
}

/// The pid of the `hstream-io serve` whose data folder is `data_dir`.
fn serve_pid(data_dir: &Path) -> Option<u32> {
    let needle = data_dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_serve =
            args.get(1) == Some(&&b"serve"[..]) && args.iter().any(|a| a == &needle.as_bytes());
        is_serve.then_some(pid)
    })
}

/// The task processes of the worker in `data_dir`: (connector name, pid).
fn task_pids(url: &str, data_dir: &Path) -> Result<Vec<(String, u32)>, String> {
    let listed: serde_json::Value = serde_json::from_str(
        &Command::new(binary())
            .args([
                "connector",
                "list",
                "--output",
                "json",
                "--service-url",
                url,
            ])
            .output()
            .map_err(|e| format!("connector list: {e}"))
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())?,
    )
    .map_err(|e| format!("connector list output: {e}"))?;
    let mut out = Vec::new();
    for c in listed.as_array().into_iter().flatten() {
        let (Some(name), Some(task)) = (c["name"].as_str(), c["taskId"].as_str()) else {
            continue;
        };
        let pid = std::fs::read_to_string(data_dir.join("tasks").join(task).join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        if let Some(pid) = pid {
            out.push((name.to_string(), pid));
        }
    }
    Ok(out)
}

/// Records each connector reported as delivered (HStreamDB's `GetStats`):
/// shows which side of the stream the pipeline waits on.
async fn delivered(url: &str) -> Option<std::collections::HashMap<String, i64>> {
    use hstream_io_runtime::stream::wire;
    let endpoint = url.replace("hstream://", "http://");
    let mut api = wire::h_stream_api_client::HStreamApiClient::connect(endpoint)
        .await
        .ok()?;
    let request = wire::GetStatsRequest {
        stats: vec![wire::StatType {
            stat: Some(wire::stat_type::Stat::ConnStat(
                wire::ConnectorStats::DeliveredInRecords as i32,
            )),
        }],
    };
    let response = api.get_stats(request).await.ok()?.into_inner();
    Some(response.stats_values.into_iter().next()?.stat_values)
}

/// The issue's benchmark: empty tables, the pipeline created, then `rows`
/// rows of the standard workload written to MariaDB in transactions of
/// `txn_rows` while the pipeline runs; measured until PostgreSQL has every
/// row with the workload's checksum.
pub async fn run_live(rows: u64, txn_rows: u64, work: &Path) -> Result<LiveReport, String> {
    harness::own_servers();
    println!("==> starting private MariaDB and PostgreSQL servers");
    let my = harness::mariadb().await.create_database().await;
    let pgdb = harness::postgres().await.create_database().await;
    let mut conn = my.connect().await;
    conn.query_drop(create_table(Dialect::MariaDb, "orders"))
        .await
        .map_err(|e| e.to_string())?;
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .map_err(|e| e.to_string())?;
    let pg = pgdb.connect().await;
    pg.batch_execute(&create_table(Dialect::Postgres, "orders"))
        .await
        .map_err(|e| e.to_string())?;

    println!("==> starting hstream-io serve; creating the connectors on the empty table");
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let data_dir = work.join("data");
    let serve = Serve::start(&data_dir);
    let (source, sink) = connector_statements(&my, &pgdb);
    sql(&serve.url, &source)?;
    sql(&serve.url, &sink)?;
    // Both tasks up (the source past its empty snapshot) before the load starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    print!("{}", sql(&serve.url, "SHOW CONNECTORS;")?);

    println!(
        "==> writing {rows} rows to MariaDB in transactions of {txn_rows} while the pipeline runs"
    );
    let writer = {
        let mut conn = my.connect().await;
        tokio::spawn(async move {
            let started = Instant::now();
            let mut from = 0;
            while from < rows {
                let to = (from + txn_rows).min(rows);
                let statement = crate::workload::mariadb_insert_sql(from, to);
                conn.query_drop(statement)
                    .await
                    .map_err(|e| format!("insert {from}..{to}: {e}"))?;
                from = to;
            }
            Ok::<_, String>((started, Instant::now()))
        })
    };
    // Rows are applied in commit order (one shard, one sink writer): the last id
    // arriving means every row did; the checksum below confirms it.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(1800);
    let mut last_print = Instant::now();
    let matched = loop {
        let max: Option<i64> = pg
            .query_one("SELECT max(id) FROM orders", &[])
            .await
            .map_err(|e| format!("max(id): {e}"))?
            .get(0);
        let now = Instant::now();
        if max == Some(rows as i64 - 1) {
            break now;
        }
        if now > deadline {
            return Err(format!(
                "PostgreSQL did not get row {} within 1800 s (max id {max:?})",
                rows - 1
            ));
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            let d = delivered(&serve.url).await.unwrap_or_default();
            println!(
                "    {:>5.1} s: source appended {} records, sink applied {} (reports every 3 s); postgresql max id {}",
                started.elapsed().as_secs_f64(),
                d.get("orders_source").copied().unwrap_or(0),
                d.get("orders_sink").copied().unwrap_or(0),
                max.unwrap_or(-1)
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (write_started, write_ended) = writer.await.map_err(|e| format!("writer: {e}"))??;
    let serve_hwm = serve_pid(&data_dir)
        .and_then(|pid| crate::peak_rss_kib(pid).map(|kib| kib * 1024))
        .unwrap_or(0);
    let task_hwm = task_pids(&serve.url, &data_dir)?
        .into_iter()
        .map(|(name, pid)| (name, crate::peak_rss_kib(pid).map_or(0, |kib| kib * 1024)))
        .collect();
    let postgres = checksum_postgres(&pg, "orders").await?;
    let mariadb = checksum_mariadb(&mut conn).await?;
    sql(&serve.url, "DROP CONNECTOR orders_source;")?;
    sql(&serve.url, "DROP CONNECTOR orders_sink;")?;
    drop(serve);
    Ok(LiveReport {
        rows,
        txn_rows,
        write: write_ended - write_started,
        total: matched.saturating_duration_since(write_started),
        lag_at_end: matched.saturating_duration_since(write_ended),
        serve_hwm,
        task_hwm,
        mariadb,
        postgres,
        expected: Checksum::expected(rows),
    })
}
