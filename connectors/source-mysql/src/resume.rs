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
//! position. Key bounds are compared by a [`KeyOrder`] exactly as the server
//! orders the key: in Rust for numbers, temporal types, binary strings, ENUM,
//! SET and text in a binary (`_bin`) collation of utf8/ascii; by the server
//! (`STRCMP` in the column's collation) for text in any other collation. Only a
//! JSON key has no order: its table resumes from its first row instead of
//! mid-table (its range is then read whole at the new position, which is just
//! as exact, only slower).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::types::{Charset, ColKind, TableSchema};

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
    /// How the table's keys order (absent: integers, as stored before orders
    /// of other key types existed).
    #[serde(default, skip_serializing_if = "KeyOrder::is_integers")]
    pub order: KeyOrder,
}

/// Snapshot progress of one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableProgress {
    /// Rows read and acknowledged so far.
    pub rows: u64,
    /// The table is complete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
    /// The last acknowledged key (keys with a [`KeyOrder`] only); the next
    /// run reads the rows after it.
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

/// How one key column orders in the database: reproduced in Rust on the
/// column's JSON values (see [`crate::types`] for their shapes), or, for text
/// in a linguistic collation, asked of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyCol {
    /// Integers (any width, signed or not), YEAR and BIT (`true` = 1).
    Int,
    /// DECIMAL as an exact decimal string.
    Decimal,
    /// FLOAT / DOUBLE numbers.
    Float,
    /// DATE, DATETIME(n), TIMESTAMP(n): fixed-width ISO text, ordered as text.
    Fixed,
    /// TIME(n): `[-]h:mm:ss[.f]`, ordered by its signed duration.
    Time,
    /// Text in a PAD SPACE binary collation of utf8/ascii (`utf8mb4_bin`):
    /// code points, the shorter string padded with spaces.
    Text,
    /// Text in a NO PAD binary collation (`utf8mb4_nopad_bin`, `utf8mb4_0900_bin`).
    TextNoPad,
    /// BINARY / VARBINARY / BLOB as base64: bytes, no padding.
    Bytes,
    /// ENUM: by the value's position in the definition.
    Enum(Vec<String>),
    /// SET: by the bits of its members.
    Set(Vec<String>),
    /// Text in any other collation (`utf8mb4_general_ci`, `latin1_swedish_ci`,
    /// …): the server compares; `[charset, collation]`.
    Collated(String, String),
}

/// How a table's key orders in the database, column by column: the order of
/// the snapshot's `ORDER BY` and of its `WHERE key > after`, so the snapshot
/// bounds stored in the KV compare exactly as the server compares them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyOrder(Vec<KeyCol>);

impl KeyOrder {
    /// The order of `schema`'s key, given each key column's character set and
    /// collation (in key order); `None` for a key type that has no order here
    /// (JSON, geometry).
    pub(crate) fn of(
        schema: &TableSchema,
        collations: &[(Option<String>, Option<String>)],
    ) -> Option<Self> {
        let cols = schema
            .key
            .iter()
            .enumerate()
            .map(|(n, &i)| {
                let (charset, collation) = collations.get(n).cloned().unwrap_or_default();
                KeyCol::of(
                    &schema.columns[i].kind,
                    &charset.unwrap_or_default().to_ascii_lowercase(),
                    &collation.unwrap_or_default().to_ascii_lowercase(),
                )
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self(cols))
    }

    /// True when every column is an integer (the order stored implicitly).
    pub fn is_integers(&self) -> bool {
        self.0.iter().all(|c| *c == KeyCol::Int)
    }

    /// The order of key column `i` (an empty list means integers).
    pub fn column(&self, i: usize) -> &KeyCol {
        self.0.get(i).unwrap_or(&KeyCol::Int)
    }

    /// True when some column needs the server to compare.
    pub fn needs_server(&self) -> bool {
        self.0.iter().any(|c| matches!(c, KeyCol::Collated(..)))
    }

    /// Compares two keys column by column in Rust; `None` when a value does
    /// not have its column's shape (e.g. a zero date read as `null`) or a
    /// column needs the server.
    pub fn compare(&self, a: &[Json], b: &[Json]) -> Option<Ordering> {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            match self.column(i).compare(x, y)? {
                Ordering::Equal => continue,
                other => return Some(other),
            }
        }
        Some(a.len().cmp(&b.len()))
    }

    /// Compares two keys, asking the server on `conn` for the columns whose
    /// order only it knows; `None` when a value does not have its column's shape.
    pub async fn compare_on(
        &self,
        a: &[Json],
        b: &[Json],
        conn: &mut mysql_async::Conn,
    ) -> hstream_io_runtime::Result<Option<Ordering>> {
        use mysql_async::prelude::Queryable;
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let ordering = match self.column(i) {
                KeyCol::Collated(charset, collation) => {
                    let (Some(x), Some(y)) = (x.as_str(), y.as_str()) else {
                        return Ok(None);
                    };
                    let Some(text) = collated_sql(charset, collation) else {
                        return Ok(None);
                    };
                    let sign: Option<i64> = conn
                        .exec_first(format!("SELECT STRCMP({text}, {text})"), (x, y))
                        .await
                        .map_err(|e| {
                            crate::error::classify(
                                e,
                                "cannot compare two primary keys on the server",
                            )
                        })?;
                    sign.map(|s| s.cmp(&0))
                }
                col => col.compare(x, y),
            };
            match ordering {
                None => return Ok(None),
                Some(Ordering::Equal) => continue,
                other => return Ok(other),
            }
        }
        Ok(Some(a.len().cmp(&b.len())))
    }

    /// True when `key` can be a stored bound: each value has its column's shape.
    pub fn accepts(&self, key: &[Json]) -> bool {
        key.len() >= self.0.len()
            && key.iter().enumerate().all(|(i, v)| match self.column(i) {
                KeyCol::Collated(charset, collation) => {
                    v.is_string() && collated_sql(charset, collation).is_some()
                }
                col => col.compare(v, v) == Some(Ordering::Equal),
            })
    }
}

/// `CONVERT(? USING charset) COLLATE collation`, when both are plain names.
fn collated_sql(charset: &str, collation: &str) -> Option<String> {
    let plain =
        |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    (plain(charset) && plain(collation))
        .then(|| format!("CONVERT(? USING {charset}) COLLATE {collation}"))
}

impl KeyCol {
    /// The order of a column of `kind` in `charset` and `collation` (lower case).
    fn of(kind: &ColKind, charset: &str, collation: &str) -> Option<Self> {
        match kind {
            ColKind::Int { .. } | ColKind::Year | ColKind::Bit(_) => Some(Self::Int),
            ColKind::Decimal => Some(Self::Decimal),
            ColKind::Float | ColKind::Double => Some(Self::Float),
            ColKind::Date | ColKind::DateTime(_) | ColKind::Timestamp(_) => Some(Self::Fixed),
            ColKind::Time(_) => Some(Self::Time),
            ColKind::Binary { .. } => Some(Self::Bytes),
            ColKind::Enum(values) => Some(Self::Enum(values.clone())),
            ColKind::Set(values) => Some(Self::Set(values.clone())),
            // UTF-8 byte order is code point order, which `_bin` collations of
            // utf8/ascii use; any other collation is the server's to apply.
            ColKind::Text(Charset::Utf8 | Charset::Ascii) if collation.ends_with("_bin") => {
                if collation.contains("nopad") || collation.contains("_0900_") {
                    Some(Self::TextNoPad)
                } else {
                    Some(Self::Text)
                }
            }
            ColKind::Text(_) => {
                collated_sql(charset, collation)?;
                Some(Self::Collated(charset.to_string(), collation.to_string()))
            }
            ColKind::Json => None,
        }
    }

    /// Compares in Rust; `None` for a value without the column's shape or a
    /// column the server compares.
    fn compare(&self, x: &Json, y: &Json) -> Option<Ordering> {
        match self {
            Self::Int => Some(int_or_bit(x)?.cmp(&int_or_bit(y)?)),
            Self::Decimal => compare_decimals(x.as_str()?, y.as_str()?),
            Self::Float => x.as_f64()?.partial_cmp(&y.as_f64()?),
            Self::Fixed | Self::TextNoPad => Some(x.as_str()?.cmp(y.as_str()?)),
            Self::Time => Some(time_micros(x.as_str()?)?.cmp(&time_micros(y.as_str()?)?)),
            Self::Text => Some(compare_pad_space(x.as_str()?, y.as_str()?)),
            Self::Bytes => Some(base64_bytes(x)?.cmp(&base64_bytes(y)?)),
            Self::Enum(values) => Some(enum_index(values, x)?.cmp(&enum_index(values, y)?)),
            Self::Set(values) => Some(set_bits(values, x)?.cmp(&set_bits(values, y)?)),
            Self::Collated(..) => None,
        }
    }

    /// The SQL for a bound value of this column in a `WHERE` clause and the
    /// parameter it takes (`None` when the value is inlined).
    pub fn sql_bound(&self, v: &Json) -> (String, Option<mysql_async::Value>) {
        use mysql_async::Value;
        let param = |value: Value| ("?".to_string(), Some(value));
        let text = |v: &Json| {
            v.as_str()
                .map_or(Value::NULL, |s| Value::Bytes(s.as_bytes().to_vec()))
        };
        match self {
            Self::Int => param(match (v.as_i64(), v.as_u64(), v.as_bool()) {
                (Some(i), _, _) => Value::Int(i),
                (None, Some(u), _) => Value::UInt(u),
                (_, _, Some(b)) => Value::Int(i64::from(b)),
                _ => Value::NULL,
            }),
            // An exact DECIMAL literal (a string parameter would compare as a double).
            Self::Decimal => match v.as_str().filter(|s| decimal_parts(s).is_some()) {
                Some(s) => (s.to_string(), None),
                None => param(Value::NULL),
            },
            Self::Float => param(v.as_f64().map_or(Value::NULL, Value::Double)),
            // The snapshot session runs in UTC, so a TIMESTAMP's UTC text reads back as itself.
            Self::Fixed => param(match v.as_str() {
                Some(s) => Value::Bytes(s.trim_end_matches('Z').replace('T', " ").into_bytes()),
                None => Value::NULL,
            }),
            Self::Time | Self::Text | Self::TextNoPad => param(text(v)),
            Self::Bytes => param(base64_bytes(v).map_or(Value::NULL, Value::Bytes)),
            // ENUM and SET compare with a number by their index / bits, as ORDER BY sorts them.
            Self::Enum(values) => param(enum_index(values, v).map_or(Value::NULL, Value::UInt)),
            Self::Set(values) => param(set_bits(values, v).map_or(Value::NULL, Value::UInt)),
            Self::Collated(charset, collation) => match collated_sql(charset, collation) {
                Some(sql) => (sql, Some(text(v))),
                None => param(Value::NULL),
            },
        }
    }
}

fn int_or_bit(v: &Json) -> Option<i128> {
    int(v).or_else(|| v.as_bool().map(i128::from))
}

/// 1-based position of an ENUM value (0 = the empty error value).
fn enum_index(values: &[String], v: &Json) -> Option<u64> {
    let s = v.as_str()?;
    if s.is_empty() && !values.iter().any(String::is_empty) {
        return Some(0);
    }
    values.iter().position(|m| m == s).map(|i| i as u64 + 1)
}

/// Bits of a SET value `"a,c"`.
fn set_bits(values: &[String], v: &Json) -> Option<u64> {
    let s = v.as_str()?;
    if s.is_empty() {
        return Some(0);
    }
    s.split(',').try_fold(0u64, |bits, member| {
        let i = values.iter().position(|m| m == member)?;
        Some(bits | 1u64.checked_shl(i as u32)?)
    })
}

fn int(v: &Json) -> Option<i128> {
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
}

fn base64_bytes(v: &Json) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()
}

/// PAD SPACE comparison: the shorter string compares as if padded with spaces.
fn compare_pad_space(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        Ordering::Equal => {}
        other => return other,
    }
    // The rest of the longer string against spaces (a multi-byte character's
    // first byte is above a space).
    let rest_order = |rest: &[u8]| {
        rest.iter()
            .find(|&&c| c != b' ')
            .map_or(Ordering::Equal, |&c| c.cmp(&b' '))
    };
    if a.len() > n {
        rest_order(&a[n..])
    } else {
        rest_order(&b[n..]).reverse()
    }
}

/// `(negative, integer digits without leading zeros, fraction digits without
/// trailing zeros)` of a decimal string; `None` when it is not one.
fn decimal_parts(s: &str) -> Option<(bool, &str, &str)> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    // -0 is 0.
    Some((negative && !(int.is_empty() && frac.is_empty()), int, frac))
}

/// Compares two decimal strings exactly.
fn compare_decimals(a: &str, b: &str) -> Option<Ordering> {
    let (neg_a, int_a, frac_a) = decimal_parts(a)?;
    let (neg_b, int_b, frac_b) = decimal_parts(b)?;
    let magnitude = int_a
        .len()
        .cmp(&int_b.len())
        .then_with(|| int_a.cmp(int_b))
        .then_with(|| frac_a.cmp(frac_b));
    Some(match (neg_a, neg_b) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
    })
}

/// Microseconds of a TIME value `[-]h:mm:ss[.ffffff]`.
fn time_micros(s: &str) -> Option<i64> {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let mut parts = hms.split(':');
    let mut next = || parts.next()?.parse::<i64>().ok();
    let (h, m, sec) = (next()?, next()?, next()?);
    if frac.len() > 6 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let micros = format!("{frac:0<6}").parse::<i64>().ok()?;
    let total = ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
    Some(if negative { -total } else { total })
}

/// The segments of one table that streaming must consult.
#[derive(Default)]
pub struct Coverage {
    /// Per table index: its segments in key order (None first; the snapshot
    /// stores them in that order).
    by_table: Vec<Vec<Segment>>,
    /// Where keys in a collation only the server knows are compared.
    server: ServerCompare,
}

/// A connection opened on first use, for key comparisons the server makes.
#[derive(Default)]
struct ServerCompare {
    config: Option<crate::config::MysqlSourceConfig>,
    conn: Option<mysql_async::Conn>,
}

impl Coverage {
    /// Groups `segments` by the index `index_of` gives their table (segments of
    /// tables no longer captured are dropped); keys that only the server can
    /// order are compared on a connection made from `config`.
    pub fn new(
        segments: &[Segment],
        tables: usize,
        index_of: impl Fn(&str) -> Option<usize>,
        config: Option<crate::config::MysqlSourceConfig>,
    ) -> Self {
        let mut by_table = vec![Vec::new(); tables];
        for s in segments {
            if let Some(i) = index_of(&s.table) {
                by_table[i].push(s.clone());
            }
        }
        for list in &mut by_table {
            // Stored in key order already; integer lists of old versions are
            // sorted again (a stable sort, so server-ordered keys keep theirs).
            if list.iter().all(|s| !s.order.needs_server()) {
                list.sort_by(|a, b| match (&a.after, &b.after) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) => a.order.compare(x, y).unwrap_or(Ordering::Equal),
                });
            }
        }
        Self {
            by_table,
            server: ServerCompare { config, conn: None },
        }
    }

    /// True when no segment is left.
    pub fn is_empty(&self) -> bool {
        self.by_table.iter().all(Vec::is_empty)
    }

    /// True when a change of `key` in table `table` made by a transaction
    /// starting at `(file, pos)` is already in the snapshot of its range.
    pub async fn covers(
        &mut self,
        table: usize,
        key: &[Json],
        file: &str,
        pos: u64,
    ) -> hstream_io_runtime::Result<bool> {
        let Some(list) = self.by_table.get(table) else {
            return Ok(false);
        };
        // Only a range read at a later position can hold the change.
        if list.iter().all(|s| !before(file, pos, &s.file, s.pos)) {
            return Ok(false);
        }
        for s in list.iter().rev() {
            let holds = match &s.after {
                None => true,
                Some(after) => {
                    let ordering = if s.order.needs_server() {
                        self.server.compare(&s.order, after, key).await?
                    } else {
                        s.order.compare(after, key)
                    };
                    ordering == Some(Ordering::Less)
                }
            };
            if holds {
                return Ok(before(file, pos, &s.file, s.pos));
            }
        }
        Ok(false)
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
            // No comparison is needed any more: close its connection.
            self.server.conn = None;
        }
        passed
    }

    /// The segments, for the stored position.
    pub fn segments(&self) -> Vec<Segment> {
        self.by_table.iter().flatten().cloned().collect()
    }
}

/// Compares on the server, connecting on first use.
impl ServerCompare {
    async fn compare(
        &mut self,
        order: &KeyOrder,
        a: &[Json],
        b: &[Json],
    ) -> hstream_io_runtime::Result<Option<Ordering>> {
        if self.conn.is_none() {
            let Some(config) = &self.config else {
                return Err(hstream_io_runtime::Error::internal(
                    "a resumed snapshot's key order needs the server, and no connection is configured",
                ));
            };
            self.conn = Some(crate::error::connect(config).await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let result = order.compare_on(a, b, conn).await;
        if result.is_err() {
            self.conn = None; // a failed session is not reused
        }
        result
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
            order: KeyOrder::default(),
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
        let ints = KeyOrder::default();
        assert_eq!(
            ints.compare(&k(json!([1, 5])), &k(json!([2, 0]))),
            Some(Ordering::Less)
        );
        assert_eq!(
            ints.compare(&k(json!([-1])), &k(json!([18446744073709551615u64]))),
            Some(Ordering::Less)
        );
        assert_eq!(ints.compare(&k(json!(["a"])), &k(json!(["b"]))), None);
        assert!(!ints.accepts(&k(json!([null]))));
    }

    fn order(cols: &[KeyCol]) -> KeyOrder {
        KeyOrder(cols.to_vec())
    }

    fn cmp(col: KeyCol, a: Json, b: Json) -> Option<Ordering> {
        order(&[col]).compare(&[a], &[b])
    }

    #[test]
    fn binary_collation_text_pads_with_spaces_unless_no_pad() {
        use Ordering::*;
        // Code point order: upper case, then `_`, then lower case, then é.
        assert_eq!(cmp(KeyCol::Text, json!("B"), json!("_")), Some(Less));
        assert_eq!(cmp(KeyCol::Text, json!("_"), json!("a")), Some(Less));
        assert_eq!(cmp(KeyCol::Text, json!("z"), json!("é")), Some(Less));
        assert_eq!(cmp(KeyCol::Text, json!("a10"), json!("a9")), Some(Less));
        // PAD SPACE: trailing spaces do not count; below a space sorts first.
        assert_eq!(cmp(KeyCol::Text, json!("a  "), json!("a")), Some(Equal));
        assert_eq!(cmp(KeyCol::Text, json!("a\t"), json!("a")), Some(Less));
        assert_eq!(cmp(KeyCol::Text, json!("a"), json!("a\t")), Some(Greater));
        assert_eq!(cmp(KeyCol::Text, json!("a"), json!("a!")), Some(Less));
        assert_eq!(
            cmp(KeyCol::TextNoPad, json!("a "), json!("a")),
            Some(Greater)
        );
        assert_eq!(
            cmp(KeyCol::TextNoPad, json!("a\t"), json!("a")),
            Some(Greater)
        );
        assert_eq!(cmp(KeyCol::Text, json!(1), json!("a")), None);
    }

    #[test]
    fn decimals_times_dates_and_bytes_compare_by_value() {
        use Ordering::*;
        let d = |a: &str, b: &str| cmp(KeyCol::Decimal, json!(a), json!(b));
        assert_eq!(d("9.50", "10.00"), Some(Less));
        assert_eq!(d("-10.00", "-9.50"), Some(Less));
        assert_eq!(d("-0.01", "0.00"), Some(Less));
        assert_eq!(d("-0.00", "0.00"), Some(Equal));
        assert_eq!(d("1.5", "1.50"), Some(Equal));
        assert_eq!(
            d(
                "123456789012345678901234567890.1",
                "123456789012345678901234567890.01"
            ),
            Some(Greater)
        );
        assert_eq!(d("1e5", "1"), None);
        let t = |a: &str, b: &str| cmp(KeyCol::Time, json!(a), json!(b));
        assert_eq!(t("-838:59:59.000000", "-1:00:00.000000"), Some(Less));
        assert_eq!(t("9:00:00", "10:00:00"), Some(Less));
        assert_eq!(t("-00:00:01", "00:00:00"), Some(Less));
        assert_eq!(t("00:00:00.5", "00:00:00.499999"), Some(Greater));
        let f = |a: &str, b: &str| cmp(KeyCol::Fixed, json!(a), json!(b));
        assert_eq!(
            f("2024-02-29T12:00:00.001", "2024-02-29T12:00:00.010"),
            Some(Less)
        );
        assert_eq!(f("0000-00-00", "0999-01-01"), Some(Less));
        let b = |a: &[u8], c: &[u8]| {
            let e = |x: &[u8]| json!(base64::engine::general_purpose::STANDARD.encode(x));
            cmp(KeyCol::Bytes, e(a), e(c))
        };
        assert_eq!(b(b"\x00\xff", b"\x01"), Some(Less));
        assert_eq!(b(b"a", b"a "), Some(Less), "binary strings do not pad");
        assert_eq!(
            cmp(KeyCol::Bytes, json!("not base64!"), json!("AA==")),
            None
        );
    }

    #[test]
    fn key_orders_follow_type_and_collation() {
        use crate::types::Column;
        let schema = |kinds: Vec<ColKind>| TableSchema {
            table: crate::config::TableRef {
                database: "d".into(),
                name: "t".into(),
            },
            key: (0..kinds.len()).collect(),
            columns: kinds
                .into_iter()
                .enumerate()
                .map(|(i, kind)| Column {
                    name: format!("c{i}"),
                    kind,
                })
                .collect(),
        };
        let cs = |charset: &str, collation: &str| (Some(charset.into()), Some(collation.into()));
        let none = (None, None);
        let text = ColKind::Text(Charset::Utf8);
        let s = schema(vec![text.clone(), ColKind::DateTime(3), ColKind::Decimal]);
        assert_eq!(
            KeyOrder::of(
                &s,
                &[cs("utf8mb4", "utf8mb4_bin"), none.clone(), none.clone()]
            ),
            Some(order(&[KeyCol::Text, KeyCol::Fixed, KeyCol::Decimal]))
        );
        assert_eq!(
            KeyOrder::of(
                &schema(vec![text.clone()]),
                &[cs("utf8mb4", "utf8mb4_0900_bin")]
            ),
            Some(order(&[KeyCol::TextNoPad]))
        );
        let general = KeyOrder::of(
            &s,
            &[
                cs("utf8mb4", "utf8mb4_general_ci"),
                none.clone(),
                none.clone(),
            ],
        )
        .unwrap();
        assert_eq!(
            general.column(0),
            &KeyCol::Collated("utf8mb4".into(), "utf8mb4_general_ci".into())
        );
        assert!(general.needs_server());
        assert_eq!(
            general.compare(&[json!("a")], &[json!("b")]),
            None,
            "the server decides"
        );
        assert!(general.accepts(&[json!("a"), json!("2024-01-01T00:00:00.000"), json!("1.00")]));
        let latin1 = schema(vec![ColKind::Text(Charset::Latin1)]);
        assert_eq!(
            KeyOrder::of(&latin1, &[cs("latin1", "latin1_bin")])
                .unwrap()
                .column(0),
            &KeyCol::Collated("latin1".into(), "latin1_bin".into()),
            "latin1's bytes are not code point order"
        );
        assert_eq!(KeyOrder::of(&latin1, &[cs("latin1", "x; DROP")]), None);
        assert_eq!(
            KeyOrder::of(&schema(vec![ColKind::Json]), std::slice::from_ref(&none)),
            None
        );
        let ints = schema(vec![ColKind::Int {
            unsigned: false,
            bytes: 8,
        }]);
        assert!(KeyOrder::of(&ints, &[none]).unwrap().is_integers());
    }

    #[test]
    fn enum_set_float_and_bit_keys_order_as_the_server_sorts_them() {
        use Ordering::*;
        let e = KeyCol::Enum(vec!["small".into(), "big".into(), "medium".into()]);
        assert_eq!(
            cmp(e.clone(), json!("small"), json!("big")),
            Some(Less),
            "by position"
        );
        assert_eq!(
            cmp(e.clone(), json!(""), json!("small")),
            Some(Less),
            "the error value is 0"
        );
        assert_eq!(cmp(e.clone(), json!("huge"), json!("small")), None);
        assert_eq!(
            e.sql_bound(&json!("medium")).1,
            Some(mysql_async::Value::UInt(3))
        );
        let set = KeyCol::Set(vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(
            cmp(set.clone(), json!("c"), json!("a,b")),
            Some(Greater),
            "bits 4 > 3"
        );
        assert_eq!(cmp(set.clone(), json!(""), json!("a")), Some(Less));
        assert_eq!(
            set.sql_bound(&json!("a,c")).1,
            Some(mysql_async::Value::UInt(5))
        );
        assert_eq!(cmp(KeyCol::Float, json!(-1.5), json!(0.25)), Some(Less));
        assert_eq!(
            cmp(KeyCol::Int, json!(false), json!(true)),
            Some(Less),
            "BIT(1)"
        );
        let collated = KeyCol::Collated("utf8mb4".into(), "utf8mb4_general_ci".into());
        assert_eq!(
            collated.sql_bound(&json!("x")).0,
            "CONVERT(? USING utf8mb4) COLLATE utf8mb4_general_ci"
        );
    }

    #[test]
    fn segments_store_a_non_integer_order_and_read_old_ones_as_integers() {
        let mut s = seg(Some(1), "f.000001", 4);
        assert!(!serde_json::to_string(&s).unwrap().contains("order"));
        s.order = order(&[KeyCol::Text, KeyCol::Int]);
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""order":["text","int"]"#), "{text}");
        assert_eq!(serde_json::from_str::<Segment>(&text).unwrap(), s);
        let old: Segment =
            serde_json::from_str(r#"{"table":"d.t","after":[5],"file":"f.1","pos":4}"#).unwrap();
        assert!(old.order.is_integers());
    }

    /// [`Coverage::covers`] run to completion (no server needed here).
    fn covers(c: &mut Coverage, table: usize, key: &[Json], file: &str, pos: u64) -> bool {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(c.covers(table, key, file, pos))
            .unwrap()
    }

    #[test]
    fn text_keys_find_their_range_in_the_collation_order() {
        let text = order(&[KeyCol::Text]);
        let seg_at = |after: Option<&str>, pos: u64| Segment {
            order: text.clone(),
            after: after.map(|a| vec![json!(a)]),
            ..seg(None, "f.000001", pos)
        };
        // (-inf, "a9"] read at 100, ("a9", +inf) at 500.
        let mut c = Coverage::new(
            &[seg_at(Some("a9"), 500), seg_at(None, 100)],
            1,
            |_| Some(0),
            None,
        );
        let key = |s: &str| vec![json!(s)];
        assert!(
            !covers(&mut c, 0, &key("a10"), "f.000001", 200),
            "a10 < a9 as text"
        );
        assert!(
            !covers(&mut c, 0, &key("a9  "), "f.000001", 200),
            "equal to the bound"
        );
        assert!(covers(&mut c, 0, &key("a9!"), "f.000001", 200));
        assert!(covers(&mut c, 0, &key("b"), "f.000001", 200));
    }

    #[test]
    fn a_change_is_covered_only_by_a_later_snapshot_of_its_range() {
        // (-inf, 100] read at f.1:1000 (the stream start), (100, +inf) at f.2:500.
        let mut c = Coverage::new(
            &[seg(Some(100), "f.000002", 500), seg(None, "f.000001", 1000)],
            1,
            |t| (t == "d.t").then_some(0),
            None,
        );
        assert!(
            !covers(&mut c, 0, &key(100), "f.000001", 2000),
            "first range: streamed"
        );
        assert!(
            covers(&mut c, 0, &key(101), "f.000001", 2000),
            "in the later snapshot"
        );
        assert!(covers(&mut c, 0, &key(101), "f.000002", 499));
        assert!(
            !covers(&mut c, 0, &key(101), "f.000002", 500),
            "at the position: after it"
        );
        assert!(!c.prune("f.000002", 400));
        assert!(c.prune("f.000002", 500));
        assert!(c.is_empty());
        assert!(!covers(&mut c, 0, &key(101), "f.000001", 2000));
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
