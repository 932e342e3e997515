//! The whole pipeline on one machine: MariaDB → `source-mysql` → stream →
//! `sink-postgresql` → PostgreSQL, managed by `hstream-io serve` through SQL.
//!
//! Used by `scripts/quickstart` (the README's main job) and as the pipeline
//! benchmark: private MariaDB and PostgreSQL servers, the standard workload
//! loaded into MariaDB, connectors created with HStreamDB's SQL, then live
//! updates, deletes and inserts; success = identical row count and checksum on
//! both sides.

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
    let source = format!(
        r#"CREATE SOURCE CONNECTOR orders_source FROM mysql WITH ("host" = "{}", "port" = {}, "user" = "{}", "password" = "{}", "database" = "{}", "table" = "orders", "stream" = "orders");"#,
        my.host, my.port, my.user, my.password, my.name
    );
    let sink = format!(
        r#"CREATE SINK CONNECTOR orders_sink TO postgresql WITH ("host" = "{}", "port" = {}, "user" = "{}", "password" = "{}", "database" = "{}", "table" = "orders", "stream" = "orders");"#,
        pgdb.host, pgdb.port, pgdb.user, pgdb.password, pgdb.name
    );
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
