//! Experiment behind sink-mysql's write path (issue 4, item 4): which way of writing a batch is
//! cheapest for MariaDB. Not part of the product; the figures are in docs/benchmarks.md.
//!
//! ```sh
//! cargo build --release -p hstream-io-bench --example mysql_write_paths
//! target/release/examples/mysql_write_paths 300000          # every variant, 3 rounds
//! target/release/examples/mysql_write_paths 300000 load     # variants whose name starts with `load`
//! ```
//!
//! Each variant writes `bench.orders` rows (the `sink` benchmark's shape, 6 columns, text values
//! as the sink binds them) into a fresh table of the harness's private MariaDB, one transaction
//! per [`BATCH`] rows: an insert pass (empty table), then an upsert pass (every non-key column
//! changed). Printed per pass: rows/s (wall clock, depends on the machine's load) and the CPU
//! seconds of this client and of the MariaDB server (load-independent: the work each way costs).
//!
//! - `sqlx-binary`: today's sink path: sqlx prepared multi-row `INSERT … ON DUPLICATE KEY
//!   UPDATE`, 1000 rows per statement.
//! - `sqlx-text`, `async-text`: the same statements with escaped literals (text protocol), through
//!   sqlx and mysql_async.
//! - `load-direct`: mysql_async `LOAD DATA LOCAL INFILE … IGNORE` straight into the table inside a
//!   savepoint; when not every row was stored (existing keys), rollback to the savepoint and load
//!   into a `TEMPORARY` table, then `INSERT … SELECT … ON DUPLICATE KEY UPDATE`.
//! - `load-tmp`: the same, but the upsert pass goes to the temporary table at once.
//! - `var-sqlx`, `var-pow2`: `sqlx-binary` with batch sizes varying between 2000 and 10000 rows,
//!   the last statement of a batch either of the remaining size or split into powers of two (a
//!   bounded set of statements for the prepared-statement cache).
#![allow(unsafe_code)] // getrusage
use std::time::Instant;

use hstream_io_bench::sink::order;
use hstream_io_bench::workload::{Dialect, Order, create_table};
use hstream_io_tests::harness;
use mysql_async::prelude::Queryable;

/// Rows per transaction: about what the sink gathers from 1 MiB of reads of this workload.
const BATCH: u64 = 8000;

fn cells(o: &Order) -> [String; 6] {
    [
        o.id.to_string(),
        o.customer_id.to_string(),
        o.amount(),
        o.status.to_string(),
        o.note.clone(),
        o.created_at(),
    ]
}

const COLS: &str = "`id`, `customer_id`, `amount`, `status`, `note`, `created_at`";
const UPD: &str = " ON DUPLICATE KEY UPDATE `customer_id` = VALUES(`customer_id`), `amount` = VALUES(`amount`), `status` = VALUES(`status`), `note` = VALUES(`note`), `created_at` = VALUES(`created_at`)";

fn escape_sql(s: &str, out: &mut String) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn escape_tsv(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            b => out.push(b),
        }
    }
}

async fn sqlx_pass(pool: &sqlx::MySqlPool, t: &str, n: u64, pass: u64) {
    for start in (0..n).step_by(BATCH as usize) {
        let mut tx = pool.begin().await.unwrap();
        let end = (start + BATCH).min(n);
        let mut i = start;
        while i < end {
            let e = (i + 1000).min(end);
            let mut sql = format!("INSERT INTO {t} ({COLS}) VALUES ");
            for j in i..e {
                if j > i {
                    sql.push_str(", ");
                }
                sql.push_str("(?, ?, ?, ?, ?, ?)");
            }
            sql.push_str(UPD);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for j in i..e {
                for c in cells(&order(j, pass)) {
                    q = q.bind(c);
                }
            }
            q.execute(&mut *tx).await.unwrap();
            i = e;
        }
        tx.commit().await.unwrap();
    }
}

/// Batch sizes varying like the sink's (reads gathered while the previous write ran).
fn batch_sizes(n: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut x: u64 = 12345;
    while start < n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let size = 2000 + (x >> 33) % 8000;
        let end = (start + size).min(n);
        out.push((start, end));
        start = end;
    }
    out
}

/// Statement sizes for `rows` rows: 1000-row statements, then the remainder
/// as is (`pow2` false) or split into powers of two (at most 10 more sizes).
fn chunks(rows: u64, pow2: bool) -> Vec<u64> {
    let mut out = vec![1000; (rows / 1000) as usize];
    let rest = rows % 1000;
    if pow2 {
        for bit in (0..10).rev() {
            if rest & (1 << bit) != 0 {
                out.push(1 << bit);
            }
        }
    } else if rest > 0 {
        out.push(rest);
    }
    out
}

async fn sqlx_var_pass(pool: &sqlx::MySqlPool, t: &str, n: u64, pass: u64, pow2: bool) {
    for (start, end) in batch_sizes(n) {
        let mut tx = pool.begin().await.unwrap();
        let mut i = start;
        for size in chunks(end - start, pow2) {
            let e = i + size;
            let mut sql = format!("INSERT INTO {t} ({COLS}) VALUES ");
            for j in i..e {
                if j > i {
                    sql.push_str(", ");
                }
                sql.push_str("(?, ?, ?, ?, ?, ?)");
            }
            sql.push_str(UPD);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for j in i..e {
                for c in cells(&order(j, pass)) {
                    q = q.bind(c);
                }
            }
            q.execute(&mut *tx).await.unwrap();
            i = e;
        }
        assert_eq!(i, end);
        tx.commit().await.unwrap();
    }
}

/// CPU seconds (user + system) of the private MariaDB server (a child of this process).
fn server_cpu() -> f64 {
    let me = std::process::id().to_string();
    let tick = 100.0;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let name = &stat[stat.find('(').unwrap() + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        if (name == "mariadbd" || name == "mysqld") && fields[1] == me {
            total +=
                (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / tick;
        }
    }
    total
}

async fn sqlx_text_pass(pool: &sqlx::MySqlPool, t: &str, n: u64, pass: u64) {
    for start in (0..n).step_by(BATCH as usize) {
        let mut tx = pool.begin().await.unwrap();
        let end = (start + BATCH).min(n);
        let mut i = start;
        while i < end {
            let e = (i + 1000).min(end);
            let mut sql = format!("INSERT INTO {t} ({COLS}) VALUES ");
            for j in i..e {
                if j > i {
                    sql.push_str(", ");
                }
                sql.push('(');
                for (k, c) in cells(&order(j, pass)).iter().enumerate() {
                    if k > 0 {
                        sql.push_str(", ");
                    }
                    escape_sql(c, &mut sql);
                }
                sql.push(')');
            }
            sql.push_str(UPD);
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .unwrap();
            i = e;
        }
        tx.commit().await.unwrap();
    }
}

async fn async_text_pass(c: &mut mysql_async::Conn, t: &str, n: u64, pass: u64) {
    for start in (0..n).step_by(BATCH as usize) {
        c.query_drop("BEGIN").await.unwrap();
        let end = (start + BATCH).min(n);
        let mut i = start;
        while i < end {
            let e = (i + 1000).min(end);
            let mut sql = format!("INSERT INTO {t} ({COLS}) VALUES ");
            for j in i..e {
                if j > i {
                    sql.push_str(", ");
                }
                sql.push('(');
                for (k, v) in cells(&order(j, pass)).iter().enumerate() {
                    if k > 0 {
                        sql.push_str(", ");
                    }
                    escape_sql(v, &mut sql);
                }
                sql.push(')');
            }
            sql.push_str(UPD);
            c.query_drop(sql).await.unwrap();
            i = e;
        }
        c.query_drop("COMMIT").await.unwrap();
    }
}

fn tsv(start: u64, end: u64, pass: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(((end - start) * 60) as usize);
    for j in start..end {
        for (k, v) in cells(&order(j, pass)).iter().enumerate() {
            if k > 0 {
                out.push(b'\t');
            }
            escape_tsv(v, &mut out);
        }
        out.push(b'\n');
    }
    out
}

async fn load(c: &mut mysql_async::Conn, into: &str, data: Vec<u8>) -> (u64, u16) {
    c.set_infile_handler(async move {
        let stream = futures::stream::iter(std::iter::once(Ok(bytes::Bytes::from(data))));
        Ok(Box::pin(stream) as mysql_async::InfileData)
    });
    c.query_drop(format!(
        "LOAD DATA LOCAL INFILE 'batch' IGNORE INTO TABLE {into} CHARACTER SET binary \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({COLS})"
    ))
    .await
    .unwrap();
    (c.affected_rows(), c.get_warnings())
}

/// direct: LOAD DATA into the table in a savepoint, fallback to tmp + INSERT SELECT ODKU.
async fn load_pass(c: &mut mysql_async::Conn, t: &str, n: u64, pass: u64, try_direct: bool) -> u64 {
    let mut fallbacks = 0;
    for start in (0..n).step_by(BATCH as usize) {
        let end = (start + BATCH).min(n);
        let data = tsv(start, end, pass);
        c.query_drop("BEGIN").await.unwrap();
        let mut done = false;
        if try_direct {
            c.query_drop("SAVEPOINT s").await.unwrap();
            let (rows, warnings) = load(c, t, data.clone()).await;
            if rows == end - start && warnings == 0 {
                done = true;
            } else {
                c.query_drop("ROLLBACK TO SAVEPOINT s").await.unwrap();
                fallbacks += 1;
            }
        }
        if !done {
            c.query_drop(format!(
                "CREATE TEMPORARY TABLE tmp_stage AS SELECT {COLS} FROM {t} WHERE FALSE"
            ))
            .await
            .unwrap();
            let (rows, warnings) = load(c, "tmp_stage", data).await;
            assert_eq!((rows, warnings), (end - start, 0));
            c.query_drop(format!(
                "INSERT INTO {t} ({COLS}) SELECT {COLS} FROM tmp_stage{UPD}"
            ))
            .await
            .unwrap();
            c.query_drop("DROP TEMPORARY TABLE tmp_stage")
                .await
                .unwrap();
        }
        c.query_drop("COMMIT").await.unwrap();
    }
    fallbacks
}

fn cpu() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(300_000, |s| s.parse().unwrap());
    let only: Option<String> = std::env::args().nth(2);
    let d = harness::mariadb().await.create_database().await;
    let mut c = d.connect().await;
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}?ssl-mode=DISABLED", d.url()))
        .await
        .unwrap();
    let rate = |t: Instant| n as f64 / t.elapsed().as_secs_f64() / 1000.0;
    for round in 0..3 {
        for variant in [
            "sqlx-binary",
            "sqlx-text",
            "async-text",
            "load-direct",
            "load-tmp",
            "var-sqlx",
            "var-pow2",
        ] {
            if only.as_deref().is_some_and(|o| !variant.starts_with(o)) {
                continue;
            }
            let t = format!("o_{}_{round}", variant.replace('-', "_"));
            c.query_drop(create_table(Dialect::MariaDb, &t))
                .await
                .unwrap();
            let mut res = Vec::new();
            for pass in 0..2 {
                let s = Instant::now();
                let cpu0 = cpu();
                let server0 = server_cpu();
                let mut fb = 0;
                match variant {
                    "sqlx-binary" => sqlx_pass(&pool, &t, n, pass).await,
                    "sqlx-text" => sqlx_text_pass(&pool, &t, n, pass).await,
                    "async-text" => async_text_pass(&mut c, &t, n, pass).await,
                    "var-sqlx" => sqlx_var_pass(&pool, &t, n, pass, false).await,
                    "var-pow2" => sqlx_var_pass(&pool, &t, n, pass, true).await,
                    "load-direct" => fb = load_pass(&mut c, &t, n, pass, true).await,
                    _ => fb = load_pass(&mut c, &t, n, pass, pass == 0).await,
                }
                res.push(format!(
                    "{:6.1}k rows/s (cpu client {:.2} s server {:.2} s, fallbacks {fb})",
                    rate(s),
                    cpu() - cpu0,
                    server_cpu() - server0
                ));
            }
            let sum: (u64, String) = c
                .query_first(format!("SELECT COUNT(*), CAST(SUM(CRC32(CONCAT_WS('|', id, customer_id, amount, status, note, created_at))) AS CHAR) FROM {t}"))
                .await
                .unwrap()
                .unwrap();
            println!(
                "round {round} {variant:12} insert {} upsert {}  check {:?}",
                res[0], res[1], sum
            );
            c.query_drop(format!("DROP TABLE {t}")).await.unwrap();
        }
    }
}
