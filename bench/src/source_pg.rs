//! `hstream-io-bench source-postgresql`: source-postgresql on the standard
//! workload, beside the physical limits measured in the same run.
//!
//! One private PostgreSQL, one `hstream-io serve` (stream service), and the
//! real task process (`hstream-io source-postgresql run`) under the fake
//! HServer channel ([`TaskProcess`]):
//!
//! 1. snapshot: `rows` rows loaded with COPY, then read by the task's
//!    snapshot; compared with `COPY bench.orders TO STDOUT` (rows/s);
//! 2. streaming: `rows` more rows inserted in 1000-row transactions while
//!    the task streams; rows/s into the stream and the lag when the load ends
//!    (last insert committed → its record readable in the stream);
//! 3. backlog: once the server moved the task's slot restart point past the
//!    streaming phase (as it does for any task running longer than ~15 s),
//!    the task stopped, `rows` rows inserted, then drained by
//!    `pg_recvlogical` (pgoutput, same publication, its own slot) and by the
//!    restarted task; rows/s each. While those rows are inserted, a
//!    `pg_recvlogical` on a third slot follows them live: the lag of its
//!    walsender (`pg_stat_replication.sent_lsn` reaching the last commit)
//!    when the inserts end is the streaming limit of the server itself;
//! 4. start-up: from spawning the restarted task to "streaming changes";
//! 5. memory: the task's peak RSS (VmHWM) in each run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use hstream_io_runtime::stream::{Client, ReaderOffset};
use hstream_io_tests::harness;
use hstream_io_tests::hserver::{Serve, TaskProcess};
use serde_json::json;

use crate::load::copy_postgres;
use crate::workload::{Dialect, TABLE, ddl};

/// Rows per transaction of the streaming and backlog loads.
pub const TRANSACTION_ROWS: u64 = 1000;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Rows per phase.
    pub rows: u64,
    /// `COPY … TO STDOUT` of the table: rows/s.
    pub copy_out_rate: f64,
    /// The task's snapshot: rows/s (its own log: first chunk to done).
    pub snapshot_rate: f64,
    /// The inserter's rate during the streaming phase: rows/s.
    pub insert_rate: f64,
    /// Records in the stream per second during the streaming phase.
    pub stream_rate: f64,
    /// Last insert committed → its record readable in the stream.
    pub lag: Duration,
    /// `pg_recvlogical` draining the backlog on its own slot (created just
    /// before the backlog's inserts): rows/s.
    pub recvlogical_rate: f64,
    /// `pg_recvlogical` draining the backlog on a copy of the task's slot
    /// (`pg_copy_logical_replication_slot` when the task stopped): the same
    /// WAL to decode as the restarted task (from the slot's restart point,
    /// which PostgreSQL moves only at its running-transactions records, so
    /// the streaming phase's WAL is decoded again): rows/s.
    pub recvlogical_same_slot_rate: f64,
    /// WAL from the task's slot restart point to the backlog's start, MB.
    pub wal_before_backlog_mb: f64,
    /// The inserter's rate while `pg_recvlogical` followed the backlog load: rows/s.
    pub follow_insert_rate: f64,
    /// A live `pg_recvlogical` during that load: last insert committed →
    /// its walsender sent past that commit.
    pub recvlogical_lag: Duration,
    /// The restarted task draining the backlog: rows/s (from spawn to the last record).
    pub backlog_rate: f64,
    /// Spawn of the restarted task → "streaming changes".
    pub start: Duration,
    /// Peak RSS (VmHWM) of the first run (snapshot + streaming), KiB.
    pub rss_first_kib: u64,
    /// Peak RSS of the backlog run, KiB.
    pub rss_backlog_kib: u64,
}

/// Counts the records appended to `stream` from now on, across its shards.
struct Tail {
    count: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Tail {
    async fn open(client: &Client, stream: &str) -> Result<Self, String> {
        let count = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for shard in client
            .list_shards(stream)
            .await
            .map_err(|e| format!("list shards: {e}"))?
        {
            let mut reader = client
                .shard_reader_with_timeout(
                    stream,
                    shard.shard_id,
                    ReaderOffset::Latest,
                    Duration::from_millis(100),
                )
                .await
                .map_err(|e| format!("shard reader: {e}"))?;
            let count = count.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok(records) = reader.read(100).await {
                    count.fetch_add(records.len() as u64, Ordering::Relaxed);
                }
            }));
        }
        Ok(Self { count, tasks })
    }

    /// Waits until `n` records arrived; when they did.
    async fn wait(&self, n: u64, timeout: Duration) -> Result<Instant, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.count.load(Ordering::Relaxed);
            if got >= n {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                return Err(format!("only {got} of {n} records arrived"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Inserts workload rows `from..from + rows` in 1000-row transactions; the duration.
async fn insert(pg: &tokio_postgres::Client, from: u64, rows: u64) -> Result<Duration, String> {
    let started = Instant::now();
    let mut at = from;
    while at < from + rows {
        let end = (at + TRANSACTION_ROWS).min(from + rows) - 1;
        pg.batch_execute(&format!(
            "INSERT INTO {TABLE} SELECT g, g % 1000, (g % 10000) / 100.0, \
             (ARRAY['new','paid','shipped','cancelled'])[g % 4 + 1], 'note-' || g, \
             timestamp '2024-01-01 00:00:00' + g * interval '1 second' \
             FROM generate_series({at}::bigint, {end}::bigint) g"
        ))
        .await
        .map_err(|e| format!("insert: {e}"))?;
        at = end + 1;
    }
    Ok(started.elapsed())
}

/// Seconds since midnight (UTC) of a log line's leading RFC 3339 timestamp.
fn log_time(line: &str) -> Option<f64> {
    let time = line.split('T').nth(1)?.split('Z').next()?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn now_of_day() -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs_f64()) % 86_400.0
}

/// The first app.log line containing `what`, as seconds since midnight.
async fn wait_log(task: &TaskProcess, what: &str, timeout: Duration) -> Result<f64, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = task
            .app_log()
            .lines()
            .find(|l| l.contains(what))
            .and_then(log_time)
        {
            return Ok(t);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the task did not log `{what}`; stderr: {}",
                task.stderr()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// VmHWM (KiB) of the process whose command line names `config`.
fn peak_rss(config: &Path) -> u64 {
    let needle = config.to_string_lossy().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let pid = entry.file_name().to_string_lossy().parse().ok();
            if let Some(kib) = pid.and_then(crate::peak_rss_kib) {
                return kib;
            }
        }
    }
    0
}

/// Runs the benchmark with `rows` rows per phase; `work` holds the service data and task logs.
pub async fn run(rows: u64, work: &Path) -> Result<Report, String> {
    harness::own_servers();
    eprintln!("==> private PostgreSQL, {rows} rows per phase");
    let db = harness::postgres().await.create_database().await;
    let pg = db.connect().await;
    for stmt in ddl(Dialect::Postgres) {
        pg.batch_execute(&stmt)
            .await
            .map_err(|e| format!("{stmt}: {e}"))?;
    }
    copy_postgres(&pg, TABLE, rows).await?;
    pg.batch_execute(&format!("ANALYZE {TABLE}"))
        .await
        .map_err(|e| e.to_string())?;

    // The limit of a snapshot: COPY of the whole table.
    let started = Instant::now();
    let out = pg
        .copy_out(&format!("COPY {TABLE} TO STDOUT"))
        .await
        .map_err(|e| format!("COPY TO: {e}"))?;
    futures::pin_mut!(out);
    let mut bytes = 0usize;
    while let Some(chunk) = out.next().await {
        bytes += chunk.map_err(|e| e.to_string())?.len();
    }
    let copy_out_rate = rows as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "    COPY TO STDOUT: {copy_out_rate:.0} rows/s ({:.1} MB)",
        bytes as f64 / 1e6
    );

    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let serve = Serve::start(&work.join("data"));
    let client = Client::connect(&serve.url)
        .await
        .map_err(|e| format!("stream service: {e}"))?;
    let config = json!({
        "hstream": {"serviceUrl": serve.url},
        "task": "bench-pg",
        "connector": {
            "stream": "orders", "host": db.host, "port": db.port, "user": db.user,
            "password": db.password, "database": db.name, "table": TABLE,
            "statusIntervalSeconds": 1,
        },
    });
    let slot = "hstream_io_bench_pg";

    // 1. Snapshot, then 2. streaming.
    eprintln!("==> snapshot");
    let first_dir = work.join("task1");
    let task = TaskProcess::start(
        &first_dir,
        "source-postgresql",
        &config,
        Default::default(),
        &[],
    );
    let timeout = Duration::from_secs(600);
    let snapshot_start = wait_log(&task, "snapshot run starts", timeout).await?;
    let snapshot_end = wait_log(&task, "snapshot done", timeout).await?;
    let snapshot_rate = rows as f64 / (snapshot_end - snapshot_start);
    eprintln!("    snapshot: {snapshot_rate:.0} rows/s");
    wait_log(&task, "streaming changes", timeout).await?;

    eprintln!("==> streaming: {rows} rows inserted in {TRANSACTION_ROWS}-row transactions");
    let tail = Tail::open(&client, "orders").await?;
    let load_start = Instant::now();
    let insert_time = insert(&pg, rows, rows).await?;
    let load_end = Instant::now();
    let end_of_load_lsn: String = pg
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| format!("pg_current_wal_lsn: {e}"))?
        .get(0);
    let arrived = tail.wait(rows, timeout).await?;
    drop(tail);
    let lag = arrived.saturating_duration_since(load_end);
    let insert_rate = rows as f64 / insert_time.as_secs_f64();
    let stream_rate = rows as f64 / (arrived - load_start).as_secs_f64();
    eprintln!(
        "    inserts {insert_rate:.0} rows/s, stream {stream_rate:.0} rows/s, lag {:.3} s",
        lag.as_secs_f64()
    );
    let rss_first_kib = peak_rss(&first_dir.join("config.json"));
    // A task that runs longer than this phase has its slot's restart point
    // moved along by PostgreSQL (at a running-transactions record, logged
    // every 15 s of activity, once the task confirmed past it), so a restart
    // re-decodes at most ~15 s of WAL. Wait for that here as a running task
    // would see it, rather than stop the task before it could ever happen.
    let settle = Instant::now();
    let settled = loop {
        let row = pg
            .query_one(
                &format!(
                    "SELECT restart_lsn >= $1::text::pg_lsn FROM pg_replication_slots \
                     WHERE slot_name = '{slot}'"
                ),
                &[&end_of_load_lsn],
            )
            .await
            .map_err(|e| format!("pg_replication_slots: {e}"))?;
        if row.get::<_, bool>(0) {
            break true;
        }
        if settle.elapsed() > Duration::from_secs(45) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "    slot restart point {} the end of the load after {:.1} s",
        if settled { "passed" } else { "did NOT pass" },
        settle.elapsed().as_secs_f64()
    );
    task.send_stop();
    let kv = task.kv();
    let mut task = task;
    task.wait_exit(Duration::from_secs(30));
    drop(task);

    // 3. Backlog.
    eprintln!("==> backlog: {rows} rows inserted while the task is stopped");
    // What the restarted task's walsender decodes before the backlog: WAL
    // from the slot's restart point to where the backlog starts. A copy of
    // the slot (same restart point and confirmed position) lets
    // pg_recvlogical do exactly the decoding work the restarted task's
    // walsender does.
    let (before, wal_before_backlog_mb): (String, f64) = {
        let row = pg
            .query_one(
                &format!(
                    "SELECT format('restart_lsn %s, confirmed_flush_lsn %s', restart_lsn, confirmed_flush_lsn), \
                     (pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) / 1e6)::float8 \
                     FROM pg_replication_slots WHERE slot_name = '{slot}'"
                ),
                &[],
            )
            .await
            .map_err(|e| format!("pg_replication_slots: {e}"))?;
        (row.get(0), row.get(1))
    };
    eprintln!("    task's slot: {before}; {wal_before_backlog_mb:.1} MB of WAL before the backlog");
    pg.batch_execute(&format!(
        "SELECT pg_copy_logical_replication_slot('{slot}', 'bench_same')"
    ))
    .await
    .map_err(|e| format!("copy of the task's slot: {e}"))?;
    pg.batch_execute(
        "SELECT pg_create_logical_replication_slot('bench_recv', 'pgoutput'); \
         SELECT pg_create_logical_replication_slot('bench_follow', 'pgoutput')",
    )
    .await
    .map_err(|e| format!("slots for pg_recvlogical: {e}"))?;
    // The streaming limit: pg_recvlogical following the load live.
    let mut follower = std::process::Command::new("pg_recvlogical")
        .args(["-d", &db.url(), "--slot", "bench_follow", "--start"])
        .args(["--no-loop", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={slot}"))
        .spawn()
        .map_err(|e| format!("pg_recvlogical: {e}"))?;
    let follow_sent = "SELECT coalesce((SELECT sent_lsn FROM pg_stat_replication r \
         JOIN pg_replication_slots s ON s.active_pid = r.pid \
         WHERE s.slot_name = 'bench_follow'), '0/0') >= $1::text::pg_lsn";
    let insert_time = insert(&pg, 2 * rows, rows).await?;
    let load_end = Instant::now();
    let end_lsn: String = pg
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    loop {
        let sent: bool = pg
            .query_one(follow_sent, &[&end_lsn])
            .await
            .map_err(|e| format!("pg_stat_replication: {e}"))?
            .get(0);
        if sent {
            break;
        }
        if load_end.elapsed() > timeout {
            return Err("the live pg_recvlogical did not reach the end of the load".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recvlogical_lag = load_end.elapsed();
    let follow_insert_rate = rows as f64 / insert_time.as_secs_f64();
    let _ = follower.kill();
    let _ = follower.wait();
    // The follower's walsender may take a moment to notice it was killed.
    for _ in 0..100 {
        let dropped = pg
            .batch_execute("SELECT pg_drop_replication_slot('bench_follow')")
            .await;
        if dropped.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "    live pg_recvlogical: inserts {follow_insert_rate:.0} rows/s, lag {:.3} s",
        recvlogical_lag.as_secs_f64()
    );
    let started = Instant::now();
    let status = std::process::Command::new("pg_recvlogical")
        .args(["-d", &db.url(), "--slot", "bench_recv", "--start"])
        .args(["--endpos", &end_lsn, "--no-loop", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={slot}"))
        .status()
        .map_err(|e| format!("pg_recvlogical: {e}"))?;
    let recvlogical_rate = rows as f64 / started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("pg_recvlogical failed: {status}"));
    }
    pg.batch_execute("SELECT pg_drop_replication_slot('bench_recv')")
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("    pg_recvlogical: {recvlogical_rate:.0} rows/s");
    let started = Instant::now();
    let status = std::process::Command::new("pg_recvlogical")
        .args(["-d", &db.url(), "--slot", "bench_same", "--start"])
        .args(["--endpos", &end_lsn, "--no-loop", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={slot}"))
        .status()
        .map_err(|e| format!("pg_recvlogical: {e}"))?;
    let recvlogical_same_slot_rate = rows as f64 / started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!(
            "pg_recvlogical (copy of the task's slot) failed: {status}"
        ));
    }
    pg.batch_execute("SELECT pg_drop_replication_slot('bench_same')")
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "    pg_recvlogical on a copy of the task's slot: {recvlogical_same_slot_rate:.0} rows/s"
    );

    let tail = Tail::open(&client, "orders").await?;
    let second_dir = work.join("task2");
    let spawned_at = now_of_day();
    let spawned = Instant::now();
    let task = TaskProcess::start(&second_dir, "source-postgresql", &config, kv, &[]);
    let streaming = wait_log(&task, "streaming changes", timeout).await?;
    let start = Duration::from_secs_f64((streaming - spawned_at).max(0.0));
    let arrived = tail.wait(rows, timeout).await?;
    let backlog_rate = rows as f64 / (arrived - spawned).as_secs_f64();
    eprintln!(
        "    task: {backlog_rate:.0} rows/s; start {:.3} s",
        start.as_secs_f64()
    );
    let rss_backlog_kib = peak_rss(&second_dir.join("config.json"));
    task.send_stop();
    let mut task = task;
    task.wait_exit(Duration::from_secs(30));
    drop(task);
    drop(tail);
    let _ = pg
        .batch_execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
        .await;
    Ok(Report {
        rows,
        copy_out_rate,
        snapshot_rate,
        insert_rate,
        stream_rate,
        lag,
        recvlogical_rate,
        recvlogical_same_slot_rate,
        wal_before_backlog_mb,
        follow_insert_rate,
        recvlogical_lag,
        backlog_rate,
        start,
        rss_first_kib,
        rss_backlog_kib,
    })
}
