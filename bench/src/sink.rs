//! The SQL sink benchmark (issue 4): the standard workload appended to a
//! stream, then applied by the real `hstream-io sink-postgresql|sink-mysql run`
//! process (under the fake HServer of the tests) into an empty table — the
//! insert pass — and, after a restart of the task, the same keys with changed
//! values — the upsert pass. The physical limit (COPY / LOAD DATA LOCAL of the
//! same rows, [`crate::load`]) is measured in the same run on the same server.
//!
//! Timing of a pass: from the start of the task process until the sink's
//! progress table holds the RecordId of the last appended record (polled
//! every 20 ms; the task's start-up is included). The table's checksum is then
//! compared with the generator's (not timed). RSS is the task's `VmHWM`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hstream_io_runtime::stream::{Client, Record, RecordId, StreamOptions};
use hstream_io_tests::harness;
use hstream_io_tests::hserver::{Serve, TaskProcess};
use mysql_async::prelude::Queryable;
use serde_json::{Map, Value, json};

use crate::load::{checksum_mariadb, checksum_postgres, infile_mariadb, load_postgres};
use crate::workload::{Checksum, Dialect, Order, STATUSES, create_table, ddl};

/// Records per append (what our sources append per batch).
const APPEND_BATCH: u64 = 1000;
/// The sink's table (in the database the harness creates for the run).
const SINK_TABLE: &str = "orders";
/// The stream the workload is appended to.
const STREAM: &str = "orders";

/// One pass of the sink.
#[derive(Debug, Clone)]
pub struct Pass {
    /// Rows applied.
    pub rows: u64,
    /// From task start until the last record was applied.
    pub elapsed: Duration,
    /// Peak RSS of the task process in kB (`VmHWM`).
    pub peak_rss_kb: u64,
    /// The table's checksum equals the expected one.
    pub verified: bool,
    /// CPU seconds used during the pass by the task, the stream service, and the whole machine
    /// (the rest is the database server and the benchmark's own polling).
    pub cpu: PassCpu,
}

/// Where a pass's CPU time went, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassCpu {
    /// The sink task process.
    pub task: f64,
    /// The `hstream-io serve` process the task reads from.
    pub serve: f64,
    /// Every CPU of the machine (busy time, all processes).
    pub machine: f64,
}

impl Pass {
    /// Rows per second.
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// What a sink benchmark run measured.
#[derive(Debug, Clone)]
pub struct SinkReport {
    /// The target database.
    pub target: Dialect,
    /// Inserts into the empty table.
    pub insert: Pass,
    /// Upserts of every key with changed values.
    pub upsert: Pass,
    /// The physical limit (rows/s) measured in the same run.
    pub limit_rows_per_sec: f64,
    /// Seconds to append the workload to the stream (once per pass).
    pub append_secs: [f64; 2],
}

impl std::fmt::Display for SinkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, limit) = match self.target {
            Dialect::Postgres => ("sink-postgresql", "COPY FROM STDIN"),
            Dialect::MariaDb => ("sink-mysql (MariaDB)", "LOAD DATA LOCAL INFILE"),
        };
        let line = |f: &mut std::fmt::Formatter<'_>, what: &str, p: &Pass| {
            writeln!(
                f,
                "  {what:<8} {:>9} rows in {:>6.2} s = {:>9.0} rows/s = {:>5.1} % of the limit; \
                 peak RSS {:.1} MB; checksum {}\n           CPU: task {:.2} s, serve {:.2} s, \
                 database + rest {:.2} s; machine busy {:.0} % of {} cores",
                p.rows,
                p.elapsed.as_secs_f64(),
                p.rows_per_sec(),
                100.0 * p.rows_per_sec() / self.limit_rows_per_sec,
                p.peak_rss_kb as f64 / 1024.0,
                if p.verified { "OK" } else { "MISMATCH" },
                p.cpu.task,
                p.cpu.serve,
                (p.cpu.machine - p.cpu.task - p.cpu.serve).max(0.0),
                100.0 * p.cpu.machine / p.elapsed.as_secs_f64() / cores() as f64,
                cores()
            )
        };
        writeln!(f, "{name}:")?;
        line(f, "inserts", &self.insert)?;
        line(f, "upserts", &self.upsert)?;
        writeln!(
            f,
            "  limit    {limit} {:.0} rows/s (same server, same run)",
            self.limit_rows_per_sec
        )?;
        write!(
            f,
            "  (appending to the stream, not timed: {:.1} s + {:.1} s)",
            self.append_secs[0], self.append_secs[1]
        )
    }
}

/// Row `i` of the workload in pass `pass`: pass 0 is [`Order::new`], pass 1
/// changes every non-key column.
pub fn order(i: u64, pass: u64) -> Order {
    let mut o = Order::new(i);
    if pass > 0 {
        o.customer_id = (o.customer_id + 1) % 1000;
        o.amount_cents = (o.amount_cents + 1) % 10_000;
        o.status = STATUSES[((i + pass) % 4) as usize];
        o.note = format!("note-{i}-{pass}");
        o.created_at_secs += 1;
    }
    o
}

/// The checksum of rows `0..n` of `pass`.
pub fn expected(n: u64, pass: u64) -> Checksum {
    let mut c = Checksum::default();
    (0..n).for_each(|i| c.add(&order(i, pass)));
    c
}

/// The record the sink receives for an order: a plain JSON (HRecord) row.
fn record(o: &Order) -> Record {
    let mut map = Map::new();
    map.insert("id".into(), json!(o.id));
    map.insert("customer_id".into(), json!(o.customer_id));
    map.insert("amount".into(), Value::String(o.amount()));
    map.insert("status".into(), Value::String(o.status.into()));
    map.insert("note".into(), Value::String(o.note.clone()));
    map.insert("created_at".into(), Value::String(o.created_at()));
    Record::json(String::new(), map)
}

/// Appends rows `0..n` of `pass`; returns the RecordId of the last one and the seconds taken.
async fn append(client: &Client, n: u64, pass: u64) -> Result<(RecordId, f64), String> {
    let shard = client
        .list_shards(STREAM)
        .await
        .map_err(|e| format!("list shards: {e}"))?[0]
        .shard_id;
    let t = Instant::now();
    let mut last = None;
    let mut start = 0;
    while start < n {
        let end = (start + APPEND_BATCH).min(n);
        let records = (start..end).map(|i| record(&order(i, pass))).collect();
        let ids = client
            .append(STREAM, shard, records, Default::default())
            .await
            .map_err(|e| format!("append: {e}"))?;
        last = ids.last().copied();
        start = end;
    }
    Ok((last.ok_or("no rows")?, t.elapsed().as_secs_f64()))
}

/// The target under test.
enum Db {
    Postgres(tokio_postgres::Client),
    MariaDb(mysql_async::Conn),
}

impl Db {
    /// The stored position of the sink, if any.
    async fn position(&mut self) -> Result<Option<String>, String> {
        let sql = "SELECT record_id FROM hstream_io_progress";
        match self {
            Db::Postgres(c) => match c.query_opt(sql, &[]).await {
                Ok(row) => Ok(row.map(|r| r.get(0))),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                    Ok(None)
                }
                Err(e) => Err(format!("progress: {e}")),
            },
            Db::MariaDb(c) => match c.query_first::<String, _>(sql).await {
                Ok(row) => Ok(row),
                Err(mysql_async::Error::Server(e)) if e.code == 1146 => Ok(None),
                Err(e) => Err(format!("progress: {e}")),
            },
        }
    }

    async fn checksum(&mut self) -> Result<Checksum, String> {
        match self {
            Db::Postgres(c) => checksum_postgres(c, SINK_TABLE).await,
            Db::MariaDb(c) => checksum_mariadb(c, SINK_TABLE).await,
        }
    }
}

/// The sink task of a run.
struct Task<'a> {
    /// `sink-postgresql` or `sink-mysql`.
    connector: &'a str,
    /// Its task config (config.json).
    config: Value,
    /// The KV as the previous run left it.
    kv: HashMap<String, String>,
}

/// Runs the sink task until it has applied `last`, rows `0..rows` of `pass`;
/// returns the pass's figures.
async fn pass(
    db: &mut Db,
    work: &Path,
    task_spec: &mut Task<'_>,
    rows: u64,
    pass: u64,
    last: RecordId,
    serve_pid: u32,
) -> Result<Pass, String> {
    let last = last.to_string();
    let serve_cpu_before = crate::cpu_secs(serve_pid).unwrap_or(0.0);
    let machine_before = crate::machine_busy_secs().unwrap_or(0.0);
    let (connector, task_config) = (task_spec.connector, &task_spec.config);
    let started = Instant::now();
    let mut task = TaskProcess::start(
        &work.join(format!("pass{pass}")),
        connector,
        task_config,
        task_spec.kv.clone(),
        &[],
    );
    let pid = task.pid();
    let deadline = started + Duration::from_secs(1800);
    let mut rss = 0;
    loop {
        if db.position().await?.as_deref() == Some(last.as_str()) {
            break;
        }
        if let Some(status) = task.wait_exit(Duration::ZERO) {
            return Err(format!(
                "the sink exited ({status}) before applying everything; log: {}",
                task.app_log()
            ));
        }
        if Instant::now() > deadline {
            return Err("the sink did not finish within 30 minutes".into());
        }
        rss = rss.max(crate::peak_rss_kib(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let cpu = PassCpu {
        task: crate::cpu_secs(pid).unwrap_or(0.0),
        serve: crate::cpu_secs(serve_pid).unwrap_or(0.0) - serve_cpu_before,
        machine: crate::machine_busy_secs().unwrap_or(0.0) - machine_before,
    };
    rss = rss.max(crate::peak_rss_kib(pid).unwrap_or(0));
    task.send_stop();
    if tokio::task::block_in_place(|| task.wait_exit(Duration::from_secs(30))).is_none() {
        return Err("the sink did not stop within 30 s".into());
    }
    task_spec.kv = task.kv();
    let verified = db.checksum().await? == expected(rows, pass);
    Ok(Pass {
        rows,
        elapsed,
        peak_rss_kb: rss,
        verified,
        cpu,
    })
}

/// Runs the benchmark against a private server of `target`.
pub async fn run(target: Dialect, rows: u64, work: &Path) -> Result<SinkReport, String> {
    std::fs::create_dir_all(work.join("serve"))
        .map_err(|e| format!("work folder {}: {e}", work.display()))?;
    let serve = Serve::start(&work.join("serve"));
    let client = Client::connect(&serve.url)
        .await
        .map_err(|e| format!("stream service: {e}"))?;
    client
        .create_stream(STREAM, StreamOptions::default())
        .await
        .map_err(|e| format!("create stream: {e}"))?;
    let (connector, config, mut db) = match target {
        Dialect::Postgres => {
            let d = harness::postgres().await.create_database().await;
            eprintln!("private PostgreSQL on 127.0.0.1:{}", d.port);
            let c = d.connect().await;
            c.batch_execute(&create_table(target, SINK_TABLE))
                .await
                .map_err(|e| format!("create table: {e}"))?;
            let config = json!({"host": d.host, "port": d.port, "user": d.user,
                "password": d.password, "database": d.name, "tlsMode": "disable"});
            ("sink-postgresql", config, Db::Postgres(c))
        }
        Dialect::MariaDb => {
            let d = harness::mariadb().await.create_database().await;
            eprintln!("private MariaDB on 127.0.0.1:{}", d.port);
            let mut c = d.connect().await;
            c.query_drop(create_table(target, SINK_TABLE))
                .await
                .map_err(|e| format!("create table: {e}"))?;
            let config = json!({"host": d.host, "port": d.port, "user": d.user,
                "password": d.password, "database": d.name, "tlsMode": "disable"});
            ("sink-mysql", config, Db::MariaDb(c))
        }
    };
    let mut connector_config = config;
    connector_config["stream"] = json!(STREAM);
    connector_config["table"] = json!(SINK_TABLE);
    // Extra connector options for A/B runs, e.g.
    // HSTREAM_IO_BENCH_SINK_CONFIG='{"buffer.batch.maxBytesSize": 2000000, "buffer.batch.maxAge": 50}'.
    if let Ok(extra) = std::env::var("HSTREAM_IO_BENCH_SINK_CONFIG") {
        let extra: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&extra)
            .map_err(|e| format!("HSTREAM_IO_BENCH_SINK_CONFIG is not a JSON object: {e}"))?;
        for (k, v) in extra {
            connector_config[k] = v;
        }
    }
    let task_config = json!({"hstream": {"serviceUrl": serve.url}, "connector": connector_config,
                             "task": "bench"});
    let mut task = Task {
        connector,
        config: task_config,
        kv: HashMap::new(),
    };
    let mut append_secs = [0.0; 2];
    let mut passes = Vec::new();
    for p in 0..2 {
        eprintln!("appending {rows} records (pass {p}) …");
        let (last, secs) = append(&client, rows, p).await?;
        append_secs[p as usize] = secs;
        eprintln!("running {connector} (pass {p}) …");
        passes.push(pass(&mut db, work, &mut task, rows, p, last, serve.pid()).await?);
    }
    eprintln!("measuring the physical limit …");
    let limit = match &mut db {
        Db::Postgres(c) => load_postgres(c, rows).await?,
        Db::MariaDb(c) => {
            for stmt in ddl(target) {
                c.query_drop(&stmt)
                    .await
                    .map_err(|e| format!("{stmt}: {e}"))?;
            }
            infile_mariadb(c, crate::workload::TABLE, rows).await?
        }
    };
    if !limit.verified {
        return Err("the limit's load has a checksum mismatch".into());
    }
    let upsert = passes.pop().expect("two passes");
    let insert = passes.pop().expect("two passes");
    drop(serve);
    Ok(SinkReport {
        target,
        insert,
        upsert,
        limit_rows_per_sec: limit.rows_per_sec(),
        append_secs,
    })
}

/// Online CPUs of this machine.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
