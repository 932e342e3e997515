//! Row images of ROWS events, decoded straight from the event's bytes into
//! [`Cell`]s that borrow them: no `Column` list, `Vec<Value>` or `Vec<u8>`
//! per row or value (what `mysql_common`'s `BinlogRow` builds).
//!
//! `mysql_common` still parses what is cheap: the TABLE_MAP (column types,
//! metadata, optional metadata) and the ROWS event's header (table id, column
//! count, image bitmaps). [`Layout`] turns a TABLE_MAP into one decoding step
//! per column, once per TABLE_MAP; [`RowsDecoder`] walks the row images.
//!
//! The values are those `mysql_common`'s reader gives (the tests compare the
//! two on every column type), except that YEAR, TIMESTAMP(n), DECIMAL and
//! binary JSON stay undecoded ([`Cell::Year`], [`Cell::Epoch`],
//! [`Cell::Decimal`], [`Cell::Jsonb`]) until converted. Every length is
//! checked: a truncated or corrupt row is an error naming the column and the
//! byte offset, never a panic.

use std::fmt;

use mysql_common::binlog::events::{OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_common::binlog::misc::my_timestamp_from_binary;
use mysql_common::constants::ColumnType;

use crate::types::{Cell, decimal_bin_size};

/// How one column's value is read from a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decode {
    /// TINYINT (unsigned?).
    Tiny(bool),
    /// SMALLINT.
    Short(bool),
    /// MEDIUMINT.
    Int24(bool),
    /// INT.
    Long(bool),
    /// BIGINT.
    LongLong(bool),
    Float,
    Double,
    /// Old TIMESTAMP: epoch seconds.
    Timestamp,
    /// TIMESTAMP(fsp).
    Timestamp2(u8),
    /// Old TIME: HHMMSS.
    Time,
    /// TIME(fsp).
    Time2(u8),
    /// Old DATETIME: YYYYMMDDHHMMSS.
    DateTime,
    /// DATETIME(fsp).
    DateTime2(u8),
    /// DATE (NEWDATE).
    Date,
    Year,
    /// BIT: bytes.
    Bit(usize),
    /// MySQL's binary JSON.
    Json,
    /// DECIMAL(precision, scale): packed bytes.
    Decimal(u8, u8, usize),
    /// ENUM stored in 1 or 2 bytes.
    Enum(u8),
    /// SET: bytes.
    Set(usize),
    /// BLOB / TEXT / GEOMETRY: bytes of the length prefix (1–4).
    Blob(u8),
    /// VARCHAR / CHAR: a 2-byte length prefix (else 1).
    Sized(bool),
    /// A column whose non-NULL values cannot be read (why).
    Bad(&'static str),
}

/// The decoding steps of a TABLE_MAP's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    columns: Vec<Decode>,
}

impl Layout {
    /// Reads the column types and metadata of `tme`. Fails where
    /// `mysql_common`'s reader fails every row of the table (an unknown
    /// column type, corrupt optional metadata).
    pub fn new(tme: &TableMapEvent<'_>) -> Result<Self, String> {
        let count = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
        let meta = OptionalMetaExtractor::new(tme.iter_optional_meta())
            .map_err(|e| format!("corrupt optional metadata in the TABLE_MAP: {e}"))?;
        let mut signedness = meta.iter_signedness();
        let mut charsets = meta.iter_charset();
        let mut enum_set_charsets = meta.iter_enum_and_set_charset();
        let mut names = meta.iter_column_name();
        let mut keys = meta.iter_primary_key();
        let corrupt = |i: usize, e: std::io::Error| {
            format!("corrupt optional metadata in the TABLE_MAP for column {i}: {e}")
        };
        let mut columns = Vec::with_capacity(count.min(4096));
        for i in 0..count {
            let ty = match tme.get_column_type(i) {
                Ok(Some(ty)) => ty,
                Ok(None) => return Err(format!("the TABLE_MAP has no type for column {i}")),
                Err(e) => return Err(format!("column {i} of the TABLE_MAP: {e}")),
            };
            let unsigned = ty.is_numeric_type() && signedness.next().unwrap_or(false);
            // The remaining metadata is not used, but read as mysql_common
            // reads it, so the same TABLE_MAPs are refused.
            if ty.is_character_type() {
                charsets.next().transpose().map_err(|e| corrupt(i, e))?;
            } else if ty.is_enum_or_set_type() {
                enum_set_charsets
                    .next()
                    .transpose()
                    .map_err(|e| corrupt(i, e))?;
            }
            names.next().transpose().map_err(|e| corrupt(i, e))?;
            keys.next_if(|k| k.is_err() || k.as_ref().ok() == Some(&(i as u64)))
                .transpose()
                .map_err(|e| corrupt(i, e))?;
            // O(i) per call: a TABLE_MAP is read once per transaction.
            let meta = tme.get_column_metadata(i).unwrap_or(&[]);
            columns.push(decode_of(ty, meta, unsigned));
        }
        Ok(Self { columns })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }
}

fn decode_of(ty: ColumnType, meta: &[u8], unsigned: bool) -> Decode {
    use ColumnType::*;
    const NO_META: Decode = Decode::Bad("its TABLE_MAP metadata is missing");
    let ty = if ty == MYSQL_TYPE_TYPED_ARRAY {
        match meta.first() {
            Some(&b) => ColumnType::try_from(b).unwrap_or(ty),
            None => return NO_META,
        }
    } else {
        ty
    };
    let m0 = meta.first().copied();
    let m1 = meta.get(1).copied();
    match ty {
        MYSQL_TYPE_TINY => Decode::Tiny(unsigned),
        MYSQL_TYPE_SHORT => Decode::Short(unsigned),
        MYSQL_TYPE_INT24 => Decode::Int24(unsigned),
        MYSQL_TYPE_LONG => Decode::Long(unsigned),
        MYSQL_TYPE_LONGLONG => Decode::LongLong(unsigned),
        MYSQL_TYPE_FLOAT => Decode::Float,
        MYSQL_TYPE_DOUBLE => Decode::Double,
        MYSQL_TYPE_TIMESTAMP => Decode::Timestamp,
        MYSQL_TYPE_TIME => Decode::Time,
        MYSQL_TYPE_DATETIME => Decode::DateTime,
        MYSQL_TYPE_YEAR => Decode::Year,
        MYSQL_TYPE_NEWDATE => Decode::Date,
        MYSQL_TYPE_JSON => Decode::Json,
        MYSQL_TYPE_TIMESTAMP2 => m0.map_or(NO_META, Decode::Timestamp2),
        MYSQL_TYPE_DATETIME2 => m0.map_or(NO_META, Decode::DateTime2),
        MYSQL_TYPE_TIME2 => m0.map_or(NO_META, Decode::Time2),
        MYSQL_TYPE_BIT => match (m0, m1) {
            (Some(bits), Some(bytes)) => {
                Decode::Bit((usize::from(bytes) * 8 + usize::from(bits)).div_ceil(8))
            }
            _ => NO_META,
        },
        MYSQL_TYPE_NEWDECIMAL => match (m0, m1) {
            (Some(precision), Some(scale)) => match decimal_bin_size(precision, scale) {
                Some(n) => Decode::Decimal(precision, scale, n),
                None => Decode::Bad("its DECIMAL scale exceeds its precision"),
            },
            _ => NO_META,
        },
        MYSQL_TYPE_ENUM => match m1 {
            Some(n @ (1 | 2)) => Decode::Enum(n),
            Some(_) => Decode::Bad("its ENUM is stored in neither 1 nor 2 bytes"),
            None => NO_META,
        },
        MYSQL_TYPE_SET => m1.map_or(NO_META, |n| Decode::Set(usize::from(n))),
        MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_VECTOR => match m0 {
            Some(n @ 1..=4) => Decode::Blob(n),
            Some(_) => Decode::Bad("its BLOB length prefix is not 1 to 4 bytes"),
            None => NO_META,
        },
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => match (m0, m1) {
            (Some(lo), Some(hi)) => Decode::Sized(u16::from_le_bytes([lo, hi]) >= 256),
            _ => NO_META,
        },
        MYSQL_TYPE_STRING => match (m0, m1) {
            (Some(b0), Some(b1)) => {
                let (b0, b1) = (usize::from(b0), usize::from(b1));
                let length = if b0 == 0 {
                    b1 << 8 // little-endian u16 with a zero low byte
                } else if (b0 & 0x30) != 0x30 {
                    // A long CHAR(): the length's high bits are in the type byte.
                    b1 | (((b0 & 0x30) ^ 0x30) << 4)
                } else {
                    b1
                };
                Decode::Sized(length >= 256)
            }
            _ => NO_META,
        },
        _ => Decode::Bad("its column type has no row-image decoding"),
    }
}

/// Why a row could not be decoded: the column, and the byte offset in the
/// event's rows data where its value (or the row's NULL bitmap) starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Column index (`None`: the row's NULL bitmap).
    pub column: Option<usize>,
    /// Byte offset in the rows data.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(
                f,
                "column {c} at byte {} of the rows data: {}",
                self.offset, self.reason
            ),
            None => write!(
                f,
                "NULL bitmap at byte {} of the rows data: {}",
                self.offset, self.reason
            ),
        }
    }
}

impl std::error::Error for RowError {}

/// Walks the rows of one ROWS event (v1 or v2: WRITE, UPDATE, DELETE).
pub struct RowsDecoder<'a> {
    layout: &'a Layout,
    data: &'a [u8],
    at: usize,
    before: bool,
    after: bool,
}

impl<'a> RowsDecoder<'a> {
    /// The rows of `rows`, whose TABLE_MAP gave `layout`. Fails when the
    /// column counts differ or an image leaves columns out (only full row
    /// images are captured: `binlog_row_image=FULL`).
    pub fn new(layout: &'a Layout, rows: &'a RowsEventData<'a>) -> Result<Self, String> {
        let n = layout.len();
        if rows.num_columns() != n as u64 {
            return Err(format!(
                "the rows event has {} columns but its TABLE_MAP {n}",
                rows.num_columns()
            ));
        }
        let before = rows.columns_before_image();
        let after = rows.columns_after_image();
        let full = before.is_none_or(|b| b.len() == n && b.count_ones() == n)
            && after.is_none_or(|b| b.len() == n && b.count_ones() == n);
        if !full {
            return Err(
                "its row images leave columns out (the server's binlog_row_image is not FULL)"
                    .into(),
            );
        }
        Ok(Self {
            layout,
            data: rows.rows_data(),
            at: 0,
            before: before.is_some(),
            after: after.is_some(),
        })
    }

    /// True when rows have a before image (UPDATE, DELETE).
    pub fn has_before(&self) -> bool {
        self.before
    }

    /// True when rows have an after image (WRITE, UPDATE).
    pub fn has_after(&self) -> bool {
        self.after
    }

    /// Reads the next row's images into `before` / `after` (each cleared
    /// first; left empty when the event has no such image). `Ok(false)` when
    /// no row is left.
    pub fn next_row(
        &mut self,
        before: &mut Vec<Cell<'a>>,
        after: &mut Vec<Cell<'a>>,
    ) -> Result<bool, RowError> {
        before.clear();
        after.clear();
        if self.at >= self.data.len() {
            return Ok(false);
        }
        if self.before {
            self.image(before)?;
        }
        if self.after {
            self.image(after)?;
        }
        Ok(true)
    }

    fn image(&mut self, out: &mut Vec<Cell<'a>>) -> Result<(), RowError> {
        let n = self.layout.columns.len();
        let start = self.at;
        let nulls = take(self.data, &mut self.at, n.div_ceil(8)).map_err(|reason| RowError {
            column: None,
            offset: start,
            reason,
        })?;
        for (i, d) in self.layout.columns.iter().enumerate() {
            if nulls[i / 8] & (1 << (i % 8)) != 0 {
                out.push(Cell::Null);
                continue;
            }
            let start = self.at;
            let cell = value(*d, self.data, &mut self.at).map_err(|reason| RowError {
                column: Some(i),
                offset: start,
                reason,
            })?;
            out.push(cell);
        }
        Ok(())
    }
}

/// The next `n` bytes of `data` from `*at`.
fn take<'a>(data: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let left = data.len() - *at;
    if n > left {
        return Err(format!("truncated: needs {n} bytes, {left} left"));
    }
    let b = &data[*at..*at + n];
    *at += n;
    Ok(b)
}

fn array<const N: usize>(data: &[u8], at: &mut usize) -> Result<[u8; N], String> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(data, at, N)?);
    Ok(a)
}

fn u24(b: [u8; 3]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], 0])
}

/// Bytes of the fraction of TIME/DATETIME/TIMESTAMP(fsp).
fn frac_bytes(fsp: u8) -> usize {
    match fsp {
        1 | 2 => 1,
        3 | 4 => 2,
        5 | 6 => 3,
        _ => 0,
    }
}

/// Big-endian unsigned integer of `b` (at most 8 bytes).
fn be(b: &[u8]) -> i64 {
    b.iter().fold(0i64, |acc, x| (acc << 8) | i64::from(*x))
}

/// Big-endian signed integer of `b` (1 to 4 bytes).
fn be_signed(b: &[u8]) -> i64 {
    let shift = 64 - 8 * b.len() as u32;
    (be(b) << shift) >> shift
}

/// `int` hours/minutes/seconds (or date and time) bits above 24 bits of fraction.
fn packed(int: i64, frac: i64) -> i64 {
    (((int as u64) << 24) as i64).wrapping_add(frac)
}

/// TIME(fsp) (`3 + frac_bytes(fsp)` bytes), as MySQL's
/// `my_time_packed_from_binary` and `TIME_from_longlong_time_packed` read it;
/// arithmetic wraps where corrupt input would overflow.
fn time2(b: &[u8], fsp: u8) -> Cell<'static> {
    const INT_OFS: i64 = 0x80_0000;
    let mut int = be(&b[..3]) - INT_OFS;
    let tmp = match fsp {
        1 | 2 => {
            let mut frac = be(&b[3..4]);
            if int < 0 && frac > 0 {
                int += 1;
                frac -= 0x100;
            }
            packed(int, frac * 10_000)
        }
        3 | 4 => {
            let mut frac = be(&b[3..5]);
            if int < 0 && frac > 0 {
                int += 1;
                frac -= 0x1_0000;
            }
            packed(int, frac * 100)
        }
        5 | 6 => be(&b[..6]) - 0x8000_0000_0000,
        _ => packed(int, 0),
    };
    let negative = tmp < 0;
    let tmp = tmp.wrapping_abs();
    let hms = tmp >> 24;
    let hours = ((hms >> 12) as u32) % (1 << 10);
    Cell::Time(
        negative,
        hours / 24,
        (hours % 24) as u8,
        (((hms >> 6) as u32) % (1 << 6)) as u8,
        ((hms as u32) % (1 << 6)) as u8,
        (tmp % (1 << 24)) as u32,
    )
}

/// DATETIME(fsp) (`5 + frac_bytes(fsp)` bytes), as MySQL's
/// `my_datetime_packed_from_binary` and `TIME_from_longlong_datetime_packed`
/// read it; arithmetic wraps where corrupt input would overflow.
fn datetime2(b: &[u8], fsp: u8) -> Cell<'static> {
    const INT_OFS: i64 = 0x80_0000_0000;
    let int = be(&b[..5]) - INT_OFS;
    let frac = match fsp {
        1 | 2 => be_signed(&b[5..6]) * 10_000,
        3 | 4 => be_signed(&b[5..7]) * 100,
        5 | 6 => be_signed(&b[5..8]),
        _ => 0,
    };
    let tmp = packed(int, frac).wrapping_abs();
    let ymdhms = tmp >> 24;
    let ymd = ymdhms >> 17;
    let ym = ymd >> 5;
    let hms = ymdhms % (1 << 17);
    Cell::Date(
        (ym / 13) as u16,
        (ym % 13) as u8,
        (ymd % (1 << 5)) as u8,
        (hms >> 12) as u8,
        ((hms >> 6) % (1 << 6)) as u8,
        (hms % (1 << 6)) as u8,
        (tmp % (1 << 24)) as u32,
    )
}

fn value<'a>(d: Decode, data: &'a [u8], at: &mut usize) -> Result<Cell<'a>, String> {
    let io = |e: std::io::Error| format!("unreadable value: {e}");
    Ok(match d {
        Decode::Tiny(unsigned) => {
            let [b] = array::<1>(data, at)?;
            Cell::Int(if unsigned {
                i64::from(b)
            } else {
                i64::from(b as i8)
            })
        }
        Decode::Short(unsigned) => {
            let b = array::<2>(data, at)?;
            Cell::Int(if unsigned {
                i64::from(u16::from_le_bytes(b))
            } else {
                i64::from(i16::from_le_bytes(b))
            })
        }
        Decode::Int24(unsigned) => {
            let v = u24(array::<3>(data, at)?);
            Cell::Int(if unsigned {
                i64::from(v)
            } else {
                i64::from(((v << 8) as i32) >> 8)
            })
        }
        Decode::Long(unsigned) => {
            let b = array::<4>(data, at)?;
            Cell::Int(if unsigned {
                i64::from(u32::from_le_bytes(b))
            } else {
                i64::from(i32::from_le_bytes(b))
            })
        }
        Decode::LongLong(unsigned) => {
            let v = u64::from_le_bytes(array::<8>(data, at)?);
            if unsigned {
                i64::try_from(v).map_or(Cell::UInt(v), Cell::Int)
            } else {
                Cell::Int(v as i64)
            }
        }
        Decode::Float => Cell::Float(f32::from_le_bytes(array::<4>(data, at)?)),
        Decode::Double => Cell::Double(f64::from_le_bytes(array::<8>(data, at)?)),
        Decode::Timestamp => Cell::Int(i64::from(u32::from_le_bytes(array::<4>(data, at)?))),
        Decode::Timestamp2(fsp) => {
            let b = take(data, at, 4 + frac_bytes(fsp))?;
            let (secs, us) = my_timestamp_from_binary(b, fsp).map_err(io)?;
            Cell::Epoch(secs, us)
        }
        Decode::Time => {
            let t = u24(array::<3>(data, at)?);
            Cell::Time(
                false,
                0,
                (t / 10000) as u8,
                ((t % 10000) / 100) as u8,
                (t % 100) as u8,
                0,
            )
        }
        Decode::Time2(fsp) => time2(take(data, at, 3 + frac_bytes(fsp))?, fsp),
        Decode::DateTime => {
            let raw = u64::from_le_bytes(array::<8>(data, at)?);
            let (d, t) = (raw / 1_000_000, raw % 1_000_000);
            Cell::Date(
                (d / 10000) as u16,
                ((d % 10000) / 100) as u8,
                (d % 100) as u8,
                (t / 10000) as u8,
                ((t % 10000) / 100) as u8,
                (t % 100) as u8,
                0,
            )
        }
        Decode::DateTime2(fsp) => datetime2(take(data, at, 5 + frac_bytes(fsp))?, fsp),
        Decode::Date => {
            let v = u24(array::<3>(data, at)?);
            Cell::Date(
                (v >> 9) as u16,
                ((v >> 5) & 15) as u8,
                (v & 31) as u8,
                0,
                0,
                0,
                0,
            )
        }
        Decode::Year => Cell::Year(array::<1>(data, at)?[0]),
        Decode::Bit(n) | Decode::Set(n) => Cell::Bytes(take(data, at, n)?),
        Decode::Json => {
            let n = u32::from_le_bytes(array::<4>(data, at)?) as usize;
            Cell::Jsonb(take(data, at, n)?)
        }
        Decode::Decimal(precision, scale, n) => Cell::Decimal(take(data, at, n)?, precision, scale),
        Decode::Enum(1) => Cell::Int(i64::from(array::<1>(data, at)?[0])),
        Decode::Enum(_) => Cell::Int(i64::from(u16::from_le_bytes(array::<2>(data, at)?))),
        Decode::Blob(prefix) => {
            let b = take(data, at, usize::from(prefix))?;
            let n = b
                .iter()
                .rev()
                .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
            Cell::Bytes(take(data, at, n)?)
        }
        Decode::Sized(long) => {
            let n = if long {
                usize::from(u16::from_le_bytes(array::<2>(data, at)?))
            } else {
                usize::from(array::<1>(data, at)?[0])
            };
            Cell::Bytes(take(data, at, n)?)
        }
        Decode::Bad(why) => return Err(format!("cannot be read: {why}")),
    })
}

#[cfg(test)]
mod tests {
    //! The decoder against `mysql_common`'s own (`BinlogRow`, the reader
    //! used before) on constructed TABLE_MAP and ROWS events: every column
    //! type, NULLs, v1 and v2 events, updates with both images, and every
    //! truncation and byte corruption of the rows data.

    use super::*;
    use crate::config::{TableRef, ZeroDate};
    use crate::types::{Charset, ColKind, Column, JsonRow, Origin, TableSchema};
    use mysql_async::Value;
    use mysql_common::binlog::BinlogCtx;
    use mysql_common::binlog::consts::BinlogVersion;
    use mysql_common::binlog::events::{
        DeleteRowsEvent, DeleteRowsEventV1, FormatDescriptionEvent, UpdateRowsEvent,
        UpdateRowsEventV1, WriteRowsEvent, WriteRowsEventV1,
    };
    use mysql_common::binlog::value::BinlogValue;
    use mysql_common::io::ParseBuf;
    use serde_json::json;

    /// One column: TABLE_MAP type and metadata, signedness, the schema's kind.
    struct Col {
        ty: u8,
        meta: Vec<u8>,
        unsigned: bool,
        kind: ColKind,
    }

    fn col(ty: u8, meta: &[u8], kind: ColKind) -> Col {
        Col {
            ty,
            meta: meta.to_vec(),
            unsigned: false,
            kind,
        }
    }

    fn int(bytes: u8, unsigned: bool) -> ColKind {
        ColKind::Int { unsigned, bytes }
    }

    fn lenenc(n: usize, out: &mut Vec<u8>) {
        assert!(n < 251);
        out.push(n as u8);
    }

    /// The body of a TABLE_MAP for `cols` (table id 7, `d`.`t`), with
    /// signedness and column names in its optional metadata.
    fn table_map(cols: &[Col]) -> Vec<u8> {
        let mut b = vec![7, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[1, b'd', 0, 1, b't', 0]);
        lenenc(cols.len(), &mut b);
        b.extend(cols.iter().map(|c| c.ty));
        let meta: Vec<u8> = cols.iter().flat_map(|c| c.meta.clone()).collect();
        lenenc(meta.len(), &mut b);
        b.extend_from_slice(&meta);
        b.extend(std::iter::repeat_n(0xff, cols.len().div_ceil(8)));
        // SIGNEDNESS (1): one bit per numeric column, most significant first.
        let numeric: Vec<bool> = cols
            .iter()
            .filter(|c| {
                let real = if c.ty == 254 && c.meta[0] != 0 {
                    c.meta[0] | 0x30
                } else {
                    c.ty
                };
                ColumnType::try_from(real).is_ok_and(|t| t.is_numeric_type())
            })
            .map(|c| c.unsigned)
            .collect();
        let mut bits = vec![0u8; numeric.len().div_ceil(8)];
        for (i, u) in numeric.iter().enumerate() {
            if *u {
                bits[i / 8] |= 0x80 >> (i % 8);
            }
        }
        b.push(1);
        lenenc(bits.len(), &mut b);
        b.extend_from_slice(&bits);
        // COLUMN_NAME (4).
        let mut names = Vec::new();
        for i in 0..cols.len() {
            let n = format!("c{i}");
            lenenc(n.len(), &mut names);
            names.extend_from_slice(n.as_bytes());
        }
        b.push(4);
        lenenc(names.len(), &mut b);
        b.extend_from_slice(&names);
        b
    }

    /// A row image: NULL bitmap, then the non-NULL values.
    fn image(values: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut nulls = vec![0u8; values.len().div_ceil(8)];
        let mut b = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match v {
                None => nulls[i / 8] |= 1 << (i % 8),
                Some(v) => b.extend_from_slice(v),
            }
        }
        nulls.extend(b);
        nulls
    }

    /// The body of a ROWS event of `type_` (23–25 v1, 30–32 v2) with full images.
    fn rows_event(type_: u8, n: usize, rows: &[u8]) -> Vec<u8> {
        let mut b = vec![7, 0, 0, 0, 0, 0, 1, 0];
        if type_ >= 30 {
            b.extend_from_slice(&2u16.to_le_bytes());
        }
        lenenc(n, &mut b);
        let images = if matches!(type_, 24 | 31) { 2 } else { 1 };
        for _ in 0..images {
            let mut bits = vec![0xffu8; n.div_ceil(8)];
            if !n.is_multiple_of(8) {
                *bits.last_mut().unwrap() = (1u8 << (n % 8)) - 1;
            }
            b.extend_from_slice(&bits);
        }
        b.extend_from_slice(rows);
        b
    }

    fn parse_tme(body: &[u8]) -> TableMapEvent<'_> {
        let fde = Box::leak(Box::new(FormatDescriptionEvent::new(
            BinlogVersion::Version4,
        )));
        ParseBuf(body)
            .parse(BinlogCtx::new(body.len() + 19, fde, 19))
            .expect("a valid TABLE_MAP")
    }

    fn parse_rows(type_: u8, body: &[u8]) -> std::io::Result<RowsEventData<'_>> {
        let fde = Box::leak(Box::new(FormatDescriptionEvent::new(
            BinlogVersion::Version4,
        )));
        let ctx = BinlogCtx::new(body.len() + 19, fde, type_);
        let mut buf = ParseBuf(body);
        Ok(match type_ {
            23 => RowsEventData::WriteRowsEventV1(buf.parse::<WriteRowsEventV1>(ctx)?),
            24 => RowsEventData::UpdateRowsEventV1(buf.parse::<UpdateRowsEventV1>(ctx)?),
            25 => RowsEventData::DeleteRowsEventV1(buf.parse::<DeleteRowsEventV1>(ctx)?),
            30 => RowsEventData::WriteRowsEvent(buf.parse::<WriteRowsEvent>(ctx)?),
            31 => RowsEventData::UpdateRowsEvent(buf.parse::<UpdateRowsEvent>(ctx)?),
            32 => RowsEventData::DeleteRowsEvent(buf.parse::<DeleteRowsEvent>(ctx)?),
            other => panic!("not a rows event type: {other}"),
        })
    }

    fn schema(cols: &[Col]) -> TableSchema {
        TableSchema {
            table: TableRef {
                database: "d".into(),
                name: "t".into(),
            },
            columns: cols
                .iter()
                .enumerate()
                .map(|(i, c)| Column {
                    name: format!("c{i}"),
                    kind: c.kind.clone(),
                })
                .collect(),
            key: vec![0],
        }
    }

    type Images = Vec<(Option<(JsonRow, JsonRow)>, Option<(JsonRow, JsonRow)>)>;

    /// The rows as records, through `mysql_common`'s `BinlogRow` (the reader used before).
    fn old_decoder(
        tme: &TableMapEvent<'_>,
        rows: &RowsEventData<'_>,
        s: &TableSchema,
        zero: ZeroDate,
    ) -> Result<Images, String> {
        let convert = |row: Option<mysql_common::binlog::row::BinlogRow>| {
            let Some(mut row) = row else {
                return Ok(None);
            };
            let values = (0..row.len())
                .map(|i| match row.take(i) {
                    None => Ok(None),
                    Some(BinlogValue::Value(v)) => Ok(Some(v)),
                    Some(other) => Value::try_from(other).map(Some).map_err(|e| e.to_string()),
                })
                .collect::<Result<Vec<_>, String>>()?;
            s.row_to_json(&values[..], Origin::Binlog, zero)
                .map(Some)
                .map_err(|e| e.to_string())
        };
        let mut out = Vec::new();
        for item in rows.rows(tme) {
            let (before, after) = item.map_err(|e| e.to_string())?;
            out.push((convert(before)?, convert(after)?));
        }
        Ok(out)
    }

    /// The rows as records, through [`RowsDecoder`].
    fn new_decoder(
        tme: &TableMapEvent<'_>,
        rows: &RowsEventData<'_>,
        s: &TableSchema,
        zero: ZeroDate,
    ) -> Result<Images, String> {
        let layout = Layout::new(tme)?;
        let mut d = RowsDecoder::new(&layout, rows)?;
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        while d
            .next_row(&mut before, &mut after)
            .map_err(|e| e.to_string())?
        {
            let convert = |has: bool, row: &[Cell<'_>]| {
                has.then(|| s.row_to_json(row, Origin::Binlog, zero))
                    .transpose()
                    .map_err(|e| e.to_string())
            };
            out.push((
                convert(d.has_before(), &before)?,
                convert(d.has_after(), &after)?,
            ));
        }
        Ok(out)
    }

    /// Both decoders agree: the same records, or both fail. Where
    /// `mysql_common`'s panics (overflow checks of a test build on corrupt
    /// DECIMAL digits), the new one only has to return.
    fn agree(
        tme: &TableMapEvent<'_>,
        rows: &RowsEventData<'_>,
        s: &TableSchema,
    ) -> Result<Images, String> {
        let mut first = None;
        for zero in [ZeroDate::Null, ZeroDate::String] {
            let old = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                old_decoder(tme, rows, s, zero)
            }));
            let new = new_decoder(tme, rows, s, zero);
            match (&old, &new) {
                (Ok(Ok(a)), Ok(b)) => assert_eq!(a, b, "decoders disagree"),
                (Ok(Err(_)), Err(_)) | (Err(_), _) => {}
                _ => panic!("decoders disagree: old {old:?}, new {new:?}"),
            }
            first.get_or_insert(new);
        }
        first.unwrap_or_else(|| Err("no run".into()))
    }

    /// A DECIMAL(precision, scale) value `digits` (no point, `scale` of them
    /// after it) packed as MySQL stores it.
    fn decimal(negative: bool, digits: &str, precision: usize, scale: usize) -> Vec<u8> {
        const BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
        let digits = format!("{digits:0>precision$}");
        let (int, frac) = digits.split_at(precision - scale);
        let mut out = Vec::new();
        let mut push = |d: &str| {
            let n: u32 = d.parse().unwrap();
            let len = BYTES[d.len()];
            out.extend_from_slice(&n.to_be_bytes()[4 - len..]);
        };
        let head = int.len() % 9;
        if head > 0 {
            push(&int[..head]);
        }
        for w in int.as_bytes()[head..].chunks(9) {
            push(std::str::from_utf8(w).unwrap());
        }
        for w in frac.as_bytes().chunks(9) {
            push(std::str::from_utf8(w).unwrap());
        }
        if negative {
            out.iter_mut().for_each(|b| *b = !*b);
        }
        out[0] ^= 0x80;
        out
    }

    fn datetime2(y: u64, mo: u64, d: u64, h: u64, mi: u64, s: u64) -> Vec<u8> {
        let packed = ((y * 13 + mo) << 22) | (d << 17) | (h << 12) | (mi << 6) | s;
        (packed + 0x80_0000_0000).to_be_bytes()[3..].to_vec()
    }

    /// Every column type the connector maps, and a row of values for it.
    /// Rows of encoded values (`None` = NULL).
    type Values = Vec<Vec<Option<Vec<u8>>>>;

    fn matrix() -> (Vec<Col>, Values) {
        let enum_values = vec!["a".to_string(), "b".into(), "c".into()];
        let mut unsigned_long = col(3, &[], int(4, true));
        unsigned_long.unsigned = true;
        let mut unsigned_big = col(8, &[], int(8, true));
        unsigned_big.unsigned = true;
        let mut unsigned_tiny = col(1, &[], int(1, true));
        unsigned_tiny.unsigned = true;
        let cols = vec![
            col(8, &[], int(8, false)),                                // 0 BIGINT key
            col(1, &[], int(1, false)),                                // 1 TINYINT
            unsigned_tiny,                                             // 2 TINYINT UNSIGNED
            col(2, &[], int(2, false)),                                // 3 SMALLINT
            col(9, &[], int(3, false)),                                // 4 MEDIUMINT
            unsigned_long,                                             // 5 INT UNSIGNED
            unsigned_big,                                              // 6 BIGINT UNSIGNED
            col(4, &[4], ColKind::Float),                              // 7 FLOAT
            col(5, &[8], ColKind::Double),                             // 8 DOUBLE
            col(246, &[12, 2], ColKind::Decimal),                      // 9 DECIMAL(12,2)
            col(246, &[30, 10], ColKind::Decimal),                     // 10 DECIMAL(30,10)
            col(10, &[], ColKind::Date),                               // 11 DATE
            col(18, &[3], ColKind::DateTime(3)),                       // 12 DATETIME(3)
            col(17, &[6], ColKind::Timestamp(6)),                      // 13 TIMESTAMP(6)
            col(17, &[0], ColKind::Timestamp(0)),                      // 14 TIMESTAMP
            col(19, &[0], ColKind::Time(0)),                           // 15 TIME
            col(19, &[6], ColKind::Time(6)),                           // 16 TIME(6)
            col(13, &[], ColKind::Year),                               // 17 YEAR
            col(15, &[64, 0], ColKind::Text(Charset::Utf8)),           // 18 VARCHAR(16) utf8mb4
            col(15, &[0x90, 1], ColKind::Text(Charset::Utf8)),         // 19 VARCHAR(100) utf8mb4
            col(15, &[20, 0], ColKind::Text(Charset::Latin1)),         // 20 VARCHAR(20) latin1
            col(254, &[0xfe, 40], ColKind::Text(Charset::Utf8)),       // 21 CHAR(10)
            col(254, &[0xce, 0xfc], ColKind::Text(Charset::Utf8)),     // 22 CHAR(255) utf8mb4
            col(254, &[0xfe, 4], ColKind::Binary { pad_to: Some(4) }), // 23 BINARY(4)
            col(252, &[2], ColKind::Binary { pad_to: None }),          // 24 BLOB
            col(252, &[4], ColKind::Text(Charset::Utf8)),              // 25 LONGTEXT (MariaDB JSON)
            col(254, &[0xf7, 1], ColKind::Enum(enum_values.clone())),  // 26 ENUM
            col(254, &[0xf8, 1], ColKind::Set(enum_values)),           // 27 SET
            col(16, &[2, 1], ColKind::Bit(10)),                        // 28 BIT(10)
            col(16, &[1, 0], ColKind::Bit(1)),                         // 29 BIT(1)
            col(245, &[4], ColKind::Json),                             // 30 JSON (MySQL)
            col(7, &[], ColKind::Timestamp(0)),                        // 31 old TIMESTAMP
            col(12, &[], ColKind::DateTime(0)),                        // 32 old DATETIME
            col(11, &[], ColKind::Time(0)),                            // 33 old TIME
            col(255, &[4], ColKind::Binary { pad_to: None }),          // 34 GEOMETRY
            col(246, &[10, 0], ColKind::Decimal),                      // 35 DECIMAL(10,0)
            col(18, &[0], ColKind::DateTime(0)),                       // 36 DATETIME
            col(19, &[3], ColKind::Time(3)),                           // 37 TIME(3)
            col(
                15,
                &[64, 0],
                ColKind::Int {
                    unsigned: false,
                    bytes: 4,
                },
            ), // 38 VARCHAR read as INT (type changed)
            col(17, &[0], ColKind::Text(Charset::Utf8)), // 39 TIMESTAMP read as text (type changed)
            col(13, &[], ColKind::Text(Charset::Utf8)),  // 40 YEAR read as text (type changed)
            col(246, &[5, 2], ColKind::Double),          // 41 DECIMAL read as DOUBLE (type changed)
        ];
        let lenb = |b: &[u8]| {
            let mut v = vec![b.len() as u8];
            v.extend_from_slice(b);
            v
        };
        let len2 = |b: &[u8]| {
            let mut v = (b.len() as u16).to_le_bytes().to_vec();
            v.extend_from_slice(b);
            v
        };
        let len4 = |b: &[u8]| {
            let mut v = (b.len() as u32).to_le_bytes().to_vec();
            v.extend_from_slice(b);
            v
        };
        let time2_neg = (0x80_0000i64 - ((26 << 12) | 1)) as u32;
        let time6_neg =
            (0x8000_0000_0000i64 - ((((1 << 12) | (2 << 6) | 3) << 24) + 500_000)) as u64;
        let time3 = {
            let mut v = (0x80_0000u32 + ((10 << 12) | (20 << 6) | 30)).to_be_bytes()[1..].to_vec();
            v.extend_from_slice(&1234u16.to_be_bytes());
            v
        };
        // A small JSON array [1, 2] in MySQL's binary form.
        let jsonb = [0x02u8, 2, 0, 10, 0, 0x05, 1, 0, 0x05, 2, 0];
        let full = vec![
            Some(42i64.to_le_bytes().to_vec()),
            Some(vec![0x85]),
            Some(vec![0x85]),
            Some((-300i16).to_le_bytes().to_vec()),
            Some(vec![0xff, 0xff, 0xff]),
            Some(u32::MAX.to_le_bytes().to_vec()),
            Some(u64::MAX.to_le_bytes().to_vec()),
            Some(1.1f32.to_le_bytes().to_vec()),
            Some((-2.5e-7f64).to_le_bytes().to_vec()),
            Some(decimal(true, "1234567890", 12, 2)),
            Some(decimal(false, "12345678901234567890", 30, 10)),
            Some({
                let v: u32 = (2024 << 9) | (2 << 5) | 29;
                v.to_le_bytes()[..3].to_vec()
            }),
            Some({
                let mut v = datetime2(2024, 2, 29, 12, 34, 56);
                v.extend_from_slice(&7890u16.to_be_bytes());
                v
            }),
            Some({
                let mut v = 1_704_067_201u32.to_be_bytes().to_vec();
                v.extend_from_slice(&123_456u32.to_be_bytes()[1..]);
                v
            }),
            Some(0u32.to_be_bytes().to_vec()),
            Some(time2_neg.to_be_bytes()[1..].to_vec()),
            Some(time6_neg.to_be_bytes()[2..].to_vec()),
            Some(vec![0]),
            Some(lenb("héllo".as_bytes())),
            Some(len2("a longer text".as_bytes())),
            Some(lenb(&[b'h', 0xe9, 0x80])),
            Some(lenb(b"char")),
            Some(len2(b"long char")),
            Some(lenb(&[1, 2])),
            Some(len2(&[0, 1, 2, 254, 255])),
            Some(len4(br#"{"a": [1, 2]}"#)),
            Some(vec![2]),
            Some(vec![5]),
            Some(vec![2, 1]),
            Some(vec![1]),
            Some(len4(&jsonb)),
            Some(1_704_067_201u32.to_le_bytes().to_vec()),
            Some(20_240_229_123_456u64.to_le_bytes().to_vec()),
            Some(vec![0x40, 0xe2, 0x01]), // 123456 = 12:34:56
            Some(len4(&[1, 2, 3])),
            Some(decimal(false, "0", 10, 0)),
            Some(datetime2(0, 0, 0, 0, 0, 0)),
            Some(time3),
            Some(lenb(b"-17")),
            Some(1_704_067_201u32.to_be_bytes().to_vec()),
            Some(vec![124]),
            Some(decimal(false, "12345", 5, 2)),
        ];
        assert_eq!(cols.len(), full.len());
        // Zero / edge values, and NULLs in every other non-key column.
        let mut other: Vec<Option<Vec<u8>>> = full
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 2 == 1 { None } else { v.clone() })
            .collect();
        other[0] = Some(43i64.to_le_bytes().to_vec());
        other[9 + 1] = Some(decimal(true, "5", 30, 10)); // -0.0000000005
        other[11 + 1] = Some({
            let mut v = datetime2(0, 0, 0, 0, 0, 0);
            v.extend_from_slice(&[0, 0]);
            v
        });
        other[13] = Some({
            let mut v = 0u32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0, 0, 0]);
            v
        });
        (cols, vec![full, other])
    }

    fn all_rows(values: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        values.iter().flat_map(|v| image(v)).collect()
    }

    #[test]
    fn every_column_type_decodes_as_mysql_common_decodes_it() {
        let (cols, values) = matrix();
        let s = schema(&cols);
        let tme_body = table_map(&cols);
        let tme = parse_tme(&tme_body);
        let rows = all_rows(&values);
        let mut updates = Vec::new();
        for v in &values {
            updates.extend(image(v));
            updates.extend(image(&values[0]));
        }
        for (type_, data) in [
            (30, &rows),
            (23, &rows),
            (32, &rows),
            (25, &rows),
            (31, &updates),
            (24, &updates),
        ] {
            let body = rows_event(type_, cols.len(), data);
            let ev = parse_rows(type_, &body).unwrap();
            let images = agree(&tme, &ev, &s).unwrap();
            assert_eq!(images.len(), 2, "event type {type_}");
            if type_ == 30 {
                let (row, key) = images[0].1.clone().unwrap();
                assert_eq!(json!(key), json!({"c0": 42}));
                let row = json!(row);
                for (c, want) in [
                    ("c1", json!(-123)),
                    ("c2", json!(133)),
                    ("c3", json!(-300)),
                    ("c4", json!(-1)),
                    ("c5", json!(4294967295u64)),
                    ("c6", json!(u64::MAX)),
                    ("c7", json!(1.1)),
                    ("c9", json!("-12345678.90")),
                    ("c10", json!("1234567890.1234567890")),
                    ("c11", json!("2024-02-29")),
                    ("c12", json!("2024-02-29T12:34:56.789")),
                    ("c13", json!("2024-01-01T00:00:01.123456Z")),
                    ("c14", Json::Null),
                    ("c15", json!("-26:00:01")),
                    ("c16", json!("-01:02:03.500000")),
                    ("c17", json!(0)),
                    ("c18", json!("héllo")),
                    ("c20", json!("hé€")),
                    ("c23", json!("AQIAAA==")),
                    ("c26", json!("b")),
                    ("c27", json!("a,c")),
                    ("c28", json!(513)),
                    ("c29", json!(true)),
                    ("c30", json!("[1,2]")),
                    ("c31", json!("2024-01-01T00:00:01Z")),
                    ("c32", json!("2024-02-29T12:34:56")),
                    ("c33", json!("12:34:56")),
                    ("c35", json!("0")),
                    ("c36", Json::Null),
                    ("c37", json!("10:20:30.123")),
                    ("c38", json!(-17)),
                    ("c39", json!("1704067201")),
                    ("c40", json!("2024")),
                    ("c41", json!(123.45)),
                ] {
                    assert_eq!(row[c], want, "column {c}");
                }
            }
        }
    }

    use serde_json::Value as Json;

    #[test]
    fn truncated_or_corrupt_rows_are_errors_never_panics() {
        let (cols, values) = matrix();
        let s = schema(&cols);
        let tme_body = table_map(&cols);
        let tme = parse_tme(&tme_body);
        let body = rows_event(31, cols.len(), &{
            let mut u = image(&values[0]);
            u.extend(image(&values[1]));
            u
        });
        let header = body.len() - image(&values[0]).len() - image(&values[1]).len();
        for cut in 0..body.len() {
            let Ok(ev) = parse_rows(31, &body[..cut]) else {
                continue;
            };
            let _ = agree(&tme, &ev, &s);
            let layout = Layout::new(&tme).unwrap();
            let mut d = RowsDecoder::new(&layout, &ev).unwrap();
            let (mut b, mut a) = (Vec::new(), Vec::new());
            let mut read = 0;
            let result = loop {
                match d.next_row(&mut b, &mut a) {
                    Ok(true) => read += 1,
                    Ok(false) => break Ok(read),
                    Err(e) => break Err(e.to_string()),
                }
            };
            if cut > header {
                // The update's row is cut: the decoder reports where.
                let e = result.unwrap_err();
                assert!(e.contains("truncated") && e.contains("byte"), "{e}");
            } else {
                assert_eq!(result, Ok(0));
            }
        }
        for at in header..body.len() {
            for flip in [0xff, 0x80, 0x01] {
                let mut bad = body.clone();
                bad[at] ^= flip;
                let ev = parse_rows(31, &bad).unwrap();
                let _ = agree(&tme, &ev, &s);
            }
        }
    }

    #[test]
    fn partial_images_and_bad_metadata_are_errors() {
        let cols = vec![col(8, &[], int(8, false)), col(3, &[], int(4, false))];
        let tme_body = table_map(&cols);
        let tme = parse_tme(&tme_body);
        let layout = Layout::new(&tme).unwrap();
        // A DELETE whose before image holds only column 0.
        let mut body = vec![7, 0, 0, 0, 0, 0, 1, 0, 2, 0, 2, 0b01];
        body.extend(image(&[Some(1i64.to_le_bytes().to_vec())]));
        let ev = parse_rows(32, &body).unwrap();
        let e = RowsDecoder::new(&layout, &ev).err().unwrap();
        assert!(e.contains("binlog_row_image"), "{e}");
        // Column counts that differ from the TABLE_MAP's.
        let ev_body = rows_event(30, 3, &[]);
        let ev = parse_rows(30, &ev_body).unwrap();
        assert!(RowsDecoder::new(&layout, &ev).is_err());
        // A DECIMAL whose scale exceeds its precision: its values are errors.
        let cols = vec![
            col(8, &[], int(8, false)),
            col(246, &[2, 5], ColKind::Decimal),
        ];
        let tme_body = table_map(&cols);
        let tme = parse_tme(&tme_body);
        let layout = Layout::new(&tme).unwrap();
        let data = image(&[Some(1i64.to_le_bytes().to_vec()), Some(vec![0; 8])]);
        let ev_body = rows_event(30, 2, &data);
        let ev = parse_rows(30, &ev_body).unwrap();
        let mut d = RowsDecoder::new(&layout, &ev).unwrap();
        let e = d.next_row(&mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert_eq!(e.column, Some(1));
        assert!(e.to_string().contains("scale"), "{e}");
        // NULL is still readable.
        let data = image(&[Some(1i64.to_le_bytes().to_vec()), None]);
        let ev_body = rows_event(30, 2, &data);
        let ev = parse_rows(30, &ev_body).unwrap();
        let mut d = RowsDecoder::new(&layout, &ev).unwrap();
        let mut after = Vec::new();
        assert!(d.next_row(&mut Vec::new(), &mut after).unwrap());
        assert_eq!(after, vec![Cell::Int(1), Cell::Null]);
    }

    #[test]
    fn decimals_print_as_mysql_common_prints_them() {
        use mysql_common::binlog::decimal::Decimal;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for precision in 1..=65usize {
            for scale in [0, 1, 2, 5, 9, 10, 18, 30]
                .into_iter()
                .filter(|s| *s <= precision.min(30))
            {
                for _ in 0..20 {
                    let digits: String = (0..precision)
                        .map(|_| char::from(b'0' + (next() % 10) as u8))
                        .collect();
                    // Leading zeros are common: keep only some digits.
                    let keep = (next() as usize) % (precision + 1);
                    let digits = &digits[precision - keep..];
                    let negative = next() % 2 == 0;
                    let packed = decimal(negative, digits, precision, scale);
                    let want = Decimal::read_bin(&packed[..], precision, scale, false)
                        .unwrap()
                        .to_string();
                    let mut got = String::new();
                    crate::types::push_decimal(&mut got, &packed, precision as u8, scale as u8);
                    assert_eq!(
                        got, want,
                        "DECIMAL({precision},{scale}) {negative} {digits}"
                    );
                }
            }
        }
    }

    /// The benchmark's `orders` table (`bench/src/workload.rs`) as MariaDB logs it.
    fn orders() -> (Vec<Col>, TableSchema) {
        let cols = vec![
            col(8, &[], int(8, false)),
            col(8, &[], int(8, false)),
            col(246, &[12, 2], ColKind::Decimal),
            col(15, &[64, 0], ColKind::Text(Charset::Utf8)),
            col(15, &[0, 1], ColKind::Text(Charset::Utf8)),
            col(17, &[0], ColKind::Timestamp(0)),
        ];
        let mut s = schema(&cols);
        for (c, name) in s.columns.iter_mut().zip([
            "id",
            "customer_id",
            "amount",
            "status",
            "note",
            "created_at",
        ]) {
            c.name = name.into();
        }
        (cols, s)
    }

    fn orders_row(i: u64) -> Vec<Option<Vec<u8>>> {
        let text = |t: &str| {
            let mut v = vec![t.len() as u8];
            v.extend_from_slice(t.as_bytes());
            v
        };
        let long_text = |t: &str| {
            let mut v = (t.len() as u16).to_le_bytes().to_vec();
            v.extend_from_slice(t.as_bytes());
            v
        };
        vec![
            Some(i.to_le_bytes().to_vec()),
            Some((i % 5000).to_le_bytes().to_vec()),
            Some(decimal(false, &format!("{}", 1000 + i % 100_000), 12, 2)),
            Some(text("shipped")),
            Some(long_text(&format!("order note number {i}"))),
            Some((1_704_067_200 + i as u32).to_be_bytes().to_vec()),
        ]
    }

    /// Decoding cost, measured by instruction counts (`valgrind
    /// --tool=callgrind` on the release test binary; see
    /// docs/benchmarks.md): `DECODE_ROWS` rows of the benchmark's `orders`
    /// shape, as WRITE_ROWS events of 1000 rows, turned into records by
    /// `DECODE_WITH=old` (`mysql_common`'s `BinlogRow`) or `new`.
    #[test]
    #[ignore = "a measurement: run under callgrind with DECODE_ROWS and DECODE_WITH"]
    fn decode_rows_into_records() {
        use crate::output::Output;
        let total: usize = std::env::var("DECODE_ROWS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        let old = std::env::var("DECODE_WITH").as_deref() == Ok("old");
        let (cols, s) = orders();
        let tme_body = table_map(&cols);
        let tme = parse_tme(&tme_body);
        let data: Vec<u8> = (0..1000u64).flat_map(|i| image(&orders_row(i))).collect();
        let body = rows_event(30, cols.len(), &data);
        let ev = parse_rows(30, &body).unwrap();
        let config = serde_json::from_value(json!({"stream": "s", "host": "h",
            "user": "u", "password": "p", "database": "bench", "table": "orders"}))
        .unwrap();
        let mut out = Output::new(&config);
        let zero = ZeroDate::Null;
        let mut records = 0usize;
        while records < total {
            if old {
                for item in ev.rows(&tme) {
                    let (_, after) = item.unwrap();
                    let mut row = after.unwrap();
                    let values: Vec<Option<Value>> = (0..row.len())
                        .map(|i| match row.take(i) {
                            Some(BinlogValue::Value(v)) => Some(v),
                            _ => None,
                        })
                        .collect();
                    let key = s.key_of(&values[..], Origin::Binlog, zero).unwrap();
                    out.push(0, &s, &key, Some(&values[..]), Origin::Binlog)
                        .unwrap();
                }
            } else {
                let layout = Layout::new(&tme).unwrap();
                let mut d = RowsDecoder::new(&layout, &ev).unwrap();
                let (mut before, mut after) = (Vec::new(), Vec::new());
                while d.next_row(&mut before, &mut after).unwrap() {
                    let key = s.key_of(&after[..], Origin::Binlog, zero).unwrap();
                    out.push(0, &s, &key, Some(&after[..]), Origin::Binlog)
                        .unwrap();
                }
            }
            records += out.buffered();
            out.discard();
        }
        assert!(records >= total);
    }

    #[test]
    fn orders_rows_decode_alike() {
        let (cols, s) = orders();
        let tme_body = table_map(&cols);
        let tme = parse_tme(&tme_body);
        let data: Vec<u8> = (0..50u64).flat_map(|i| image(&orders_row(i))).collect();
        let body = rows_event(30, cols.len(), &data);
        let ev = parse_rows(30, &body).unwrap();
        let rows = agree(&tme, &ev, &s).unwrap();
        let (row, _) = rows[7].1.clone().unwrap();
        assert_eq!(
            json!(row),
            json!({"id": 7, "customer_id": 7, "amount": "10.07", "status": "shipped",
                   "note": "order note number 7", "created_at": "2024-01-01T00:00:07Z"})
        );
    }

    #[test]
    fn negative_time_with_two_fraction_digits_keeps_its_sign() {
        // -00:00:01.50 as TIME(2): MySQL stores int part -2 and fraction byte
        // -50 (0xCE); mysql_common's u32 arithmetic turns this into garbage.
        let cell = time2(&[0x7f, 0xff, 0xfe, 0xce], 2);
        assert_eq!(cell, Cell::Time(true, 0, 0, 0, 1, 500_000));
        let c = Column {
            name: "t".into(),
            kind: ColKind::Time(2),
        };
        let j = crate::types::to_json(&c, cell, Origin::Binlog, ZeroDate::Null).unwrap();
        assert_eq!(j, json!("-00:00:01.50"));
        // +00:00:01.50 and the TIME(4) form of -00:00:01.5000.
        assert_eq!(
            time2(&[0x80, 0x00, 0x01, 50], 2),
            Cell::Time(false, 0, 0, 0, 1, 500_000)
        );
        assert_eq!(
            time2(&[0x7f, 0xff, 0xfe, 0xec, 0x78], 4),
            Cell::Time(true, 0, 0, 0, 1, 500_000)
        );
    }
}
