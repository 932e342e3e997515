//! The bench workload against the private servers: both bulk paths store exactly the generated
//! rows, and the SQL checksum gives the same answer in both dialects and in Rust.

use hstream_io_bench::load::{checksum_mariadb, checksum_postgres, copy_postgres, infile_mariadb};
use hstream_io_bench::workload::{Checksum, Dialect, Order, create_table};
use hstream_io_tests::harness;
use mysql_async::prelude::Queryable;

const ROWS: u64 = 5_000;

#[tokio::test]
async fn workload_checksums_agree_across_dialects() {
    let expected = Checksum::expected(ROWS);

    let pg = harness::postgres().await.create_database().await;
    let client = pg.connect().await;
    client
        .batch_execute(&create_table(Dialect::Postgres, "orders"))
        .await
        .unwrap();
    let report = copy_postgres(&client, "orders", ROWS).await.unwrap();
    assert!(report.verified, "{report}");
    assert_eq!(
        checksum_postgres(&client, "orders").await.unwrap(),
        expected
    );

    let my = harness::mariadb().await.create_database().await;
    let mut conn = my.connect().await;
    conn.query_drop(create_table(Dialect::MariaDb, "orders"))
        .await
        .unwrap();
    let report = infile_mariadb(&mut conn, "orders", ROWS).await.unwrap();
    assert!(report.verified, "{report}");
    assert_eq!(
        checksum_mariadb(&mut conn, "orders").await.unwrap(),
        expected
    );

    // Row 1234's stored text is the generator's, in both servers.
    let want = Order::new(1234);
    let row = client
        .query_one(
            "SELECT amount::text, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), note \
             FROM orders WHERE id = 1234",
            &[],
        )
        .await
        .unwrap();
    let pg_row: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    let my_row: (String, String, String) = conn
        .query_first(
            "SELECT CAST(amount AS CHAR), DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'), note \
             FROM orders WHERE id = 1234",
        )
        .await
        .unwrap()
        .unwrap();
    let gen_row = (want.amount(), want.created_at(), want.note.clone());
    assert_eq!(pg_row, gen_row);
    assert_eq!(my_row, gen_row);

    // One changed value changes the checksum in both.
    client
        .batch_execute("UPDATE orders SET note = 'x' WHERE id = 7")
        .await
        .unwrap();
    conn.query_drop("UPDATE orders SET note = 'x' WHERE id = 7")
        .await
        .unwrap();
    let (a, b) = (
        checksum_postgres(&client, "orders").await.unwrap(),
        checksum_mariadb(&mut conn, "orders").await.unwrap(),
    );
    assert_eq!(a, b);
    assert_ne!(a, expected);
    let _ = conn.disconnect().await;
}
