//! Partition-key routing exactly as HServer does it: MD5 of the key read as a
//! big-endian `u128`, and the key space split into equal inclusive ranges.

use md5::{Digest, Md5};

use super::types::Shard;

/// The shard key of a partition key: MD5 of its UTF-8 bytes as a big-endian `u128`.
///
/// `hash_key("")` is `281949768489412648962353822266799178366`.
pub fn hash_key(key: &str) -> u128 {
    let digest = Md5::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest);
    u128::from_be_bytes(bytes)
}

/// The shard whose inclusive hash range holds `hash_key(key)`, if any.
pub fn shard_for_key<'a>(shards: &'a [Shard], key: &str) -> Option<&'a Shard> {
    // One shard over the whole key space holds every hash: no MD5 per record
    // (the common single-shard stream; it was a few % of a source's CPU).
    if let [only] = shards
        && only.start_hash_key == 0
        && only.end_hash_key == u128::MAX
    {
        return Some(only);
    }
    let h = hash_key(key);
    shards
        .iter()
        .find(|s| s.start_hash_key <= h && h <= s.end_hash_key)
}

/// HServer's split of `[0, u128::MAX]` into `n` inclusive ranges:
/// `cnt = u128::MAX / n`, range `i` is `[i*cnt, i*cnt + cnt - 1]`, the last ends at `u128::MAX`.
/// Returns an empty list for `n == 0`.
pub fn split_key_space(n: u32) -> Vec<(u128, u128)> {
    if n == 0 {
        return Vec::new();
    }
    let cnt = u128::MAX / u128::from(n);
    (0..u128::from(n))
        .map(|i| {
            let start = i * cnt;
            let end = if i + 1 == u128::from(n) {
                u128::MAX
            } else {
                start + cnt - 1
            };
            (start, end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: u32) -> Vec<Shard> {
        split_key_space(n)
            .into_iter()
            .enumerate()
            .map(|(i, (s, e))| Shard {
                shard_id: 1000 + i as u64,
                stream_name: "s".into(),
                start_hash_key: s,
                end_hash_key: e,
            })
            .collect()
    }

    #[test]
    fn md5_vectors() {
        assert_eq!(hash_key(""), 281949768489412648962353822266799178366);
        assert_eq!(
            hash_key("customer-42"),
            273230869323448032740578469245923174832
        );
    }

    #[test]
    fn a_single_shard_over_the_key_space_takes_every_key_and_a_partial_one_only_its_range() {
        let one = shards(1);
        for k in ["", "1", "db.t/[1,\"x\"]"] {
            assert_eq!(shard_for_key(&one, k).map(|s| s.shard_id), Some(1000));
        }
        // A lone shard that does not cover the whole space still checks the hash.
        let h = hash_key("k");
        assert!(h < u128::MAX);
        let partial = vec![Shard {
            shard_id: 9,
            stream_name: "s".into(),
            start_hash_key: h + 1,
            end_hash_key: u128::MAX,
        }];
        assert!(shard_for_key(&partial, "k").is_none());
        assert_eq!(
            shard_for_key(&partial, "another key").map(|s| s.shard_id),
            (hash_key("another key") > h).then_some(9)
        );
    }

    #[test]
    fn empty_key_lands_in_documented_shard() {
        for (n, idx) in [(1u32, 0u64), (2, 1), (3, 2), (4, 3)] {
            let s = shards(n);
            assert_eq!(shard_for_key(&s, "").unwrap().shard_id, 1000 + idx, "N={n}");
        }
    }

    #[test]
    fn two_shard_ranges_match_reference() {
        let r = split_key_space(2);
        assert_eq!(r[0], (0, 170141183460469231731687303715884105726));
        assert_eq!(
            r[1],
            (
                170141183460469231731687303715884105727,
                340282366920938463463374607431768211455
            )
        );
    }

    #[test]
    fn every_key_lands_in_exactly_one_shard() {
        for n in 1..=64u32 {
            let s = shards(n);
            // ranges are contiguous and cover the whole space
            assert_eq!(s[0].start_hash_key, 0);
            assert_eq!(s.last().unwrap().end_hash_key, u128::MAX);
            for w in s.windows(2) {
                assert_eq!(w[0].end_hash_key + 1, w[1].start_hash_key);
            }
            for k in 0..500 {
                let key = format!("key-{n}-{k}");
                let h = hash_key(&key);
                let hits = s
                    .iter()
                    .filter(|x| x.start_hash_key <= h && h <= x.end_hash_key)
                    .count();
                assert_eq!(hits, 1, "key {key} N={n}");
            }
            for h in [0u128, u128::MAX, u128::MAX / 2, 1] {
                let hits = s
                    .iter()
                    .filter(|x| x.start_hash_key <= h && h <= x.end_hash_key)
                    .count();
                assert_eq!(hits, 1, "hash {h} N={n}");
            }
        }
    }

    #[test]
    fn zero_shards_is_empty() {
        assert!(split_key_space(0).is_empty());
        assert!(shard_for_key(&[], "x").is_none());
    }
}
