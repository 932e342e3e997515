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
