//! MySQL GTID sets (`3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,…`): what a
//! MySQL 8 server has executed, per source UUID (and tag, MySQL 8.4), as
//! disjoint intervals of transaction numbers.
//!
//! The connector keeps the set of the transactions it has passed: the
//! PREVIOUS_GTIDS event at the start of each binlog file gives the set before
//! it, each GTID_LOG event (33) adds one transaction once it commits. Stored in
//! the position (`gtid`), it lets a task resume on MySQL with
//! COM_BINLOG_DUMP_GTID, which survives a failover where file names differ.
//! MariaDB GTIDs (`domain-server-seq`) are a different thing: see
//! [`crate::events::GtidState`].

use std::collections::BTreeMap;
use std::fmt;

use mysql_common::binlog::events::PreviousGtidsEvent;
use mysql_common::packets::{GnoInterval, Sid};

/// A source: UUID and tag (empty when untagged).
type Source = ([u8; 16], String);

/// A MySQL GTID set; intervals are inclusive, sorted and merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet(BTreeMap<Source, Vec<(u64, u64)>>);

/// True when `text` looks like a MySQL GTID set rather than a MariaDB GTID state.
pub fn is_mysql_set(text: &str) -> bool {
    text.contains(':')
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl GtidSet {
    /// Parses MySQL's text form; whitespace and newlines (as in `SHOW MASTER
    /// STATUS`) are ignored. Tagged parts (`uuid:tag:1-5`) apply the tag to
    /// the intervals that follow it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut set = Self::default();
        let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for part in clean.split(',').filter(|p| !p.is_empty()) {
            let bad = |why: &str| format!("`{part}` is not a MySQL GTID set entry: {why}");
            let mut fields = part.split(':');
            let uuid = fields
                .next()
                .and_then(parse_uuid)
                .ok_or_else(|| bad("expected a UUID first"))?;
            let mut tag = String::new();
            let mut any = false;
            for field in fields {
                if field.starts_with(|c: char| c.is_ascii_digit()) {
                    let (a, b) = match field.split_once('-') {
                        Some((a, b)) => (a, b),
                        None => (field, field),
                    };
                    let a: u64 = a.parse().map_err(|_| bad("bad interval start"))?;
                    let b: u64 = b.parse().map_err(|_| bad("bad interval end"))?;
                    if a == 0 || b < a {
                        return Err(bad("an interval must be 1 ≤ start ≤ end"));
                    }
                    set.add_interval((uuid, tag.clone()), a, b);
                    any = true;
                } else if !field.is_empty() {
                    tag = field.to_lowercase();
                } else {
                    return Err(bad("empty field"));
                }
            }
            if !any {
                return Err(bad("no interval"));
            }
        }
        Ok(set)
    }

    /// True when no transaction is in the set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn add_interval(&mut self, source: Source, a: u64, b: u64) {
        let list = self.0.entry(source).or_default();
        list.push((a, b));
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *list = merged;
    }

    /// Adds transaction `gno` of `uuid` (untagged), as a GTID_LOG event names it.
    pub fn add(&mut self, uuid: [u8; 16], gno: u64) {
        self.add_interval((uuid, String::new()), gno, gno);
    }

    /// True when transaction `gno` of `uuid` (untagged) is in the set.
    #[cfg(test)]
    pub fn contains(&self, uuid: [u8; 16], gno: u64) -> bool {
        self.0
            .get(&(uuid, String::new()))
            .is_some_and(|l| l.iter().any(|&(a, b)| (a..=b).contains(&gno)))
    }

    /// The set a PREVIOUS_GTIDS event carries (intervals there end exclusive).
    pub fn from_previous(event: &PreviousGtidsEvent<'_>) -> Self {
        let mut set = Self::default();
        for sid in event.sids() {
            let tag = sid
                .tag()
                .map(|t| t.as_str().to_lowercase())
                .unwrap_or_default();
            for i in sid.intervals() {
                if i.end() > i.start() {
                    set.add_interval((sid.uuid(), tag.clone()), i.start(), i.end() - 1);
                }
            }
        }
        set
    }

    /// The set as COM_BINLOG_DUMP_GTID wants it (untagged sources only; MySQL
    /// 8.4 tags need the tagged request format, so they are left out and the
    /// caller falls back to file/position).
    pub fn to_sids(&self) -> Option<Vec<Sid<'static>>> {
        let mut out = Vec::new();
        for ((uuid, tag), list) in &self.0 {
            if !tag.is_empty() {
                return None;
            }
            let intervals = list
                .iter()
                .map(|&(a, b)| GnoInterval::new(a, b + 1))
                .collect();
            out.push(Sid::new(*uuid).with_intervals(intervals));
        }
        Some(out)
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut last_uuid: Option<[u8; 16]> = None;
        for ((uuid, tag), list) in &self.0 {
            if last_uuid == Some(*uuid) {
                // Same UUID, another tag: MySQL writes `uuid:1-3:tag:1-2`.
            } else {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(&format_uuid(uuid))?;
            }
            first = false;
            last_uuid = Some(*uuid);
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for &(a, b) in list {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::binlog::EventStreamReader;
    use mysql_common::binlog::consts::{BinlogVersion, EventType};
    use mysql_common::binlog::events::{Event, EventData};

    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn text_round_trips_and_merges() {
        let text = format!("{UUID}:1-5:7, 4e11fa47-71ca-11e1-9e33-c80aa9429562:3\n");
        let mut set = GtidSet::parse(&text).unwrap();
        assert_eq!(
            set.to_string(),
            format!("{UUID}:1-5:7,4e11fa47-71ca-11e1-9e33-c80aa9429562:3")
        );
        let uuid = parse_uuid(UUID).unwrap();
        set.add(uuid, 6);
        assert_eq!(
            set.to_string(),
            format!("{UUID}:1-7,4e11fa47-71ca-11e1-9e33-c80aa9429562:3")
        );
        assert!(set.contains(uuid, 7) && !set.contains(uuid, 8));
        assert!(GtidSet::parse("").unwrap().is_empty());
        assert!(
            GtidSet::parse("0-1-8").is_err(),
            "a MariaDB GTID is not a set"
        );
        assert!(GtidSet::parse(&format!("{UUID}:5-3")).is_err());
        assert!(is_mysql_set(UUID) || is_mysql_set(&format!("{UUID}:1")));
        assert!(!is_mysql_set("0-1-8"));
    }

    #[test]
    fn tagged_sets_parse_but_are_not_sent_untagged() {
        let set = GtidSet::parse(&format!("{UUID}:1-3:mytag:1-2")).unwrap();
        assert_eq!(set.to_string(), format!("{UUID}:1-3:mytag:1-2"));
        assert!(set.to_sids().is_none());
    }

    #[test]
    fn the_dump_request_gets_exclusive_ends() {
        let set = GtidSet::parse(&format!("{UUID}:1-5:7")).unwrap();
        let sids = set.to_sids().unwrap();
        assert_eq!(
            sids[0].intervals(),
            &[GnoInterval::new(1, 6), GnoInterval::new(7, 8)]
        );
    }

    /// A v4 binlog event as MySQL 8 writes it: header (timestamp, type,
    /// server id, size, log pos, flags) + body (no checksum, as the reader's
    /// default format description expects).
    fn event(kind: EventType, body: &[u8]) -> Vec<u8> {
        let size = (19 + body.len()) as u32;
        let mut raw = Vec::new();
        raw.extend_from_slice(&0u32.to_le_bytes());
        raw.push(kind as u8);
        raw.extend_from_slice(&1u32.to_le_bytes());
        raw.extend_from_slice(&size.to_le_bytes());
        raw.extend_from_slice(&1000u32.to_le_bytes());
        raw.extend_from_slice(&0u16.to_le_bytes());
        raw.extend_from_slice(body);
        raw
    }

    fn decode(raw: &[u8]) -> std::io::Result<Option<Event>> {
        EventStreamReader::new(BinlogVersion::Version4).read(raw)
    }

    #[test]
    fn previous_gtids_and_gtid_log_events_build_the_set() {
        // PREVIOUS_GTIDS (35), MySQL 8.0 layout: n_sids, then per sid the
        // UUID, n_intervals and [start, end) pairs, all little-endian.
        let uuid = parse_uuid(UUID).unwrap();
        let mut body = 1u64.to_le_bytes().to_vec();
        body.extend_from_slice(&uuid);
        body.extend_from_slice(&2u64.to_le_bytes());
        for (a, b) in [(1u64, 6u64), (7, 8)] {
            body.extend_from_slice(&a.to_le_bytes());
            body.extend_from_slice(&b.to_le_bytes());
        }
        let ev = decode(&event(EventType::PREVIOUS_GTIDS_EVENT, &body))
            .unwrap()
            .unwrap();
        let Ok(Some(EventData::PreviousGtidsEvent(prev))) = ev.read_data() else {
            panic!("a PREVIOUS_GTIDS event")
        };
        let mut set = GtidSet::from_previous(&prev);
        assert_eq!(set.to_string(), format!("{UUID}:1-5:7"));

        // GTID_LOG (33): flags, UUID, GNO, logical-clock type 2 and the two
        // 8-byte clocks.
        let mut body = vec![1u8];
        body.extend_from_slice(&uuid);
        body.extend_from_slice(&8u64.to_le_bytes());
        body.push(2);
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&8u64.to_le_bytes());
        let ev = decode(&event(EventType::GTID_EVENT, &body))
            .unwrap()
            .unwrap();
        let Ok(Some(EventData::GtidEvent(g))) = ev.read_data() else {
            panic!("a GTID_LOG event")
        };
        set.add(g.sid(), g.gno());
        assert_eq!(set.to_string(), format!("{UUID}:1-5:7-8"));
    }

    #[test]
    fn a_truncated_previous_gtids_event_is_an_error() {
        let mut body = 3u64.to_le_bytes().to_vec(); // announces 3 sids, carries none
        body.extend_from_slice(&[0; 5]);
        let raw = event(EventType::PREVIOUS_GTIDS_EVENT, &body);
        // Decoding runs where a parser panic is caught (see binlog::guarded).
        let decoded =
            std::panic::catch_unwind(|| decode(&raw).ok().flatten().map(|e| e.read_data().is_ok()));
        assert!(
            !matches!(decoded, Ok(Some(true))),
            "must not decode as a valid event"
        );
    }
}
