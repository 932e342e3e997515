//! Binlog positions and the MariaDB events `mysql_common` does not decode:
//! GTID (162), GTID_LIST (163) and BINLOG_CHECKPOINT (161), plus the
//! fake-ROTATE checksum quirk. Every decoder checks lengths first: a
//! truncated or corrupt event is an error, never a panic.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// MariaDB ANNOTATE_ROWS_EVENT.
pub const ANNOTATE_ROWS: u8 = 160;
/// MariaDB BINLOG_CHECKPOINT_EVENT.
pub const BINLOG_CHECKPOINT: u8 = 161;
/// MariaDB GTID_EVENT.
pub const MARIADB_GTID: u8 = 162;
/// MariaDB GTID_LIST_EVENT.
pub const MARIADB_GTID_LIST: u8 = 163;
/// MariaDB START_ENCRYPTION_EVENT.
pub const START_ENCRYPTION: u8 = 164;
/// First and last MariaDB compressed event types (QUERY_COMPRESSED … DELETE_ROWS_COMPRESSED_V1).
pub const COMPRESSED_EVENTS: std::ops::RangeInclusive<u8> = 165..=172;

/// GTID event flag: a standalone statement (DDL), no XID follows.
pub const FL_STANDALONE: u8 = 0x01;
/// GTID event flag: a commit id follows the fixed part.
pub const FL_GROUP_COMMIT_ID: u8 = 0x02;

/// Where the connector is in the binlog; stored (as JSON) under the runtime's
/// `source_position` KV key once everything before it is in HStream.
///
/// `file`/`pos` is a transaction boundary; `gtid` is MariaDB's GTID state at
/// that boundary (`domain-server-seq,…`, empty when unknown). `skip` > 0 marks
/// a position inside a large transaction: the transaction starting at `pos`
/// had its first `skip` row changes captured already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Position {
    /// Binlog file name, e.g. `mysql-bin.000003`.
    pub file: String,
    /// Byte offset in `file`.
    pub pos: u64,
    /// MariaDB GTID state at this position.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gtid: String,
    /// Row changes of the transaction at `pos` already captured.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
    /// Key ranges a snapshot read at a position later than this one (see
    /// [`crate::resume`]): streaming skips their changes made before that
    /// position. Dropped once streaming has passed them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<crate::resume::Segment>,
    /// Present while the snapshot is unfinished: per table, the rows done and
    /// the last acknowledged key. The position itself is then where streaming
    /// will start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<crate::resume::SnapshotProgress>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if !self.gtid.is_empty() {
            write!(f, " (gtid {})", self.gtid)?;
        }
        if self.skip > 0 {
            write!(f, " +{} rows", self.skip)?;
        }
        if self.snapshot.is_some() {
            f.write_str(" (snapshot in progress)")?;
        }
        Ok(())
    }
}

/// One MariaDB GTID: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    /// Replication domain.
    pub domain: u32,
    /// Server id that wrote the transaction.
    pub server: u32,
    /// Sequence number.
    pub seq: u64,
}

/// MariaDB's GTID state: the last GTID per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidState(BTreeMap<u32, (u32, u64)>);

impl GtidState {
    /// Parses `0-1-8,1-2-3` (empty text is the empty state).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("`{part}` is not a MariaDB GTID (domain-server-seq)");
            let mut it = part.split('-');
            let (Some(d), Some(s), Some(n), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad());
            };
            let d: u32 = d.parse().map_err(|_| bad())?;
            let s: u32 = s.parse().map_err(|_| bad())?;
            let n: u64 = n.parse().map_err(|_| bad())?;
            map.insert(d, (s, n));
        }
        Ok(Self(map))
    }

    /// Records `gtid` as the latest of its domain.
    pub fn apply(&mut self, gtid: Gtid) {
        self.0.insert(gtid.domain, (gtid.server, gtid.seq));
    }

    /// True when no domain is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, (s, n))) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}-{s}-{n}")?;
        }
        Ok(())
    }
}

/// A decoding failure: which event, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    data: &'a [u8],
    event: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.data.len() < n {
            return Err(DecodeError(format!(
                "truncated {} event: needed {n} more bytes, {} left",
                self.event,
                self.data.len()
            )));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// A decoded MariaDB GTID event (the start of a transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GtidEvent {
    /// Sequence number.
    pub seq: u64,
    /// Domain.
    pub domain: u32,
    /// Flags (`FL_*`).
    pub flags: u8,
    /// Group commit id, when flagged.
    pub commit_id: Option<u64>,
}

impl GtidEvent {
    /// The GTID, with the event header's server id.
    pub fn gtid(&self, server: u32) -> Gtid {
        Gtid {
            domain: self.domain,
            server,
            seq: self.seq,
        }
    }

    /// True for a standalone statement (DDL) without XID.
    pub fn standalone(&self) -> bool {
        self.flags & FL_STANDALONE != 0
    }
}

/// Decodes the body (checksum stripped) of a MariaDB GTID event (162):
/// `seq u64, domain u32, flags u8[, commit_id u64]`.
pub fn decode_gtid(data: &[u8]) -> Result<GtidEvent, DecodeError> {
    let mut r = Reader {
        data,
        event: "MariaDB GTID",
    };
    let seq = r.u64()?;
    let domain = r.u32()?;
    let flags = r.u8()?;
    let commit_id = if flags & FL_GROUP_COMMIT_ID != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    Ok(GtidEvent {
        seq,
        domain,
        flags,
        commit_id,
    })
}

/// Decodes a MariaDB GTID_LIST event (163): `count u32` (low 28 bits), then
/// `count × (domain u32, server u32, seq u64)`.
pub fn decode_gtid_list(data: &[u8]) -> Result<Vec<Gtid>, DecodeError> {
    let mut r = Reader {
        data,
        event: "MariaDB GTID_LIST",
    };
    let count = (r.u32()? & 0x0fff_ffff) as usize;
    if data.len() - 4 < count.saturating_mul(16) {
        return Err(DecodeError(format!(
            "truncated MariaDB GTID_LIST event: {count} entries need {} bytes, {} left",
            count.saturating_mul(16),
            data.len() - 4
        )));
    }
    (0..count)
        .map(|_| {
            Ok(Gtid {
                domain: r.u32()?,
                server: r.u32()?,
                seq: r.u64()?,
            })
        })
        .collect()
}

/// Decodes a MariaDB BINLOG_CHECKPOINT event (161): `len u32, name`.
pub fn decode_checkpoint(data: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader {
        data,
        event: "MariaDB BINLOG_CHECKPOINT",
    };
    let len = r.u32()? as usize;
    let name = r.take(len)?;
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// The file name of a ROTATE event. The first (fake, `log_pos == 0`) ROTATE
/// arrives before the format description, so the reader does not yet know the
/// stream is checksummed and leaves the 4 CRC32 bytes on the name: strip them
/// when the event was read without checksum handling and the server uses CRC32.
pub fn rotate_file_name(
    name: &[u8],
    log_pos: u32,
    read_with_checksum: bool,
    server_crc32: bool,
) -> Result<String, DecodeError> {
    let name = if log_pos == 0 && !read_with_checksum && server_crc32 {
        if name.len() <= 4 {
            return Err(DecodeError(format!(
                "corrupt fake ROTATE event: name of {} bytes cannot hold a CRC32",
                name.len()
            )));
        }
        &name[..name.len() - 4]
    } else {
        name
    };
    if name.is_empty() {
        return Err(DecodeError("corrupt ROTATE event: empty file name".into()));
    }
    String::from_utf8(name.to_vec())
        .map_err(|_| DecodeError("corrupt ROTATE event: file name is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Body of `GTID 0-1-7` for a DML transaction as MariaDB 10.11 writes it (flags 0x0c).
    fn gtid_body(seq: u64, domain: u32, flags: u8) -> Vec<u8> {
        let mut b = seq.to_le_bytes().to_vec();
        b.extend_from_slice(&domain.to_le_bytes());
        b.push(flags);
        b.extend_from_slice(&[0u8; 6]); // reserved padding MariaDB appends
        b
    }

    #[test]
    fn decodes_gtid_events() {
        let e = decode_gtid(&gtid_body(7, 0, 0x0c)).unwrap();
        assert_eq!((e.seq, e.domain, e.flags, e.commit_id), (7, 0, 0x0c, None));
        assert!(!e.standalone());
        let ddl = decode_gtid(&gtid_body(8, 2, 0x29)).unwrap();
        assert!(ddl.standalone());
        assert_eq!(
            ddl.gtid(1),
            Gtid {
                domain: 2,
                server: 1,
                seq: 8
            }
        );
        let mut with_commit = gtid_body(9, 0, 0x0e);
        with_commit.truncate(13);
        with_commit.extend_from_slice(&42u64.to_le_bytes());
        assert_eq!(decode_gtid(&with_commit).unwrap().commit_id, Some(42));
    }

    #[test]
    fn truncated_events_are_errors() {
        for n in 0..13 {
            let e = decode_gtid(&gtid_body(7, 0, 0x0c)[..n]).unwrap_err();
            assert!(e.0.contains("truncated MariaDB GTID"), "{e}");
        }
        // Commit id flagged but missing.
        let b = &gtid_body(9, 0, 0x02)[..13];
        assert!(decode_gtid(b).is_err());
        let mut list = 2u32.to_le_bytes().to_vec();
        list.extend_from_slice(&[0u8; 20]); // needs 32
        assert!(decode_gtid_list(&list).unwrap_err().0.contains("2 entries"));
        // A huge count never allocates or panics.
        assert!(decode_gtid_list(&0x0fff_ffffu32.to_le_bytes()).is_err());
        assert!(decode_gtid_list(&[1, 0]).is_err());
        let mut cp = 100u32.to_le_bytes().to_vec();
        cp.extend_from_slice(b"binlog.000001");
        assert!(decode_checkpoint(&cp).is_err());
    }

    #[test]
    fn decodes_gtid_list_and_checkpoint() {
        // GTID_LIST `0-1-5` (the flag bits in the count's high nibble are ignored).
        let mut b = (1u32 | 0x1000_0000).to_le_bytes().to_vec();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&5u64.to_le_bytes());
        assert_eq!(
            decode_gtid_list(&b).unwrap(),
            vec![Gtid {
                domain: 0,
                server: 1,
                seq: 5
            }]
        );
        let mut cp = 13u32.to_le_bytes().to_vec();
        cp.extend_from_slice(b"binlog.000002");
        assert_eq!(decode_checkpoint(&cp).unwrap(), "binlog.000002");
    }

    #[test]
    fn fake_rotate_loses_its_checksum_bytes() {
        let raw = b"binlog.000002S\xe4\x8a\x11";
        assert_eq!(
            rotate_file_name(raw, 0, false, true).unwrap(),
            "binlog.000002"
        );
        // A real ROTATE (log_pos set) or one read with checksums is left alone.
        assert_eq!(
            rotate_file_name(b"binlog.000003", 1234, true, true).unwrap(),
            "binlog.000003"
        );
        assert_eq!(
            rotate_file_name(b"binlog.000003", 0, false, false).unwrap(),
            "binlog.000003"
        );
        assert!(rotate_file_name(b"abc", 0, false, true).is_err());
    }

    #[test]
    fn gtid_state_round_trips() {
        let mut s = GtidState::parse("1-2-3, 0-1-8").unwrap();
        assert_eq!(s.to_string(), "0-1-8,1-2-3");
        s.apply(Gtid {
            domain: 0,
            server: 1,
            seq: 9,
        });
        assert_eq!(s.to_string(), "0-1-9,1-2-3");
        assert!(GtidState::parse("0-1").is_err());
        assert!(GtidState::parse("").unwrap().is_empty());
    }

    #[test]
    fn position_json_is_compact() {
        let p = Position {
            file: "b.000001".into(),
            pos: 4,
            gtid: String::new(),
            ..Position::default()
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"file":"b.000001","pos":4}"#
        );
        let q: Position =
            serde_json::from_str(r#"{"file":"b.000001","pos":9,"gtid":"0-1-2","skip":3}"#).unwrap();
        assert_eq!(q.skip, 3);
        assert_eq!(q.to_string(), "b.000001:9 (gtid 0-1-2) +3 rows");
    }
}
