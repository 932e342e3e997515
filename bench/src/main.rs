//! `hstream-io-bench`: benchmark driver. See docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p hstream-io-bench -- load --target postgres --quick
//! cargo run --release -p hstream-io-bench -- load --target mariadb --rows 1000000
//! cargo run --release -p hstream-io-bench -- load --target postgres --url postgres://u:p@host:5432/db
//! cargo run --release -p hstream-io-bench -- sink --target postgres --rows 1000000
//! ```

use clap::{Parser, Subcommand, ValueEnum};
use hstream_io_bench::load::{load_mariadb, load_postgres};
use hstream_io_bench::workload::{Dialect, FULL_ROWS, QUICK_ROWS};
use hstream_io_tests::harness;

#[derive(Parser)]
#[command(name = "hstream-io-bench", about = "hstream-io benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The physical limit: bulk-load the standard workload (bench.orders) with the target's own
    /// fastest path, print rows/s, verify the checksum.
    Load {
        #[arg(long, value_enum)]
        target: Target,
        /// Rows to load (default: the full workload, 1,000,000).
        #[arg(long)]
        rows: Option<u64>,
        /// The quick variant: 100,000 rows (unless --rows is given).
        #[arg(long)]
        quick: bool,
        /// Load into this server instead of a private one started for the run
        /// (`postgres://…` or `mysql://…`). bench.orders there is dropped and recreated.
        #[arg(long)]
        url: Option<String>,
        /// Repeat the load this many times (a fresh table each time).
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
    /// The SQL sinks: the workload appended to a stream, applied by the real
    /// `hstream-io sink-… run` process into an empty table (inserts), then the same
    /// keys with changed values (upserts); the physical limit measured in the same run.
    Sink {
        #[arg(long, value_enum)]
        target: Target,
        /// Rows (default: the full workload, 1,000,000).
        #[arg(long)]
        rows: Option<u64>,
        /// Folder for the stream service's data and the task logs (default: a temporary one).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
    },
    /// The whole pipeline: MariaDB -> source-mysql -> stream -> sink-postgresql -> PostgreSQL,
    /// through `hstream-io serve` and SQL; live changes; row count and checksum compared.
    Pipeline {
        /// Rows in MariaDB before the connectors are created.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Folder for the service's data and the task logs (default: a temporary one).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
        /// The issue's benchmark instead: start from empty tables and WRITE the rows to
        /// MariaDB while the pipeline runs; report rows/s, lag at the end and peak RSS.
        #[arg(long)]
        live: bool,
        /// With --live: rows per MariaDB transaction.
        #[arg(long, default_value_t = 1000)]
        txn_rows: u64,
    },
    /// source-mysql: snapshot, streaming while inserting (transactions of 1000 rows) and
    /// backlog catch-up of the standard workload into a stream on `hstream-io serve`.
    SourceMysql {
        /// Rows per phase (default: the full workload, 1,000,000).
        #[arg(long, default_value_t = FULL_ROWS)]
        rows: u64,
        /// Folder for the service's data and the task logs (default: a temporary one).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
    },
    /// source-postgresql on the standard workload: snapshot vs `COPY TO STDOUT`, streaming of
    /// 1000-row transactions (rate, lag), backlog vs `pg_recvlogical`, start-up, peak RSS.
    SourcePostgresql {
        /// Rows per phase (default: the full workload, 1,000,000).
        #[arg(long)]
        rows: Option<u64>,
        /// The quick variant: 100,000 rows (unless --rows is given).
        #[arg(long)]
        quick: bool,
        /// Folder for the service's data and the task logs (default: a temporary one).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    Postgres,
    Mariadb,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (target, rows, quick, url, repeat) = match Cli::parse().command {
        Cmd::Load {
            target,
            rows,
            quick,
            url,
            repeat,
        } => (target, rows, quick, url, repeat),
        Cmd::Pipeline {
            rows,
            work_dir,
            live: false,
            ..
        } => return pipeline(rows, work_dir).await,
        Cmd::Pipeline {
            rows,
            work_dir,
            live: true,
            txn_rows,
        } => return pipeline_live(rows, txn_rows.max(1), work_dir).await,
        Cmd::SourceMysql { rows, work_dir } => return source_mysql(rows, work_dir).await,
        Cmd::SourcePostgresql {
            rows,
            quick,
            work_dir,
        } => {
            let rows = rows.unwrap_or(if quick { QUICK_ROWS } else { FULL_ROWS });
            return source_postgresql(rows, work_dir).await;
        }
        Cmd::Sink {
            target,
            rows,
            work_dir,
        } => return sink(target, rows.unwrap_or(FULL_ROWS), work_dir).await,
    };
    let rows = rows.unwrap_or(if quick { QUICK_ROWS } else { FULL_ROWS });
    // Private servers stop when this process exits.
    harness::own_servers();
    let mut failed = false;
    match target {
        Target::Postgres => {
            let client = match url {
                Some(url) => {
                    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .unwrap_or_else(|e| fail(&format!("connect: {e}")));
                    tokio::spawn(conn);
                    client
                }
                None => {
                    let db = harness::postgres().await.create_database().await;
                    eprintln!("private PostgreSQL on 127.0.0.1:{}", db.port);
                    db.connect().await
                }
            };
            for _ in 0..repeat {
                let r = load_postgres(&client, rows)
                    .await
                    .unwrap_or_else(|e| fail(&e));
                println!("{r}");
                failed |= !r.verified;
            }
        }
        Target::Mariadb => {
            let opts: mysql_async::Opts = match url {
                Some(url) => mysql_async::Opts::from_url(&url)
                    .unwrap_or_else(|e| fail(&format!("--url: {e}"))),
                None => {
                    let db = harness::mariadb().await.create_database().await;
                    eprintln!("private MariaDB on 127.0.0.1:{}", db.port);
                    db.opts().into()
                }
            };
            let mut conn = mysql_async::Conn::new(opts)
                .await
                .unwrap_or_else(|e| fail(&format!("connect: {e}")));
            for _ in 0..repeat {
                let r = load_mariadb(&mut conn, rows)
                    .await
                    .unwrap_or_else(|e| fail(&e));
                println!("{r}");
                failed |= !r.verified;
            }
            let _ = conn.disconnect().await;
        }
    }
    if failed {
        fail("checksum mismatch");
    }
}

async fn pipeline(rows: u64, work_dir: Option<std::path::PathBuf>) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temporary folder: {e}")));
    let work = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    match hstream_io_bench::pipeline::run(rows, &work).await {
        Ok(r) => {
            println!();
            println!("              rows      id sum          checksum");
            println!(
                "  mariadb     {:<9} {:<15} {}",
                r.mariadb.rows, r.mariadb.id_sum, r.mariadb.hash_sum
            );
            println!(
                "  postgresql  {:<9} {:<15} {}",
                r.postgres.rows, r.postgres.id_sum, r.postgres.hash_sum
            );
            println!();
            println!(
                "initial sync of {} rows: {:.1} s ({:.0} rows/s); live changes caught up in {:.2} s",
                r.rows,
                r.initial_sync.as_secs_f64(),
                r.rows as f64 / r.initial_sync.as_secs_f64(),
                r.catch_up.as_secs_f64()
            );
            if r.mariadb == r.postgres {
                println!("OK: PostgreSQL matches MariaDB");
            } else {
                fail("PostgreSQL does not match MariaDB");
            }
        }
        Err(e) => fail(&e),
    }
}

async fn pipeline_live(rows: u64, txn_rows: u64, work_dir: Option<std::path::PathBuf>) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temporary folder: {e}")));
    let work = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let r = hstream_io_bench::pipeline::run_live(rows, txn_rows, &work)
        .await
        .unwrap_or_else(|e| fail(&e));
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!();
    println!("              rows      id sum          checksum");
    for (side, c) in [
        ("expected", &r.expected),
        ("mariadb", &r.mariadb),
        ("postgresql", &r.postgres),
    ] {
        println!("  {side:<11} {:<9} {:<15} {}", c.rows, c.id_sum, c.hash_sum);
    }
    println!();
    let rate = r.rows as f64 / r.total.as_secs_f64();
    println!(
        "{} rows written in transactions of {}: MariaDB writer alone {:.1} s ({:.0} rows/s, the limit of this run)",
        r.rows,
        r.txn_rows,
        r.write.as_secs_f64(),
        r.rows as f64 / r.write.as_secs_f64()
    );
    println!(
        "pipeline: PostgreSQL matched {:.1} s after the first write = {:.0} rows/s ({:.0}% of the writer); {:.2} s behind the last commit",
        r.total.as_secs_f64(),
        rate,
        100.0 * r.total.as_secs_f64().recip() * r.write.as_secs_f64(),
        r.lag_at_end.as_secs_f64()
    );
    println!(
        "peak RSS (VmHWM): hstream-io serve (stream service + worker) {:.1} MB",
        mb(r.serve_hwm)
    );
    for (name, hwm) in &r.task_hwm {
        println!("                  task {name} {:.1} MB", mb(*hwm));
    }
    if r.mariadb == r.postgres && r.postgres == r.expected {
        println!("OK: PostgreSQL matches MariaDB and the workload");
    } else {
        fail("PostgreSQL does not match MariaDB");
    }
}

async fn source_mysql(rows: u64, work_dir: Option<std::path::PathBuf>) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temporary folder: {e}")));
    let work = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let r = hstream_io_bench::source_mysql::run(rows, &work)
        .await
        .unwrap_or_else(|e| fail(&e));
    println!();
    println!("source-mysql, {} rows per phase", r.rows);
    println!(
        "  snapshot   {:>9.0} rows/s   (client SELECT of the table: {:.0} rows/s)",
        r.snapshot_rate, r.select_rate
    );
    println!(
        "  streaming  {:>9.0} rows/s   (MariaDB inserts, 1000-row transactions: {:.0} rows/s); lag at the end {:.3} s",
        r.stream_rate,
        r.insert_rate,
        r.lag.as_secs_f64()
    );
    println!("  backlog    {:>9.0} rows/s", r.backlog_rate);
    println!(
        "  run -> streaming (restart): {}",
        r.start_to_streaming
            .map_or("unknown".to_string(), |d| format!(
                "{:.0} ms",
                d.as_secs_f64() * 1000.0
            ))
    );
    println!(
        "  peak RSS (VmHWM): {:.1} MB snapshot+streaming, {:.1} MB backlog",
        r.hwm_first_kib as f64 / 1024.0,
        r.hwm_backlog_kib as f64 / 1024.0
    );
}

async fn source_postgresql(rows: u64, work_dir: Option<std::path::PathBuf>) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temporary folder: {e}")));
    let work = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let r = hstream_io_bench::source_pg::run(rows, &work)
        .await
        .unwrap_or_else(|e| fail(&e));
    let pct = |a: f64, b: f64| 100.0 * a / b;
    println!();
    println!("source-postgresql, {} rows per phase", r.rows);
    println!(
        "  snapshot        {:>9.0} rows/s   COPY TO STDOUT {:>9.0} rows/s ({:.0} %)   goal >= 400000",
        r.snapshot_rate,
        r.copy_out_rate,
        pct(r.snapshot_rate, r.copy_out_rate)
    );
    println!(
        "  streaming       {:>9.0} rows/s   inserts        {:>9.0} rows/s           lag at the end {:.3} s (goal <= 1)",
        r.stream_rate,
        r.insert_rate,
        r.lag.as_secs_f64()
    );
    println!(
        "  backlog         {:>9.0} rows/s   pg_recvlogical {:>9.0} rows/s ({:.0} %)   goal >= 90 %",
        r.backlog_rate,
        r.recvlogical_rate,
        pct(r.backlog_rate, r.recvlogical_rate)
    );
    println!(
        "  backlog, same WAL to decode ({:.0} MB before the backlog): pg_recvlogical on a copy of the task's slot {:.0} rows/s; task {:.0} %",
        r.wal_before_backlog_mb,
        r.recvlogical_same_slot_rate,
        pct(r.backlog_rate, r.recvlogical_same_slot_rate)
    );
    println!(
        "  limit: a live pg_recvlogical during the backlog load (inserts {:.0} rows/s): lag at the end {:.3} s",
        r.follow_insert_rate,
        r.recvlogical_lag.as_secs_f64()
    );
    println!(
        "  start (run -> streaming) {:.3} s (goal <= 0.1); peak RSS {:.1} MB (snapshot+streaming), {:.1} MB (backlog) (goal <= 30)",
        r.start.as_secs_f64(),
        r.rss_first_kib as f64 / 1024.0,
        r.rss_backlog_kib as f64 / 1024.0
    );
}

async fn sink(target: Target, rows: u64, work_dir: Option<std::path::PathBuf>) {
    harness::own_servers();
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temporary folder: {e}")));
    let work = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let dialect = match target {
        Target::Postgres => Dialect::Postgres,
        Target::Mariadb => Dialect::MariaDb,
    };
    match hstream_io_bench::sink::run(dialect, rows, &work).await {
        Ok(r) => {
            println!("{r}");
            if !(r.insert.verified && r.upsert.verified) {
                fail("checksum mismatch");
            }
        }
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("hstream-io-bench: {msg}");
    std::process::exit(1)
}
