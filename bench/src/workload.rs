//! The standard benchmark workload: `bench.orders`, generated deterministically.
//!
//! Row `i` (0-based, `i < N`):
//!
//! | column | value | PostgreSQL | MariaDB |
//! |---|---|---|---|
//! | `id` | `i` | `BIGINT PRIMARY KEY` | `BIGINT PRIMARY KEY` |
//! | `customer_id` | `i % 1000` | `BIGINT` | `BIGINT` |
//! | `amount` | `(i % 10000) / 100`, exact (`"12.34"`) | `NUMERIC(12,2)` | `DECIMAL(12,2)` |
//! | `status` | [`STATUSES`]`[i % 4]` | `VARCHAR(16)` | `VARCHAR(16)` |
//! | `note` | `"note-" + i` | `VARCHAR(64)` | `VARCHAR(64)` |
//! | `created_at` | 2024-01-01 00:00:00 + `i` seconds | `TIMESTAMP` | `TIMESTAMP` (UTC session) |
//!
//! [`FULL_ROWS`] = 1,000,000 rows, [`QUICK_ROWS`] = 100,000 for the quick variant.
//!
//! [`Checksum`] summarises a table so that a pipeline benchmark can prove the target holds exactly
//! the source's rows: the row count, `sum(id)`, and the sum over rows of the first 32 bits of
//! `md5(id|customer_id|amount|status|note|created_at)`. It is order independent, computed in SQL
//! by [`checksum_sql`] for either dialect (identical results for identical data), and computed
//! from the generator by [`Checksum::expected`].

use std::fmt::Write as _;

use md5::{Digest, Md5};

/// Rows of the full workload.
pub const FULL_ROWS: u64 = 1_000_000;
/// Rows of the quick variant.
pub const QUICK_ROWS: u64 = 100_000;
/// The standard table (a schema in PostgreSQL, a database in MariaDB).
pub const TABLE: &str = "bench.orders";
/// `status` of row `i` is `STATUSES[i % 4]`.
pub const STATUSES: [&str; 4] = ["new", "paid", "shipped", "cancelled"];
/// `created_at` of row 0: 2024-01-01 00:00:00, as seconds since the Unix epoch (UTC).
pub const BASE_EPOCH_SECS: i64 = 1_704_067_200;
/// The column list, in order.
pub const COLUMNS: &str = "id, customer_id, amount, status, note, created_at";

/// SQL dialect of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MariaDb,
}

/// One row of `bench.orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    pub customer_id: i64,
    /// `amount` in hundredths: `amount = amount_cents / 100`.
    pub amount_cents: i64,
    pub status: &'static str,
    pub note: String,
    /// `created_at` as seconds since the Unix epoch (UTC).
    pub created_at_secs: i64,
}

impl Order {
    /// Row `i` of the workload.
    pub fn new(i: u64) -> Self {
        let i = i as i64;
        Order {
            id: i,
            customer_id: i % 1000,
            amount_cents: i % 10_000,
            status: STATUSES[(i % 4) as usize],
            note: format!("note-{i}"),
            created_at_secs: BASE_EPOCH_SECS + i,
        }
    }

    /// `amount` as an exact 2-decimal string, e.g. `"12.34"`.
    pub fn amount(&self) -> String {
        format!("{}.{:02}", self.amount_cents / 100, self.amount_cents % 100)
    }

    /// `created_at` as `YYYY-MM-DD HH:MM:SS` (UTC).
    pub fn created_at(&self) -> String {
        let mut s = String::with_capacity(19);
        write_timestamp(&mut s, self.created_at_secs);
        s
    }

    /// The row as one line of tab-separated text (`COPY … FROM STDIN` text format, and
    /// `LOAD DATA … FIELDS TERMINATED BY '\t'`); no value needs escaping.
    pub fn write_tsv(&self, out: &mut String) {
        self.write_delimited(out, '\t');
    }

    /// The row as one CSV line (no value needs quoting).
    pub fn write_csv(&self, out: &mut String) {
        self.write_delimited(out, ',');
    }

    fn write_delimited(&self, out: &mut String, d: char) {
        let _ = write!(
            out,
            "{}{d}{}{d}{}.{:02}{d}{}{d}{}{d}",
            self.id,
            self.customer_id,
            self.amount_cents / 100,
            self.amount_cents % 100,
            self.status,
            self.note
        );
        write_timestamp(out, self.created_at_secs);
        out.push('\n');
    }

    /// The canonical text hashed by the checksum: `id|customer_id|amount|status|note|created_at`.
    pub fn canonical(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}",
            self.id,
            self.customer_id,
            self.amount(),
            self.status,
            self.note,
            self.created_at()
        )
    }
}

/// Rows `0..n` of the workload.
pub fn rows(n: u64) -> impl Iterator<Item = Order> {
    (0..n).map(Order::new)
}

/// Rows `0..n` as TSV text in chunks of about `chunk_bytes` (for COPY / LOAD DATA streams).
pub fn tsv_chunks(n: u64, chunk_bytes: usize) -> impl Iterator<Item = String> {
    let mut it = rows(n).peekable();
    std::iter::from_fn(move || {
        it.peek()?;
        let mut s = String::with_capacity(chunk_bytes + 128);
        for row in it.by_ref() {
            row.write_tsv(&mut s);
            if s.len() >= chunk_bytes {
                break;
            }
        }
        Some(s)
    })
}

/// One multi-row `INSERT` of workload rows `from..to` into MariaDB's `orders`
/// (a transaction of its own under autocommit), as the streaming benchmarks write.
pub fn mariadb_insert_sql(from: u64, to: u64) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(((to - from) * 90) as usize);
    sql.push_str("INSERT INTO orders (id, customer_id, amount, status, note, created_at) VALUES ");
    for i in from..to {
        let o = Order::new(i);
        if i > from {
            sql.push(',');
        }
        let _ = write!(
            sql,
            "({},{},{},'{}','{}','{}')",
            o.id,
            o.customer_id,
            o.amount(),
            o.status,
            o.note,
            o.created_at()
        );
    }
    sql
}

/// `CREATE TABLE` for the workload under the given (qualified or plain) table name.
pub fn create_table(dialect: Dialect, table: &str) -> String {
    match dialect {
        Dialect::Postgres => format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, customer_id BIGINT, \
             amount NUMERIC(12,2), status VARCHAR(16), note VARCHAR(64), created_at TIMESTAMP)"
        ),
        // NULL DEFAULT NULL: a plain TIMESTAMP must not get MariaDB's implicit
        // DEFAULT CURRENT_TIMESTAMP ON UPDATE when explicit_defaults_for_timestamp is off.
        Dialect::MariaDb => format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, customer_id BIGINT, \
             amount DECIMAL(12,2), status VARCHAR(16), note VARCHAR(64), \
             created_at TIMESTAMP NULL DEFAULT NULL) ENGINE=InnoDB"
        ),
    }
}

/// The statements that create the standard `bench.orders` (schema/database included).
pub fn ddl(dialect: Dialect) -> Vec<String> {
    let schema = match dialect {
        Dialect::Postgres => "CREATE SCHEMA IF NOT EXISTS bench",
        Dialect::MariaDb => "CREATE DATABASE IF NOT EXISTS bench",
    };
    vec![
        schema.to_string(),
        format!("DROP TABLE IF EXISTS {TABLE}"),
        create_table(dialect, TABLE),
    ]
}

/// The bulk-load statement fed by [`tsv_chunks`]: `COPY … FROM STDIN` (text) or
/// `LOAD DATA LOCAL INFILE` (the file name is only passed to the client's infile handler).
pub fn load_sql(dialect: Dialect, table: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("COPY {table} ({COLUMNS}) FROM STDIN"),
        Dialect::MariaDb => format!(
            "LOAD DATA LOCAL INFILE 'orders.tsv' INTO TABLE {table} \
             FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' ({COLUMNS})"
        ),
    }
}

/// Order-independent summary of a table's contents; see the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    pub rows: u64,
    pub id_sum: i128,
    /// Sum over rows of the first 32 bits (8 hex digits) of md5 of [`Order::canonical`].
    pub hash_sum: u128,
}

impl Checksum {
    /// Add one row.
    pub fn add(&mut self, row: &Order) {
        self.rows += 1;
        self.id_sum += i128::from(row.id);
        let digest = Md5::digest(row.canonical().as_bytes());
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        self.hash_sum += u128::from(first);
    }

    /// The checksum of rows `0..n` of the workload.
    pub fn expected(n: u64) -> Self {
        let mut c = Checksum::default();
        rows(n).for_each(|r| c.add(&r));
        c
    }

    /// Parse the three text columns returned by [`checksum_sql`].
    pub fn from_sql_row(rows: &str, id_sum: &str, hash_sum: &str) -> Result<Self, String> {
        let p = |what: &str, s: &str| -> Result<u128, String> {
            s.trim()
                .parse::<u128>()
                .map_err(|e| format!("checksum {what} {s:?}: {e}"))
        };
        Ok(Checksum {
            rows: p("rows", rows)? as u64,
            id_sum: id_sum
                .trim()
                .parse()
                .map_err(|e| format!("checksum id_sum {id_sum:?}: {e}"))?,
            hash_sum: p("hash_sum", hash_sum)?,
        })
    }
}

/// A query returning one row of three text columns (rows, id_sum, hash_sum) that
/// [`Checksum::from_sql_row`] parses. Identical data gives identical results in both dialects.
pub fn checksum_sql(dialect: Dialect, table: &str) -> String {
    match dialect {
        Dialect::Postgres => format!(
            "SELECT count(*)::text, coalesce(sum(id), 0)::text, \
             coalesce(sum(('x' || substr(md5(concat_ws('|', id::text, customer_id::text, \
             amount::text, status, note, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'))), 1, 8))\
             ::bit(32)::bigint), 0)::text FROM {table}"
        ),
        Dialect::MariaDb => format!(
            "SELECT CAST(COUNT(*) AS CHAR), CAST(COALESCE(SUM(id), 0) AS CHAR), \
             CAST(COALESCE(SUM(CAST(CONV(SUBSTR(MD5(CONCAT_WS('|', id, customer_id, amount, \
             status, note, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'))), 1, 8), 16, 10) \
             AS UNSIGNED)), 0) AS CHAR) FROM {table}"
        ),
    }
}

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds (UTC); proleptic Gregorian (H. Hinnant's algorithm).
fn write_timestamp(out: &mut String, secs: i64) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_zero() {
        let r = Order::new(0);
        assert_eq!(
            r,
            Order {
                id: 0,
                customer_id: 0,
                amount_cents: 0,
                status: "new",
                note: "note-0".into(),
                created_at_secs: BASE_EPOCH_SECS,
            }
        );
        assert_eq!(r.amount(), "0.00");
        assert_eq!(r.created_at(), "2024-01-01 00:00:00");
        let mut s = String::new();
        r.write_tsv(&mut s);
        assert_eq!(s, "0\t0\t0.00\tnew\tnote-0\t2024-01-01 00:00:00\n");
    }

    #[test]
    fn row_12345() {
        let r = Order::new(12_345);
        assert_eq!(r.id, 12_345);
        assert_eq!(r.customer_id, 345);
        assert_eq!(r.amount(), "23.45");
        assert_eq!(r.status, "paid");
        assert_eq!(r.note, "note-12345");
        // 12345 s = 3 h 25 min 45 s
        assert_eq!(r.created_at(), "2024-01-01 03:25:45");
        let mut s = String::new();
        r.write_csv(&mut s);
        assert_eq!(s, "12345,345,23.45,paid,note-12345,2024-01-01 03:25:45\n");
        assert_eq!(
            r.canonical(),
            "12345|345|23.45|paid|note-12345|2024-01-01 03:25:45"
        );
    }

    #[test]
    fn amounts_and_dates_at_the_edges() {
        assert_eq!(Order::new(9_999).amount(), "99.99");
        assert_eq!(Order::new(10_000).amount(), "0.00");
        assert_eq!(Order::new(10_005).amount(), "0.05");
        assert_eq!(Order::new(999_999).created_at(), "2024-01-12 13:46:39");
        // 2024 is a leap year: day 59 is Feb 29.
        assert_eq!(Order::new(59 * 86_400).created_at(), "2024-02-29 00:00:00");
        assert_eq!(Order::new(366 * 86_400).created_at(), "2025-01-01 00:00:00");
    }

    #[test]
    fn deterministic() {
        let a: Vec<Order> = rows(1000).collect();
        let b: Vec<Order> = rows(1000).collect();
        assert_eq!(a, b);
        assert_eq!(Checksum::expected(1000), Checksum::expected(1000));
        assert_ne!(Checksum::expected(1000), Checksum::expected(999));
    }

    #[test]
    fn chunks_hold_every_row_once() {
        let text: String = tsv_chunks(10_001, 4096).collect();
        let mut expect = String::new();
        rows(10_001).for_each(|r| r.write_tsv(&mut expect));
        assert_eq!(text, expect);
        assert!(tsv_chunks(10_001, 4096).all(|c| c.ends_with('\n')));
        assert_eq!(tsv_chunks(0, 4096).count(), 0);
    }

    #[test]
    fn checksum_sums() {
        let c = Checksum::expected(4);
        assert_eq!(c.rows, 4);
        assert_eq!(c.id_sum, 6);
        let parsed = Checksum::from_sql_row("4", "6", &c.hash_sum.to_string()).unwrap();
        assert_eq!(parsed, c);
    }
}
