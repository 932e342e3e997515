//! What makes a chunked snapshot resumable *and* exact: the record of which
//! snapshot read which key range, and the rule that decides, for a streamed
//! change, whether that snapshot already contained it.
//!
//! The slot's exported snapshot dies with the session that created the slot,
//! so after a crash the remaining chunks are read in a new repeatable-read
//! snapshot. Streaming still starts at the slot's consistent point, so some
//! streamed transactions (committed between the consistent point and the new
//! snapshot) are already in the rows the new snapshot read. Each *run* of the
//! snapshot therefore records, before it sends anything:
//!
//! - its snapshot as `pg_current_snapshot()` shows it (`xmin:xmax:xip,…`,
//!   64-bit transaction ids), and `pg_current_wal_insert_lsn()` read inside
//!   it: every transaction the snapshot sees committed before that LSN;
//! - where it starts (the committed progress, see [`Point`]) and, before each
//!   chunk is sent, how far it may have sent rows (`reached`).
//!
//! A row of key `k` may have been sent by several runs (a crashed run sends
//! rows that were never committed as progress; the next run reads them
//! again). Let `E(k)` be the *earliest* run whose range covers `k`. Every
//! later run's snapshot sees at least what `E(k)`'s saw, so the stream holds,
//! for `k`, rows at least as new as `E(k)`'s snapshot. A streamed transaction
//! is skipped for `k` iff `E(k)`'s snapshot sees it (its xid is below `xmin`,
//! or below `xmax` and not in `xip`) and it committed before that run's WAL
//! LSN. The run of the exported snapshot sees nothing that is streamed, so
//! keys it read are never filtered.
//!
//! Result: when no crash happened there is no filtering and the seam is
//! exact. After crashes every key's final state in the stream equals the
//! table: a key read only by one run is exact (each change exactly once);
//! for keys in a crashed run's window (read by it, and again by the next
//! run) changes between the two snapshots can be replayed after the newer
//! row (a short step back in time, corrected by the replay itself), never
//! lost.
//!
//! Key order must be the primary key's `ORDER BY`: integers, `uuid`, `bytea`
//! and text in the `C`/`POSIX` collation are compared here; every other type
//! (and collated text) is compared by PostgreSQL itself.

use std::cmp::Ordering;
use std::collections::HashSet;

use hstream_io_runtime::{Error, ErrorKind, Result};
use pgwire_replication::Lsn;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::catalog::KeyColumn;
use crate::config::quote_literal;
use crate::error;

/// KV key of the snapshot's state ([`SnapshotState`], JSON).
pub const SNAPSHOT_STATE_KEY: &str = "postgresql_snapshot";

/// A place in the order in which the snapshot reads rows: table by table (in
/// [`SnapshotState::tables`] order), each by primary key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Index of the table.
    pub table: usize,
    /// The last key read of that table (text of each key column), or `None`:
    /// before its first row.
    pub after: Option<Vec<String>>,
}

impl Point {
    /// Before the first row of the first table.
    pub const fn start() -> Self {
        Self {
            table: 0,
            after: None,
        }
    }
}

/// One run of the snapshot: the rows after `start` up to `reached`, read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Whether this run read the slot's exported snapshot (nothing streamed is in it).
    pub exported: bool,
    /// `pg_current_snapshot()` inside the run's transaction (`xmin:xmax:xip,…`).
    pub snapshot: String,
    /// `pg_current_wal_insert_lsn()` inside the run's transaction.
    pub wal_lsn: String,
    /// The run read the rows after this point (the committed progress when it began).
    pub start: Point,
    /// The run may have sent rows up to and including this point.
    pub reached: Point,
}

/// The snapshot's state in the KV under [`SNAPSHOT_STATE_KEY`]. Written
/// before any row of a run or chunk is sent; kept after the snapshot so the
/// stream can filter (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotState {
    /// The slot the snapshot belongs to.
    pub slot: String,
    /// The slot's consistent point (where streaming starts).
    pub consistent_point: String,
    /// The tables, in reading order (`schema.table`).
    pub tables: Vec<String>,
    /// The runs so far, oldest first.
    pub runs: Vec<Run>,
}

impl SnapshotState {
    /// The consistent point as an LSN.
    pub fn consistent_lsn(&self) -> Lsn {
        Lsn::parse(&self.consistent_point).unwrap_or(Lsn(0))
    }
}

/// A run's snapshot, ready to answer "does it see this transaction?".
#[derive(Debug, Clone)]
pub struct Visibility {
    xmin: u64,
    xmax: u64,
    xip: HashSet<u64>,
}

impl Visibility {
    /// Parses `pg_current_snapshot()` text: `xmin:xmax:xip1,xip2,…`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        let xmin = parts.next()?.trim().parse().ok()?;
        let xmax = parts.next()?.trim().parse().ok()?;
        let xip = match parts.next().map(str::trim) {
            None | Some("") => HashSet::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.trim().parse::<u64>().ok())
                .collect::<Option<_>>()?,
        };
        Some(Self { xmin, xmax, xip })
    }

    /// Whether the snapshot sees transaction `xid` (the 32-bit id of a
    /// pgoutput Begin) as committed. The epoch is the one that puts `xid`
    /// nearest to `xmax`: a streamed transaction that matters here committed
    /// before the run's WAL LSN, so it is never 2^31 transactions away.
    pub fn sees(&self, xid: u32) -> bool {
        let distance = i64::from(xid.wrapping_sub(self.xmax as u32) as i32);
        let Some(full) = self.xmax.checked_add_signed(distance) else {
            return false;
        };
        full < self.xmin || (full < self.xmax && !self.xip.contains(&full))
    }
}

/// How one key column's values are ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnOrder {
    /// Integers: by value.
    Int,
    /// `uuid`, `bytea` (hex text), `C`-collated text: by the bytes of the text.
    Bytes,
    /// Anything else: PostgreSQL compares `CAST(<text> AS <type>) [COLLATE <collation>]`.
    Database(String),
}

impl ColumnOrder {
    /// The order of a key column.
    pub fn of(column: &KeyColumn) -> Self {
        match column.type_oid {
            20 | 21 | 23 | 26 => Self::Int,
            17 | 2950 => Self::Bytes,
            25 | 1043 | 1042 | 19
                if matches!(
                    column.collation.as_deref(),
                    Some("pg_catalog.\"C\"" | "pg_catalog.\"POSIX\"" | "pg_catalog.ucs_basic")
                ) =>
            {
                Self::Bytes
            }
            _ => Self::Database(match &column.collation {
                Some(collation) => format!("{} COLLATE {collation}", column.type_sql),
                None => column.type_sql.clone(),
            }),
        }
    }
}

/// Compares two keys of one table in its primary key's `ORDER BY`.
pub async fn compare_keys(
    order: &[ColumnOrder],
    a: &[String],
    b: &[String],
    sql: &Client,
) -> Result<Ordering> {
    for ((column, x), y) in order.iter().zip(a).zip(b) {
        let ordering = match column {
            ColumnOrder::Int => match (x.parse::<i128>(), y.parse::<i128>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.as_bytes().cmp(y.as_bytes()),
            },
            ColumnOrder::Bytes => x.as_bytes().cmp(y.as_bytes()),
            ColumnOrder::Database(cast) => database_compare(cast, x, y, sql).await?,
        };
        if ordering != Ordering::Equal {
            return Ok(ordering);
        }
    }
    Ok(Ordering::Equal)
}

async fn database_compare(cast: &str, x: &str, y: &str, sql: &Client) -> Result<Ordering> {
    let (type_sql, collate) = match cast.split_once(" COLLATE ") {
        Some((t, c)) => (t, format!(" COLLATE {c}")),
        None => (cast, String::new()),
    };
    let value = |v: &str| format!("(CAST({} AS {type_sql}){collate})", quote_literal(v));
    let query = format!(
        "SELECT CASE WHEN {a} < {b} THEN -1 WHEN {a} > {b} THEN 1 ELSE 0 END",
        a = value(x),
        b = value(y)
    );
    let row = sql
        .query_one(query.as_str(), &[])
        .await
        .map_err(|e| error::sql("cannot compare two primary keys", e))?;
    Ok(row.get::<_, i32>(0).cmp(&0))
}

/// The stream's filter for a snapshot that was resumed after a crash.
#[derive(Debug, Clone)]
pub struct ResumeFilter {
    tables: Vec<String>,
    runs: Vec<(Run, Visibility, Lsn)>,
}

/// The runs whose snapshot already holds the transaction being streamed.
#[derive(Debug, Clone, Default)]
pub struct Seen(Vec<usize>);

impl Seen {
    /// Whether no run holds it (nothing to filter).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ResumeFilter {
    /// The filter of `state`, or `None` when nothing can need filtering
    /// (only the exported snapshot was read).
    pub fn new(state: &SnapshotState) -> Result<Option<Self>> {
        let mut runs = Vec::new();
        for run in &state.runs {
            let visibility = Visibility::parse(&run.snapshot).ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("stored snapshot `{}` is not xmin:xmax:xip", run.snapshot),
                )
            })?;
            let lsn = Lsn::parse(&run.wal_lsn).map_err(|_| {
                Error::new(
                    ErrorKind::Internal,
                    format!("stored LSN `{}` is not an LSN", run.wal_lsn),
                )
            })?;
            runs.push((run.clone(), visibility, lsn));
        }
        if runs.iter().all(|(run, _, _)| run.exported) {
            return Ok(None);
        }
        Ok(Some(Self {
            tables: state.tables.clone(),
            runs,
        }))
    }

    /// The newest WAL LSN of a run: transactions committed at or after it are never filtered.
    pub fn horizon(&self) -> Lsn {
        self.runs.iter().map(|r| r.2).max().unwrap_or(Lsn(0))
    }

    /// The runs whose snapshot sees the transaction `xid` committed at `commit_lsn`.
    pub fn seen_by(&self, xid: u32, commit_lsn: Lsn) -> Seen {
        Seen(
            self.runs
                .iter()
                .enumerate()
                .filter(|(_, (run, visibility, lsn))| {
                    !run.exported && commit_lsn < *lsn && visibility.sees(xid)
                })
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// Whether the change of `key` in `table` is already in the rows the
    /// earliest run covering it read (so it must not be sent again).
    pub async fn skip(
        &self,
        seen: &Seen,
        table: &str,
        order: &[ColumnOrder],
        key: &[String],
        sql: &Client,
    ) -> Result<bool> {
        if seen.is_empty() {
            return Ok(false);
        }
        let Some(t) = self.tables.iter().position(|name| name == table) else {
            return Ok(false);
        };
        for (i, (run, _, _)) in self.runs.iter().enumerate() {
            if is_after(t, key, &run.start, order, sql).await?
                && !is_after(t, key, &run.reached, order, sql).await?
            {
                return Ok(seen.0.contains(&i));
            }
        }
        Ok(false)
    }
}

/// Whether key `key` of table `table` comes after `point`.
pub async fn is_after(
    table: usize,
    key: &[String],
    point: &Point,
    order: &[ColumnOrder],
    sql: &Client,
) -> Result<bool> {
    Ok(match table.cmp(&point.table) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => match &point.after {
            None => true,
            Some(after) => compare_keys(order, key, after, sql).await? == Ordering::Greater,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_follows_xmin_xmax_xip() {
        let v = Visibility::parse("100:110:102,105").unwrap();
        assert!(v.sees(99), "below xmin: committed");
        assert!(v.sees(101));
        assert!(!v.sees(102), "in progress");
        assert!(!v.sees(105));
        assert!(!v.sees(110), "from xmax on: not yet started");
        assert!(!v.sees(500));
        assert!(Visibility::parse("1:2:").unwrap().sees(1));
        assert!(Visibility::parse("garbage").is_none());
    }

    #[test]
    fn visibility_handles_epochs() {
        // xmax just after a wraparound into epoch 1: 2^32 + 5.
        let base = 1u64 << 32;
        let v = Visibility::parse(&format!("{}:{}:", base - 10, base + 5)).unwrap();
        assert!(v.sees(u32::MAX - 20), "previous epoch, below xmin");
        assert!(
            v.sees(u32::MAX - 2),
            "previous epoch, between xmin and xmax"
        );
        assert!(v.sees(3), "this epoch, below xmax");
        assert!(!v.sees(5));
        assert!(!v.sees(1000), "this epoch, after xmax");
    }

    fn point(table: usize, after: Option<i64>) -> Point {
        Point {
            table,
            after: after.map(|a| vec![a.to_string()]),
        }
    }

    fn run(exported: bool, xmax: u64, start: Point, reached: Point) -> Run {
        Run {
            exported,
            snapshot: format!("{xmax}:{xmax}:"),
            wal_lsn: "0/1000".into(),
            start,
            reached,
        }
    }

    #[test]
    fn the_earliest_run_covering_a_key_decides() {
        // Run 0 (exported) read table 0 up to key 10 (crashed, committed 5);
        // run 1 sees xids < 200 and read from 5 up to table 1 key 3; run 2
        // sees xids < 300 and read the rest.
        let state = SnapshotState {
            slot: "s".into(),
            consistent_point: "0/10".into(),
            tables: vec!["public.a".into(), "public.b".into()],
            runs: vec![
                run(true, 100, Point::start(), point(0, Some(10))),
                run(false, 200, point(0, Some(5)), point(1, Some(3))),
                run(false, 300, point(1, Some(2)), point(2, None)),
            ],
        };
        let filter = ResumeFilter::new(&state).unwrap().unwrap();
        assert_eq!(filter.horizon(), Lsn(0x1000));
        assert!(
            filter.seen_by(150, Lsn(0x2000)).is_empty(),
            "after every run's WAL LSN"
        );
        assert_eq!(filter.seen_by(150, Lsn(0x10)).0, vec![1, 2]);
        assert_eq!(filter.seen_by(250, Lsn(0x10)).0, vec![2]);
        assert!(
            filter.seen_by(50, Lsn(0x10)).0 == vec![1, 2],
            "exported run never filters"
        );
    }

    #[test]
    fn key_orders() {
        let col = |type_oid, collation: Option<&str>| KeyColumn {
            name: "k".into(),
            type_oid,
            type_sql: "text".into(),
            collation: collation.map(str::to_string),
        };
        assert_eq!(ColumnOrder::of(&col(20, None)), ColumnOrder::Int);
        assert_eq!(ColumnOrder::of(&col(2950, None)), ColumnOrder::Bytes);
        assert_eq!(
            ColumnOrder::of(&col(25, Some("pg_catalog.\"C\""))),
            ColumnOrder::Bytes
        );
        assert_eq!(
            ColumnOrder::of(&col(25, Some("pg_catalog.\"default\""))),
            ColumnOrder::Database("text COLLATE pg_catalog.\"default\"".into())
        );
    }
}
