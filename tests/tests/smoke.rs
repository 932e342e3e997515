//! The harness itself: both private servers answer, with the settings the connectors need, and
//! every test gets its own database.

use hstream_io_tests::harness::{self, PASSWORD, USER};
use mysql_async::prelude::Queryable;

#[tokio::test]
async fn mariadb_has_the_binlog_settings() {
    let server = harness::mariadb().await;
    assert_ne!(server.port(), 3306, "must not be the system server");
    let db = server.create_database().await;
    assert_eq!((db.user.as_str(), db.password.as_str()), (USER, PASSWORD));
    assert!(
        db.url()
            .starts_with("mysql://hstream:hstream-secret@127.0.0.1:")
    );
    let mut c = db.connect().await;

    let row: (i64, String, String, String, i64) = c
        .query_first(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@server_id",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row,
        (1, "ROW".into(), "FULL".into(), "FULL".into(), 1),
        "log_bin, binlog_format, binlog_row_image, binlog_row_metadata, server_id"
    );
    let bind: String = c
        .query_first("SELECT @@bind_address")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bind, "127.0.0.1");

    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(16))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1, 'one')")
        .await
        .unwrap();
    let got: Vec<(i32, String)> = c.query("SELECT id, v FROM t").await.unwrap();
    assert_eq!(got, vec![(1, "one".to_string())]);
    let current: String = c.query_first("SELECT DATABASE()").await.unwrap().unwrap();
    assert_eq!(current, db.name);
    c.disconnect().await.unwrap();
}

#[tokio::test]
async fn mariadb_rejects_a_wrong_password() {
    let db = harness::mariadb().await.create_database().await;
    let opts = db.opts().pass(Some("wrong"));
    let err = mysql_async::Conn::new(opts)
        .await
        .expect_err("login must fail");
    assert!(err.to_string().contains("Access denied"), "{err}");
}

#[tokio::test]
async fn mariadb_databases_are_separate() {
    let server = harness::mariadb().await;
    let (a, b) = (
        server.create_database().await,
        server.create_database().await,
    );
    assert_ne!(a.name, b.name);
    let mut ca = a.connect().await;
    ca.query_drop("CREATE TABLE only_in_a (id INT)")
        .await
        .unwrap();
    let mut cb = b.connect().await;
    let n: i64 = cb
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}'",
            b.name
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn postgres_has_the_logical_replication_settings() {
    let server = harness::postgres().await;
    assert_ne!(server.port(), 5432, "must not be the system server");
    let db = server.create_database().await;
    assert_eq!((db.user.as_str(), db.password.as_str()), (USER, PASSWORD));
    assert!(
        db.url()
            .starts_with("postgres://hstream:hstream-secret@127.0.0.1:")
    );
    let c = db.connect().await;

    for (setting, want) in [
        ("wal_level", "logical"),
        ("max_replication_slots", "20"),
        ("max_wal_senders", "20"),
        ("listen_addresses", "127.0.0.1"),
        ("fsync", "off"),
    ] {
        let row = c.query_one(&format!("SHOW {setting}"), &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), want, "{setting}");
    }

    c.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one')")
        .await
        .unwrap();
    let rows = c.query("SELECT id, v FROM t", &[]).await.unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "one".to_string())]);
    let current: String = c
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, db.name);
    // The role can do what a CDC source needs.
    let row = c
        .query_one(
            "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1));
}

#[tokio::test]
async fn postgres_requires_the_password() {
    let db = harness::postgres().await.create_database().await;
    let mut cfg = db.config();
    cfg.password("wrong");
    let err = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("login must fail");
    let msg = format!("{err:?}");
    assert!(msg.contains("password authentication failed"), "{msg}");
}

#[tokio::test]
async fn postgres_databases_are_separate() {
    let server = harness::postgres().await;
    let (a, b) = (
        server.create_database().await,
        server.create_database().await,
    );
    assert_ne!(a.name, b.name);
    a.connect()
        .await
        .batch_execute("CREATE TABLE only_in_a (id INT)")
        .await
        .unwrap();
    let row = b
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
}
