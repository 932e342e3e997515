//! source-mysql against the harness's private MariaDB 10.11 (log_bin, ROW,
//! FULL image, FULL metadata), run as HServer runs it (`hstream-io
//! source-mysql run` under the fake HServer) into a real `hstream-io serve`:
//! snapshot then streamed changes, restarts from the committed position
//! (GTID and file/position) without gap or duplicate, kill -9 convergence,
//! the type matrix equal in snapshot and stream, a purged position, and `check`.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use hstream_io_runtime::stream::{Client, Payload, ReaderOffset};
use hstream_io_tests::harness::{self, MariaDbDatabase};
use hstream_io_tests::hserver::{Serve, TaskProcess, binary};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn task_config(url: &str, task: &str, connector: Value) -> Value {
    json!({"hstream": {"serviceUrl": url}, "connector": connector, "task": task})
}

fn connector(db: &MariaDbDatabase, stream: &str, table: &str, extra: Value) -> Value {
    let mut c = json!({"stream": stream, "host": db.host, "port": db.port, "user": db.user,
                       "password": db.password, "database": db.name, "table": table});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

async fn exec(db: &MariaDbDatabase, sql: &str) {
    let mut c = db.connect().await;
    c.query_drop(sql).await.unwrap();
    c.disconnect().await.unwrap();
}

/// One record as read back: partition key and the JSON object.
#[derive(Debug, Clone)]
struct Got {
    key: String,
    value: Value,
}

async fn read_stream(url: &str, stream: &str) -> Vec<Got> {
    let client = Client::connect(url).await.unwrap();
    let Ok(shards) = client.list_shards(stream).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for shard in shards {
        let mut reader = client
            .shard_reader(stream, shard.shard_id, ReaderOffset::Earliest)
            .await
            .unwrap();
        loop {
            let got = reader.read(100).await.unwrap();
            if got.is_empty() {
                break;
            }
            for r in got {
                let value = match r.record.payload {
                    Payload::Json(map) => Value::Object(map),
                    Payload::Raw(bytes) => serde_json::from_slice(&bytes).unwrap(),
                    Payload::EncodedJson(_) => unreachable!("readers decode JSON records"),
                };
                out.push(Got {
                    key: r.record.key,
                    value,
                });
            }
        }
    }
    out
}

/// Waits (polling) until the stream holds at least `n` records; returns them all.
async fn wait_records(url: &str, stream: &str, n: usize, task: &TaskProcess) -> Vec<Got> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = read_stream(url, stream).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {n} records in `{stream}`, have {}: {:?}\nstderr: {}",
            got.len(),
            got.iter().map(|g| &g.value).collect::<Vec<_>>(),
            task.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a record with `pred` shows up; returns all records.
async fn wait_for_record(
    url: &str,
    stream: &str,
    task: &TaskProcess,
    pred: impl Fn(&Value) -> bool,
) -> Vec<Got> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = read_stream(url, stream).await;
        if got.iter().any(|g| pred(&g.value)) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "waited for a record in `{stream}`; have {}\nstderr: {}",
            got.len(),
            task.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start(dir: &std::path::Path, config: &Value, kv: HashMap<String, String>) -> TaskProcess {
    TaskProcess::start(dir, "source-mysql", config, kv, &[])
}

/// Starts a task with an empty KV and waits until it stored its first
/// position (the binlog position it streams from).
fn start_positioned(dir: &std::path::Path, config: &Value) -> TaskProcess {
    let task = start(dir, config, HashMap::new());
    task.wait_for(WAIT, |name, body| {
        name == "KvSet" && body["key"] == "source_position"
    })
    .expect("initial position stored");
    task
}

fn stop(task: &mut TaskProcess) -> HashMap<String, String> {
    task.send_stop();
    let status = task.wait_exit(WAIT).expect("task stops");
    assert_eq!(status.code(), Some(0), "stderr: {}", task.stderr());
    task.kv()
}

fn position(kv: &HashMap<String, String>) -> Value {
    serde_json::from_str(kv.get("source_position").expect("position stored")).unwrap()
}

fn values(got: &[Got]) -> Vec<Value> {
    got.iter().map(|g| g.value.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_then_inserts_updates_deletes_in_the_reference_shape() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(
        &db,
        "CREATE TABLE person (id INT PRIMARY KEY, name VARCHAR(50), age INT UNSIGNED)",
    )
    .await;
    exec(
        &db,
        "INSERT INTO person VALUES (1, 'John', 20), (2, 'Jane', 30)",
    )
    .await;
    // Default record format: JSON Struct as the reference (whole doubles read back as integers).
    let config = task_config(
        &serve.url,
        &format!("{}-a", db.name),
        connector(&db, "person", "person", json!({})),
    );
    let mut task = start(&tmp.path().join("task"), &config, HashMap::new());
    let got = wait_records(&serve.url, "person", 2, &task).await;
    assert_eq!(
        values(&got),
        vec![
            json!({"key": {"id": 1}, "value": {"id": 1, "name": "John", "age": 20}}),
            json!({"key": {"id": 2}, "value": {"id": 2, "name": "Jane", "age": 30}}),
        ]
    );
    assert_eq!(got[0].key, "1", "partition key = the primary key's text");

    exec(&db, "INSERT INTO person VALUES (3, 'Bob', 40)").await;
    exec(&db, "UPDATE person SET age = 21 WHERE id = 1").await;
    exec(&db, "DELETE FROM person WHERE id = 2").await;
    exec(&db, "UPDATE person SET id = 4 WHERE id = 3").await;
    exec(
        &db,
        "BEGIN; INSERT INTO person VALUES (5, 'E', 5); SAVEPOINT s1; INSERT INTO person VALUES (6, 'F', 6); COMMIT",
    )
    .await;
    let got = wait_records(&serve.url, "person", 9, &task).await;
    assert_eq!(
        values(&got[2..]),
        vec![
            json!({"key": {"id": 3}, "value": {"id": 3, "name": "Bob", "age": 40}}),
            json!({"key": {"id": 1}, "value": {"id": 1, "name": "John", "age": 21}}),
            json!({"key": {"id": 2}, "value": null}),
            json!({"key": {"id": 3}, "value": null}),
            json!({"key": {"id": 4}, "value": {"id": 4, "name": "Bob", "age": 40}}),
            json!({"key": {"id": 5}, "value": {"id": 5, "name": "E", "age": 5}}),
            json!({"key": {"id": 6}, "value": {"id": 6, "name": "F", "age": 6}}),
        ]
    );
    let kv = stop(&mut task);
    let p = position(&kv);
    assert!(p["file"].as_str().unwrap().starts_with("binlog."), "{p}");
    assert!(p["pos"].as_u64().unwrap() > 4, "{p}");
    assert!(
        p["gtid"].as_str().unwrap().starts_with("0-1-"),
        "MariaDB GTID state stored: {p}"
    );
    assert_eq!(
        read_stream(&serve.url, "person").await.len(),
        9,
        "nothing more after the stop"
    );
}

/// The final state per key, applying the records in order.
fn fold(got: &[Got]) -> BTreeMap<String, Value> {
    let mut state = BTreeMap::new();
    for g in got {
        let key = g.value["key"].to_string();
        match &g.value["value"] {
            Value::Null => {
                state.remove(&key);
            }
            v => {
                state.insert(key, v.clone());
            }
        }
    }
    state
}

async fn table_state(db: &MariaDbDatabase, table: &str) -> BTreeMap<String, Value> {
    let mut c = db.connect().await;
    let rows: Vec<(i64, i64)> = c
        .query(format!("SELECT id, v FROM {table} ORDER BY id"))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    rows.into_iter()
        .map(|(id, v)| (json!({"id": id}).to_string(), json!({"id": id, "v": v})))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_resume_exactly_by_gtid_and_by_file_position() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").await;
    exec(&db, "INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)").await;
    let config = task_config(
        &serve.url,
        &format!("{}-r", db.name),
        connector(&db, "t", "t", json!({"recordFormat": "raw"})),
    );
    let ins = |id: i64, v: i64| json!({"key": {"id": id}, "value": {"id": id, "v": v}});
    let del = |id: i64| json!({"key": {"id": id}, "value": null});

    // Run 1: snapshot + two changes, graceful stop.
    let mut a = start(&tmp.path().join("a"), &config, HashMap::new());
    wait_records(&serve.url, "t", 3, &a).await;
    exec(&db, "INSERT INTO t VALUES (4, 40)").await;
    exec(&db, "UPDATE t SET v = 11 WHERE id = 1").await;
    let got = wait_records(&serve.url, "t", 5, &a).await;
    assert_eq!(values(&got[3..]), vec![ins(4, 40), ins(1, 11)]);
    let kv = stop(&mut a);
    assert!(!position(&kv)["gtid"].as_str().unwrap().is_empty());

    // Changes while stopped, then run 2 resumes by GTID.
    exec(&db, "INSERT INTO t VALUES (5, 50)").await;
    exec(&db, "DELETE FROM t WHERE id = 2").await;
    exec(&db, "UPDATE t SET v = 31 WHERE id = 3").await;
    let mut b = start(&tmp.path().join("b"), &config, kv);
    wait_records(&serve.url, "t", 8, &b).await;
    exec(&db, "INSERT INTO t VALUES (6, 60)").await; // marker
    let got = wait_for_record(&serve.url, "t", &b, |v| v["key"]["id"] == 6).await;
    assert_eq!(
        values(&got[5..]),
        vec![ins(5, 50), del(2), ins(3, 31), ins(6, 60)],
        "exactly the changes made while stopped, no gap, no duplicate"
    );
    let kv = stop(&mut b);

    // Run 3 resumes by file/position (GTID removed from the stored position).
    let mut p = position(&kv);
    p.as_object_mut().unwrap().remove("gtid");
    let kv = HashMap::from([("source_position".to_string(), p.to_string())]);
    exec(&db, "INSERT INTO t VALUES (7, 70)").await;
    let mut c = start(&tmp.path().join("c"), &config, kv);
    exec(&db, "INSERT INTO t VALUES (8, 80)").await; // marker
    let got = wait_for_record(&serve.url, "t", &c, |v| v["key"]["id"] == 8).await;
    assert_eq!(values(&got[9..]), vec![ins(7, 70), ins(8, 80)]);
    let kv = stop(&mut c);

    // kill -9 in the middle of a stream of changes, then resume: the stream
    // converges to the table, per key (records after the last committed
    // position may be sent twice, never lost).
    let mut d = start(&tmp.path().join("d"), &config, kv);
    for i in 0..40 {
        exec(&db, &format!("INSERT INTO t VALUES ({}, {i})", 100 + i)).await;
        exec(
            &db,
            &format!("UPDATE t SET v = v + 1 WHERE id = {}", 100 + i / 2),
        )
        .await;
        if i % 7 == 0 {
            exec(&db, &format!("DELETE FROM t WHERE id = {}", 100 + i / 3)).await;
        }
        if i == 20 {
            d.signal(libc::SIGKILL);
            d.wait_exit(WAIT).expect("killed");
        }
    }
    let kv = d.kv();
    let mut e = start(&tmp.path().join("e"), &config, kv);
    exec(&db, "INSERT INTO t VALUES (999, 0)").await; // marker
    let got = wait_for_record(&serve.url, "t", &e, |v| v["key"]["id"] == 999).await;
    assert_eq!(fold(&got), table_state(&db, "t").await);
    stop(&mut e);
}

#[tokio::test(flavor = "multi_thread")]
async fn type_matrix_is_exact_and_equal_in_snapshot_and_stream() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(
        &db,
        "CREATE TABLE types (id INT PRIMARY KEY,
           ti TINYINT, usi SMALLINT UNSIGNED, mi MEDIUMINT, ui INT UNSIGNED, bi BIGINT,
           ubi BIGINT UNSIGNED, dec1 DECIMAL(12,4), dec2 DECIMAL(30,10), f FLOAT, d DOUBLE,
           dt DATE, dtm DATETIME(3), ts TIMESTAMP(6) NULL, tm TIME, tm3 TIME(3), yr YEAR,
           c CHAR(5), vc VARCHAR(20), lat VARCHAR(20) CHARACTER SET latin1, txt TEXT,
           e ENUM('a','b','c'), s SET('x','y','z'), j JSON,
           bin BINARY(4), vb VARBINARY(8), bl BLOB, b1 BIT(1), b10 BIT(10),
           zd DATE, zdt DATETIME, n INT NULL)",
    )
    .await;
    let row = |id: i64| {
        format!(
            "SET SESSION sql_mode = '', time_zone = '+08:00';
             INSERT INTO types VALUES ({id},
               -128, 65000, -8388608, 4294967295, 9007199254740993,
               18446744073709551615, -12345678.1234, 12345678901234567890.0123456789, 1.1, 1.0000000000000002,
               '2024-02-29', '2024-02-29 12:34:56.789', '2024-01-01 08:00:01.123456', '-12:00:01', '838:59:59.5', 2024,
               'ab', 'h\u{e9}llo \u{2713}', 'h\u{e9}llo \u{20ac}', 'text',
               'b', 'x,z', '{{\"a\": [1, 2]}}',
               X'0102', X'DEADBEEF', X'00FF', b'1', b'1000000001',
               '0000-00-00', '0000-00-00 00:00:00', NULL)"
        )
    };
    exec(&db, &row(1)).await;
    let config = task_config(
        &serve.url,
        &format!("{}-t", db.name),
        connector(&db, "types", "types", json!({"recordFormat": "raw"})),
    );
    let mut task = start(&tmp.path().join("task"), &config, HashMap::new());
    wait_records(&serve.url, "types", 1, &task).await;
    exec(&db, &row(2)).await;
    let got = wait_records(&serve.url, "types", 2, &task).await;
    stop(&mut task);

    let expected = json!({
        "ti": -128, "usi": 65000, "mi": -8388608, "ui": 4294967295u64,
        "bi": 9007199254740993u64, "ubi": 18446744073709551615u64,
        "dec1": "-12345678.1234", "dec2": "12345678901234567890.0123456789",
        "f": 1.1, "d": 1.0000000000000002,
        "dt": "2024-02-29", "dtm": "2024-02-29T12:34:56.789",
        "ts": "2024-01-01T00:00:01.123456Z", "tm": "-12:00:01", "tm3": "838:59:59.500", "yr": 2024,
        "c": "ab", "vc": "h\u{e9}llo \u{2713}", "lat": "h\u{e9}llo \u{20ac}", "txt": "text",
        "e": "b", "s": "x,z", "j": "{\"a\": [1, 2]}",
        "bin": "AQIAAA==", "vb": "3q2+7w==", "bl": "AP8=", "b1": true, "b10": 513,
        "zd": null, "zdt": null, "n": null
    });
    for (i, g) in got.iter().enumerate() {
        let id = i as i64 + 1;
        assert_eq!(g.value["key"], json!({"id": id}));
        let mut v = g.value["value"].clone();
        assert_eq!(v["id"], id);
        v.as_object_mut().unwrap().remove("id");
        let origin = if i == 0 { "snapshot" } else { "binlog" };
        for (k, want) in expected.as_object().unwrap() {
            assert_eq!(&v[k], want, "{origin}: column `{k}`");
        }
        assert_eq!(
            v.as_object().unwrap().len(),
            expected.as_object().unwrap().len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_position_fails_clearly_or_snapshots_again_when_needed() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").await;
    exec(&db, "INSERT INTO t VALUES (1, 10), (2, 20)").await;
    let lost = HashMap::from([(
        "source_position".to_string(),
        r#"{"file":"binlog.999999","pos":4}"#.to_string(),
    )]);
    let strict = task_config(
        &serve.url,
        &format!("{}-p", db.name),
        connector(&db, "t", "t", json!({"recordFormat": "raw"})),
    );
    let mut task = start(&tmp.path().join("strict"), &strict, lost.clone());
    let status = task.wait_exit(WAIT).expect("fails on its own");
    assert_ne!(status.code(), Some(0));
    let stderr = task.stderr();
    assert!(
        stderr.contains("binlog.999999:4"),
        "names the position: {stderr}"
    );
    assert!(stderr.contains("when_needed"), "names the fix: {stderr}");
    assert!(
        read_stream(&serve.url, "t").await.is_empty(),
        "nothing skipped or sent"
    );

    let needed = task_config(
        &serve.url,
        &format!("{}-p", db.name),
        connector(
            &db,
            "t",
            "t",
            json!({"recordFormat": "raw", "snapshotMode": "when_needed"}),
        ),
    );
    let mut task = start(&tmp.path().join("needed"), &needed, lost);
    let got = wait_records(&serve.url, "t", 2, &task).await;
    assert_eq!(
        values(&got),
        vec![
            json!({"key": {"id": 1}, "value": {"id": 1, "v": 10}}),
            json!({"key": {"id": 2}, "value": {"id": 2, "v": 20}}),
        ]
    );
    exec(&db, "INSERT INTO t VALUES (3, 30)").await;
    let got = wait_records(&serve.url, "t", 3, &task).await;
    assert_eq!(
        got[2].value,
        json!({"key": {"id": 3}, "value": {"id": 3, "v": 30}})
    );
    let kv = stop(&mut task);
    assert_ne!(position(&kv)["file"], "binlog.999999");
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_only_copies_and_completes_and_large_transactions_stream_in_slices() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").await;
    exec(&db, "INSERT INTO t SELECT seq, seq * 2 FROM seq_1_to_1500").await;
    let once = task_config(
        &serve.url,
        &format!("{}-o", db.name),
        connector(
            &db,
            "once",
            "t",
            json!({"recordFormat": "raw", "snapshotMode": "initial_only"}),
        ),
    );
    let mut task = start(&tmp.path().join("once"), &once, HashMap::new());
    let status = task.wait_exit(WAIT).expect("completes on its own");
    assert_eq!(status.code(), Some(0), "stderr: {}", task.stderr());
    let got = read_stream(&serve.url, "once").await;
    assert_eq!(got.len(), 1500);
    assert_eq!(fold(&got), table_state(&db, "t").await);

    // Streaming: one transaction of 2500 rows arrives whole and in order.
    let config = task_config(
        &serve.url,
        &format!("{}-l", db.name),
        connector(
            &db,
            "big",
            "t",
            json!({"recordFormat": "raw", "snapshotMode": "never"}),
        ),
    );
    let mut task = start_positioned(&tmp.path().join("big"), &config);
    exec(&db, "UPDATE t SET v = v + 1 WHERE id <= 1500").await;
    exec(&db, "INSERT INTO t SELECT seq, seq FROM seq_1501_to_2500").await;
    let got = wait_records(&serve.url, "big", 2500, &task).await;
    let ids: Vec<i64> = got
        .iter()
        .map(|g| g.value["key"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=2500).collect::<Vec<_>>());
    assert_eq!(fold(&got), table_state(&db, "t").await);
    stop(&mut task);
}

/// `hstream-io source-mysql check`: (exit code, result line).
fn check(dir: &std::path::Path, connector: &Value) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, json!({"connector": connector}).to_string()).unwrap();
    let out = Command::new(binary())
        .args(["source-mysql", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().next().expect("one line")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_each_failure_with_its_type_and_fix() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    exec(&db, "CREATE TABLE good (id INT PRIMARY KEY)").await;
    exec(&db, "CREATE TABLE nokey (id INT)").await;

    let ok = check(
        &tmp.path().join("ok"),
        &connector(&db, "s", "good", json!({})),
    );
    assert_eq!(ok["result"], true, "{ok}");

    let r = check(
        &tmp.path().join("missing"),
        &connector(&db, "s", "nope", json!({})),
    );
    assert_eq!(
        (r["result"].clone(), r["type"].clone()),
        (json!(false), json!("KEYS")),
        "{r}"
    );
    assert!(
        r["message"].as_str().unwrap().contains("does not exist"),
        "{r}"
    );

    let r = check(
        &tmp.path().join("nokey"),
        &connector(&db, "s", "nokey", json!({})),
    );
    assert_eq!(r["type"], "KEYS", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("no primary key"),
        "{r}"
    );

    let mut bad = connector(&db, "s", "good", json!({}));
    bad["password"] = json!("wrong-password");
    let r = check(&tmp.path().join("auth"), &bad);
    assert_eq!(r["type"], "CONNECTION", "{r}");
    assert!(
        !r.to_string().contains("wrong-password"),
        "no secret echoed: {r}"
    );

    // A user with SELECT only: no replication privileges.
    let user = format!("ro_{}", db.name);
    exec(
        &db,
        &format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON `{}`.* TO '{user}'@'%'",
            db.name
        ),
    )
    .await;
    let mut ro = connector(&db, "s", "good", json!({}));
    ro["user"] = json!(user);
    ro["password"] = json!("pw");
    let r = check(&tmp.path().join("ro"), &ro);
    assert_eq!(r["type"], "PERMISSION", "{r}");
    assert!(r["message"].as_str().unwrap().contains("GRANT"), "{r}");
    exec(&db, &format!("DROP USER '{user}'@'%'")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_fails_when_the_server_keeps_binlogs_shorter_than_asked() {
    // Retention is global: set it on a server of this test alone.
    let tmp = tempfile::tempdir().unwrap();
    let server = harness::PrivateMariaDb::start(&tmp.path().join("mariadb")).await;
    let db = server.server().create_database().await;
    exec(&db, "CREATE TABLE t (id INT PRIMARY KEY)").await;

    // Never purged (the default here): passes whatever the minimum.
    let r = check(
        &tmp.path().join("never"),
        &connector(&db, "s", "t", json!({})),
    );
    assert_eq!(r["result"], true, "{r}");

    let mut admin = server.server().admin().await;
    admin
        .query_drop("SET GLOBAL binlog_expire_logs_seconds = 7200")
        .await
        .unwrap();
    admin.disconnect().await.unwrap();

    // Default minimum 24 h > 2 h kept.
    let r = check(
        &tmp.path().join("short"),
        &connector(&db, "s", "t", json!({})),
    );
    assert_eq!(r["type"], "SETUP", "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(message.contains("2.0 hours"), "{r}");
    assert!(
        message.contains("binlog_expire_logs_seconds = 604800"),
        "the fix: {r}"
    );

    // A minimum the server meets, and 0 (no check), pass.
    for min in [2, 0] {
        let c = connector(&db, "s", "t", json!({"minBinlogRetentionHours": min}));
        let r = check(&tmp.path().join(format!("min{min}")), &c);
        assert_eq!(r["result"], true, "minBinlogRetentionHours {min}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn several_tables_share_a_stream_or_get_one_each() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(&db, "CREATE TABLE a (id INT PRIMARY KEY, v INT NOT NULL)").await;
    exec(
        &db,
        "CREATE TABLE b (k1 INT, k2 VARCHAR(5), PRIMARY KEY (k1, k2))",
    )
    .await;
    exec(&db, "CREATE TABLE other (id INT PRIMARY KEY)").await;
    exec(
        &db,
        "INSERT INTO a VALUES (1, 10); INSERT INTO b VALUES (1, 'x')",
    )
    .await;

    let shared = task_config(
        &serve.url,
        &format!("{}-s", db.name),
        json!({"stream": "shared", "host": db.host, "port": db.port, "user": db.user,
               "password": db.password, "database": db.name, "tables": ["a", "b"],
               "recordFormat": "raw"}),
    );
    let per_table = task_config(
        &serve.url,
        &format!("{}-e", db.name),
        json!({"stream": "cdc_{table}", "host": db.host, "port": db.port, "user": db.user,
               "password": db.password, "database": db.name, "tables": ["a", "b"],
               "recordFormat": "raw"}),
    );
    let mut s = start(&tmp.path().join("s"), &shared, HashMap::new());
    let mut e = start(&tmp.path().join("e"), &per_table, HashMap::new());
    wait_records(&serve.url, "shared", 2, &s).await;
    exec(
        &db,
        "BEGIN; INSERT INTO other VALUES (1); UPDATE b SET k2 = 'y'; INSERT INTO a VALUES (2, 20); COMMIT",
    )
    .await;
    let got = wait_records(&serve.url, "shared", 5, &s).await;
    let table = |t: &str| format!("{}.{t}", db.name);
    assert_eq!(
        values(&got),
        vec![
            json!({"table": table("a"), "key": {"id": 1}, "value": {"id": 1, "v": 10}}),
            json!({"table": table("b"), "key": {"k1": 1, "k2": "x"}, "value": {"k1": 1, "k2": "x"}}),
            json!({"table": table("b"), "key": {"k1": 1, "k2": "x"}, "value": null}),
            json!({"table": table("b"), "key": {"k1": 1, "k2": "y"}, "value": {"k1": 1, "k2": "y"}}),
            json!({"table": table("a"), "key": {"id": 2}, "value": {"id": 2, "v": 20}}),
        ],
        "only captured tables, in commit order, each record naming its table"
    );
    assert_eq!(got[1].key, format!("{}/[1,\"x\"]", table("b")));

    let a = wait_records(&serve.url, "cdc_a", 2, &e).await;
    let b = wait_records(&serve.url, "cdc_b", 3, &e).await;
    assert_eq!(
        values(&a),
        vec![
            json!({"key": {"id": 1}, "value": {"id": 1, "v": 10}}),
            json!({"key": {"id": 2}, "value": {"id": 2, "v": 20}}),
        ]
    );
    assert_eq!(
        b[2].value,
        json!({"key": {"k1": 1, "k2": "y"}, "value": {"k1": 1, "k2": "y"}})
    );
    assert_eq!(b[2].key, "[1,\"y\"]");
    stop(&mut s);
    stop(&mut e);
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_binlog_rotation_and_live_column_changes() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").await;
    let config = task_config(
        &serve.url,
        &format!("{}-d", db.name),
        connector(&db, "t", "t", json!({"recordFormat": "raw"})),
    );
    let mut task = start_positioned(&tmp.path().join("a"), &config);
    let first_file = {
        let kv = task.kv();
        position(&kv)["file"].as_str().unwrap().to_string()
    };
    exec(&db, "INSERT INTO t VALUES (1, 10)").await;
    exec(&db, "FLUSH BINARY LOGS").await;
    exec(&db, "INSERT INTO t VALUES (2, 20)").await;
    exec(&db, "ALTER TABLE t ADD COLUMN note VARCHAR(10) NULL").await;
    exec(&db, "INSERT INTO t VALUES (3, 30, 'new')").await;
    exec(&db, "UPDATE t SET note = 'old' WHERE id = 1").await;
    let got = wait_records(&serve.url, "t", 4, &task).await;
    assert_eq!(
        values(&got),
        vec![
            json!({"key": {"id": 1}, "value": {"id": 1, "v": 10}}),
            json!({"key": {"id": 2}, "value": {"id": 2, "v": 20}}),
            json!({"key": {"id": 3}, "value": {"id": 3, "v": 30, "note": "new"}}),
            json!({"key": {"id": 1}, "value": {"id": 1, "v": 10, "note": "old"}}),
        ]
    );
    let kv = stop(&mut task);
    let p = position(&kv);
    assert_ne!(
        p["file"], first_file,
        "the position followed the rotation: {p}"
    );

    // Resume across the rotation.
    exec(&db, "INSERT INTO t VALUES (4, 40, NULL)").await;
    let mut again = start(&tmp.path().join("b"), &config, kv);
    let got = wait_records(&serve.url, "t", 5, &again).await;
    assert_eq!(
        got[4].value,
        json!({"key": {"id": 4}, "value": {"id": 4, "v": 40, "note": null}})
    );
    stop(&mut again);
    assert_eq!(read_stream(&serve.url, "t").await.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_older_than_a_column_change_is_read_by_column_name() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").await;
    let config = task_config(
        &serve.url,
        &format!("{}-k", db.name),
        connector(&db, "t", "t", json!({"recordFormat": "raw"})),
    );
    let mut task = start_positioned(&tmp.path().join("a"), &config);
    let kv = stop(&mut task);
    // While stopped: a row in the old shape, a column change, a row in the new one.
    exec(&db, "INSERT INTO t VALUES (1, 10)").await;
    exec(&db, "ALTER TABLE t ADD COLUMN note VARCHAR(10) NULL FIRST").await;
    exec(&db, "INSERT INTO t (id, v, note) VALUES (2, 20, 'x')").await;
    let mut again = start(&tmp.path().join("b"), &config, kv);
    let got = wait_records(&serve.url, "t", 2, &again).await;
    assert_eq!(
        values(&got),
        vec![
            json!({"key": {"id": 1}, "value": {"id": 1, "v": 10}}),
            json!({"key": {"id": 2}, "value": {"note": "x", "id": 2, "v": 20}}),
        ]
    );
    stop(&mut again);
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privileged_user_works_and_a_killed_binlog_connection_is_resumed() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    let user = format!("cdc_{}", db.name);
    exec(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").await;
    exec(&db, "INSERT INTO t VALUES (1, 10)").await;
    exec(
        &db,
        &format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw';
             GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'%'"
        ),
    )
    .await;
    let mut c = connector(&db, "t", "t", json!({"recordFormat": "raw"}));
    c["user"] = json!(user);
    c["password"] = json!("pw");
    let r = check(&tmp.path().join("check"), &c);
    assert_eq!(r["result"], true, "the documented grants pass check: {r}");

    let config = task_config(&serve.url, &format!("{}-x", db.name), c);
    let mut task = start(&tmp.path().join("a"), &config, HashMap::new());
    wait_records(&serve.url, "t", 1, &task).await;
    exec(&db, "INSERT INTO t VALUES (2, 20)").await;
    wait_records(&serve.url, "t", 2, &task).await;

    // Kill the task's binlog dump connection on the server side.
    let mut admin = db.connect().await;
    let ids: Vec<u64> = admin
        .query(format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}' AND COMMAND LIKE 'Binlog Dump%'"
        ))
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "one binlog dump connection of the task");
    admin.query_drop(format!("KILL {}", ids[0])).await.unwrap();
    admin.disconnect().await.unwrap();

    exec(&db, "INSERT INTO t VALUES (3, 30)").await;
    let got = wait_for_record(&serve.url, "t", &task, |v| v["key"]["id"] == 3).await;
    let ids: Vec<i64> = got
        .iter()
        .map(|g| g.value["key"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![1, 2, 3],
        "reconnected with no gap and no duplicate"
    );
    assert!(
        task.stderr().contains("reconnecting"),
        "the reconnect path was taken: {}",
        task.stderr()
    );
    stop(&mut task);
    exec(&db, &format!("DROP USER '{user}'@'%'")).await;
}

/// Start of the transaction that wrote the first rows of `table` after
/// `file:pos`, and the GTID state there (from SHOW BINLOG EVENTS).
async fn transaction_start(
    db: &MariaDbDatabase,
    file: &str,
    pos: u64,
    table: &str,
) -> (u64, String) {
    let mut c = db.connect().await;
    let events: Vec<(String, u64, String, u64, u64, String)> = c
        .query(format!("SHOW BINLOG EVENTS IN '{file}' FROM {pos}"))
        .await
        .unwrap();
    let needle = format!("{}.{table}", db.name);
    let mut gtid_start = None;
    for (_, at, kind, _, _, info) in events {
        if kind == "Gtid" {
            gtid_start = Some(at);
        }
        if kind == "Table_map" && info.contains(&needle) {
            let start = gtid_start.expect("a GTID event opens the transaction");
            let gtid: Option<String> = c
                .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, start))
                .await
                .unwrap();
            c.disconnect().await.unwrap();
            return (start, gtid.unwrap_or_default());
        }
    }
    panic!("no rows of {needle} after {file}:{pos}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_position_inside_a_large_transaction_skips_exactly_what_was_sent() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(&db, "CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL)").await;
    let mut c = db.connect().await;
    let (file, pos): (String, u64) = {
        let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        (row.get(0).unwrap(), row.get(1).unwrap())
    };
    c.query_drop("INSERT INTO big SELECT seq, seq FROM seq_1_to_2500")
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    let (start_pos, gtid) = transaction_start(&db, &file, pos, "big").await;

    // As a task stopped after sending 1000 of the transaction's 2500 rows
    // would have stored it: by file/position, then by GTID.
    for (name, position) in [
        (
            "filepos",
            json!({"file": file, "pos": start_pos, "skip": 1000}),
        ),
        (
            "gtid",
            json!({"file": file, "pos": start_pos, "gtid": gtid, "skip": 1000}),
        ),
    ] {
        let stream = format!("big_{name}");
        let config = task_config(
            &serve.url,
            &format!("{}-{name}", db.name),
            connector(&db, &stream, "big", json!({"recordFormat": "raw"})),
        );
        let kv = HashMap::from([("source_position".to_string(), position.to_string())]);
        let mut task = start(&tmp.path().join(name), &config, kv);
        let got = wait_records(&serve.url, &stream, 1500, &task).await;
        exec(
            &db,
            &format!("INSERT INTO big VALUES ({}, 0)", 10_000 + got.len()),
        )
        .await; // marker
        let got = wait_for_record(&serve.url, &stream, &task, |v| {
            v["key"]["id"].as_i64().unwrap() >= 10_000
        })
        .await;
        let ids: Vec<i64> = got
            .iter()
            .map(|g| g.value["key"]["id"].as_i64().unwrap())
            .take(1500)
            .collect();
        assert_eq!(
            ids,
            (1001..=2500).collect::<Vec<_>>(),
            "{name}: resumed after row 1000"
        );
        assert!(
            got[1500].value["key"]["id"].as_i64().unwrap() >= 10_000,
            "{name}: nothing else before the marker"
        );
        stop(&mut task);
    }
}

/// The persisted snapshot progress of table `t` (`None` once the snapshot is done).
fn persisted_progress(kv: &HashMap<String, String>, table: &str) -> Option<Value> {
    let p: Value = serde_json::from_str(kv.get("source_position")?).unwrap();
    p.get("snapshot").map(|s| s[table].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_mid_snapshot_resumes_after_the_last_acknowledged_chunk_without_gap() {
    const ROWS: i64 = 600_000;
    const KILLS: usize = 3;
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(
        &db,
        "CREATE TABLE t (id BIGINT PRIMARY KEY, v INT NOT NULL)",
    )
    .await;
    // Even ids; odd ids are free for inserts in ranges already read and not yet read.
    exec(
        &db,
        &format!("INSERT INTO t SELECT seq * 2, 0 FROM seq_1_to_{ROWS}"),
    )
    .await;
    let config = snapshot_task_config(&db, &serve, "ks");
    let table = format!("{}.t", db.name);
    let mut changer = db.connect().await;
    let mut touched = std::collections::BTreeSet::new();
    let mut next = lcg(7);
    let mut step = async || {
        let (r, kind) = (next(ROWS), next(3));
        change(&mut changer, &mut touched, r, kind).await;
    };

    let mut kv = HashMap::new();
    let mut afters: Vec<i64> = Vec::new();
    for run in 0..KILLS {
        let mut task = start(&tmp.path().join(format!("run{run}")), &config, kv.clone());
        let previous = afters.last().copied().unwrap_or(0);
        // Change rows while the snapshot runs, until this run has persisted
        // progress beyond the previous kill's.
        kv = change_until_progress_then_kill(&mut task, &table, run, &mut step, |p| {
            p["after"][0].as_i64().unwrap_or(0) > previous
        })
        .await;
        let after = persisted_progress(&kv, &table).expect("snapshot unfinished")["after"][0]
            .as_i64()
            .unwrap();
        assert!(after > previous, "progress only moves forward");
        afters.push(after);
    }
    // Resumes after the stored key rather than from the first row.
    assert!(afters.windows(2).all(|w| w[0] < w[1]), "{afters:?}");

    // The last run completes the snapshot and streams; more changes meanwhile.
    let mut task = start(&tmp.path().join("final"), &config, kv);
    change_until_streaming(&task, &table, &mut step).await;
    for _ in 0..50 {
        step().await;
    }
    changer.disconnect().await.unwrap();
    exec(&db, "INSERT INTO t VALUES (-1, 0)").await; // marker
    wait_for_record(&serve.url, "ks", &task, |v| v["key"]["id"] == -1).await;
    let got = read_stream(&serve.url, "ks").await;
    let differences = diff(&fold(&got), &table_state(&db, "t").await);
    assert!(
        differences.is_empty(),
        "stream state differs from the table (after kills at {afters:?}): {differences:?}"
    );

    // Keys never changed: one snapshot record each, except that a key read
    // by a killed run after its last persisted chunk is read again by the
    // next run (at-least-once delivery between chunk commits).
    let mut count: BTreeMap<i64, usize> = BTreeMap::new();
    for g in &got {
        *count
            .entry(g.value["key"]["id"].as_i64().unwrap())
            .or_default() += 1;
    }
    for id in (2..=ROWS * 2).step_by(2) {
        if touched.contains(&id) {
            continue;
        }
        let n = count.get(&id).copied().unwrap_or(0);
        assert!(n >= 1, "key {id} missing");
        if id <= afters[0] {
            assert_eq!(n, 1, "key {id} was acknowledged before the first kill");
        }
    }
    stop(&mut task);
}

/// The key of row `n` of the text/datetime/decimal-keyed table: distinct for
/// every `n`, in an order unrelated to `n` (`a10` sorts before `a9`; in
/// `utf8mb4_general_ci` `_` before `a` before `B` before `é`).
fn mixed_key_sql(n: &str) -> String {
    format!(
        "CONCAT(ELT(1 + {n} % 4, 'a', 'B', 'é', '_'), {n} DIV 40), \
         TIMESTAMP'2024-01-01 00:00:00' + INTERVAL ({n} % 5) * 1001000 MICROSECOND, \
         (({n} DIV 4) % 10) - 4.5"
    )
}

/// Rows of the mixed-key table as key JSON → record value JSON.
async fn mixed_state(db: &MariaDbDatabase) -> BTreeMap<String, Value> {
    let mut c = db.connect().await;
    let rows: Vec<(String, String, String, i64, i64)> = c
        .query(
            "SELECT name, LEFT(DATE_FORMAT(at, '%Y-%m-%dT%H:%i:%s.%f'), 23), \
             CAST(amount AS CHAR), n, v FROM t",
        )
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    rows.into_iter()
        .map(|(name, at, amount, n, v)| {
            (
                json!({"name": name, "at": at, "amount": amount}).to_string(),
                json!({"name": name, "at": at, "amount": amount, "n": n, "v": v}),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_mid_snapshot_resumes_mid_table_for_a_general_ci_text_datetime_decimal_key() {
    const ROWS: i64 = 400_000;
    const KILLS: usize = 3;
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(
        &db,
        "CREATE TABLE t (name VARCHAR(24) COLLATE utf8mb4_general_ci, at DATETIME(3), \
         amount DECIMAL(12,2), n BIGINT NOT NULL UNIQUE, v INT NOT NULL, \
         PRIMARY KEY (name, at, amount))",
    )
    .await;
    exec(
        &db,
        &format!(
            "INSERT INTO t SELECT {}, seq, 0 FROM seq_1_to_{ROWS}",
            mixed_key_sql("seq")
        ),
    )
    .await;
    let config = snapshot_task_config(&db, &serve, "km");
    let table = format!("{}.t", db.name);
    let mut changer = db.connect().await;
    let mut touched = std::collections::BTreeSet::new();
    let mut inserted = ROWS;
    let mut next = lcg(11);
    // Inserts (new keys all over the key order), deletes and updates by `n`.
    let mut change = async || {
        let n = 1 + next(ROWS);
        let sql = match next(3) {
            0 => {
                inserted += 1;
                touched.insert(inserted);
                format!(
                    "INSERT INTO t SELECT {}, n, 1 FROM (SELECT {inserted} AS n) x",
                    mixed_key_sql("n")
                )
            }
            1 => {
                touched.insert(n);
                format!("DELETE FROM t WHERE n = {n}")
            }
            _ => {
                touched.insert(n);
                format!("UPDATE t SET v = v + 1 WHERE n = {n}")
            }
        };
        changer.query_drop(sql).await.unwrap();
    };

    let mut kv = HashMap::new();
    let mut acknowledged: Vec<(u64, Value)> = Vec::new();
    for run in 0..KILLS {
        let mut task = start(&tmp.path().join(format!("run{run}")), &config, kv.clone());
        let previous = acknowledged.last().map_or(0, |(rows, _)| *rows);
        kv = change_until_progress_then_kill(&mut task, &table, run, &mut change, |p| {
            p["rows"].as_u64().unwrap_or(0) > previous
        })
        .await;
        if run > 0 {
            // Resumed after the rows done before, not from the first row.
            let log = task.stderr();
            assert!(
                log.contains(&format!("rows_done={previous} ")),
                "run {run} did not resume after {previous} rows: {log}"
            );
        }
        let p = persisted_progress(&kv, &table).expect("snapshot unfinished");
        let rows = p["rows"].as_u64().unwrap();
        // The bound is stored: the next run reads after it, not from the first row.
        let after = p["after"].clone();
        assert_eq!(after.as_array().map(Vec::len), Some(3), "{p}");
        assert!(rows > previous, "progress only moves forward");
        acknowledged.push((rows, after));
    }

    let mut task = start(&tmp.path().join("final"), &config, kv);
    change_until_streaming(&task, &table, &mut change).await;
    for _ in 0..50 {
        change().await;
    }
    changer
        .query_drop(format!(
            "INSERT INTO t SELECT {}, -1, 0 FROM DUAL",
            mixed_key_sql("0")
        ))
        .await
        .unwrap(); // marker (n = 0 is no row of the workload)
    changer.disconnect().await.unwrap();
    wait_for_record(&serve.url, "km", &task, |v| v["value"]["n"] == -1).await;
    let got = read_stream(&serve.url, "km").await;
    let differences = diff(&fold(&got), &mixed_state(&db).await);
    assert!(
        differences.is_empty(),
        "stream state differs from the table (after kills at {acknowledged:?}): {differences:?}"
    );

    // Keys never changed and acknowledged before the first kill (the
    // server's own order decides which): exactly one record each.
    let (_, first) = &acknowledged[0];
    let mut c = db.connect().await;
    let early: Vec<i64> = c
        .exec(
            "SELECT n FROM t WHERE (name, at, amount) <= (?, ?, ?)",
            (
                first[0].as_str().unwrap(),
                first[1].as_str().unwrap().replace('T', " "),
                first[2].as_str().unwrap(),
            ),
        )
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    let mut count: BTreeMap<i64, usize> = BTreeMap::new();
    for g in &got {
        if let Some(n) = g.value["value"]["n"].as_i64() {
            *count.entry(n).or_default() += 1;
        }
    }
    assert!(
        early.len() >= 2000,
        "{} rows before the first bound",
        early.len()
    );
    for n in early.iter().filter(|n| !touched.contains(n)) {
        assert_eq!(
            count.get(n),
            Some(&1),
            "row n={n} was acknowledged before the first kill"
        );
    }
    for n in (1..=ROWS).filter(|n| !touched.contains(n)) {
        assert!(count.contains_key(&n), "row n={n} missing");
    }
    stop(&mut task);
}

/// [`KeyOrder`] orders every pair of tricky values as MariaDB's `ORDER BY`
/// does (ties included): binary collations with and without PAD SPACE, a
/// linguistic collation and latin1 (compared on the server), DECIMAL, TIME,
/// DATETIME, VARBINARY, ENUM, SET, FLOAT and BIT.
#[tokio::test(flavor = "multi_thread")]
async fn key_orders_compare_like_the_server() {
    use hstream_io_source_mysql::resume::KeyOrder;
    let db = harness::mariadb().await.create_database().await;
    exec(
        &db,
        "CREATE TABLE o (id INT PRIMARY KEY, s VARCHAR(20) COLLATE utf8mb4_bin, \
         np VARCHAR(20) COLLATE utf8mb4_nopad_bin, g VARCHAR(20) COLLATE utf8mb4_general_ci, \
         l VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci, d DECIMAL(40,4), t TIME(6), \
         dt DATETIME(3), b VARBINARY(8), e ENUM('small','big','medium'), st SET('a','b','c'), \
         f FLOAT, bt BIT(3))",
    )
    .await;
    let texts = [
        "", " ", "a", "a ", "a  ", "a\t", "a!", "A", "B", "_", "é", "e", "z", "a10", "a9", "€",
        "😀", "ab", "Ä", "ß", "ss",
    ];
    let mut c = db.connect().await;
    for (i, s) in texts.iter().enumerate() {
        let i = i as i64;
        c.exec_drop(
            "INSERT INTO o VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            mysql_async::Params::Positional(vec![
                i.into(),
                (*s).into(),
                (*s).into(),
                (*s).into(),
                if s.chars().all(|ch| (ch as u32) < 0x100) {
                    *s
                } else {
                    "x"
                }
                .into(),
                format!("{}.{}", (i - 9) * 123_456_789_012_345, i % 7).into(),
                format!(
                    "{}{}:{:02}:00.{}",
                    if i % 3 == 0 { "-" } else { "" },
                    i * 37,
                    i % 60,
                    i
                )
                .into(),
                format!(
                    "20{:02}-0{}-01 00:00:0{}.{:03}",
                    10 + i % 4,
                    1 + i % 9,
                    i % 10,
                    i * 7
                )
                .into(),
                s.as_bytes()
                    .iter()
                    .rev()
                    .copied()
                    .collect::<Vec<u8>>()
                    .into(),
                ["small", "big", "medium"][(i % 3) as usize].into(),
                ["", "a", "b", "a,b", "c", "a,c", "b,c", "a,b,c"][(i % 8) as usize].into(),
                ((i - 9) as f64 * 1.25).into(),
                (i % 8).into(),
            ]),
        )
        .await
        .unwrap();
    }
    type ToJson = fn(String) -> Value;
    let text: ToJson = |s| json!(s);
    let number: ToJson = |s| json!(s.parse::<f64>().unwrap());
    let integer: ToJson = |s| json!(s.parse::<i64>().unwrap());
    let columns: [(&str, &str, Value, ToJson); 12] = [
        ("s", "s", json!(["text"]), text),
        ("np", "np", json!(["text_no_pad"]), text),
        (
            "g",
            "g",
            json!([{"collated": ["utf8mb4", "utf8mb4_general_ci"]}]),
            text,
        ),
        (
            "l",
            "CONVERT(l USING utf8mb4)",
            json!([{"collated": ["latin1", "latin1_swedish_ci"]}]),
            text,
        ),
        ("d", "CAST(d AS CHAR)", json!(["decimal"]), text),
        ("t", "CAST(t AS CHAR)", json!(["time"]), text),
        (
            "dt",
            "LEFT(DATE_FORMAT(dt, '%Y-%m-%dT%H:%i:%s.%f'), 23)",
            json!(["fixed"]),
            text,
        ),
        ("b", "TO_BASE64(b)", json!(["bytes"]), text),
        (
            "e",
            "CAST(e AS CHAR)",
            json!([{"enum": ["small", "big", "medium"]}]),
            text,
        ),
        (
            "st",
            "CAST(st AS CHAR)",
            json!([{"set": ["a", "b", "c"]}]),
            text,
        ),
        ("f", "CAST(f AS CHAR)", json!(["float"]), number),
        ("bt", "CAST(bt + 0 AS CHAR)", json!(["int"]), integer),
    ];
    for (column, shape, order, to_json) in columns {
        let order: KeyOrder = serde_json::from_value(order).unwrap();
        // The server's order: DENSE_RANK over ORDER BY (equal values tie).
        let ranked: Vec<(String, i64)> = c
            .query(format!(
                "SELECT {shape}, DENSE_RANK() OVER (ORDER BY {column}) FROM o"
            ))
            .await
            .unwrap();
        assert_eq!(ranked.len(), texts.len());
        let mut compared = db.connect().await;
        for (x, rank_x) in &ranked {
            for (y, rank_y) in &ranked {
                let got = order
                    .compare_on(&[to_json(x.clone())], &[to_json(y.clone())], &mut compared)
                    .await
                    .unwrap();
                assert_eq!(got, Some(rank_x.cmp(rank_y)), "{column}: {x:?} vs {y:?}");
            }
        }
        compared.disconnect().await.unwrap();
    }
    c.disconnect().await.unwrap();
}

/// The config of the kill -9 mid-snapshot tests: raw records, 2000-row chunks.
fn snapshot_task_config(db: &MariaDbDatabase, serve: &Serve, stream: &str) -> Value {
    task_config(
        &serve.url,
        &format!("{}-{stream}", db.name),
        connector(
            db,
            stream,
            "t",
            json!({"recordFormat": "raw", "snapshotChunkSize": 2000}),
        ),
    )
}

/// A small deterministic generator: `next(n)` is in `0..n`.
fn lcg(mut seed: u64) -> impl FnMut(i64) -> i64 {
    move |n| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as i64).rem_euclid(n)
    }
}

/// Applies `change` while `task` snapshots, until its persisted progress of
/// `table` satisfies `moved`; then kills it with SIGKILL and returns the KV it
/// left (what was acknowledged). Fails when the snapshot finished first.
async fn change_until_progress_then_kill(
    task: &mut TaskProcess,
    table: &str,
    run: usize,
    change: &mut impl AsyncFnMut(),
    moved: impl Fn(&Value) -> bool,
) -> HashMap<String, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        change().await;
        let now = task.kv();
        let progress = persisted_progress(&now, table);
        assert!(
            !now.contains_key("source_position") || progress.is_some(),
            "the snapshot finished before kill {run}; the table must be bigger for this machine"
        );
        if progress.as_ref().is_some_and(&moved) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot progress: {}",
            task.stderr()
        );
    }
    task.signal(libc::SIGKILL);
    task.wait_exit(WAIT).expect("killed");
    task.kv()
}

/// Applies `change` until `task` finished its snapshot of `table` and streams.
async fn change_until_streaming(task: &TaskProcess, table: &str, change: &mut impl AsyncFnMut()) {
    let deadline = Instant::now() + WAIT * 3;
    loop {
        change().await;
        let now = task.kv();
        if now.contains_key("source_position") && persisted_progress(&now, table).is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "snapshot did not finish: {}",
            task.stderr()
        );
    }
}

/// Keys whose state differs: (key, stream, table), at most 20.
fn diff(
    stream: &BTreeMap<String, Value>,
    table: &BTreeMap<String, Value>,
) -> Vec<(String, Option<Value>, Option<Value>)> {
    let keys: std::collections::BTreeSet<&String> = stream.keys().chain(table.keys()).collect();
    keys.into_iter()
        .filter(|k| stream.get(*k) != table.get(*k))
        .take(20)
        .map(|k| (k.clone(), stream.get(k).cloned(), table.get(k).cloned()))
        .collect()
}

/// One random change near even id `r * 2 + 2`: insert the odd id after it,
/// delete it or update it; records the key touched.
async fn change(
    changer: &mut mysql_async::Conn,
    touched: &mut std::collections::BTreeSet<i64>,
    r: i64,
    kind: i64,
) {
    let id = r * 2 + 2;
    let sql = match kind {
        0 => format!("INSERT IGNORE INTO t VALUES ({}, 1)", id + 1),
        1 => format!("DELETE FROM t WHERE id = {id}"),
        _ => format!("UPDATE t SET v = v + 1 WHERE id = {id}"),
    };
    touched.insert(if kind == 0 { id + 1 } else { id });
    changer.query_drop(sql).await.unwrap();
}

/// Counts the records of one-shard `stream` until it holds `n` (records not kept).
async fn count_until(url: &str, stream: &str, n: usize, task: &TaskProcess) -> usize {
    let client = Client::connect(url).await.unwrap();
    let deadline = Instant::now() + WAIT * 5;
    let shard = loop {
        if let Ok(s) = client.list_shards(stream).await
            && let Some(s) = s.first()
        {
            break s.shard_id;
        }
        assert!(Instant::now() < deadline, "no stream: {}", task.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut reader = client
        .shard_reader(stream, shard, ReaderOffset::Earliest)
        .await
        .unwrap();
    let mut count = 0;
    while count < n {
        let got = reader.read(100).await.unwrap();
        if got.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{count} of {n} records: {}",
                task.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        count += got.len();
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_transaction_streams_with_bounded_memory() {
    // 1,000,000 rows of ~100 bytes in ONE transaction (≈ 100 MB of row data;
    // as records held in memory several times that). The task must stream it
    // in slices: its peak RSS grows by far less than the transaction's size.
    const ROWS: usize = 1_000_000;
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(
        &db,
        "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(300) NOT NULL)",
    )
    .await;
    let config = task_config(
        &serve.url,
        &format!("{}-h", db.name),
        connector(
            &db,
            "huge",
            "big",
            json!({"recordFormat": "raw", "snapshotMode": "never"}),
        ),
    );
    let mut task = start_positioned(&tmp.path().join("huge"), &config);
    exec(&db, "INSERT INTO big VALUES (0, 'warm-up')").await;
    count_until(&serve.url, "huge", 1, &task).await;
    let before = hstream_io_bench::peak_rss_kib(task.pid()).expect("VmHWM in /proc/<pid>/status");
    exec(
        &db,
        &format!("INSERT INTO big SELECT seq, REPEAT('x', 100) FROM seq_1_to_{ROWS}"),
    )
    .await;
    assert_eq!(
        count_until(&serve.url, "huge", ROWS + 1, &task).await,
        ROWS + 1
    );
    let after = hstream_io_bench::peak_rss_kib(task.pid()).expect("VmHWM in /proc/<pid>/status");
    let growth_mb = (after.saturating_sub(before)) / 1024;
    eprintln!("VmHWM {before} KiB -> {after} KiB over a {ROWS}-row transaction");
    assert!(
        growth_mb < 40,
        "peak RSS grew by {growth_mb} MB over one {ROWS}-row transaction ({before} -> {after} KiB)"
    );
    stop(&mut task);
}

#[tokio::test(flavor = "multi_thread")]
async fn ddl_mid_stream_under_each_policy() {
    let db = harness::mariadb().await.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    exec(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").await;
    exec(&db, "CREATE TABLE other (id INT PRIMARY KEY)").await;
    let with = |policy: &str, stream: &str, task: &str| {
        task_config(
            &serve.url,
            &format!("{}-{task}", db.name),
            connector(
                &db,
                stream,
                "t",
                json!({"recordFormat": "raw", "ddlPolicy": policy}),
            ),
        )
    };

    // strict: DDL on another table passes; DDL on the captured one stops the
    // task before anything after it is read, again on restart, until the
    // policy is changed.
    let strict = with("strict", "s", "s");
    let mut task = start_positioned(&tmp.path().join("s1"), &strict);
    exec(&db, "INSERT INTO t VALUES (1, 10)").await;
    exec(&db, "ALTER TABLE other ADD COLUMN x INT").await;
    exec(&db, "INSERT INTO t VALUES (2, 20)").await;
    wait_records(&serve.url, "s", 2, &task).await;
    exec(&db, "ALTER TABLE t ADD COLUMN note VARCHAR(10) NULL").await;
    exec(&db, "INSERT INTO t VALUES (3, 30, 'after')").await;
    let status = task.wait_exit(WAIT).expect("strict stops at the DDL");
    assert_ne!(status.code(), Some(0));
    let stderr = task.stderr();
    assert!(
        stderr.contains("DDL on captured table") && stderr.contains("ADD COLUMN note"),
        "{stderr}"
    );
    assert!(stderr.contains("ddlPolicy"), "the fix is named: {stderr}");
    let kv = task.kv();
    let mut again = start(&tmp.path().join("s2"), &strict, kv.clone());
    let status = again.wait_exit(WAIT).expect("stops at the DDL again");
    assert_ne!(status.code(), Some(0));
    assert_eq!(
        read_stream(&serve.url, "s").await.len(),
        2,
        "nothing after the DDL"
    );
    // Same task, policy changed to evolve: continues with the new column.
    let mut evolve = start(&tmp.path().join("s3"), &with("evolve", "s", "s"), kv);
    let got = wait_records(&serve.url, "s", 3, &evolve).await;
    assert_eq!(
        got[2].value,
        json!({"key": {"id": 3}, "value": {"id": 3, "v": 30, "note": "after"}})
    );
    let kv = stop(&mut evolve);

    // A backlog row older than a DROP COLUMN cannot be mapped to the current
    // definition: evolve stops naming the position, ignore skips it with a
    // warning and goes on (no crash loop).
    exec(&db, "INSERT INTO t VALUES (4, 40, 'gone')").await;
    exec(&db, "ALTER TABLE t DROP COLUMN note").await;
    exec(&db, "INSERT INTO t VALUES (5, 50)").await;
    let mut evolve = start(
        &tmp.path().join("e1"),
        &with("evolve", "s", "s"),
        kv.clone(),
    );
    let status = evolve
        .wait_exit(WAIT)
        .expect("evolve cannot map the old row");
    assert_ne!(status.code(), Some(0));
    assert!(
        evolve.stderr().contains("columns in the binlog at"),
        "{}",
        evolve.stderr()
    );
    let mut ignore = start(&tmp.path().join("i1"), &with("ignore", "s", "s"), kv);
    let got = wait_for_record(&serve.url, "s", &ignore, |v| v["key"]["id"] == 5).await;
    assert_eq!(
        values(&got[3..]),
        vec![json!({"key": {"id": 5}, "value": {"id": 5, "v": 50}})],
        "the unmappable row is skipped, the next one streams"
    );
    assert!(ignore.app_log().contains("skipped (ddlPolicy ignore)"));
    exec(&db, "INSERT INTO t VALUES (6, 60)").await;
    wait_for_record(&serve.url, "s", &ignore, |v| v["key"]["id"] == 6).await;
    stop(&mut ignore);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mariadb_restart_mid_stream_is_followed_without_gap_or_duplicate() {
    // A server of this test alone: restarting the shared one would disturb others.
    let tmp = tempfile::tempdir().unwrap();
    let mut server = harness::PrivateMariaDb::start(&tmp.path().join("mariadb")).await;
    let db = server.server().create_database().await;
    let serve = Serve::start(&tmp.path().join("data"));
    exec(&db, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)").await;
    exec(&db, "INSERT INTO t SELECT seq, 0 FROM seq_1_to_100").await;
    let config = task_config(
        &serve.url,
        &format!("{}-rs", db.name),
        connector(&db, "rs", "t", json!({"recordFormat": "raw"})),
    );
    let mut task = start(&tmp.path().join("task"), &config, HashMap::new());
    wait_records(&serve.url, "rs", 100, &task).await;
    for i in 1..=50 {
        exec(&db, &format!("UPDATE t SET v = v + 1 WHERE id = {i}")).await;
    }
    exec(&db, "DELETE FROM t WHERE id > 90").await;
    server.restart(Duration::from_secs(2)).await;
    for i in 101..=150 {
        exec(&db, &format!("INSERT INTO t VALUES ({i}, {i})")).await;
    }
    exec(&db, "UPDATE t SET v = -1 WHERE id = 1").await; // marker
    let got = wait_for_record(&serve.url, "rs", &task, |v| {
        v["key"]["id"] == 1 && v["value"]["v"] == -1
    })
    .await;
    assert_eq!(fold(&got), table_state(&db, "t").await);
    // Exactly: 100 snapshot rows, 50 updates, 10 deletes, 50 inserts, the marker.
    assert_eq!(got.len(), 100 + 50 + 10 + 50 + 1, "no gap, no duplicate");
    assert!(
        task.app_log().contains("reconnecting"),
        "the task noticed the restart: {}",
        task.app_log()
    );
    // Streaming reports how far behind the binlog the task is (binlog event
    // times, second resolution).
    task.wait_for(WAIT, |name, body| {
        name == "Report" && body["lagMs"].as_u64().is_some()
    })
    .expect("a Report with lagMs");
    stop(&mut task);
}
