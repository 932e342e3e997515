//! Decoder of the pgoutput logical replication messages (protocol version 1)
//! carried in XLogData payloads. Malformed input is an error, never a panic.

use std::fmt;

/// A decoded pgoutput message; its tuples borrow their text from the payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<'a> {
    /// `B`: a transaction starts.
    Begin {
        /// LSN of the commit record.
        final_lsn: u64,
        /// Transaction id.
        xid: u32,
    },
    /// `C`: a transaction ends.
    Commit {
        /// LSN of the commit record.
        lsn: u64,
        /// End of the commit record: the position to resume after.
        end_lsn: u64,
    },
    /// `O`: the changes come from another origin.
    Origin {
        /// Origin name.
        name: String,
    },
    /// `R`: a table's current shape (sent before its first change and after DDL).
    Relation(Relation),
    /// `Y`: a non-built-in type used by a following relation.
    Type {
        /// Type OID.
        oid: u32,
    },
    /// `I`: a row was inserted.
    Insert {
        /// Relation OID.
        relation: u32,
        /// The new row.
        new: Tuple<'a>,
    },
    /// `U`: a row was updated.
    Update {
        /// Relation OID.
        relation: u32,
        /// The old row (`O`, REPLICA IDENTITY FULL) or its old key (`K`,
        /// only when the key changed), if sent.
        old: Option<Tuple<'a>>,
        /// The new row; unchanged TOASTed columns are [`Cell::Unchanged`].
        new: Tuple<'a>,
    },
    /// `D`: a row was deleted.
    Delete {
        /// Relation OID.
        relation: u32,
        /// The old key (`K`) or old row (`O`).
        old: Tuple<'a>,
    },
    /// `T`: tables were truncated.
    Truncate {
        /// Relation OIDs.
        relations: Vec<u32>,
    },
    /// `M` or a message type this decoder does not need.
    Other(u8),
}

/// A table's shape as the replication stream describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// Relation OID.
    pub oid: u32,
    /// Schema.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// REPLICA IDENTITY setting: `d`efault, `n`othing, `f`ull, `i`ndex.
    pub replica_identity: u8,
    /// Columns in tuple order.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// Whether the column is part of the replica identity key.
    pub key: bool,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
}

/// One column value of a tuple, borrowed from the message payload (no
/// allocation per cell: a change is converted into its record while the
/// payload is alive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value that was not sent (its value is unknown).
    Unchanged,
    /// The value in text format.
    Text(&'a str),
}

/// A row: one cell per column.
pub type Tuple<'a> = Vec<Cell<'a>>;

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed pgoutput message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                DecodeError(format!(
                    "{what} needs {n} bytes at offset {}, {} left",
                    self.at,
                    self.buf.len().saturating_sub(self.at)
                ))
            })?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn cstr(&mut self, what: &str) -> Result<String, DecodeError> {
        let rest = &self.buf[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| DecodeError(format!("{what} is not NUL-terminated")))?;
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.at += len + 1;
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Tuple<'a>, DecodeError> {
        let n = self.u16("column count")?;
        let mut cells = Vec::with_capacity(n as usize);
        for _ in 0..n {
            cells.push(match self.u8("column kind")? {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                b't' => {
                    let len = self.u32("value length")? as usize;
                    let bytes = self.take(len, "value")?;
                    Cell::Text(
                        std::str::from_utf8(bytes)
                            .map_err(|_| DecodeError("a text value is not UTF-8".into()))?,
                    )
                }
                b'b' => return Err(DecodeError("binary values were not requested".into())),
                other => return Err(DecodeError(format!("unknown column kind 0x{other:02x}"))),
            });
        }
        Ok(cells)
    }
}

/// Decodes one XLogData payload.
pub fn decode(payload: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut r = Reader {
        buf: payload,
        at: 0,
    };
    let tag = r.u8("message type")?;
    Ok(match tag {
        b'B' => {
            let final_lsn = r.u64("final LSN")?;
            let _commit_time = r.u64("commit time")?;
            let xid = r.u32("xid")?;
            Message::Begin { final_lsn, xid }
        }
        b'C' => {
            let _flags = r.u8("flags")?;
            let lsn = r.u64("commit LSN")?;
            let end_lsn = r.u64("end LSN")?;
            Message::Commit { lsn, end_lsn }
        }
        b'O' => {
            let _lsn = r.u64("origin LSN")?;
            Message::Origin {
                name: r.cstr("origin name")?,
            }
        }
        b'R' => {
            let oid = r.u32("relation OID")?;
            let namespace = r.cstr("namespace")?;
            let name = r.cstr("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let n = r.u16("column count")?;
            let mut columns = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let flags = r.u8("column flags")?;
                let name = r.cstr("column name")?;
                let type_oid = r.u32("type OID")?;
                let _type_mod = r.u32("type modifier")?;
                columns.push(RelationColumn {
                    key: flags & 1 == 1,
                    name,
                    type_oid,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => {
            let oid = r.u32("type OID")?;
            Message::Type { oid }
        }
        b'I' => {
            let relation = r.u32("relation OID")?;
            match r.u8("tuple kind")? {
                b'N' => Message::Insert {
                    relation,
                    new: r.tuple()?,
                },
                other => {
                    return Err(DecodeError(format!(
                        "insert without a new tuple (0x{other:02x})"
                    )));
                }
            }
        }
        b'U' => {
            let relation = r.u32("relation OID")?;
            let mut old = None;
            let mut kind = r.u8("tuple kind")?;
            if kind == b'K' || kind == b'O' {
                old = Some(r.tuple()?);
                kind = r.u8("tuple kind")?;
            }
            if kind != b'N' {
                return Err(DecodeError(format!(
                    "update without a new tuple (0x{kind:02x})"
                )));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32("relation OID")?;
            match r.u8("tuple kind")? {
                b'K' | b'O' => Message::Delete {
                    relation,
                    old: r.tuple()?,
                },
                other => {
                    return Err(DecodeError(format!(
                        "delete without an old tuple (0x{other:02x})"
                    )));
                }
            }
        }
        b'T' => {
            let n = r.u32("relation count")?;
            let _options = r.u8("truncate options")?;
            let mut relations = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                relations.push(r.u32("relation OID")?);
            }
            Message::Truncate { relations }
        }
        other => Message::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(cells: &[Option<&str>]) -> Vec<u8> {
        let mut out = (cells.len() as u16).to_be_bytes().to_vec();
        for c in cells {
            match c {
                None => out.push(b'n'),
                Some("\u{0}unchanged") => out.push(b'u'),
                Some(text) => {
                    out.push(b't');
                    out.extend((text.len() as u32).to_be_bytes());
                    out.extend(text.as_bytes());
                }
            }
        }
        out
    }

    fn relation() -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend(16384u32.to_be_bytes());
        m.extend(b"public\0t1\0");
        m.push(b'd');
        m.extend(2u16.to_be_bytes());
        for (flags, name, oid) in [(1u8, "id", 23u32), (0, "body", 25)] {
            m.push(flags);
            m.extend(name.as_bytes());
            m.push(0);
            m.extend(oid.to_be_bytes());
            m.extend((-1i32).to_be_bytes());
        }
        m
    }

    #[test]
    fn relation_and_changes() {
        let Message::Relation(rel) = decode(&relation()).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(
            (rel.namespace.as_str(), rel.name.as_str()),
            ("public", "t1")
        );
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!(rel.columns[1].type_oid, 25);

        let mut ins = vec![b'I'];
        ins.extend(16384u32.to_be_bytes());
        ins.push(b'N');
        ins.extend(tuple(&[Some("1"), None]));
        assert_eq!(
            decode(&ins).unwrap(),
            Message::Insert {
                relation: 16384,
                new: vec![Cell::Text("1"), Cell::Null]
            }
        );

        let mut upd = vec![b'U'];
        upd.extend(16384u32.to_be_bytes());
        upd.push(b'K');
        upd.extend(tuple(&[Some("1"), None]));
        upd.push(b'N');
        upd.extend(tuple(&[Some("2"), Some("\u{0}unchanged")]));
        assert_eq!(
            decode(&upd).unwrap(),
            Message::Update {
                relation: 16384,
                old: Some(vec![Cell::Text("1"), Cell::Null]),
                new: vec![Cell::Text("2"), Cell::Unchanged]
            }
        );

        let mut del = vec![b'D'];
        del.extend(16384u32.to_be_bytes());
        del.push(b'K');
        del.extend(tuple(&[Some("2"), None]));
        assert!(matches!(decode(&del).unwrap(), Message::Delete { .. }));

        let mut tr = vec![b'T'];
        tr.extend(2u32.to_be_bytes());
        tr.push(0);
        tr.extend(1u32.to_be_bytes());
        tr.extend(2u32.to_be_bytes());
        assert_eq!(
            decode(&tr).unwrap(),
            Message::Truncate {
                relations: vec![1, 2]
            }
        );

        let mut commit = vec![b'C', 0];
        commit.extend(10u64.to_be_bytes());
        commit.extend(20u64.to_be_bytes());
        commit.extend(0u64.to_be_bytes());
        assert_eq!(
            decode(&commit).unwrap(),
            Message::Commit {
                lsn: 10,
                end_lsn: 20
            }
        );
    }

    #[test]
    fn every_truncation_of_a_message_is_an_error_not_a_panic() {
        let mut ins = vec![b'I'];
        ins.extend(16384u32.to_be_bytes());
        ins.push(b'N');
        ins.extend(tuple(&[Some("12345"), None]));
        for payload in [relation(), ins] {
            for len in 0..payload.len() {
                assert!(
                    decode(&payload[..len]).is_err(),
                    "prefix of {len} bytes decoded"
                );
            }
            assert!(decode(&payload).is_ok());
        }
        // A huge announced length must not allocate or panic.
        let mut bad = vec![b'I'];
        bad.extend(1u32.to_be_bytes());
        bad.push(b'N');
        bad.extend(1u16.to_be_bytes());
        bad.push(b't');
        bad.extend(u32::MAX.to_be_bytes());
        assert!(decode(&bad).is_err());
        assert!(decode(&[b'I', 0, 0, 0, 1, b'X']).is_err());
        assert_eq!(decode(b"M").unwrap(), Message::Other(b'M'));
    }
}
