//! State that makes a snapshot resumable mid-table and exact across resumes.
//!
//! A snapshot may take several runs of the task (each ended by a crash or a
//! stop). Run 1 opens a consistent-snapshot transaction at binlog position
//! P1; streaming will start at P1 whatever happens later. A run resumed after
//! a crash opens a new consistent snapshot at its own position Pj and reads
//! only the rows after the last *acknowledged* chunk boundary K of each table.
//! So a table ends up covered by key ranges, each read at one position:
//! `(-inf, K1]` at P1, `(K1, K2]` at P2, …, `(Kn, +inf)` at Pn+1.
//!
//! Streaming from P1 then skips a row change of key `k` in a transaction that
//! starts before the position of the range holding `k` (that snapshot already
//! contains the change) and emits it otherwise. Every row is thus emitted once
//! by a snapshot (at the state of its range's position) and every later change
//! exactly once by the stream: no gap and no duplicate at any seam.
//!
//! A killed run may also have *sent* chunks whose progress was never
//! acknowledged: keys after K up to the highest key it sent (H, stored in the
//! KV before each chunk is sent). Their records show the row at that run's
//! position, and a row deleted since is not read again, so those keys get a
//! segment at the stream start instead (`(K, H]` at P1: nothing skipped, every
//! change since P1 is streamed and the last record per key is the row); only
//! `(H, +inf)` is read at the new position with changes skipped.
//!
//! Ranges are kept as [`Segment`]s (a table, the key the range starts after,
//! the position it was read at) inside the stored position, so they are
//! committed by the runtime together with — and only after — the records they
//! describe. They are dropped once streaming has passed every segment's
//! position. Key bounds are compared in Rust, which matches the database's
//! `ORDER BY` only for integer keys: a table whose key has a non-integer column
//! resumes from its first row instead of mid-table (its range is then read
//! whole at the new position, which is just as exact, only slower).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A key range of one table read by one snapshot transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// `db.t`.
    pub table: String,
    /// The range holds the keys after this one (primary-key values in key
    /// order); `None` = from the first key. It ends where the next segment of
    /// the table starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<Json>>,
    /// Binlog file of the snapshot position the range was read at.
    pub file: String,
    /// Offset in `file` of that position.
    pub pos: u64,
}

/// Snapshot progress of one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableProgress {
    /// Rows read and acknowledged so far.
    pub rows: u64,
    /// The table is complete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
    /// The last acknowledged key (integer keys only); the next run reads the
    /// rows after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<Json>>,
}

/// Progress of an unfinished snapshot: `db.t` → its progress.
pub type SnapshotProgress = BTreeMap<String, TableProgress>;

/// True when binlog position `(file_a, pos_a)` is before `(file_b, pos_b)`.
/// Files compare by their numeric suffix (`mysql-bin.000010` after
/// `mysql-bin.000009`), then by name.
pub fn before(file_a: &str, pos_a: u64, file_b: &str, pos_b: u64) -> bool {
    fn order(file: &str) -> (u64, &str) {
        let n = file
            .rsplit_once('.')
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .unwrap_or(0);
        (n, file)
    }
    match order(file_a).cmp(&order(file_b)) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => pos_a < pos_b,
    }
}

/// Compares two integer keys column by column; `None` when a value is not an
/// integer.
pub fn compare_keys(a: &[Json], b: &[Json]) -> Option<Ordering> {
    fn int(v: &Json) -> Option<i128> {
        v.as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from))
    }
    for (x, y) in a.iter().zip(b) {
        match int(x)?.cmp(&int(y)?) {
            Ordering::Equal => continue,
            other => return Some(other),
        }
    }
    Some(a.len().cmp(&b.len()))
}

/// The segments of one table that streaming must consult.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// Per table index: its segments ordered by `after` (None first).
    by_table: Vec<Vec<Segment>>,
}

impl Coverage {
    /// Groups `segments` by the index `index_of` gives their table (segments of
    /// tables no longer captured are dropped).
    pub fn new(
        segments: &[Segment],
        tables: usize,
        index_of: impl Fn(&str) -> Option<usize>,
    ) -> Self {
        let mut by_table = vec![Vec::new(); tables];
        for s in segments {
            if let Some(i) = index_of(&s.table) {
                by_table[i].push(s.clone());
            }
        }
        for list in &mut by_table {
            list.sort_by(|a, b| match (&a.after, &b.after) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => compare_keys(x, y).unwrap_or(Ordering::Equal),
            });
        }
        Self { by_table }
    }

    /// True when no segment is left.
    pub fn is_empty(&self) -> bool {
        self.by_table.iter().all(Vec::is_empty)
    }

    /// True when a change of `key` in table `table` made by a transaction
    /// starting at `(file, pos)` is already in the snapshot of its range.
    pub fn covers(&self, table: usize, key: &[Json], file: &str, pos: u64) -> bool {
        let Some(list) = self.by_table.get(table) else {
            return false;
        };
        if list.is_empty() {
            return false;
        }
        let segment = list.iter().rev().find(|s| match &s.after {
            None => true,
            Some(after) => compare_keys(after, key) == Some(Ordering::Less),
        });
        segment.is_some_and(|s| before(file, pos, &s.file, s.pos))
    }

    /// Drops every segment when `(file, pos)` is at or after all their
    /// positions (no later change can be covered); true when it did.
    pub fn prune(&mut self, file: &str, pos: u64) -> bool {
        if self.is_empty() {
            return false;
        }
        let passed = self
            .by_table
            .iter()
            .flatten()
            .all(|s| !before(file, pos, &s.file, s.pos));
        if passed {
            self.by_table.iter_mut().for_each(Vec::clear);
        }
        passed
    }

    /// The segments, for the stored position.
    pub fn segments(&self) -> Vec<Segment> {
        self.by_table.iter().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(id: i64) -> Vec<Json> {
        vec![json!(id)]
    }

    fn seg(after: Option<i64>, file: &str, pos: u64) -> Segment {
        Segment {
            table: "d.t".into(),
            after: after.map(|a| vec![json!(a)]),
            file: file.into(),
            pos,
        }
    }

    #[test]
    fn positions_order_by_file_number_then_offset() {
        assert!(before("b.000009", 900, "b.000010", 4));
        assert!(!before("b.000010", 4, "b.000009", 900));
        assert!(before("b.000010", 4, "b.000010", 5));
        assert!(!before("b.000010", 5, "b.000010", 5));
    }

    #[test]
    fn integer_keys_compare_like_the_database() {
        let k = |v: Json| v.as_array().unwrap().clone();
        assert_eq!(
            compare_keys(&k(json!([1, 5])), &k(json!([2, 0]))),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_keys(&k(json!([-1])), &k(json!([18446744073709551615u64]))),
            Some(Ordering::Less)
        );
        assert_eq!(compare_keys(&k(json!(["a"])), &k(json!(["b"]))), None);
    }

    #[test]
    fn a_change_is_covered_only_by_a_later_snapshot_of_its_range() {
        // (-inf, 100] read at f.1:1000 (the stream start), (100, +inf) at f.2:500.
        let c = Coverage::new(
            &[seg(Some(100), "f.000002", 500), seg(None, "f.000001", 1000)],
            1,
            |t| (t == "d.t").then_some(0),
        );
        assert!(
            !c.covers(0, &key(100), "f.000001", 2000),
            "first range: streamed"
        );
        assert!(
            c.covers(0, &key(101), "f.000001", 2000),
            "in the later snapshot"
        );
        assert!(c.covers(0, &key(101), "f.000002", 499));
        assert!(
            !c.covers(0, &key(101), "f.000002", 500),
            "at the position: after it"
        );
        let mut c = c;
        assert!(!c.prune("f.000002", 400));
        assert!(c.prune("f.000002", 500));
        assert!(c.is_empty());
        assert!(!c.covers(0, &key(101), "f.000001", 2000));
    }

    #[test]
    fn progress_json_is_compact() {
        let mut p = SnapshotProgress::new();
        p.insert(
            "d.t".into(),
            TableProgress {
                rows: 10,
                done: false,
                after: Some(vec![json!(10)]),
            },
        );
        p.insert(
            "d.u".into(),
            TableProgress {
                rows: 3,
                done: true,
                after: None,
            },
        );
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"d.t":{"rows":10,"after":[10]},"d.u":{"rows":3,"done":true}}"#
        );
    }
}
