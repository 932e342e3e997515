//! `hstream-io-bench`: benchmark driver. See docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p hstream-io-bench -- load --target postgres --quick
//! cargo run --release -p hstream-io-bench -- load --target mariadb --rows 1000000
//! cargo run --release -p hstream-io-bench -- load --target postgres --url postgres://u:p@host:5432/db
//! ```

use clap::{Parser, Subcommand, ValueEnum};
use hstream_io_bench::load::{load_mariadb, load_postgres};
use hstream_io_bench::workload::{FULL_ROWS, QUICK_ROWS};
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    Postgres,
    Mariadb,
}

#[tokio::main]
async fn main() {
    let Cmd::Load {
        target,
        rows,
        quick,
        url,
        repeat,
    } = Cli::parse().command;
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

fn fail(msg: &str) -> ! {
    eprintln!("hstream-io-bench: {msg}");
    std::process::exit(1)
}
