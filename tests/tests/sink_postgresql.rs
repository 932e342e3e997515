//! sink-postgresql against a private PostgreSQL (harness): the reference's
//! full-sync scenarios through the real sink driver and an in-process stream
//! service, the mixed batches that broke the reference, composite keys,
//! partial rows, the type matrix, exactly-once restarts, and `check`.
//!
//! The pipeline helpers ([`pipeline`]) are shared with `sink_mysql`.

use hstream_io_runtime::Connector;
use hstream_io_runtime::stream::RecordId;
use hstream_io_runtime::{Secret, SinkBatch, SinkConnector, SinkRecord, SinkWriter};
use hstream_io_sink_postgresql::{PgSink, PgSinkConfig};
use hstream_io_tests::harness::{self, PostgresDatabase};
use serde_json::{Value, json};

/// A stream service in-process and a sink driver run like `run` does (memory
/// KV, no channel), for end-to-end tests of both SQL sinks.
pub(crate) mod pipeline {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use hstream_io_runtime::config::TaskFile;
    use hstream_io_runtime::kv::{KvStore, MemoryKv};
    use hstream_io_runtime::report::Metrics;
    use hstream_io_runtime::shutdown::{self, ShutdownTrigger, StopReason};
    use hstream_io_runtime::stream::{Client, Record, StreamOptions};
    use hstream_io_runtime::task::TaskEnv;
    use hstream_io_runtime::{Result, SinkConnector};
    use hstream_io_stream_service::{RunningService, ServeOptions, start};
    use serde_json::{Map, Value, json};

    /// A running stream service with a client.
    pub(crate) struct Streams {
        _dir: tempfile::TempDir,
        pub service: RunningService,
        pub client: Client,
    }

    /// Starts a stream service in a temporary directory.
    pub(crate) async fn streams() -> Streams {
        let dir = tempfile::tempdir().unwrap();
        let mut options = ServeOptions::new(dir.path());
        options.listen = "127.0.0.1:0".parse().unwrap();
        let service = start(options).await.expect("start stream service");
        let client = Client::connect(&service.url()).await.unwrap();
        Streams {
            _dir: dir,
            service,
            client,
        }
    }

    impl Streams {
        /// Creates `stream` with `shards` shards.
        pub(crate) async fn create(&self, stream: &str, shards: u32) {
            self.client
                .create_stream(
                    stream,
                    StreamOptions {
                        shard_count: shards,
                        ..StreamOptions::default()
                    },
                )
                .await
                .unwrap();
        }

        /// Appends `records` as one batch to the first shard of `stream`.
        pub(crate) async fn append(&self, stream: &str, records: Vec<Record>) {
            let shard = self.client.list_shards(stream).await.unwrap()[0].shard_id;
            self.client
                .append(stream, shard, records, Default::default())
                .await
                .unwrap();
        }

        /// Appends through a producer that routes by partition key.
        pub(crate) async fn produce(&self, stream: &str, records: Vec<Record>) {
            let producer = self
                .client
                .producer(stream, Default::default())
                .await
                .unwrap();
            let mut handles = Vec::new();
            for r in records {
                handles.push(producer.append(r).await.unwrap());
            }
            producer.flush().await.unwrap();
            for h in handles {
                h.await.unwrap();
            }
        }
    }

    /// Every record of the first shard of `stream`, as JSON text.
    pub(crate) async fn read_stream(client: &Client, stream: &str) -> Vec<Value> {
        let shard = client.list_shards(stream).await.unwrap()[0].shard_id;
        let mut reader = client
            .shard_reader_with_timeout(
                stream,
                shard,
                hstream_io_runtime::stream::ReaderOffset::Earliest,
                Duration::from_millis(200),
            )
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            let got = reader.read(100).await.unwrap();
            if got.is_empty() {
                break;
            }
            for r in got {
                match r.record.payload {
                    hstream_io_runtime::stream::Payload::Raw(bytes) => {
                        out.push(serde_json::from_slice(&bytes).unwrap())
                    }
                    hstream_io_runtime::stream::Payload::Json(map) => out.push(Value::Object(map)),
                    hstream_io_runtime::stream::Payload::EncodedJson(_) => {
                        unreachable!("readers decode JSON records")
                    }
                }
            }
        }
        reader.close().await.unwrap();
        out
    }

    /// A JSON (HRecord) record from a JSON object.
    pub(crate) fn json_record(key: &str, value: Value) -> Record {
        let Value::Object(map) = value else {
            panic!("not an object")
        };
        Record::json(key, map)
    }

    /// A RAW record holding JSON text.
    pub(crate) fn raw_record(value: Value) -> Record {
        Record::raw("", value.to_string().into_bytes())
    }

    /// A sink task running in this process.
    pub(crate) struct RunningSink {
        trigger: ShutdownTrigger,
        task: tokio::task::JoinHandle<Result<()>>,
        pub metrics: Arc<Metrics>,
    }

    /// Starts sink `C` with `config` (a connector config object) against
    /// `service_url`, keeping its offsets in `kv`.
    pub(crate) fn start_sink<C: SinkConnector>(
        config: Value,
        service_url: &str,
        kv: Arc<MemoryKv>,
    ) -> RunningSink {
        let parsed: C::Config = serde_json::from_value(config.clone()).expect("valid config");
        let (trigger, shutdown) = shutdown::channel();
        let metrics = Arc::new(Metrics::default());
        let env = TaskEnv {
            file: TaskFile {
                path: "config.json".into(),
                service_url: Some(service_url.to_string()),
                connector: config,
                task_id: None,
            },
            shutdown,
            trigger: trigger.clone(),
            kv: kv as Arc<dyn KvStore>,
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(hstream_io_runtime::sink::drive::<C>(parsed, env));
        RunningSink {
            trigger,
            task,
            metrics,
        }
    }

    impl RunningSink {
        /// Stops it like `{"name":"stop"}` does and waits for a clean end.
        pub(crate) async fn stop(self) {
            self.trigger.trigger(StopReason::StopCommand);
            tokio::time::timeout(Duration::from_secs(30), self.task)
                .await
                .expect("sink stops within 30 s")
                .expect("sink task does not panic")
                .expect("sink ends without error");
        }

        /// Waits for the task to fail on its own (a batch it may not skip).
        pub(crate) async fn failure(self) -> hstream_io_runtime::Error {
            tokio::time::timeout(Duration::from_secs(60), self.task)
                .await
                .expect("sink fails within 60 s")
                .expect("sink task does not panic")
                .expect_err("the sink fails")
        }

        /// The offsets the next Report would carry: `{"shardId":…,"offset":…}`.
        pub(crate) fn report_offsets(&self) -> Vec<Value> {
            self.metrics.take_report()["offsets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    }

    /// Polls `probe` until it returns `Some`, for at most 60 s.
    pub(crate) async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The reference's 10 records in one of its formats (`Utils.testSinkFullSync`):
    /// row `i` is `{"k1":i,"v1":i*7,"v2":"v<i>"}`.
    pub(crate) fn reference_records(format: &str, keyed: bool) -> Vec<Record> {
        (0..10)
            .map(|i| {
                let row = json!({"k1": i, "v1": i * 7, "v2": format!("v{i}")});
                let key = if keyed { i.to_string() } else { String::new() };
                match format {
                    "KEY_VALUE" => json_record(&key, json!({"key": {"k1": i}, "value": row})),
                    "PLAIN" => json_record(&key, row),
                    "RAW_JSON" => {
                        let mut r = raw_record(row);
                        r.key = key;
                        r
                    }
                    "BSON" => json_record(
                        &key,
                        json!({"k1": {"$numberLong": i.to_string()},
                               "v1": {"$numberLong": (i * 7).to_string()},
                               "v2": format!("v{i}")}),
                    ),
                    other => panic!("unknown format {other}"),
                }
            })
            .collect()
    }

    /// The rows the reference records must leave.
    pub(crate) fn reference_rows() -> Vec<Value> {
        (0..10)
            .map(|i| json!({"k1": i, "v1": i * 7, "v2": format!("v{i}")}))
            .collect()
    }

    /// Loads `total` records `{"n": i, "payload": "p<i>"}` (1000 per append)
    /// into a 1-shard `stream`, then runs `connector` as a child process the
    /// way HServer does, SIGKILLs it `kills` times at random points while it
    /// writes (restarting it with the KV HServer would hold), and lets a last
    /// run finish. `applied` counts the rows in the target table.
    pub(crate) async fn kill_9_load<F, Fut>(
        streams: &Streams,
        stream: &str,
        total: i64,
        kills: usize,
        connector: &str,
        config: Value,
        mut applied: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = i64>,
    {
        use hstream_io_tests::hserver::TaskProcess;
        streams.create(stream, 1).await;
        for part in 0..total / 1000 {
            let records = (part * 1000..part * 1000 + 1000)
                .map(|n| json_record("", json!({"n": n, "payload": format!("p{n}")})))
                .collect();
            streams.append(stream, records).await;
        }
        let task_config = json!({"hstream": {"serviceUrl": streams.service.url()}, "connector": config, "task": "kill-9"});
        let dir = tempfile::tempdir().unwrap();
        let mut kv = std::collections::HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        for round in 0..=kills {
            let before = applied().await;
            let mut task = TaskProcess::start(
                &dir.path().join(format!("run{round}")),
                connector,
                &task_config,
                kv.clone(),
                &[],
            );
            if round < kills {
                // Let it make progress (or find nothing left to do: a fast
                // sink can finish the load between two kills), then kill it
                // at a random point.
                loop {
                    let now = applied().await;
                    assert!(
                        Instant::now() < deadline,
                        "no progress after kill {round} ({now} of {total} applied, {before} before the restart); task log tail: {}",
                        tail(&task.app_log())
                    );
                    if now > before || now >= total {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 400)).await;
                task.signal(9);
            } else {
                loop {
                    if applied().await >= total {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the last run did not finish the load"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                task.send_stop();
            }
            let status = tokio::task::block_in_place(|| task.wait_exit(Duration::from_secs(30)));
            assert!(status.is_some(), "run {round} exits");
            kv = task.kv();
        }
    }

    /// Loads `total` records `{"n", "payload"}` into `stream` and runs the sink
    /// (in-process driver, small batches) while `cut` drops every session the
    /// sink has on the database, as a server restart does (transactions in
    /// flight abort, temporary tables vanish), every 50 ms until `applied`
    /// reaches `total`. Returns how many cuts hit an unfinished load.
    pub(crate) async fn outage_load<C, F, Fut, G, Gut>(
        streams: &Streams,
        stream: &str,
        total: i64,
        config: Value,
        mut applied: F,
        mut cut: G,
    ) -> usize
    where
        C: SinkConnector,
        F: FnMut() -> Fut,
        Fut: Future<Output = i64>,
        G: FnMut() -> Gut,
        Gut: Future<Output = ()>,
    {
        streams.create(stream, 1).await;
        for part in 0..total / 1000 {
            let records = (part * 1000..part * 1000 + 1000)
                .map(|n| json_record("", json!({"n": n, "payload": format!("p{n}")})))
                .collect();
            streams.append(stream, records).await;
        }
        let sink = start_sink::<C>(config, &streams.service.url(), Default::default());
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut cuts = 0;
        loop {
            let now = applied().await;
            if now >= total {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the load did not finish: {now} of {total} rows"
            );
            if now > 0 {
                cut().await;
                cuts += 1;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sink.stop().await;
        cuts
    }

    /// Appends `total` records `{"n", "payload"}` to `stream`, runs `connector`
    /// (the real task binary, in `dir`) with `sink_config`, calls `restart`
    /// (the target server's restart) once the sink has applied some rows,
    /// then waits until `applied` reaches `total`, starting the sink again
    /// with the KV it left whenever it exits (as HServer would), and stops it
    /// cleanly. `applied` is `None` while the server does not answer. Returns
    /// how many times the sink exited.
    pub(crate) async fn server_restart_load<F, Fut, R, RFut>(
        streams: &Streams,
        dir: &std::path::Path,
        connector: &str,
        sink_config: Value,
        total: i64,
        mut applied: F,
        restart: R,
    ) -> usize
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<i64>>,
        R: FnOnce() -> RFut,
        RFut: Future<Output = ()>,
    {
        use hstream_io_tests::hserver::TaskProcess;
        let stream = sink_config["stream"]
            .as_str()
            .expect("a stream")
            .to_string();
        streams.create(&stream, 1).await;
        for part in 0..total / 1000 {
            let records = (part * 1000..part * 1000 + 1000)
                .map(|n| json_record("", json!({"n": n, "payload": format!("p{n}")})))
                .collect();
            streams.append(&stream, records).await;
        }
        let task_config = json!({"hstream": {"serviceUrl": streams.service.url()},
                                 "connector": sink_config, "task": format!("{connector}-restart")});
        let start = |round: usize, kv| {
            TaskProcess::start(
                &dir.join(format!("run{round}")),
                connector,
                &task_config,
                kv,
                &[],
            )
        };
        let mut round = 0;
        let mut task = start(round, Default::default());
        let deadline = Instant::now() + Duration::from_secs(60);
        while applied().await.unwrap_or(0) == 0 {
            assert!(
                Instant::now() < deadline,
                "the sink applied nothing: {}",
                task.app_log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        restart().await;
        let after = applied().await.expect("the server is back");
        assert!(
            after < total,
            "the restart hit a finished load ({after} rows after it)"
        );
        let mut exits = 0;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let now = applied().await.unwrap_or(0);
            if now >= total {
                break;
            }
            if let Some(status) = task.wait_exit(Duration::ZERO) {
                exits += 1;
                eprintln!("the sink exited ({status}); starting it again");
                let kv = task.kv();
                round += 1;
                task = start(round, kv);
            }
            assert!(
                Instant::now() < deadline,
                "the load did not finish: {now} of {total} rows; task log: {}",
                task.app_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.send_stop();
        let status = tokio::task::block_in_place(|| task.wait_exit(Duration::from_secs(30)));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "the sink stops cleanly: {}",
            task.stderr()
        );
        eprintln!("sink exits during the outage: {exits}");
        exits
    }

    /// The bench workload's row `i` (`bench.orders` shape, see bench/src/workload.rs)
    /// as a plain JSON record; `pass` changes the non-key columns.
    pub(crate) fn order(i: i64, pass: i64) -> Record {
        let secs = 1_704_067_200 + i + pass;
        let (d, t) = (secs / 86_400, secs % 86_400);
        let date = chrono_free_date(d);
        let status = ["new", "paid", "shipped", "cancelled"][((i + pass) % 4) as usize];
        json_record(
            "",
            json!({"id": i, "customer_id": (i + pass) % 1000,
                   "amount": format!("{}.{:02}", (i % 10_000) / 100, (i + pass) % 100),
                   "status": status,
                   "note": format!("note-{i}-{pass}"),
                   "created_at": format!("{date} {:02}:{:02}:{:02}", t / 3600, t % 3600 / 60, t % 60)}),
        )
    }

    fn chrono_free_date(days: i64) -> String {
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// Appends `rows` orders of `pass` to `stream` (1000 per append) while the
    /// sink runs; returns the seconds from the first append until `done` says
    /// they are all applied (appending included: a conservative figure).
    pub(crate) async fn time_pass<F, Fut>(
        streams: &Streams,
        stream: &str,
        rows: i64,
        pass: i64,
        mut done: F,
    ) -> f64
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        for part in 0..rows / 1000 {
            let records = (part * 1000..part * 1000 + 1000)
                .map(|i| order(i, pass))
                .collect();
            streams.append(stream, records).await;
        }
        while !done().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed().as_secs_f64()
    }

    fn tail(log: &str) -> String {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Merges `extra` into a config object.
    pub(crate) fn with(mut base: Value, extra: Value) -> Value {
        if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
            let e: Map<String, Value> = e;
            b.extend(e);
        }
        base
    }
}

use pipeline::{eventually, reference_records, reference_rows, start_sink, streams, with};

fn config(db: &PostgresDatabase, table: &str, extra: Value) -> Value {
    with(
        json!({"stream": "stream01", "host": db.host, "port": db.port, "user": db.user,
               "password": db.password, "database": db.name, "table": table, "tlsMode": "disable"}),
        extra,
    )
}

fn typed(db: &PostgresDatabase, table: &str, extra: Value) -> PgSinkConfig {
    serde_json::from_value(config(db, table, extra)).unwrap()
}

async fn exec(db: &PostgresDatabase, sql: &str) {
    db.connect().await.batch_execute(sql).await.unwrap();
}

/// Rows of `select` as JSON objects (via `json_agg`).
async fn rows(db: &PostgresDatabase, select: &str) -> Vec<Value> {
    let c = db.connect().await;
    let row = c
        .query_one(
            &format!("SELECT coalesce(json_agg(x), '[]')::text FROM ({select}) x"),
            &[],
        )
        .await
        .unwrap();
    serde_json::from_str::<Vec<Value>>(&row.get::<_, String>(0)).unwrap()
}

fn batch(shard: u64, batch_id: u64, payloads: &[Value]) -> SinkBatch {
    SinkBatch {
        stream: "s".into(),
        shard_id: shard,
        records: payloads
            .iter()
            .enumerate()
            .map(|(i, p)| SinkRecord {
                record_id: RecordId {
                    shard_id: shard,
                    batch_id,
                    batch_index: i as u32,
                },
                key: Default::default(),
                payload: p.to_string().into_bytes().into(),
                is_json: false,
            })
            .collect(),
        appended_ms: None,
    }
}

const T1: &str = "CREATE TABLE t1 (k1 int primary key, v1 int, v2 varchar(255))";

#[tokio::test]
async fn pg_reference_formats_sync_exactly_ten_rows() {
    let streams = streams().await;
    for format in ["KEY_VALUE", "PLAIN", "RAW_JSON", "BSON"] {
        let db = harness::postgres().await.create_database().await;
        exec(&db, T1).await;
        let stream = format!("s_{}", format.to_lowercase());
        streams.create(&stream, 1).await;
        streams
            .append(&stream, reference_records(format, false))
            .await;
        let kv = Default::default();
        let sink = start_sink::<PgSink>(
            config(&db, "t1", json!({"stream": stream})),
            &streams.service.url(),
            kv,
        );
        let got = eventually(&format!("10 rows from {format}"), || async {
            let r = rows(&db, "SELECT * FROM t1 ORDER BY k1").await;
            (r.len() >= 10).then_some(r)
        })
        .await;
        assert_eq!(got, reference_rows(), "{format}");
        let offsets = eventually("offsets in the report", || async {
            let o = sink.report_offsets();
            (!o.is_empty()).then_some(o)
        })
        .await;
        assert_eq!(offsets.len(), 1, "{format}: one shard, one offset");
        assert!(offsets[0]["offset"].as_str().unwrap().ends_with("-9"));
        // The lag comes from the batches' append times: present and sane
        // (appended moments ago, not measured from the epoch or the future).
        let lag = sink.metrics.lag_ms().expect("a written batch sets the lag");
        assert!(lag < 600_000, "{format}: lag {lag} ms");
        sink.stop().await;
        assert_eq!(
            rows(&db, "SELECT * FROM t1 ORDER BY k1").await,
            reference_rows()
        );
    }
}

#[tokio::test]
async fn pg_three_shards_with_partition_keys() {
    let streams = streams().await;
    let db = harness::postgres().await.create_database().await;
    exec(&db, T1).await;
    streams.create("stream01", 3).await;
    streams
        .produce("stream01", reference_records("KEY_VALUE", true))
        .await;
    let sink = start_sink::<PgSink>(
        config(&db, "t1", json!({})),
        &streams.service.url(),
        Default::default(),
    );
    let got = eventually("10 rows", || async {
        let r = rows(&db, "SELECT * FROM t1 ORDER BY k1").await;
        (r.len() >= 10).then_some(r)
    })
    .await;
    assert_eq!(got, reference_rows());
    let shards_written = rows(
        &db,
        "SELECT DISTINCT shard_id FROM hstream_io_progress WHERE stream = 'stream01'",
    )
    .await
    .len();
    let offsets = eventually("an offset per written shard", || async {
        let o = sink.report_offsets();
        (o.len() == shards_written).then_some(o)
    })
    .await;
    assert!(shards_written > 1, "keys 0..9 spread over several shards");
    assert!(offsets.iter().all(|o| o["offset"].is_string()));
    sink.stop().await;
}

#[tokio::test]
async fn pg_restart_resumes_from_the_progress_table_without_duplicates() {
    let streams = streams().await;
    let db = harness::postgres().await.create_database().await;
    // No key: only exactly-once keeps replays from duplicating rows.
    exec(&db, "CREATE TABLE log (n int, note text)").await;
    streams.create("stream01", 1).await;
    let part = |from: i64, to: i64| -> Vec<_> {
        (from..to)
            .map(|n| pipeline::json_record("", json!({"n": n, "note": format!("#{n}")})))
            .collect()
    };
    streams.append("stream01", part(0, 50)).await;
    streams.append("stream01", part(50, 100)).await;
    let sink = start_sink::<PgSink>(
        config(&db, "log", json!({})),
        &streams.service.url(),
        Default::default(),
    );
    eventually("100 rows", || async {
        (rows(&db, "SELECT n FROM log").await.len() >= 100).then_some(())
    })
    .await;
    sink.stop().await;
    // A fresh KV (as if the task's KV was lost): the progress table decides.
    streams.append("stream01", part(100, 120)).await;
    let sink = start_sink::<PgSink>(
        config(&db, "log", json!({})),
        &streams.service.url(),
        Default::default(),
    );
    eventually("120 rows", || async {
        (rows(&db, "SELECT n FROM log").await.len() >= 120).then_some(())
    })
    .await;
    sink.stop().await;
    let got = rows(
        &db,
        "SELECT count(*) AS c, count(DISTINCT n) AS d, sum(n) AS s FROM log",
    )
    .await;
    assert_eq!(got, vec![json!({"c": 120, "d": 120, "s": 7140})]);
}

#[tokio::test]
async fn pg_mixed_batches_apply_in_stream_order() {
    let db = harness::postgres().await.create_database().await;
    exec(&db, T1).await;
    let mut w = PgSink::open(&typed(&db, "t1", json!({}))).await.unwrap();
    // [upsert…, delete]: the reference called upsert() with the delete record.
    w.write(&batch(
        1,
        1,
        &[
            json!({"key":{"k1":1},"value":{"k1":1,"v1":10,"v2":"a"}}),
            json!({"key":{"k1":2},"value":{"k1":2,"v1":20,"v2":"b"}}),
            json!({"key":{"k1":3},"value":{"k1":3,"v1":30,"v2":"c"}}),
            json!({"key":{"k1":2},"value":null}),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        rows(&db, "SELECT * FROM t1 ORDER BY k1").await,
        vec![
            json!({"k1":1,"v1":10,"v2":"a"}),
            json!({"k1":3,"v1":30,"v2":"c"})
        ]
    );
    // [delete, upsert] on one key (the reference deleted the upserted row),
    // several partial changes to one key, explicit null, Struct doubles and
    // extended JSON.
    w.write(&batch(
        1,
        2,
        &[
            json!({"key":{"k1":1},"value":null}),
            json!({"key":{"k1":1},"value":{"k1":1,"v2":"new"}}),
            json!({"k1":3,"v1":31}),
            json!({"k1":3,"v2":null}),
            json!({"k1":4.0,"v1":{"$numberLong":"40"}}),
            json!({"k1":5,"v1":50}),
            json!({"key":{"k1":5},"value":null}),
            json!({"k1":5,"v2":"back"}),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        rows(&db, "SELECT * FROM t1 ORDER BY k1").await,
        vec![
            json!({"k1":1,"v1":null,"v2":"new"}),
            json!({"k1":3,"v1":31,"v2":null}),
            json!({"k1":4,"v1":40,"v2":null}),
            json!({"k1":5,"v1":null,"v2":"back"}),
        ]
    );
    assert_eq!(
        w.stored_offsets().await.unwrap().unwrap()[&1].to_string(),
        "1-2-7"
    );
    // A batch replayed after a restart is not applied twice.
    w.write(&batch(1, 2, &[json!({"k1":1,"v1":999})]))
        .await
        .unwrap();
    assert_eq!(
        rows(&db, "SELECT v1 FROM t1 WHERE k1 = 1").await,
        vec![json!({"v1": null})]
    );
    // A value that does not fit names the record, the column and the type.
    let e = w
        .write(&batch(
            1,
            3,
            &[json!({"k1":6,"v1":1}), json!({"k1":7,"v1":"x"})],
        ))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert_eq!(e.kind(), hstream_io_runtime::ErrorKind::Conversion);
    assert!(
        text.contains("record 1-3-1") && text.contains("`v1` (integer)") && text.contains("\"x\""),
        "{text}"
    );
    assert!(
        rows(&db, "SELECT * FROM t1 WHERE k1 = 6").await.is_empty(),
        "one transaction"
    );
}

#[tokio::test]
async fn pg_composite_keys_and_key_columns_override() {
    let db = harness::postgres().await.create_database().await;
    exec(
        &db,
        "CREATE TABLE \"Order Lines\" (id serial primary key, a int not null, \"B\" text not null, v int, UNIQUE (\"B\", a))",
    )
    .await;
    let mut w = PgSink::open(&typed(
        &db,
        "public.Order Lines",
        json!({"keyColumns":["a","B"]}),
    ))
    .await
    .unwrap();
    w.write(&batch(
        1,
        1,
        &[
            json!({"key":{"a":1,"B":"x"},"value":{"a":1,"B":"x","v":1}}),
            json!({"key":{"a":1,"B":"y"},"value":{"a":1,"B":"y","v":2}}),
            json!({"key":{"a":2,"B":"x"},"value":{"a":2,"B":"x","v":3}}),
            json!({"key":{"a":1,"B":"x"},"value":null}),
            json!({"key":{"a":1,"B":"y"},"value":{"v":20}}),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        rows(
            &db,
            "SELECT a, \"B\", v FROM \"Order Lines\" ORDER BY a, \"B\""
        )
        .await,
        vec![json!({"a":1,"B":"y","v":20}), json!({"a":2,"B":"x","v":3})]
    );
    // A delete that lacks a key column is refused, not applied to the wrong rows.
    let e = w
        .write(&batch(1, 2, &[json!({"key":{"a":1},"value":null})]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("key column `B`"), "{e}");
}

#[tokio::test]
async fn pg_type_matrix() {
    let db = harness::postgres().await.create_database().await;
    exec(
        &db,
        "CREATE TYPE mood AS ENUM ('ok','sad'); CREATE TABLE ty (id bigint primary key, b boolean, s smallint, \
         n numeric(40,10), f double precision, d date, t time, ts timestamp, tz timestamptz, j jsonb, js json, \
         by bytea, u uuid, m mood, arr int[], txt text)",
    )
    .await;
    let mut w = PgSink::open(&typed(&db, "ty", json!({"exactlyOnce": false})))
        .await
        .unwrap();
    w.write(&batch(
        1,
        1,
        &[
            json!({"id":"9223372036854775807","b":"t","s":-5,"n":"123456789012345678901234567890.0123456789",
                   "f":1.5,"d":"2024-02-29","t":"12:34:56.789","ts":"2024-01-31T12:00:00+02:00",
                   "tz":"2024-01-31T12:00:00Z","j":{"a":[1,2]},"js":"{\"x\": 1}","by":"AAH/",
                   "u":"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11","m":"sad","arr":[1,2,null],
                   "txt":"tab\there\nline \\ back"}),
            json!({"id":-1,"b":false,"s":{"$numberInt":"7"},"n":0.1,"f":"NaN","d":19753,"t":1_500_000,
                   "ts":1_700_000_000_123i64,"tz":"2024-01-31 12:00:00-05:00","j":"[1]","js":null,"by":"",
                   "u":null,"m":"ok","arr":[],"txt":3.0}),
        ],
    ))
    .await
    .unwrap();
    let got = rows(
        &db,
        "SELECT id::text, b, s, n::text, f::text, d, t, ts, tz, j, js, encode(by,'hex') AS by, u, m, arr, txt \
         FROM ty ORDER BY id",
    )
    .await;
    assert_eq!(
        got,
        vec![
            json!({"id":"-1","b":false,"s":7,"n":"0.1000000000","f":"NaN","d":"2024-01-31","t":"00:00:01.5",
                   "ts":"2023-11-14T22:13:20.123","tz":"2024-01-31T17:00:00+00:00","j":[1],"js":null,"by":"",
                   "u":null,"m":"ok","arr":[],"txt":"3"}),
            json!({"id":"9223372036854775807","b":true,"s":-5,"n":"123456789012345678901234567890.0123456789",
                   "f":"1.5","d":"2024-02-29","t":"12:34:56.789","ts":"2024-01-31T10:00:00",
                   "tz":"2024-01-31T12:00:00+00:00","j":{"a":[1,2]},"js":{"x": 1},"by":"0001ff",
                   "u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","m":"sad","arr":[1,2,null],
                   "txt":"tab\there\nline \\ back"}),
        ]
    );
    // Values that do not fit, each named with record, column and expected type.
    for (value, column, words) in [
        (
            json!({"id":1,"s":40000}),
            "`s` (smallint)",
            "-32768..=32767",
        ),
        (
            json!({"id":1,"n":"1.2.3"}),
            "`n` (numeric(40,10))",
            "decimal",
        ),
        (json!({"id":1,"id2":1}), "`id2`", "no column"),
        (
            json!({"id":1,"d":"31/01/2024"}),
            "`d` (date)",
            "ISO-8601 date",
        ),
        (json!({"id":1,"by":"%%%"}), "`by` (bytea)", "base64"),
        (json!({"id":1,"u":"nope"}), "`u` (uuid)", "UUID"),
        (json!({"id":1e17}), "`id` (bigint)", "2^53"),
    ] {
        let e = w.write(&batch(1, 2, &[value])).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("record 1-2-0") && text.contains(column) && text.contains(words),
            "{text}"
        );
    }
    // The server's own rejection (enum label) is traced back to its record.
    let e = w
        .write(&batch(
            1,
            3,
            &[json!({"id":1}), json!({"id":2,"m":"happy"})],
        ))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("record 1-3-1") && e.to_string().contains("`m`"),
        "{e}"
    );
}

#[tokio::test]
async fn pg_at_least_once_mode_has_no_progress_table_and_is_idempotent() {
    let db = harness::postgres().await.create_database().await;
    exec(&db, T1).await;
    let mut w = PgSink::open(&typed(&db, "t1", json!({"exactlyOnce": false})))
        .await
        .unwrap();
    let b = batch(1, 1, &[json!({"k1":1,"v1":1}), json!({"k1":2,"v1":2})]);
    w.write(&b).await.unwrap();
    w.write(&b).await.unwrap();
    assert!(w.stored_offsets().await.unwrap().is_none());
    assert_eq!(
        rows(&db, "SELECT k1, v1 FROM t1 ORDER BY k1").await,
        vec![json!({"k1":1,"v1":1}), json!({"k1":2,"v1":2})]
    );
    assert_eq!(
        rows(
            &db,
            "SELECT to_regclass('hstream_io_progress') IS NULL AS missing"
        )
        .await,
        vec![json!({"missing": true})]
    );
}

#[tokio::test]
async fn pg_check_names_the_failing_check_and_the_fix() {
    let db = harness::postgres().await.create_database().await;
    let e = PgSink::check(&typed(&db, "missing", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.spec.id, "table");
    let role = format!(
        "weak_{}",
        db.name
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    exec(
        &db,
        &format!(
            "CREATE TABLE nokey (a int); CREATE TABLE ok (a int primary key); \
             CREATE ROLE {role} LOGIN PASSWORD 'weak-pw'; GRANT INSERT ON ok TO {role}; \
             REVOKE CREATE ON SCHEMA public FROM PUBLIC"
        ),
    )
    .await;
    let e = PgSink::check(&typed(&db, "nokey", json!({"exactlyOnce": false})))
        .await
        .unwrap_err();
    assert_eq!(e.spec.id, "keys");
    PgSink::check(&typed(&db, "nokey", json!({})))
        .await
        .unwrap();
    PgSink::check(&typed(&db, "ok", json!({}))).await.unwrap();
    let mut weak = typed(&db, "ok", json!({}));
    weak.user = role.clone();
    weak.password = Secret::new("weak-pw");
    let e = PgSink::check(&weak).await.unwrap_err();
    assert_eq!(e.spec.id, "privileges");
    let text = e.error.to_string();
    assert!(
        text.contains("UPDATE on `public.ok`")
            && text.contains("DELETE on `public.ok`")
            && text.contains("CREATE on schema `public`"),
        "{text}"
    );
    // The harness trusts other roles on 127.0.0.1; its superuser needs its password.
    let mut wrong = typed(&db, "ok", json!({}));
    wrong.password = Secret::new("wrong-pw");
    let e = PgSink::check(&wrong).await.unwrap_err();
    assert_eq!(e.spec.id, "connect");
    let text = e.error.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("wrong-pw"), "no secret in errors: {text}");
}

/// Three appends (one read batch each): good rows 0..3, a poison record, good
/// rows 3..5, a second poison, good row 5.
async fn poisoned_stream(streams: &pipeline::Streams, stream: &str) {
    streams.create(stream, 1).await;
    let good = |from: i64, to: i64| -> Vec<_> {
        (from..to)
            .map(|i| pipeline::json_record("", json!({"k1": i, "v1": i, "v2": "ok"})))
            .collect()
    };
    let poison = |i: i64| vec![pipeline::raw_record(json!({"k1": i, "v1": "not a number"}))];
    streams.append(stream, good(0, 3)).await;
    streams.append(stream, poison(100)).await;
    streams.append(stream, good(3, 5)).await;
    streams.append(stream, poison(101)).await;
    streams.append(stream, good(5, 6)).await;
}

#[tokio::test]
async fn pg_poison_records_follow_each_skip_strategy() {
    let streams = streams().await;
    // SkipAll: both poison batches are skipped and recorded to the error stream.
    let db = harness::postgres().await.create_database().await;
    exec(&db, T1).await;
    poisoned_stream(&streams, "skip_all").await;
    let sink = start_sink::<PgSink>(
        config(
            &db,
            "t1",
            json!({"stream": "skip_all", "task.error.skipStrategy": "SkipAll", "task.error.stream": "errors"}),
        ),
        &streams.service.url(),
        Default::default(),
    );
    eventually("6 good rows", || async {
        (rows(&db, "SELECT k1 FROM t1").await.len() >= 6).then_some(())
    })
    .await;
    let errors = eventually("2 error records", || async {
        let e = pipeline::read_stream(&streams.client, "errors").await;
        (e.len() >= 2).then_some(e)
    })
    .await;
    sink.stop().await;
    assert_eq!(
        rows(&db, "SELECT k1 FROM t1 ORDER BY k1").await,
        (0..6).map(|i| json!({"k1": i})).collect::<Vec<_>>()
    );
    assert_eq!(errors.len(), 2);
    for e in &errors {
        assert_eq!(e["type"], json!("InvalidBatchSinkRecord"));
        assert_eq!(e["count"], json!(1));
        assert_eq!(e["beginRecordId"], e["tailRecordId"]);
        let reason = e["reason"].as_str().unwrap();
        assert!(
            reason.contains(e["beginRecordId"].as_str().unwrap())
                && reason.contains("`v1` (integer)"),
            "{reason}"
        );
    }

    // NeverSkip (default): the task fails at the first poison; nothing after it is applied.
    let db = harness::postgres().await.create_database().await;
    exec(&db, T1).await;
    poisoned_stream(&streams, "never").await;
    let sink = start_sink::<PgSink>(
        config(&db, "t1", json!({"stream": "never"})),
        &streams.service.url(),
        Default::default(),
    );
    let error = sink.failure().await;
    assert_eq!(error.kind(), hstream_io_runtime::ErrorKind::Conversion);
    assert_eq!(
        rows(&db, "SELECT k1 FROM t1 ORDER BY k1").await,
        (0..3).map(|i| json!({"k1": i})).collect::<Vec<_>>()
    );
    assert_eq!(
        rows(&db, "SELECT record_id FROM hstream_io_progress")
            .await
            .len(),
        1,
        "the position stops before the poison"
    );

    // SkipSome with skipCount 1: the first poison is skipped, the second fails the task.
    let db = harness::postgres().await.create_database().await;
    exec(&db, T1).await;
    poisoned_stream(&streams, "some").await;
    let sink = start_sink::<PgSink>(
        config(
            &db,
            "t1",
            json!({"stream": "some", "task.error.skipStrategy": "SkipSome", "task.error.skipCount": 1}),
        ),
        &streams.service.url(),
        Default::default(),
    );
    sink.failure().await;
    assert_eq!(
        rows(&db, "SELECT k1 FROM t1 ORDER BY k1").await,
        (0..5).map(|i| json!({"k1": i})).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn pg_lost_connections_are_retried_without_loss_or_duplicates() {
    let streams = streams().await;
    let db = harness::postgres().await.create_database().await;
    // No key: a batch applied twice would show as duplicate rows.
    exec(&db, "CREATE TABLE log (n int, note text)").await;
    streams.create("stream01", 1).await;
    let sink = start_sink::<PgSink>(
        config(&db, "log", json!({"task.error.maxRetries": -2})),
        &streams.service.url(),
        Default::default(),
    );
    let admin = db.connect().await;
    for part in 0..20i64 {
        let records = (part * 50..part * 50 + 50)
            .map(|n| pipeline::json_record("", json!({"n": n, "note": format!("#{n}")})))
            .collect();
        streams.append("stream01", records).await;
        if part == 0 {
            // Connection losses while opening are the launcher's to retry; start first.
            eventually("the first rows", || async {
                (rows(&db, "SELECT n FROM log").await.len() >= 50).then_some(())
            })
            .await;
        }
        // Cut the sink's connections while it is writing.
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'hstream-io sink-postgresql' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap();
    }
    eventually("1000 rows", || async {
        (rows(&db, "SELECT n FROM log").await.len() >= 1000).then_some(())
    })
    .await;
    sink.stop().await;
    assert_eq!(
        rows(
            &db,
            "SELECT count(*) AS c, count(DISTINCT n) AS d, sum(n) AS s FROM log"
        )
        .await,
        vec![json!({"c": 1000, "d": 1000, "s": 499500})]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_kill_9_during_a_keyless_100k_load_applies_every_record_once() {
    let streams = streams().await;
    let db = harness::postgres().await.create_database().await;
    exec(&db, "CREATE TABLE bulk (n bigint, payload text)").await;
    let sink_config = config(
        &db,
        "bulk",
        json!({"stream": "bulk", "buffer.batch.maxBytesSize": 100000, "buffer.batch.maxAge": 50}),
    );
    pipeline::kill_9_load(
        &streams,
        "bulk",
        100_000,
        5,
        "sink-postgresql",
        sink_config,
        || async {
            rows(&db, "SELECT count(*) AS c FROM bulk").await[0]["c"]
                .as_i64()
                .unwrap()
        },
    )
    .await;
    assert_eq!(
        rows(
            &db,
            "SELECT count(*) AS c, count(DISTINCT n) AS d, sum(n)::text AS s, \
             sum(length(payload)) AS l, min(n) AS lo, max(n) AS hi, \
             bool_and(payload = 'p' || n) AS intact FROM bulk"
        )
        .await,
        vec![
            json!({"c": 100000, "d": 100000, "s": "4999950000", "l": 588890, "lo": 0, "hi": 99999, "intact": true})
        ]
    );
}

/// `SELECT count(*) FROM <table>` on `db`, or `None` while the server does not answer.
async fn count_if_up(db: &PostgresDatabase, table: &str) -> Option<i64> {
    let (client, connection) = db.config().connect(tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(connection);
    let row = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .ok()?;
    Some(row.get(0))
}

/// A real PostgreSQL restart (fast shutdown: the sink's sessions are ended
/// and its transaction in flight rolls back; then a start on the same data)
/// in the middle of a keyless 100k load by the real task process: the sink
/// retries until the server is back (restarted, as HServer would, should it
/// exit) and every record is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_server_restart_mid_load_applies_every_record_once() {
    let tmp = tempfile::tempdir().unwrap();
    // A server of this test alone: restarting the shared one would disturb others.
    let mut server = harness::PrivatePostgres::start(&tmp.path().join("postgres")).await;
    let db = server.server().create_database().await;
    exec(&db, "CREATE TABLE bulk (n bigint, payload text)").await;
    let streams = streams().await;
    // Small batches: the load takes long enough to be cut in the middle.
    let sink_config = config(
        &db,
        "bulk",
        json!({"stream": "bulk", "buffer.batch.maxBytesSize": 20000, "buffer.batch.maxAge": 20,
               "task.error.maxRetries": -2}),
    );
    pipeline::server_restart_load(
        &streams,
        tmp.path(),
        "sink-postgresql",
        sink_config,
        100_000,
        || count_if_up(&db, "bulk"),
        || async {
            server.stop().await;
            // Down for a while: the sink's retries meet a refused connection.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            server.start_again().await;
        },
    )
    .await;
    assert_eq!(
        rows(
            &db,
            "SELECT count(*) AS c, count(DISTINCT n) AS d, sum(n)::text AS s, \
             bool_and(payload = 'p' || n) AS intact FROM bulk"
        )
        .await,
        vec![json!({"c": 100_000, "d": 100_000, "s": "4999950000", "intact": true})]
    );
}

/// Not a test: `cargo test --release -p hstream-io-tests --test main bench_ -- --ignored --nocapture`
/// prints the sink's rows/s for the bench workload (100k rows: inserts, then
/// upserts of the same keys), appended before the sink starts reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn pg_bench_orders() {
    let streams = streams().await;
    let db = harness::postgres().await.create_database().await;
    exec(
        &db,
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, amount NUMERIC(12,2), \
         status VARCHAR(16), note VARCHAR(64), created_at TIMESTAMP)",
    )
    .await;
    streams.create("orders", 1).await;
    let n = 100_000i64;
    let sink = start_sink::<PgSink>(
        config(
            &db,
            "orders",
            json!({"stream": "orders", "buffer.batch.maxBytesSize": 2_000_000, "buffer.batch.maxAge": 100}),
        ),
        &streams.service.url(),
        Default::default(),
    );
    for pass in 0..2 {
        let secs = pipeline::time_pass(&streams, "orders", n, pass, || async {
            let r = rows(
                &db,
                &format!("SELECT count(*) AS c FROM orders WHERE note LIKE '%-{pass}'"),
            )
            .await;
            r[0]["c"].as_i64() == Some(n)
        })
        .await;
        eprintln!(
            "sink-postgresql pass {pass} ({}): {n} rows in {secs:.2} s = {:.0} rows/s",
            if pass == 0 { "insert" } else { "upsert" },
            n as f64 / secs
        );
    }
    sink.stop().await;
}

/// The database drops the sink's sessions (as a restart does) again and again
/// during a keyless load: the retries reconnect, and the progress table in the
/// same transaction keeps every record applied exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn pg_sessions_dropped_mid_load_lose_and_duplicate_nothing() {
    let streams = streams().await;
    let db = harness::postgres().await.create_database().await;
    exec(&db, "CREATE TABLE bulk (n bigint, payload text)").await;
    let total = 50_000;
    let cuts = pipeline::outage_load::<PgSink, _, _, _, _>(
        &streams,
        "bulk",
        total,
        config(
            &db,
            "bulk",
            json!({"stream": "bulk", "buffer.batch.maxBytesSize": 20000, "buffer.batch.maxAge": 20,
                   "task.error.maxRetries": -2}),
        ),
        || async {
            rows(&db, "SELECT count(*) AS c FROM bulk").await[0]["c"]
                .as_i64()
                .unwrap()
        },
        || async {
            exec(
                &db,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await
        },
    )
    .await;
    assert!(
        cuts >= 2,
        "the sessions were cut only {cuts} times during the load"
    );
    assert_eq!(
        rows(
            &db,
            "SELECT count(*) AS c, count(DISTINCT n) AS d, sum(n)::bigint AS s, \
             count(*) FILTER (WHERE payload = 'p' || n) AS ok FROM bulk"
        )
        .await,
        vec![json!({"c": total, "d": total, "s": total * (total - 1) / 2, "ok": total})]
    );
}

#[tokio::test]
async fn pg_values_as_our_postgresql_source_writes_them_apply_unchanged() {
    let db = harness::postgres().await.create_database().await;
    exec(
        &db,
        "CREATE TABLE cdc (id int primary key, n numeric, ts timestamptz, d date, arr int[][], \
         iv interval, tt timetz, by bytea, j jsonb)",
    )
    .await;
    let mut w = PgSink::open(&typed(&db, "cdc", json!({}))).await.unwrap();
    w.write(&batch(
        1,
        1,
        &[json!({"key": {"id": 1}, "value": {"id": 1, "n": "NaN", "ts": "infinity", "d": "-infinity",
            "arr": [[1, 2], [3, null]], "iv": "P1Y2M3DT4H5M6S", "tt": "12:00:00+02", "by": "AAE=",
            "j": {"k": [true, null]}}})],
    ))
    .await
    .unwrap();
    assert_eq!(
        rows(
            &db,
            "SELECT n::text, ts::text, d::text, arr::text, iv::text, tt::text, encode(by, 'hex') AS by, j FROM cdc"
        )
        .await,
        vec![json!({"n": "NaN", "ts": "infinity", "d": "-infinity", "arr": "{{1,2},{3,NULL}}",
                    "iv": "1 year 2 mons 3 days 04:05:06", "tt": "12:00:00+02", "by": "0001",
                    "j": {"k": [true, null]}})]
    );
}
