//! sink-mysql against a private MariaDB (harness): the reference's full-sync
//! scenarios through the real sink driver and an in-process stream service,
//! the mixed batches that broke the reference, composite keys, partial rows,
//! the type matrix, exactly-once restarts, and `check`.

use hstream_io_runtime::stream::RecordId;
use hstream_io_runtime::{
    Connector, ErrorKind, Secret, SinkBatch, SinkConnector, SinkRecord, SinkWriter,
};
use hstream_io_sink_mysql::{MysqlSink, MysqlSinkConfig};
use hstream_io_tests::harness::{self, MariaDbDatabase};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::sink_postgresql::pipeline::{
    self, eventually, reference_records, reference_rows, start_sink, streams, with,
};

fn config(db: &MariaDbDatabase, table: &str, extra: Value) -> Value {
    with(
        json!({"stream": "stream01", "host": db.host, "port": db.port, "user": db.user,
               "password": db.password, "database": db.name, "table": table, "tlsMode": "disable"}),
        extra,
    )
}

fn typed(db: &MariaDbDatabase, table: &str, extra: Value) -> MysqlSinkConfig {
    serde_json::from_value(config(db, table, extra)).unwrap()
}

async fn exec(db: &MariaDbDatabase, sql: &str) {
    let mut c = db.connect().await;
    c.query_drop(sql).await.unwrap();
    c.disconnect().await.unwrap();
}

/// Rows as JSON objects: `columns` are SQL expressions, each becomes a key.
async fn rows(db: &MariaDbDatabase, table: &str, columns: &[&str], order: &str) -> Vec<Value> {
    let pairs: Vec<String> = columns
        .iter()
        .map(|c| format!("'{}', {c}", c.replace('\'', "''")))
        .collect();
    let sql = format!(
        "SELECT CAST(JSON_OBJECT({}) AS CHAR) FROM {table} ORDER BY {order}",
        pairs.join(", ")
    );
    let mut c = db.connect().await;
    let texts: Vec<String> = c.query(sql).await.unwrap();
    c.disconnect().await.unwrap();
    texts
        .into_iter()
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect()
}

async fn count(db: &MariaDbDatabase, sql: &str) -> i64 {
    let mut c = db.connect().await;
    let n: Option<i64> = c.query_first(sql).await.unwrap();
    c.disconnect().await.unwrap();
    n.unwrap_or(0)
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
const T1_COLUMNS: &[&str] = &["k1", "v1", "v2"];

#[tokio::test]
async fn mysql_reference_formats_sync_exactly_ten_rows() {
    let streams = streams().await;
    for format in ["KEY_VALUE", "PLAIN", "RAW_JSON", "BSON"] {
        let db = harness::mariadb().await.create_database().await;
        exec(&db, T1).await;
        let stream = format!("s_{}", format.to_lowercase());
        streams.create(&stream, 1).await;
        streams
            .append(&stream, reference_records(format, false))
            .await;
        let sink = start_sink::<MysqlSink>(
            config(&db, "t1", json!({"stream": stream})),
            &streams.service.url(),
            Default::default(),
        );
        let got = eventually(&format!("10 rows from {format}"), || async {
            let r = rows(&db, "t1", T1_COLUMNS, "k1").await;
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
        sink.stop().await;
        assert_eq!(rows(&db, "t1", T1_COLUMNS, "k1").await, reference_rows());
    }
}

#[tokio::test]
async fn mysql_three_shards_with_partition_keys() {
    let streams = streams().await;
    let db = harness::mariadb().await.create_database().await;
    exec(&db, T1).await;
    streams.create("stream01", 3).await;
    streams
        .produce("stream01", reference_records("KEY_VALUE", true))
        .await;
    let sink = start_sink::<MysqlSink>(
        config(&db, "t1", json!({})),
        &streams.service.url(),
        Default::default(),
    );
    let got = eventually("10 rows", || async {
        let r = rows(&db, "t1", T1_COLUMNS, "k1").await;
        (r.len() >= 10).then_some(r)
    })
    .await;
    assert_eq!(got, reference_rows());
    let shards_written = count(
        &db,
        "SELECT COUNT(DISTINCT shard_id) FROM hstream_io_progress WHERE stream = 'stream01'",
    )
    .await as usize;
    assert!(shards_written > 1, "keys 0..9 spread over several shards");
    let offsets = eventually("an offset per written shard", || async {
        let o = sink.report_offsets();
        (o.len() == shards_written).then_some(o)
    })
    .await;
    assert!(offsets.iter().all(|o| o["offset"].is_string()));
    sink.stop().await;
}

#[tokio::test]
async fn mysql_restart_resumes_from_the_progress_table_without_duplicates() {
    let streams = streams().await;
    let db = harness::mariadb().await.create_database().await;
    exec(&db, "CREATE TABLE log (n int, note text)").await;
    streams.create("stream01", 1).await;
    let part = |from: i64, to: i64| -> Vec<_> {
        (from..to)
            .map(|n| pipeline::json_record("", json!({"n": n, "note": format!("#{n}")})))
            .collect()
    };
    streams.append("stream01", part(0, 50)).await;
    streams.append("stream01", part(50, 100)).await;
    let sink = start_sink::<MysqlSink>(
        config(&db, "log", json!({})),
        &streams.service.url(),
        Default::default(),
    );
    eventually("100 rows", || async {
        (count(&db, "SELECT COUNT(*) FROM log").await >= 100).then_some(())
    })
    .await;
    sink.stop().await;
    streams.append("stream01", part(100, 120)).await;
    let sink = start_sink::<MysqlSink>(
        config(&db, "log", json!({})),
        &streams.service.url(),
        Default::default(),
    );
    eventually("120 rows", || async {
        (count(&db, "SELECT COUNT(*) FROM log").await >= 120).then_some(())
    })
    .await;
    sink.stop().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM log").await, 120);
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT n) FROM log").await, 120);
    assert_eq!(
        count(&db, "SELECT CAST(SUM(n) AS SIGNED) FROM log").await,
        7140
    );
}

#[tokio::test]
async fn mysql_mixed_batches_apply_in_stream_order() {
    let db = harness::mariadb().await.create_database().await;
    exec(
        &db,
        "CREATE TABLE t1 (k1 int primary key, v1 int, v2 varchar(5))",
    )
    .await;
    let mut w = MysqlSink::open(&typed(&db, "t1", json!({}))).await.unwrap();
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
        rows(&db, "t1", T1_COLUMNS, "k1").await,
        vec![
            json!({"k1":1,"v1":10,"v2":"a"}),
            json!({"k1":3,"v1":30,"v2":"c"})
        ]
    );
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
        rows(&db, "t1", T1_COLUMNS, "k1").await,
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
    w.write(&batch(1, 2, &[json!({"k1":1,"v1":999})]))
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM t1 WHERE v1 = 999").await,
        0
    );
    let e = w
        .write(&batch(
            1,
            3,
            &[json!({"k1":6,"v1":1}), json!({"k1":7,"v1":"x"})],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
    let text = e.to_string();
    assert!(
        text.contains("record 1-3-1") && text.contains("`v1` (int(11))") && text.contains("\"x\""),
        "{text}"
    );
    // The server's own rejection (too long) is traced back to its record.
    let e = w
        .write(&batch(
            1,
            4,
            &[json!({"k1":6,"v2":"ok"}), json!({"k1":7,"v2":"toolong"})],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conversion);
    assert!(
        e.to_string().contains("record 1-4-1") && e.to_string().contains("'v2'"),
        "{e}"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM t1 WHERE k1 = 6").await,
        0,
        "one transaction"
    );
}

#[tokio::test]
async fn mysql_composite_keys_and_key_columns_override() {
    let db = harness::mariadb().await.create_database().await;
    exec(
        &db,
        "CREATE TABLE `Order Lines` (id int auto_increment primary key, a int not null, b varchar(10) not null, v int, UNIQUE KEY (b, a))",
    )
    .await;
    let mut w = MysqlSink::open(&typed(&db, "Order Lines", json!({"keyColumns":["a","b"]})))
        .await
        .unwrap();
    w.write(&batch(
        1,
        1,
        &[
            json!({"key":{"a":1,"b":"x"},"value":{"a":1,"b":"x","v":1}}),
            json!({"key":{"a":1,"b":"y"},"value":{"a":1,"b":"y","v":2}}),
            json!({"key":{"a":2,"b":"x"},"value":{"a":2,"b":"x","v":3}}),
            json!({"key":{"a":1,"b":"x"},"value":null}),
            json!({"key":{"a":1,"b":"y"},"value":{"v":20}}),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        rows(&db, "`Order Lines`", &["a", "b", "v"], "a, b").await,
        vec![json!({"a":1,"b":"y","v":20}), json!({"a":2,"b":"x","v":3})]
    );
    let e = w
        .write(&batch(1, 2, &[json!({"key":{"a":1},"value":null})]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("key column `b`"), "{e}");
}

#[tokio::test]
async fn mysql_type_matrix() {
    let db = harness::mariadb().await.create_database().await;
    exec(
        &db,
        "CREATE TABLE ty (id bigint unsigned primary key, b tinyint(1), s smallint, n decimal(40,10), \
         f double, d date, t time(3), dt datetime(3), ts timestamp(3) NULL, j json, bin varbinary(10), \
         e enum('ok','sad'), u uuid, txt text)",
    )
    .await;
    let mut w = MysqlSink::open(&typed(&db, "ty", json!({"exactlyOnce": false})))
        .await
        .unwrap();
    w.write(&batch(
        1,
        1,
        &[
            json!({"id":"18446744073709551615","b":true,"s":-5,"n":"123456789012345678901234567890.0123456789",
                   "f":1.5,"d":"2024-02-29","t":"12:34:56.789","dt":"2024-01-31T12:00:00+02:00",
                   "ts":"2024-01-31T12:00:00Z","j":{"a":[1,2]},"bin":"AAH/","e":"sad",
                   "u":"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11","txt":"tab\there 'q' \\ back"}),
            json!({"id":1,"b":0,"s":{"$numberInt":"7"},"n":0.1,"f":-2,"d":19753,"t":1_500_000,
                   "dt":1_700_000_000_123i64,"ts":null,"j":"[1]","bin":"","e":"ok","u":null,"txt":3.0}),
        ],
    ))
    .await
    .unwrap();
    let columns = [
        "CAST(id AS CHAR)",
        "b",
        "s",
        "CAST(n AS CHAR)",
        "f",
        "CAST(d AS CHAR)",
        "CAST(t AS CHAR)",
        "CAST(dt AS CHAR)",
        "CAST(ts AS CHAR)",
        "j",
        "HEX(bin)",
        "e",
        "CAST(u AS CHAR)",
        "txt",
    ];
    let got = rows(&db, "ty", &columns, "id").await;
    let named = |values: Vec<Value>| -> Value {
        Value::Object(columns.iter().map(|c| c.to_string()).zip(values).collect())
    };
    assert_eq!(
        got,
        vec![
            named(vec![
                json!("1"),
                json!(0),
                json!(7),
                json!("0.1000000000"),
                json!(-2),
                json!("2024-01-31"),
                json!("00:00:01.500"),
                json!("2023-11-14 22:13:20.123"),
                Value::Null,
                json!([1]),
                json!(""),
                json!("ok"),
                Value::Null,
                json!("3"),
            ]),
            named(vec![
                json!("18446744073709551615"),
                json!(1),
                json!(-5),
                json!("123456789012345678901234567890.0123456789"),
                json!(1.5),
                json!("2024-02-29"),
                json!("12:34:56.789"),
                json!("2024-01-31 10:00:00.000"),
                json!("2024-01-31 12:00:00.000"),
                json!({"a":[1,2]}),
                json!("0001FF"),
                json!("sad"),
                json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                json!("tab\there 'q' \\ back"),
            ]),
        ]
    );
    for (value, column, words) in [
        (
            json!({"id":2,"s":40000}),
            "`s` (smallint(6))",
            "-32768..=32767",
        ),
        (
            json!({"id":-1}),
            "`id` (bigint(20) unsigned)",
            "0..=18446744073709551615",
        ),
        (
            json!({"id":2,"n":"1.2.3"}),
            "`n` (decimal(40,10))",
            "decimal",
        ),
        (json!({"id":2,"nope":1}), "`nope`", "no column"),
        (
            json!({"id":2,"d":"31/01/2024"}),
            "`d` (date)",
            "ISO-8601 date",
        ),
        (
            json!({"id":2,"bin":"%%%"}),
            "`bin` (varbinary(10))",
            "base64",
        ),
        (json!({"id":2,"f":"NaN"}), "`f` (double)", "finite"),
    ] {
        let e = w.write(&batch(1, 2, &[value])).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("record 1-2-0") && text.contains(column) && text.contains(words),
            "{text}"
        );
    }
    let e = w
        .write(&batch(
            1,
            3,
            &[json!({"id":5}), json!({"id":6,"e":"happy"})],
        ))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("record 1-3-1") && e.to_string().contains("'e'"),
        "{e}"
    );
}

#[tokio::test]
async fn mysql_check_names_the_failing_check_and_the_fix() {
    let db = harness::mariadb().await.create_database().await;
    let e = MysqlSink::check(&typed(&db, "missing", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.spec.id, "table");
    let weak = format!("w{}", &db.name[db.name.len().saturating_sub(8)..])
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    exec(
        &db,
        &format!(
            "CREATE TABLE nokey (a int); CREATE TABLE ok (a int primary key); \
             CREATE USER '{weak}'@'%' IDENTIFIED BY 'weak-pw'; GRANT INSERT ON `{0}`.ok TO '{weak}'@'%'",
            db.name
        ),
    )
    .await;
    let e = MysqlSink::check(&typed(&db, "nokey", json!({"exactlyOnce": false})))
        .await
        .unwrap_err();
    assert_eq!(e.spec.id, "keys");
    MysqlSink::check(&typed(&db, "nokey", json!({})))
        .await
        .unwrap();
    MysqlSink::check(&typed(&db, "ok", json!({})))
        .await
        .unwrap();
    let mut cfg = typed(&db, "ok", json!({}));
    cfg.user = weak.clone();
    cfg.password = Secret::new("weak-pw");
    let e = MysqlSink::check(&cfg).await.unwrap_err();
    assert_eq!(e.spec.id, "privileges");
    let text = e.error.to_string();
    assert!(
        text.contains("UPDATE on")
            && text.contains("DELETE on")
            && text.contains("CREATE on database"),
        "{text}"
    );
    cfg.password = Secret::new("wrong-pw");
    let e = MysqlSink::check(&cfg).await.unwrap_err();
    assert_eq!(e.spec.id, "connect");
    let text = e.error.to_string();
    assert!(text.contains("Access denied"), "{text}");
    assert!(!text.contains("wrong-pw"), "no secret in errors: {text}");
}

#[tokio::test]
async fn mysql_at_least_once_mode_has_no_progress_table_and_is_idempotent() {
    let db = harness::mariadb().await.create_database().await;
    exec(&db, T1).await;
    let mut w = MysqlSink::open(&typed(&db, "t1", json!({"exactlyOnce": false})))
        .await
        .unwrap();
    let b = batch(1, 1, &[json!({"k1":1,"v1":1}), json!({"k1":2,"v1":2})]);
    w.write(&b).await.unwrap();
    w.write(&b).await.unwrap();
    assert!(w.stored_offsets().await.unwrap().is_none());
    assert_eq!(
        rows(&db, "t1", &["k1", "v1"], "k1").await,
        vec![json!({"k1":1,"v1":1}), json!({"k1":2,"v1":2})]
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'hstream_io_progress'",
                db.name
            )
        )
        .await,
        0
    );
}

#[tokio::test]
async fn mysql_lost_connections_are_retried_without_loss_or_duplicates() {
    let streams = streams().await;
    let db = harness::mariadb().await.create_database().await;
    exec(&db, "CREATE TABLE log (n int, note text)").await;
    streams.create("stream01", 1).await;
    let sink = start_sink::<MysqlSink>(
        config(&db, "log", json!({"task.error.maxRetries": -2})),
        &streams.service.url(),
        Default::default(),
    );
    let mut admin = db.connect().await;
    for part in 0..20i64 {
        let records = (part * 50..part * 50 + 50)
            .map(|n| pipeline::json_record("", json!({"n": n, "note": format!("#{n}")})))
            .collect();
        streams.append("stream01", records).await;
        if part == 0 {
            // Connection losses while opening are the launcher's to retry; start first.
            eventually("the first rows", || async {
                (count(&db, "SELECT COUNT(*) FROM log").await >= 50).then_some(())
            })
            .await;
        }
        // Cut the sink's connections while it is writing.
        let ids: Vec<u64> = admin
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
                (db.name.clone(),),
            )
            .await
            .unwrap();
        for id in ids {
            let _ = admin.query_drop(format!("KILL CONNECTION {id}")).await;
        }
    }
    admin.disconnect().await.unwrap();
    eventually("1000 rows", || async {
        (count(&db, "SELECT COUNT(*) FROM log").await >= 1000).then_some(())
    })
    .await;
    sink.stop().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM log").await, 1000);
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT n) FROM log").await, 1000);
    assert_eq!(
        count(&db, "SELECT CAST(SUM(n) AS SIGNED) FROM log").await,
        499500
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_kill_9_during_a_keyless_100k_load_applies_every_record_once() {
    let streams = streams().await;
    let db = harness::mariadb().await.create_database().await;
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
        "sink-mysql",
        sink_config,
        || async { count(&db, "SELECT COUNT(*) FROM bulk").await },
    )
    .await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM bulk").await, 100_000);
    assert_eq!(
        count(&db, "SELECT COUNT(DISTINCT n) FROM bulk").await,
        100_000
    );
    assert_eq!(
        count(&db, "SELECT CAST(SUM(n) AS SIGNED) FROM bulk").await,
        4_999_950_000
    );
    assert_eq!(
        count(&db, "SELECT CAST(SUM(LENGTH(payload)) AS SIGNED) FROM bulk").await,
        588_890
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM bulk WHERE payload <> CONCAT('p', n)"
        )
        .await,
        0
    );
}

/// Not a test: `cargo test --release -p hstream-io-tests --test main bench_ -- --ignored --nocapture`
/// prints the sink's rows/s for the bench workload (100k rows: inserts, then
/// upserts of the same keys), appended before the sink starts reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn mysql_bench_orders() {
    let streams = streams().await;
    let db = harness::mariadb().await.create_database().await;
    exec(
        &db,
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, amount DECIMAL(12,2), \
         status VARCHAR(16), note VARCHAR(64), created_at DATETIME)",
    )
    .await;
    streams.create("orders", 1).await;
    let n = 100_000i64;
    let sink = start_sink::<MysqlSink>(
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
            count(
                &db,
                &format!("SELECT COUNT(*) FROM orders WHERE note LIKE '%-{pass}'"),
            )
            .await
                == n
        })
        .await;
        eprintln!(
            "sink-mysql pass {pass} ({}): {n} rows in {secs:.2} s = {:.0} rows/s",
            if pass == 0 { "insert" } else { "upsert" },
            n as f64 / secs
        );
    }
    sink.stop().await;
}

#[tokio::test]
async fn mysql_values_as_our_mysql_source_writes_them_apply_unchanged() {
    let db = harness::mariadb().await.create_database().await;
    exec(
        &db,
        "CREATE TABLE cdc (id int primary key, t time(6), bt bit(1), b8 bit(8), dt datetime(3), \
         ts timestamp(3) NULL, j json, s set('a','b','c'), n decimal(10,4), y year)",
    )
    .await;
    let mut w = MysqlSink::open(&typed(&db, "cdc", json!({})))
        .await
        .unwrap();
    w.write(&batch(
        1,
        1,
        &[json!({"key": {"id": 1}, "value": {"id": 1, "t": "-838:59:59.000000", "bt": true, "b8": 5,
            "dt": "2024-02-29T12:34:56.789", "ts": "2024-02-29T12:34:56.789Z", "j": "{\"a\": [1, 2]}",
            "s": "a,c", "n": "12.3400", "y": 2024}})],
    ))
    .await
    .unwrap();
    assert_eq!(
        rows(
            &db,
            "cdc",
            &[
                "CAST(t AS CHAR)",
                "bt + 0",
                "b8 + 0",
                "CAST(dt AS CHAR)",
                "CAST(ts AS CHAR)",
                "j",
                "s",
                "CAST(n AS CHAR)",
                "y"
            ],
            "id"
        )
        .await,
        vec![
            json!({"CAST(t AS CHAR)": "-838:59:59.000000", "bt + 0": 1, "b8 + 0": 5,
                    "CAST(dt AS CHAR)": "2024-02-29 12:34:56.789", "CAST(ts AS CHAR)": "2024-02-29 12:34:56.789",
                    "j": {"a": [1, 2]}, "s": "a,c", "CAST(n AS CHAR)": "12.3400", "y": 2024})
        ]
    );
}

/// The database drops the sink's sessions (as a restart does) again and again
/// during a keyless load: the retries reconnect, and the progress table in the
/// same transaction keeps every record applied exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn mysql_sessions_dropped_mid_load_lose_and_duplicate_nothing() {
    let streams = streams().await;
    let db = harness::mariadb().await.create_database().await;
    exec(&db, "CREATE TABLE bulk (n bigint, payload text)").await;
    let total = 50_000;
    let cuts = pipeline::outage_load::<MysqlSink, _, _, _, _>(
        &streams,
        "bulk",
        total,
        config(
            &db,
            "bulk",
            json!({"stream": "bulk", "buffer.batch.maxBytesSize": 20000, "buffer.batch.maxAge": 20,
                   "task.error.maxRetries": -2}),
        ),
        || async { count(&db, "SELECT COUNT(*) FROM bulk").await },
        || async {
            let mut c = db.connect().await;
            let ids: Vec<u64> = c
                .query(format!(
                    "SELECT id FROM information_schema.processlist \
                     WHERE db = '{}' AND id <> CONNECTION_ID()",
                    db.name
                ))
                .await
                .unwrap();
            for id in ids {
                // A session may end by itself in between.
                let _ = c.query_drop(format!("KILL CONNECTION {id}")).await;
            }
            c.disconnect().await.unwrap();
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
            "(SELECT COUNT(*) AS c, COUNT(DISTINCT n) AS d, CAST(SUM(n) AS SIGNED) AS s, \
             CAST(SUM(payload = CONCAT('p', n)) AS SIGNED) AS ok FROM bulk) AS t",
            &["c", "d", "s", "ok"],
            "c"
        )
        .await,
        vec![json!({"c": total, "d": total, "s": total * (total - 1) / 2, "ok": total})]
    );
}

/// `count`, or `None` while the server is down.
async fn count_if_up(db: &MariaDbDatabase, sql: &str) -> Option<i64> {
    let mut c = mysql_async::Conn::new(db.opts()).await.ok()?;
    let n: Option<i64> = c.query_first(sql).await.ok()?;
    let _ = c.disconnect().await;
    Some(n.unwrap_or(0))
}

/// A real MariaDB restart (SIGTERM: the sink's sessions end and its
/// transaction in flight rolls back; then a start on the same data) in the
/// middle of a keyless 100k load by the real task process: the sink retries
/// until the server is back (or is started again with its KV, as HServer
/// would, should it exit) and every record is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_server_restart_mid_load_applies_every_record_once() {
    let tmp = tempfile::tempdir().unwrap();
    // A server of this test alone: restarting the shared one would disturb others.
    let mut server = harness::PrivateMariaDb::start(&tmp.path().join("mariadb")).await;
    let db = server.server().create_database().await;
    exec(&db, "CREATE TABLE bulk (n bigint, payload text)").await;
    let streams = streams().await;
    let total: i64 = 100_000;
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
        "sink-mysql",
        sink_config,
        total,
        || count_if_up(&db, "SELECT COUNT(*) FROM bulk"),
        || server.restart(std::time::Duration::from_secs(2)),
    )
    .await;
    assert_eq!(
        rows(
            &db,
            "(SELECT COUNT(*) AS c, COUNT(DISTINCT n) AS d, CAST(SUM(n) AS SIGNED) AS s, \
             CAST(SUM(payload = CONCAT('p', n)) AS SIGNED) AS ok FROM bulk) AS t",
            &["c", "d", "s", "ok"],
            "c"
        )
        .await,
        vec![json!({"c": total, "d": total, "s": total * (total - 1) / 2, "ok": total})]
    );
}
