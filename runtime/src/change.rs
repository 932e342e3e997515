//! Reducing a batch of changes to one net change per key.
//!
//! A batch applied in one transaction only needs the final effect of its
//! changes on each key, as long as that effect is computed in stream order:
//!
//! | earlier (net)            | then      | net change                               |
//! |--------------------------|-----------|------------------------------------------|
//! | —                        | upsert r  | upsert r                                 |
//! | —                        | delete    | delete                                   |
//! | upsert a                 | upsert b  | upsert a+b (b's columns win; a's others kept) |
//! | upsert a (replace)       | upsert b  | upsert a+b, still replacing              |
//! | upsert …                 | delete    | delete                                   |
//! | delete                   | upsert b  | upsert b, **replacing** the row          |
//! | delete                   | delete    | delete                                   |
//!
//! "Replacing" means the row is deleted before `b` is inserted, so columns `b`
//! does not carry get their defaults rather than the old values — exactly what
//! applying the delete and then the upsert one by one would give. Columns a
//! plain upsert does not carry are left untouched (partial rows).
//!
//! Net changes come out in the order of each key's last change in the batch.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

/// One change to one key, as read from a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Op<R> {
    /// Insert or update with row `R` (the columns present).
    Upsert(R),
    /// Delete the key.
    Delete,
}

/// The net change for one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Net<R> {
    /// Upsert `row`; when `replace`, delete the existing row first.
    Upsert {
        /// The merged row.
        row: R,
        /// Whether the batch deleted the key before upserting it.
        replace: bool,
    },
    /// Delete the key.
    Delete,
}

/// A row that a later partial row can be merged into.
pub trait Merge {
    /// Merges `later` into `self`: `later`'s columns win, the others stay.
    fn merge(&mut self, later: Self);
}

impl<K: Ord, V> Merge for BTreeMap<K, V> {
    fn merge(&mut self, later: Self) {
        self.extend(later);
    }
}

impl<T> Merge for Vec<Option<T>> {
    /// Column-indexed row: `None` is an absent column, `Some` a present one.
    fn merge(&mut self, later: Self) {
        if self.len() < later.len() {
            self.resize_with(later.len(), || None);
        }
        for (slot, value) in self.iter_mut().zip(later) {
            if value.is_some() {
                *slot = value;
            }
        }
    }
}

/// The net change of one key, with the position (in the input) of the last
/// change that made it — to name the record when applying it fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduced<K, R> {
    /// The key.
    pub key: K,
    /// What to do with it.
    pub net: Net<R>,
    /// Index in the input of the last change to this key.
    pub last: usize,
}

/// Reduces `changes` (in stream order) to one net change per key, ordered by
/// each key's last change.
pub fn reduce<K, R>(changes: impl IntoIterator<Item = (K, Op<R>)>) -> Vec<Reduced<K, R>>
where
    K: Eq + Hash,
    R: Merge,
{
    // slots[n]: the net change made by the n-th change, while that change is
    // its key's last one; the key itself lives in `index` until the end.
    let changes = changes.into_iter();
    let expected = changes.size_hint().0;
    let mut slots: Vec<Option<(Net<R>, usize)>> = Vec::with_capacity(expected);
    // foldhash, seeded per map: keys come from records, so a fixed hash
    // could be made to collide; SipHash cost more than the rest of the
    // reduction.
    let mut index: HashMap<K, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(expected, Default::default());
    for (position, (key, op)) in changes.enumerate() {
        let slot = slots.len();
        let earlier = match index.entry(key) {
            Entry::Occupied(mut entry) => {
                let old = std::mem::replace(entry.get_mut(), slot);
                slots[old].take().map(|(net, _)| net)
            }
            Entry::Vacant(entry) => {
                entry.insert(slot);
                None
            }
        };
        let net = match (earlier, op) {
            (None, Op::Upsert(row)) => Net::Upsert {
                row,
                replace: false,
            },
            (None | Some(_), Op::Delete) => Net::Delete,
            (Some(Net::Upsert { mut row, replace }), Op::Upsert(later)) => {
                row.merge(later);
                Net::Upsert { row, replace }
            }
            (Some(Net::Delete), Op::Upsert(row)) => Net::Upsert { row, replace: true },
        };
        slots.push(Some((net, position)));
    }
    let mut keys: Vec<Option<K>> = std::iter::repeat_with(|| None).take(slots.len()).collect();
    for (key, slot) in index {
        keys[slot] = Some(key);
    }
    slots
        .into_iter()
        .zip(keys)
        .filter_map(|(slot, key)| {
            let (net, last) = slot?;
            Some(Reduced {
                key: key.expect("a live slot has its key"),
                net,
                last,
            })
        })
        .collect()
}

/// Tells cheaply whether the keys of a batch are all distinct — the common
/// case (an initial load, a stream of inserts), where a sink can render each
/// record straight into its output without [`reduce`]: no key needs merging.
///
/// Keeps a seeded 64-bit hash per key, not the key. A repeat answers `false`;
/// so does, very rarely, a collision of two different keys — either way the
/// caller takes the general path, so the answer is never wrong in the unsafe
/// direction.
pub struct DistinctKeys {
    hasher: foldhash::fast::RandomState,
    seen: HashSet<u64, foldhash::fast::RandomState>,
}

impl DistinctKeys {
    /// For about `n` keys.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            hasher: Default::default(),
            seen: HashSet::with_capacity_and_hasher(n, Default::default()),
        }
    }

    /// Adds `key`; `false` when it may have been added before.
    pub fn insert(&mut self, key: &[u8]) -> bool {
        self.seen.insert(self.hasher.hash_one(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keys_report_repeats() {
        let mut keys = DistinctKeys::with_capacity(4);
        assert!(keys.insert(b"1"));
        assert!(keys.insert(b"2"));
        assert!(keys.insert(b"1\x002"));
        assert!(keys.insert(b""));
        assert!(!keys.insert(b"2"));
        assert!(!keys.insert(b""));
        assert!(keys.insert(b"12"));
    }

    type Row = BTreeMap<&'static str, i32>;

    fn row(cols: &[(&'static str, i32)]) -> Row {
        cols.iter().copied().collect()
    }

    #[test]
    fn upserts_then_delete_is_a_delete() {
        let out = reduce([
            (1, Op::Upsert(row(&[("a", 1)]))),
            (2, Op::Upsert(row(&[("a", 2)]))),
            (1, Op::Delete),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].key, 2);
        assert_eq!(out[1].key, 1);
        assert_eq!(out[1].net, Net::Delete);
        assert_eq!(out[1].last, 2);
    }

    #[test]
    fn delete_then_upsert_replaces() {
        let out = reduce([(1, Op::Delete), (1, Op::Upsert(row(&[("a", 5)])))]);
        assert_eq!(
            out,
            vec![Reduced {
                key: 1,
                net: Net::Upsert {
                    row: row(&[("a", 5)]),
                    replace: true
                },
                last: 1
            }]
        );
    }

    #[test]
    fn partial_upserts_merge_and_keep_replace() {
        let out = reduce([
            ("k", Op::Upsert(row(&[("a", 1), ("b", 1)]))),
            ("k", Op::Delete),
            ("k", Op::Upsert(row(&[("a", 2)]))),
            ("k", Op::Upsert(row(&[("b", 3)]))),
        ]);
        assert_eq!(
            out[0].net,
            Net::Upsert {
                row: row(&[("a", 2), ("b", 3)]),
                replace: true
            }
        );
        let out = reduce([
            ("k", Op::Upsert(row(&[("a", 1), ("b", 1)]))),
            ("k", Op::Upsert(row(&[("b", 2)]))),
        ]);
        assert_eq!(
            out[0].net,
            Net::Upsert {
                row: row(&[("a", 1), ("b", 2)]),
                replace: false
            }
        );
    }

    #[test]
    fn order_follows_each_keys_last_change() {
        let out = reduce([
            ((1, 1), Op::Upsert(row(&[]))),
            ((1, 2), Op::Upsert(row(&[]))),
            ((1, 1), Op::Upsert(row(&[]))),
            ((2, 1), Op::Delete),
        ]);
        let keys: Vec<_> = out.iter().map(|r| r.key).collect();
        assert_eq!(keys, vec![(1, 2), (1, 1), (2, 1)]);
    }

    #[test]
    fn column_indexed_rows_merge_present_cells() {
        let mut a: Vec<Option<&str>> = vec![Some("x"), Some("y"), None];
        a.merge(vec![None, Some("z"), Some("w"), Some("v")]);
        assert_eq!(a, vec![Some("x"), Some("z"), Some("w"), Some("v")]);
    }
}
