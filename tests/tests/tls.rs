//! The connectors' TLS modes against the harness servers, which run with TLS
//! enabled (a CA made for the test run): `require` connects, `verify-full`
//! connects only with the right CA in `tlsCa`, and a wrong or missing CA is a
//! CONNECTION failure that names the certificate problem, never a silent
//! downgrade to plain text.

use std::process::Command;

use hstream_io_tests::harness;
use hstream_io_tests::hserver::binary;
use serde_json::{Value, json};

/// Runs `<connector> check` and returns the parsed CheckResult.
fn check(connector: &str, config: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let file = json!({"hstream": {"serviceUrl": "hstream://127.0.0.1:1"}, "connector": config});
    std::fs::write(&path, file.to_string()).unwrap();
    let out = Command::new(binary())
        .args([connector, "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().next().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("check printed no CheckResult ({e}): {stdout}"))
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// A CA that signed nothing the servers use.
fn foreign_ca() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "someone else's CA");
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

/// `connector`'s check passes with `disable`, `require` and `verify-full` +
/// the right CA, and fails as CONNECTION naming the fix with `verify-full`
/// against the web roots or a foreign CA.
fn assert_modes(connector: &str, base: &Value, ca: &str) {
    for (mode, extra) in [
        ("disable", json!({"tlsMode": "disable"})),
        ("require", json!({"tlsMode": "require"})),
        (
            "verify-full + CA",
            json!({"tlsMode": "verify-full", "tlsCa": ca}),
        ),
    ] {
        let result = check(connector, &with(base.clone(), extra));
        assert_eq!(result["result"], true, "{connector} {mode}: {result}");
    }
    for (mode, extra) in [
        ("verify-full, web roots", json!({"tlsMode": "verify-full"})),
        (
            "verify-full, foreign CA",
            json!({"tlsMode": "verify-full", "tlsCa": foreign_ca()}),
        ),
    ] {
        let result = check(connector, &with(base.clone(), extra));
        assert_eq!(result["result"], false, "{connector} {mode}: {result}");
        assert_eq!(result["type"], "CONNECTION", "{connector} {mode}: {result}");
        let message = result["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("certificate") && message.contains("set tlsCa"),
            "{connector} {mode}: the failure should name the certificate problem and the fix: {result}"
        );
    }
}

#[tokio::test]
async fn sink_postgresql_tls_modes_against_a_tls_server() {
    let db = harness::postgres().await.create_database().await;
    db.connect()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let base = json!({"stream": "s", "host": "127.0.0.1", "port": db.port, "user": db.user,
                      "password": db.password, "database": db.name, "table": "t"});
    assert_modes("sink-postgresql", &base, &db.tls_ca_pem());
}

/// A fresh MariaDB database with table `t`: the connector config fields for
/// it (TLS fields left out) and the server's CA.
async fn mariadb_table() -> (Value, String) {
    use mysql_async::prelude::Queryable;
    let db = harness::mariadb().await.create_database().await;
    let mut conn = db.connect().await;
    conn.query_drop("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let base = json!({"stream": "s", "host": "127.0.0.1", "port": db.port, "user": db.user,
                      "password": db.password, "database": db.name, "table": "t"});
    (base, db.tls_ca_pem())
}

#[tokio::test]
async fn sink_mysql_tls_modes_against_a_tls_server() {
    let (base, ca) = mariadb_table().await;
    assert_modes("sink-mysql", &base, &ca);
}

#[tokio::test]
async fn source_mysql_tls_modes_against_a_tls_server() {
    let (base, ca) = mariadb_table().await;
    assert_modes("source-mysql", &base, &ca);
}

#[tokio::test]
async fn source_postgresql_tls_modes_against_a_tls_server() {
    let db = harness::postgres().await.create_database().await;
    db.connect()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let base = json!({"stream": "s", "host": "127.0.0.1", "port": db.port, "user": db.user,
                      "password": db.password, "database": db.name, "table": "t"});
    assert_modes("source-postgresql", &base, &db.tls_ca_pem());
}

/// Every record of `stream` in the service at `url`, as JSON.
async fn read_stream(url: &str, stream: &str) -> Vec<Value> {
    use hstream_io_runtime::stream::{Client, Payload, ReaderOffset};
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
                out.push(match r.record.payload {
                    Payload::Json(map) => Value::Object(map),
                    Payload::Raw(bytes) => serde_json::from_slice(&bytes).unwrap(),
                    Payload::EncodedJson(_) => unreachable!("readers decode JSON records"),
                });
            }
        }
    }
    out
}

/// The real task over `verify-full` with the run's CA, host `localhost` (a
/// DNS name in the certificate): the snapshot and streamed changes arrive,
/// and both of its sessions (SQL and replication) are encrypted.
#[tokio::test(flavor = "multi_thread")]
async fn source_postgresql_snapshot_and_stream_over_verify_full() {
    use hstream_io_tests::hserver::{Serve, TaskProcess};
    use std::time::{Duration, Instant};

    let db = harness::postgres().await.create_database().await;
    let pg = db.connect().await;
    pg.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("data"));
    let task_id = format!("tls-{}", db.name);
    let slot: String = format!("tls_{}", db.name.to_ascii_lowercase())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(63)
        .collect();
    let connector = json!({"stream": "tls", "host": "localhost", "port": db.port, "user": db.user,
                           "password": db.password, "database": db.name, "table": "t",
                           "tlsMode": "verify-full", "tlsCa": db.tls_ca_pem(),
                           "slotName": slot, "statusIntervalSeconds": 1});
    let config =
        json!({"hstream": {"serviceUrl": serve.url}, "connector": connector, "task": task_id});
    let mut task = TaskProcess::start(
        &tmp.path().join("task"),
        "source-postgresql",
        &config,
        Default::default(),
        &[],
    );
    let wait = |n: usize| {
        let (url, task) = (serve.url.clone(), &task);
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let got = read_stream(&url, "tls").await;
                if got.len() >= n {
                    return got;
                }
                assert!(
                    Instant::now() < deadline,
                    "waited for {n} records, have {got:?}; stderr: {}; log: {}",
                    task.stderr(),
                    task.app_log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait(2).await;
    pg.batch_execute("INSERT INTO t VALUES (3, 'c'); UPDATE t SET v = 'a2' WHERE id = 1;")
        .await
        .unwrap();
    let got = wait(4).await;
    assert_eq!(
        got,
        vec![
            json!({"key": {"id": 1}, "value": {"id": 1, "v": "a"}}),
            json!({"key": {"id": 2}, "value": {"id": 2, "v": "b"}}),
            json!({"key": {"id": 3}, "value": {"id": 3, "v": "c"}}),
            json!({"key": {"id": 1}, "value": {"id": 1, "v": "a2"}}),
        ]
    );
    let sessions: Vec<(String, bool)> = pg
        .query(
            "SELECT a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'hstream-io source-postgresql' AND a.datname = current_database() \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        sessions.iter().any(|(kind, _)| kind == "walsender")
            && sessions.iter().all(|(_, ssl)| *ssl),
        "the replication session and every SQL session use TLS: {sessions:?}"
    );
    task.send_stop();
    let status = tokio::task::block_in_place(|| task.wait_exit(Duration::from_secs(30)));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", task.stderr());
    // The shared server's slots are few: drop this one (its walsender may linger a moment).
    for _ in 0..50 {
        let dropped = pg
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await;
        if dropped.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
