//! Column types read from `information_schema`, and the one conversion of a
//! MySQL value into JSON used by both the snapshot and the binlog, so the same
//! row gives the same record either way.
//!
//! | MySQL | JSON |
//! | --- | --- |
//! | TINYINT … BIGINT (signed or UNSIGNED) | integer (exact in `raw`; a double in `json`) |
//! | DECIMAL / NUMERIC | string, exact, with the column's scale (`"12.3400"`) |
//! | FLOAT / DOUBLE | number (FLOAT as its shortest decimal form) |
//! | DATE | `"2024-02-29"` |
//! | DATETIME(n) | `"2024-02-29T12:34:56.789"` (n fraction digits, no zone) |
//! | TIMESTAMP(n) | `"2024-02-29T12:34:56.789Z"` (UTC) |
//! | TIME(n) | `"-838:59:59.000000"` |
//! | YEAR | integer |
//! | CHAR / VARCHAR / TEXT (any charset) | string (UTF-8) |
//! | ENUM / SET | string (`"a,c"` for a SET) |
//! | JSON | string (the JSON text; MariaDB stores JSON as LONGTEXT) |
//! | BINARY / VARBINARY / BLOB / GEOMETRY | base64 string |
//! | BIT(1) | boolean |
//! | BIT(n > 1) | integer |
//! | zero date or datetime | `null`, or the zero text (`zeroDate`) |

use base64::Engine;
use hstream_io_runtime::sql_values::push_padded;
use hstream_io_runtime::stream::{Field, JsonOut, PayloadWriter, ValueOut};
use mysql_async::Value;
use serde_json::Value as Json;

use crate::config::{TableRef, ZeroDate};

/// Where a value comes from: the two differ for ENUM / SET / TIMESTAMP / YEAR
/// and text charsets, and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A snapshot row (binary protocol, UTF-8 connection, UTC session).
    Snapshot,
    /// A binlog row image.
    Binlog,
}

/// How a column's values are converted.
#[derive(Debug, Clone, PartialEq)]
pub enum ColKind {
    /// Integers; `bytes` is the storage width (1, 2, 3, 4, 8).
    Int {
        /// UNSIGNED.
        unsigned: bool,
        /// Storage width in bytes.
        bytes: u8,
    },
    /// DECIMAL / NUMERIC.
    Decimal,
    /// FLOAT.
    Float,
    /// DOUBLE.
    Double,
    /// DATE.
    Date,
    /// DATETIME(fsp).
    DateTime(u8),
    /// TIMESTAMP(fsp).
    Timestamp(u8),
    /// TIME(fsp).
    Time(u8),
    /// YEAR.
    Year,
    /// Character data in a charset.
    Text(Charset),
    /// Binary strings; BINARY(n) is padded to `pad_to` bytes.
    Binary {
        /// Fixed length of BINARY(n).
        pad_to: Option<usize>,
    },
    /// ENUM with its values.
    Enum(Vec<String>),
    /// SET with its values.
    Set(Vec<String>),
    /// BIT(bits).
    Bit(u32),
    /// MySQL's JSON type.
    Json,
}

/// Character sets the binlog path decodes itself (the snapshot gets UTF-8 from the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb3 / utf8mb4 / utf8.
    Utf8,
    /// latin1 (MySQL's latin1 is Windows-1252).
    Latin1,
    /// ascii.
    Ascii,
    /// Any other; decoded only when the bytes are valid UTF-8.
    Other(String),
}

impl Charset {
    fn from_name(name: &str) -> Self {
        match name {
            "utf8" | "utf8mb3" | "utf8mb4" => Self::Utf8,
            "latin1" => Self::Latin1,
            "ascii" => Self::Ascii,
            other => Self::Other(other.to_string()),
        }
    }
}

/// One column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Conversion.
    pub kind: ColKind,
}

/// A converted row or key: column name → JSON value.
#[cfg(test)]
pub type JsonRow = serde_json::Map<String, Json>;

/// A captured table: its columns in ordinal order and its primary key.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// Which table.
    pub table: TableRef,
    /// Columns in ordinal order (the binlog's column order).
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order.
    pub key: Vec<usize>,
}

/// One row of `information_schema.COLUMNS`, as read by [`column_from_info`].
#[derive(Debug, Clone, Default)]
pub struct ColumnInfo {
    /// COLUMN_NAME.
    pub name: String,
    /// DATA_TYPE, e.g. `int`.
    pub data_type: String,
    /// COLUMN_TYPE, e.g. `int(10) unsigned`, `enum('a','b')`.
    pub column_type: String,
    /// CHARACTER_SET_NAME.
    pub charset: Option<String>,
    /// CHARACTER_OCTET_LENGTH.
    pub octet_length: Option<u64>,
    /// NUMERIC_PRECISION (BIT width).
    pub numeric_precision: Option<u64>,
    /// DATETIME_PRECISION.
    pub datetime_precision: Option<u64>,
}

/// The conversion of one column.
pub fn column_from_info(info: &ColumnInfo) -> Column {
    let dt = info.data_type.to_ascii_lowercase();
    let ct = info.column_type.to_ascii_lowercase();
    let unsigned = ct.contains("unsigned");
    let fsp = info.datetime_precision.unwrap_or(0).min(6) as u8;
    let kind = match dt.as_str() {
        "tinyint" => ColKind::Int { unsigned, bytes: 1 },
        "smallint" => ColKind::Int { unsigned, bytes: 2 },
        "mediumint" => ColKind::Int { unsigned, bytes: 3 },
        "int" | "integer" => ColKind::Int { unsigned, bytes: 4 },
        "bigint" => ColKind::Int { unsigned, bytes: 8 },
        "decimal" | "numeric" => ColKind::Decimal,
        "float" => ColKind::Float,
        "double" | "real" => ColKind::Double,
        "date" => ColKind::Date,
        "datetime" => ColKind::DateTime(fsp),
        "timestamp" => ColKind::Timestamp(fsp),
        "time" => ColKind::Time(fsp),
        "year" => ColKind::Year,
        "enum" => ColKind::Enum(parse_list(&info.column_type)),
        "set" => ColKind::Set(parse_list(&info.column_type)),
        "bit" => ColKind::Bit(info.numeric_precision.unwrap_or(1) as u32),
        "json" => ColKind::Json,
        "binary" => ColKind::Binary {
            pad_to: info.octet_length.map(|n| n as usize),
        },
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            match info.charset.as_deref() {
                None | Some("binary") => ColKind::Binary { pad_to: None },
                Some(cs) => ColKind::Text(Charset::from_name(cs)),
            }
        }
        // varbinary, blobs, geometry and anything unknown: bytes.
        _ => ColKind::Binary { pad_to: None },
    };
    Column {
        name: info.name.clone(),
        kind,
    }
}

/// The quoted values of `enum('a','b''c')` / `set(…)`.
pub fn parse_list(column_type: &str) -> Vec<String> {
    let Some(start) = column_type.find('(') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = column_type[start + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut s = String::new();
        loop {
            match chars.next() {
                None => return out,
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    s.push('\'');
                }
                Some('\'') => break,
                Some('\\') => {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                }
                Some(ch) => s.push(ch),
            }
        }
        out.push(s);
    }
    out
}

/// Why a value could not be converted (names the column, never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvError {
    /// Column name.
    pub column: String,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for ConvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column `{}`: {}", self.column, self.reason)
    }
}

impl std::error::Error for ConvError {}

/// One value as read, borrowed from where it was read: a snapshot row's
/// `mysql_async::Value` ([`Cell::from`]) or a binlog row image's bytes
/// (decoded by [`crate::rows`], no allocation per value).
///
/// The first eight variants mirror `mysql_async::Value`; the last four are
/// binlog encodings kept undecoded until a column's conversion needs them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// Bytes (text, binary, BIT, SET bitmap, DECIMAL text from the snapshot).
    Bytes(&'a [u8]),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// Year, month, day, hour, minute, second, microsecond.
    Date(u16, u8, u8, u8, u8, u8, u32),
    /// Negative, days, hours, minutes, seconds, microseconds.
    Time(bool, u32, u8, u8, u8, u32),
    /// Binlog YEAR: years after 1900 (0 is YEAR 0000).
    Year(u8),
    /// Binlog TIMESTAMP(n): epoch seconds and microseconds.
    Epoch(i32, i32),
    /// Binlog DECIMAL(precision, scale): its packed bytes (exactly
    /// [`decimal_bin_size`] of them).
    Decimal(&'a [u8], u8, u8),
    /// Binlog JSON: MySQL's binary JSON document.
    Jsonb(&'a [u8]),
}

impl<'a> From<&'a Value> for Cell<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::NULL => Cell::Null,
            Value::Bytes(b) => Cell::Bytes(b),
            Value::Int(i) => Cell::Int(*i),
            Value::UInt(u) => Cell::UInt(*u),
            Value::Float(f) => Cell::Float(*f),
            Value::Double(d) => Cell::Double(*d),
            Value::Date(y, mo, d, h, mi, s, us) => Cell::Date(*y, *mo, *d, *h, *mi, *s, *us),
            Value::Time(neg, d, h, m, s, us) => Cell::Time(*neg, *d, *h, *m, *s, *us),
        }
    }
}

impl Cell<'_> {
    /// The text the binlog reader of `mysql_common` made of a binlog-only
    /// variant (`None` for the others), for conversions that take bytes.
    fn binlog_text(&self) -> Result<Option<String>, String> {
        Ok(Some(match *self {
            Cell::Year(y) => (1900 + i32::from(y)).to_string(),
            Cell::Epoch(secs, 0) => secs.to_string(),
            Cell::Epoch(secs, us) => format!("{secs}.{us:06}"),
            Cell::Decimal(b, precision, scale) => {
                let mut s = String::new();
                push_decimal(&mut s, b, precision, scale);
                s
            }
            Cell::Jsonb(b) => jsonb_text(b)?,
            _ => return Ok(None),
        }))
    }
}

/// The JSON text of a MySQL binary JSON document.
fn jsonb_text(b: &[u8]) -> Result<String, String> {
    use mysql_common::binlog::jsonb;
    let doc: jsonb::Value<'_> = mysql_common::io::ParseBuf(b)
        .parse(())
        .map_err(|e| format!("corrupt binary JSON: {e}"))?;
    let json = Json::try_from(doc).map_err(|e| format!("cannot convert binary JSON: {e}"))?;
    Ok(json.to_string())
}

/// Bytes of a packed DECIMAL(precision, scale) (MySQL's `decimal_bin_size`).
pub fn decimal_bin_size(precision: u8, scale: u8) -> Option<usize> {
    const BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    let intg = usize::from(precision.checked_sub(scale)?);
    let frac = usize::from(scale);
    Some(intg / 9 * 4 + BYTES[intg % 9] + frac / 9 * 4 + BYTES[frac % 9])
}

/// Appends the text of a packed DECIMAL(precision, scale): the digits of
/// every stored word, leading zero words dropped, all `scale` fraction
/// digits kept (`12.30`, `-0.50`, `0`). `b` holds exactly
/// [`decimal_bin_size`] bytes (shorter input reads as zeros).
pub fn push_decimal(out: &mut String, b: &[u8], precision: u8, scale: u8) {
    const POW10: [i32; 10] = [
        1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000,
    ];
    const BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    let intg = usize::from(precision.saturating_sub(scale));
    let frac = usize::from(scale);
    // The sign is the inverted top bit of the first byte; a negative number
    // stores every bit inverted.
    let negative = b.first().is_some_and(|x| x & 0x80 == 0);
    let mask: i32 = if negative { -1 } else { 0 };
    let mut at = 0usize;
    // Big-endian signed word of `n` bytes (the first byte's top bit flipped).
    let mut word = |n: usize| -> i32 {
        let mut v: i64 = 0;
        for k in 0..n {
            let mut byte = b.get(at + k).copied().unwrap_or(0);
            if at + k == 0 {
                byte ^= 0x80;
            }
            v = (v << 8) | i64::from(byte);
        }
        at += n;
        // Sign-extend from n bytes.
        let shift = 64 - 8 * n as u32;
        let v = if n == 0 { 0 } else { (v << shift) >> shift };
        (v as i32) ^ mask
    };
    // At most 255 digits: 30 words of 9.
    let mut words = [0i32; 32];
    let mut count = 0usize;
    let mut kept_intg = intg;
    let mut trimmed = false;
    let prefix = intg % 9;
    if prefix > 0 {
        let x = word(BYTES[prefix]);
        if x == 0 {
            kept_intg -= prefix;
        } else {
            trimmed = true;
            words[count] = x;
            count += 1;
        }
    }
    for _ in 0..intg / 9 {
        let x = word(4);
        if x == 0 && !trimmed {
            kept_intg -= 9;
        } else {
            trimmed = true;
            words[count] = x;
            count += 1;
        }
    }
    for _ in 0..frac / 9 {
        words[count] = word(4);
        count += 1;
    }
    let suffix = frac % 9;
    if suffix > 0 {
        words[count] = word(BYTES[suffix]).wrapping_mul(POW10[9 - suffix]);
        count += 1;
    }
    let (mut sign, mut frac) = (negative, frac);
    if kept_intg == 0 && frac == 0 {
        kept_intg = 1;
        frac = 0;
        sign = false;
        words[0] = 0;
        count = 1;
    }
    let words = &words[..count];
    let prefix = kept_intg % 9;
    let suffix = frac % 9;
    if sign {
        out.push('-');
    }
    let mut left = kept_intg;
    let mut i = 0;
    while i < words.len() && left > 0 {
        let x = words[i];
        i += 1;
        if i == 1 {
            push_i32(out, x, 0);
            left = left.saturating_sub(if prefix > 0 { prefix } else { 9 });
        } else {
            push_i32(out, x, 9);
            left = left.saturating_sub(9);
        }
    }
    if kept_intg == 0 {
        out.push('0');
    }
    if i < words.len() {
        out.push('.');
    }
    while i < words.len() {
        let x = words[i];
        i += 1;
        if i == words.len() && suffix > 0 {
            push_i32(out, x / POW10[9 - suffix], suffix);
        } else {
            push_i32(out, x, 9);
        }
    }
}

/// `x` zero-padded to `width` digits (a negative `x` as `{x:0width$}` prints it).
fn push_i32(out: &mut String, x: i32, width: usize) {
    if x >= 0 {
        push_padded(out, x as u64, width);
    } else {
        use std::fmt::Write as _;
        let _ = write!(out, "{x:0width$}");
    }
}

/// Converts one value of `column` into JSON.
pub fn to_json(
    column: &Column,
    value: Cell<'_>,
    origin: Origin,
    zero: ZeroDate,
) -> Result<Json, ConvError> {
    let mut out = Json::Null;
    convert(column, value, origin, zero, JsonOut(&mut out))?;
    Ok(out)
}

/// Converts one value of `column` into `out` (the table in the module docs).
pub fn convert(
    column: &Column,
    value: Cell<'_>,
    origin: Origin,
    zero: ZeroDate,
    out: impl ValueOut,
) -> Result<(), ConvError> {
    use std::fmt::Write as _;
    let err = |reason: String| ConvError {
        column: column.name.clone(),
        reason,
    };
    let unexpected = |v: &Cell<'_>| err(format!("unexpected {} value", variant(v)));
    // `write!` into a String cannot fail.
    macro_rules! text {
        ($($arg:tt)*) => {
            out.string_with(|s| { let _ = write!(s, $($arg)*); })
        };
    }
    // Binlog encodings: converted directly where the column expects them,
    // else as the text mysql_common's reader made of them.
    match (&column.kind, value) {
        (_, Cell::Null) => {
            out.null();
            return Ok(());
        }
        (ColKind::Year, Cell::Year(y)) => {
            // The binlog encodes YEAR 0000 as 0 (+ 1900); 1900 itself is out of YEAR's range.
            let y = if origin == Origin::Binlog && y == 0 {
                0
            } else {
                1900 + i64::from(y)
            };
            out.i64(y);
            return Ok(());
        }
        (ColKind::Timestamp(fsp), Cell::Epoch(secs, us)) => {
            // Microseconds outside 0..=999999 made text that is no epoch.
            let us = u32::try_from(us)
                .ok()
                .filter(|us| *us <= 999_999)
                .ok_or_else(|| err("not an epoch timestamp".into()))?;
            let zero_text = || format!("0000-00-00T00:00:00{}Z", frac(0, *fsp));
            epoch_out(out, i64::from(secs), us, *fsp, zero, &zero_text);
            return Ok(());
        }
        (ColKind::Decimal, Cell::Decimal(b, precision, scale)) => {
            out.string_with(|s| push_decimal(s, b, precision, scale));
            return Ok(());
        }
        (_, v @ (Cell::Year(_) | Cell::Epoch(..) | Cell::Decimal(..) | Cell::Jsonb(_))) => {
            let text = v.binlog_text().map_err(err)?.unwrap_or_default();
            return convert(column, Cell::Bytes(text.as_bytes()), origin, zero, out);
        }
        _ => {}
    }
    match (&column.kind, value) {
        (ColKind::Int { unsigned, bytes }, v) => match v {
            // Normalised by width: the binlog reader may decode a signed
            // column as unsigned (or the reverse); the storage width decides.
            Cell::Int(i) if *unsigned => out.u64(mask(i as u64, *bytes)),
            Cell::Int(i) => out.i64(sign_extend(mask(i as u64, *bytes), *bytes)),
            Cell::UInt(u) if *unsigned => out.u64(u),
            Cell::UInt(u) => out.i64(sign_extend(u, *bytes)),
            Cell::Bytes(b) => match parse_int_text(b) {
                Some(IntText::Signed(i)) => out.i64(i),
                Some(IntText::Unsigned(u)) => out.u64(u),
                None => return Err(err("not an integer".into())),
            },
            other => return Err(unexpected(&other)),
        },
        (ColKind::Decimal, Cell::Bytes(b)) => out.str(utf8_str(b).map_err(err)?),
        (ColKind::Float, v) => {
            let f = match v {
                Cell::Float(f) => f,
                Cell::Double(d) => d as f32,
                Cell::Bytes(b) => utf8_str(b)
                    .map_err(err)?
                    .parse::<f32>()
                    .map_err(|_| err("not a number".into()))?,
                other => return Err(unexpected(&other)),
            };
            // The shortest text that reads back as this f32, as a double.
            out.f64(shortest_f32_as_f64(f));
        }
        (ColKind::Double, v) => {
            let d = match v {
                Cell::Double(d) => d,
                Cell::Float(f) => f64::from(f),
                Cell::Bytes(b) => utf8_str(b)
                    .map_err(err)?
                    .parse::<f64>()
                    .map_err(|_| err("not a number".into()))?,
                other => return Err(unexpected(&other)),
            };
            out.f64(d);
        }
        (ColKind::Date, Cell::Date(y, m, d, ..)) => {
            if y == 0 && m == 0 && d == 0 {
                zero_value(out, zero, "0000-00-00");
            } else {
                out.string_with(|t| push_date(t, i64::from(y), m.into(), d.into()));
            }
        }
        (ColKind::DateTime(fsp), Cell::Date(y, mo, d, h, mi, s, us)) => {
            if y == 0 && mo == 0 && d == 0 && h == 0 && mi == 0 && s == 0 && us == 0 {
                zero_value(out, zero, &format!("0000-00-00T00:00:00{}", frac(0, *fsp)));
            } else {
                out.string_with(|t| {
                    push_date(t, i64::from(y), mo.into(), d.into());
                    push_time(t, h.into(), mi.into(), s.into(), us, *fsp);
                });
            }
        }
        (ColKind::Timestamp(fsp), v) => {
            let zero_text = || format!("0000-00-00T00:00:00{}Z", frac(0, *fsp));
            match v {
                // Snapshot: the session time zone is UTC.
                Cell::Date(0, 0, 0, 0, 0, 0, 0) => zero_value(out, zero, &zero_text()),
                Cell::Date(y, mo, d, h, mi, s, us) => out.string_with(|t| {
                    push_date(t, i64::from(y), mo.into(), d.into());
                    push_time(t, h.into(), mi.into(), s.into(), us, *fsp);
                    t.push('Z');
                }),
                // Binlog: epoch seconds, as an integer or "secs[.micros]".
                Cell::Int(secs) => epoch_out(out, secs, 0, *fsp, zero, &zero_text),
                Cell::UInt(secs) => epoch_out(out, secs as i64, 0, *fsp, zero, &zero_text),
                Cell::Bytes(b) => {
                    let text = utf8_str(b).map_err(err)?;
                    let (secs, us) =
                        parse_epoch(text).ok_or_else(|| err("not an epoch timestamp".into()))?;
                    epoch_out(out, secs, us, *fsp, zero, &zero_text);
                }
                other => return Err(unexpected(&other)),
            }
        }
        (ColKind::Time(fsp), Cell::Time(neg, days, h, m, s, us)) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if neg { "-" } else { "" };
            text!("{sign}{hours:02}:{m:02}:{s:02}{}", Frac(us, *fsp));
        }
        (ColKind::Year, v) => {
            let y: i64 = match v {
                Cell::Int(i) => i,
                Cell::UInt(u) => u as i64,
                Cell::Bytes(b) => utf8_str(b)
                    .map_err(err)?
                    .parse()
                    .map_err(|_| err("not a year".into()))?,
                other => return Err(unexpected(&other)),
            };
            // The binlog encodes YEAR 0000 as 0 + 1900; 1900 itself is out of YEAR's range.
            let y = if origin == Origin::Binlog && y == 1900 {
                0
            } else {
                y
            };
            out.i64(y);
        }
        (ColKind::Text(charset), Cell::Bytes(b)) => match (origin, charset) {
            (Origin::Snapshot, _) | (Origin::Binlog, Charset::Utf8 | Charset::Ascii) => {
                out.str(utf8_str(b).map_err(err)?)
            }
            (Origin::Binlog, Charset::Latin1) => out.string_with(|s| push_latin1(s, b)),
            (Origin::Binlog, Charset::Other(name)) => out.str(utf8_str(b).map_err(|_| {
                err(format!(
                    "charset `{name}` is not decoded by the binlog reader; convert the column to utf8mb4 \
                     (ALTER TABLE … CONVERT TO CHARACTER SET utf8mb4)"
                ))
            })?),
        },
        (ColKind::Binary { pad_to }, Cell::Bytes(b)) => {
            let engine = &base64::engine::general_purpose::STANDARD;
            match pad_to {
                Some(n) if b.len() < *n => {
                    let mut padded = b.to_vec();
                    padded.resize(*n, 0);
                    out.string_with(|s| engine.encode_string(&padded, s));
                }
                _ => out.string_with(|s| engine.encode_string(b, s)),
            }
        }
        (ColKind::Enum(values), v) => match (origin, v) {
            (Origin::Snapshot, Cell::Bytes(b)) => out.str(utf8_str(b).map_err(err)?),
            (_, Cell::Int(i)) => out.str(enum_value(values, i as u64).map_err(err)?),
            (_, Cell::UInt(i)) => out.str(enum_value(values, i).map_err(err)?),
            (_, other) => return Err(unexpected(&other)),
        },
        (ColKind::Set(values), v) => match (origin, v) {
            (Origin::Snapshot, Cell::Bytes(b)) => out.str(utf8_str(b).map_err(err)?),
            (Origin::Binlog, Cell::Bytes(b)) => {
                let mut bits = 0u64;
                for (i, byte) in b.iter().take(8).enumerate() {
                    bits |= u64::from(*byte) << (8 * i);
                }
                out.string_with(|s| set_value(s, values, bits));
            }
            (_, Cell::Int(i)) => out.string_with(|s| set_value(s, values, i as u64)),
            (_, Cell::UInt(i)) => out.string_with(|s| set_value(s, values, i)),
            (_, other) => return Err(unexpected(&other)),
        },
        (ColKind::Bit(bits), v) => {
            let n = match v {
                Cell::Bytes(b) => {
                    if b.len() > 8 {
                        return Err(err("BIT value longer than 64 bits".into()));
                    }
                    b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
                }
                Cell::Int(i) => i as u64,
                Cell::UInt(u) => u,
                other => return Err(unexpected(&other)),
            };
            if *bits == 1 {
                out.bool(n != 0);
            } else {
                out.u64(n);
            }
        }
        (ColKind::Json, Cell::Bytes(b)) => {
            // Re-serialised compactly, so server text and binlog JSONB agree.
            let text = utf8_str(b).map_err(err)?;
            match serde_json::from_str::<Json>(text) {
                Ok(v) => out.string_with(|s| {
                    let _ = write!(s, "{v}");
                }),
                Err(_) => out.str(text),
            }
        }
        (_, other) => return Err(unexpected(&other)),
    }
    Ok(())
}

fn variant(v: &Cell<'_>) -> &'static str {
    match v {
        Cell::Null => "NULL",
        Cell::Bytes(_) => "bytes",
        Cell::Int(_) => "signed integer",
        Cell::UInt(_) => "unsigned integer",
        Cell::Float(_) => "float",
        Cell::Double(_) => "double",
        Cell::Date(..) => "date",
        Cell::Time(..) => "time",
        Cell::Year(_) => "year",
        Cell::Epoch(..) => "timestamp",
        Cell::Decimal(..) => "decimal",
        Cell::Jsonb(_) => "JSON",
    }
}

fn mask(v: u64, bytes: u8) -> u64 {
    if bytes >= 8 {
        v
    } else {
        v & ((1u64 << (8 * u32::from(bytes))) - 1)
    }
}

fn sign_extend(v: u64, bytes: u8) -> i64 {
    if bytes >= 8 {
        return v as i64;
    }
    let shift = 64 - 8 * u32::from(bytes);
    ((v << shift) as i64) >> shift
}

/// An integer read from text.
enum IntText {
    Signed(i64),
    Unsigned(u64),
}

fn parse_int_text(b: &[u8]) -> Option<IntText> {
    let s = std::str::from_utf8(b).ok()?;
    s.parse::<i64>()
        .map(IntText::Signed)
        .ok()
        .or_else(|| s.parse::<u64>().ok().map(IntText::Unsigned))
}

fn utf8_str(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))
}

/// The double whose shortest text is the shortest text of `f` (FLOAT's
/// `1.1` is `1.1`, not `1.100000023841858`), formatted on the stack.
fn shortest_f32_as_f64(f: f32) -> f64 {
    use std::io::Write as _;
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if write!(cursor, "{f}").is_err() {
        return f64::from(f);
    }
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(f64::from(f))
}

/// `.` and the first `fsp` digits of `us` (zero-padded to 6), or nothing when `fsp` is 0.
struct Frac(u32, u8);

impl std::fmt::Display for Frac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Frac(us, fsp) = *self;
        if fsp == 0 {
            return Ok(());
        }
        let fsp = u32::from(fsp.min(6));
        write!(
            f,
            ".{:0width$}",
            us / 10u32.pow(6 - fsp),
            width = fsp as usize
        )
    }
}

/// `YYYY-MM-DD` (a negative year keeps its sign, as `{y:04}` does).
fn push_date(t: &mut String, y: i64, m: i64, d: i64) {
    if let Some(date) = Digits::date(y, m, d) {
        t.push_str(date.as_str());
        return;
    }
    if y < 0 {
        use std::fmt::Write as _;
        let _ = write!(t, "{y:04}");
    } else {
        push_padded(t, y as u64, 4);
    }
    t.push('-');
    push_padded(t, m as u64, 2);
    t.push('-');
    push_padded(t, d as u64, 2);
}

/// `Thh:mm:ss` and the fraction of `fsp` digits.
fn push_time(t: &mut String, h: i64, mi: i64, s: i64, us: u32, fsp: u8) {
    if let Some(time) = Digits::time(h, mi, s, us, fsp) {
        t.push_str(time.as_str());
        return;
    }
    t.push('T');
    push_padded(t, h as u64, 2);
    t.push(':');
    push_padded(t, mi as u64, 2);
    t.push(':');
    push_padded(t, s as u64, 2);
    if fsp > 0 {
        let fsp = u32::from(fsp.min(6));
        t.push('.');
        push_padded(t, u64::from(us / 10u32.pow(6 - fsp)), fsp as usize);
    }
}

/// The text of a date or a time of day in the usual ranges (year 0–9999,
/// other parts below 100), built on the stack and appended at once: every
/// DATE/DATETIME/TIMESTAMP of every row goes through here, and digit by
/// digit appends to the record's text cost ~10× more (docs/benchmarks.md,
/// source-mysql). Values outside those ranges take the general path.
struct Digits {
    buf: [u8; 16],
    len: usize,
}

impl Digits {
    fn new() -> Self {
        Self {
            buf: [0; 16],
            len: 0,
        }
    }

    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// `v` (< 100) as two digits.
    fn two(&mut self, v: u64) {
        self.byte(b'0' + (v / 10) as u8);
        self.byte(b'0' + (v % 10) as u8);
    }

    fn date(y: i64, m: i64, d: i64) -> Option<Self> {
        if !(0..=9999).contains(&y) || !(0..100).contains(&m) || !(0..100).contains(&d) {
            return None;
        }
        let mut t = Self::new();
        t.two(y as u64 / 100);
        t.two(y as u64 % 100);
        t.byte(b'-');
        t.two(m as u64);
        t.byte(b'-');
        t.two(d as u64);
        Some(t)
    }

    fn time(h: i64, mi: i64, s: i64, us: u32, fsp: u8) -> Option<Self> {
        let part = |v: i64| (0..100).contains(&v);
        if !part(h) || !part(mi) || !part(s) || us > 999_999 {
            return None;
        }
        let mut t = Self::new();
        t.byte(b'T');
        t.two(h as u64);
        t.byte(b':');
        t.two(mi as u64);
        t.byte(b':');
        t.two(s as u64);
        if fsp > 0 {
            t.byte(b'.');
            let mut div = 100_000;
            for _ in 0..fsp.min(6) {
                t.byte(b'0' + (us / div % 10) as u8);
                div /= 10;
            }
        }
        Some(t)
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

fn frac(us: u32, fsp: u8) -> String {
    Frac(us, fsp).to_string()
}

fn zero_value(out: impl ValueOut, zero: ZeroDate, text: &str) {
    match zero {
        ZeroDate::Null => out.null(),
        ZeroDate::String => out.str(text),
    }
}

fn parse_epoch(text: &str) -> Option<(i64, u32)> {
    let (secs, fraction) = text.split_once('.').unwrap_or((text, ""));
    let secs = secs.parse().ok()?;
    if fraction.is_empty() {
        return Some((secs, 0));
    }
    if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: u32 = fraction.parse().ok()?;
    Some((secs, digits * 10u32.pow(6 - fraction.len() as u32)))
}

fn epoch_out(
    out: impl ValueOut,
    secs: i64,
    us: u32,
    fsp: u8,
    zero: ZeroDate,
    zero_text: &dyn Fn() -> String,
) {
    if secs == 0 && us == 0 {
        return zero_value(out, zero, &zero_text());
    }
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    out.string_with(|t| {
        push_date(t, y, m, d);
        push_time(t, rem / 3600, rem % 3600 / 60, rem % 60, us, fsp);
        t.push('Z');
    });
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn enum_value(values: &[String], index: u64) -> Result<&str, String> {
    if index == 0 {
        return Ok(""); // MySQL's "invalid value" entry
    }
    values
        .get(index as usize - 1)
        .map(String::as_str)
        .ok_or_else(|| {
            format!(
                "ENUM index {index} beyond the {} declared values; the table may have changed",
                values.len()
            )
        })
}

fn set_value(out: &mut String, values: &[String], bits: u64) {
    let picked = values
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 64 && bits & (1u64 << i) != 0);
    for (n, (_, v)) in picked.enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(v);
    }
}

/// Windows-1252 code points for bytes 0x80..=0x9F (MySQL's latin1).
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{8D}', '\u{017D}', '\u{8F}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{9D}', '\u{017E}', '\u{0178}',
];

/// Appends latin1 (Windows-1252) bytes as UTF-8.
fn push_latin1(out: &mut String, b: &[u8]) {
    out.extend(b.iter().map(|&x| match x {
        0x80..=0x9F => CP1252_HIGH[usize::from(x - 0x80)],
        _ => char::from(x),
    }));
}

/// A row's values by column index: a snapshot row (`mysql_async` values) or
/// a decoded binlog row image.
pub trait RowCells {
    /// Number of columns.
    fn len(&self) -> usize;
    /// The value of column `i`; `None` when the row does not hold it.
    fn cell(&self, i: usize) -> Option<Cell<'_>>;
}

impl RowCells for [Option<Value>] {
    fn len(&self) -> usize {
        <[Option<Value>]>::len(self)
    }
    fn cell(&self, i: usize) -> Option<Cell<'_>> {
        self.get(i)?.as_ref().map(Cell::from)
    }
}

impl RowCells for [Cell<'_>] {
    fn len(&self) -> usize {
        <[Cell<'_>]>::len(self)
    }
    fn cell(&self, i: usize) -> Option<Cell<'_>> {
        self.get(i).copied()
    }
}

impl TableSchema {
    fn check_len(&self, values: usize) -> Result<(), ConvError> {
        if values == self.columns.len() {
            return Ok(());
        }
        Err(ConvError {
            column: String::new(),
            reason: format!(
                "row has {values} columns but `{}` has {}; the table changed (DDL) since it was read",
                self.table,
                self.columns.len()
            ),
        })
    }

    /// Converts the primary-key columns of a row, in key order.
    /// [`write_row`](Self::write_row) then writes them from the returned values.
    pub fn key_of<R: RowCells + ?Sized>(
        &self,
        row: &R,
        origin: Origin,
        zero: ZeroDate,
    ) -> Result<Vec<Json>, ConvError> {
        self.check_len(row.len())?;
        self.key
            .iter()
            .map(|&i| match row.cell(i) {
                // Not in the row image: with binlog_row_image=FULL this does not happen.
                None => Ok(Json::Null),
                Some(v) => to_json(&self.columns[i], v, origin, zero),
            })
            .collect()
    }

    /// Writes the row (column name → value, in column order) as the fields
    /// of the object `w` has open; the key columns, converted by
    /// [`key_of`](Self::key_of), are written from `key`.
    pub fn write_row<R: RowCells + ?Sized>(
        &self,
        w: &mut PayloadWriter,
        row: &R,
        key: &[Json],
        origin: Origin,
        zero: ZeroDate,
    ) -> Result<(), ConvError> {
        self.check_len(row.len())?;
        for (i, column) in self.columns.iter().enumerate() {
            let name = column.name.as_str();
            if let Some(k) = self.key.iter().position(|&c| c == i) {
                w.json(name, key.get(k).unwrap_or(&Json::Null));
                continue;
            }
            match row.cell(i) {
                // Not in the row image: with binlog_row_image=FULL this does not happen.
                None => w.null(name),
                Some(v) => convert(column, v, origin, zero, Field { writer: w, name })?,
            }
        }
        Ok(())
    }

    /// The row and its primary key as JSON objects (tests: what the record holds).
    #[cfg(test)]
    pub fn row_to_json<R: RowCells + ?Sized>(
        &self,
        row: &R,
        origin: Origin,
        zero: ZeroDate,
    ) -> Result<(JsonRow, JsonRow), ConvError> {
        use hstream_io_runtime::stream::{Payload, PayloadEncoding};
        let key = self.key_of(row, origin, zero)?;
        let mut w = PayloadWriter::new(PayloadEncoding::JsonText);
        self.write_row(&mut w, row, &key, origin, zero)?;
        let Payload::Raw(text) = w.finish() else {
            unreachable!("JSON text is a RAW payload")
        };
        let row: JsonRow = serde_json::from_slice(&text).expect("the writer writes JSON");
        let key = self
            .key
            .iter()
            .zip(key)
            .map(|(&i, v)| (self.columns[i].name.clone(), v))
            .collect();
        Ok((row, key))
    }

    /// The table as a row image with the columns `names` (in that order) sees
    /// it, using the current types; `None` when a name or a key column is missing.
    pub fn project(&self, names: &[String]) -> Option<TableSchema> {
        let picked: Vec<usize> = names
            .iter()
            .map(|n| self.columns.iter().position(|c| &c.name == n))
            .collect::<Option<_>>()?;
        let key = self
            .key
            .iter()
            .map(|k| picked.iter().position(|p| p == k))
            .collect::<Option<_>>()?;
        Some(TableSchema {
            table: self.table.clone(),
            columns: picked.iter().map(|&i| self.columns[i].clone()).collect(),
            key,
        })
    }
}

/// Reads the columns and primary key of `table` from `information_schema`.
///
/// Fails (kind `Setup`) when the table does not exist or has no primary key.
pub async fn load_schema(
    conn: &mut mysql_async::Conn,
    table: &TableRef,
) -> Result<TableSchema, hstream_io_runtime::Error> {
    use hstream_io_runtime::{Error, ErrorKind};
    use mysql_async::prelude::Queryable;

    type Row = (
        String,
        String,
        String,
        Option<String>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
    );
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, \
             CHARACTER_OCTET_LENGTH, NUMERIC_PRECISION, DATETIME_PRECISION \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (&table.database, &table.name),
        )
        .await
        .map_err(|e| crate::error::classify(e, format!("cannot read the columns of `{table}`")))?;
    if rows.is_empty() {
        return Err(Error::new(
            ErrorKind::Setup,
            format!("table `{table}` does not exist or the user cannot see it"),
        )
        .with_hint(
            "Check `database` and `table`/`tables`, and GRANT SELECT on the table to the connector's user.",
        ));
    }
    let columns: Vec<Column> = rows
        .into_iter()
        .map(
            |(name, data_type, column_type, charset, octet, prec, dt_prec)| {
                column_from_info(&ColumnInfo {
                    name,
                    data_type,
                    column_type,
                    charset,
                    octet_length: octet,
                    numeric_precision: prec,
                    datetime_precision: dt_prec,
                })
            },
        )
        .collect();
    let key_names: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' \
             ORDER BY SEQ_IN_INDEX",
            (&table.database, &table.name),
        )
        .await
        .map_err(|e| {
            crate::error::classify(e, format!("cannot read the primary key of `{table}`"))
        })?;
    if key_names.is_empty() {
        return Err(Error::new(
            ErrorKind::Setup,
            format!("table `{table}` has no primary key"),
        )
        .with_hint(
            "Add a primary key (ALTER TABLE … ADD PRIMARY KEY (…)): records are keyed by it, \
             and updates and deletes cannot be captured without one.",
        ));
    }
    let key = key_names
        .iter()
        .map(|k| {
            columns.iter().position(|c| &c.name == k).ok_or_else(|| {
                Error::internal(format!(
                    "primary key column `{k}` of `{table}` is not among its columns"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TableSchema {
        table: table.clone(),
        columns,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: ColKind) -> Column {
        Column {
            name: "c".into(),
            kind,
        }
    }

    fn both(kind: ColKind, snap: Value, bin: Value) -> Json {
        let c = col(kind);
        let a = to_json(&c, Cell::from(&snap), Origin::Snapshot, ZeroDate::Null).unwrap();
        let b = to_json(&c, Cell::from(&bin), Origin::Binlog, ZeroDate::Null).unwrap();
        assert_eq!(a, b, "snapshot and binlog disagree");
        a
    }

    #[test]
    fn integers_signed_and_unsigned() {
        let k = ColKind::Int {
            unsigned: true,
            bytes: 2,
        };
        assert_eq!(both(k, Value::UInt(65000), Value::Int(-536)), 65000);
        let k = ColKind::Int {
            unsigned: true,
            bytes: 8,
        };
        let big = Json::Number(serde_json::Number::from(u64::MAX));
        assert_eq!(both(k, Value::UInt(u64::MAX), Value::Int(-1)), big);
        let k = ColKind::Int {
            unsigned: false,
            bytes: 1,
        };
        assert_eq!(both(k, Value::Int(-5), Value::Int(-5)), -5);
        let k = ColKind::Int {
            unsigned: false,
            bytes: 3,
        };
        assert_eq!(both(k, Value::Int(-8388608), Value::Int(8388608)), -8388608);
    }

    #[test]
    fn temporal_values() {
        assert_eq!(
            both(
                ColKind::Timestamp(6),
                Value::Date(2024, 1, 1, 0, 0, 1, 123456),
                Value::Bytes(b"1704067201.123456".to_vec())
            ),
            "2024-01-01T00:00:01.123456Z"
        );
        assert_eq!(
            both(
                ColKind::Timestamp(0),
                Value::Date(2024, 1, 1, 0, 0, 1, 0),
                Value::Bytes(b"1704067201".to_vec())
            ),
            "2024-01-01T00:00:01Z"
        );
        assert_eq!(
            both(
                ColKind::DateTime(3),
                Value::Date(2024, 2, 29, 12, 34, 56, 789000),
                Value::Date(2024, 2, 29, 12, 34, 56, 789000)
            ),
            "2024-02-29T12:34:56.789"
        );
        assert_eq!(
            both(
                ColKind::Time(0),
                Value::Time(true, 1, 2, 0, 1, 0),
                Value::Time(true, 1, 2, 0, 1, 0)
            ),
            "-26:00:01"
        );
        assert_eq!(
            both(
                ColKind::Date,
                Value::Date(0, 0, 0, 0, 0, 0, 0),
                Value::Date(0, 0, 0, 0, 0, 0, 0)
            ),
            Json::Null
        );
        let c = col(ColKind::DateTime(0));
        assert_eq!(
            to_json(
                &c,
                Cell::Date(0, 0, 0, 0, 0, 0, 0),
                Origin::Binlog,
                ZeroDate::String
            )
            .unwrap(),
            "0000-00-00T00:00:00"
        );
        assert_eq!(
            both(ColKind::Year, Value::Int(0), Value::Bytes(b"1900".to_vec())),
            0
        );
        assert_eq!(
            both(
                ColKind::Year,
                Value::Int(2024),
                Value::Bytes(b"2024".to_vec())
            ),
            2024
        );
    }

    #[test]
    fn dates_are_formatted_like_core_fmt() {
        for (y, m, d) in [
            (0i64, 1i64, 1i64),
            (1, 2, 3),
            (999, 12, 31),
            (2024, 2, 29),
            (12345, 1, 1),
            (-44, 3, 15),
            (9999, 99, 99),
            (10000, 1, 1),
            (2024, 100, 1),
        ] {
            let mut t = String::new();
            push_date(&mut t, y, m, d);
            assert_eq!(t, format!("{y:04}-{m:02}-{d:02}"));
        }
        for (h, mi, s, us, fsp) in [
            (0i64, 0i64, 0i64, 0u32, 0u8),
            (23, 59, 59, 999_999, 6),
            (7, 5, 3, 120_000, 2),
            (1, 2, 3, 4, 6),
            (10, 0, 0, 500_000, 1),
            (99, 59, 59, 999_999, 3),
            (100, 0, 0, 0, 0),
            (838, 59, 59, 1, 6),
            (0, 0, 0, 999_999, 5),
        ] {
            let mut t = String::new();
            push_time(&mut t, h, mi, s, us, fsp);
            assert_eq!(t, format!("T{h:02}:{mi:02}:{s:02}{}", frac(us, fsp)));
        }
    }

    #[test]
    fn enum_set_bit_binary_text() {
        let values = vec!["a".to_string(), "b".into(), "c".into()];
        assert_eq!(
            both(
                ColKind::Enum(values.clone()),
                Value::Bytes(b"b".to_vec()),
                Value::Int(2)
            ),
            "b"
        );
        assert_eq!(
            both(
                ColKind::Set(values),
                Value::Bytes(b"a,c".to_vec()),
                Value::Bytes(vec![5])
            ),
            "a,c"
        );
        assert_eq!(
            both(
                ColKind::Bit(10),
                Value::Bytes(vec![2, 1]),
                Value::Bytes(vec![2, 1])
            ),
            513
        );
        assert_eq!(
            both(
                ColKind::Bit(1),
                Value::Bytes(vec![1]),
                Value::Bytes(vec![1])
            ),
            true
        );
        assert_eq!(
            both(
                ColKind::Binary { pad_to: Some(4) },
                Value::Bytes(vec![1, 2, 0, 0]),
                Value::Bytes(vec![1, 2])
            ),
            "AQIAAA=="
        );
        assert_eq!(
            both(
                ColKind::Text(Charset::Latin1),
                Value::Bytes("h\u{e9}llo \u{20ac}".as_bytes().to_vec()),
                Value::Bytes(vec![b'h', 0xE9, b'l', b'l', b'o', b' ', 0x80])
            ),
            "h\u{e9}llo \u{20ac}"
        );
        assert_eq!(
            both(ColKind::Float, Value::Float(1.1), Value::Float(1.1)),
            Json::Number(serde_json::Number::from_f64(1.1).unwrap())
        );
        assert_eq!(
            both(
                ColKind::Json,
                Value::Bytes(br#"{"a": [1, 2]}"#.to_vec()),
                Value::Bytes(br#"{"a":[1,2]}"#.to_vec())
            ),
            r#"{"a":[1,2]}"#
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_column() {
        let c = col(ColKind::Enum(vec!["a".into()]));
        let e = to_json(&c, Cell::Int(7), Origin::Binlog, ZeroDate::Null).unwrap_err();
        assert_eq!(e.column, "c");
        assert!(e.reason.contains("index 7"), "{e}");
        let c = col(ColKind::Text(Charset::Other("gbk".into())));
        let e = to_json(&c, Cell::Bytes(&[0xff]), Origin::Binlog, ZeroDate::Null).unwrap_err();
        assert!(e.reason.contains("utf8mb4"), "{e}");
    }

    #[test]
    fn projects_older_row_images_by_column_name() {
        let t = TableSchema {
            table: TableRef {
                database: "d".into(),
                name: "t".into(),
            },
            columns: vec![
                Column {
                    name: "id".into(),
                    kind: ColKind::Int {
                        unsigned: false,
                        bytes: 4,
                    },
                },
                Column {
                    name: "v".into(),
                    kind: ColKind::Text(Charset::Utf8),
                },
                Column {
                    name: "added".into(),
                    kind: ColKind::Year,
                },
            ],
            key: vec![0],
        };
        let p = t.project(&["v".into(), "id".into()]).unwrap();
        assert_eq!(p.key, vec![1]);
        let (row, key) = p
            .row_to_json(
                &[Some(Value::Bytes(b"x".to_vec())), Some(Value::Int(7))][..],
                Origin::Binlog,
                ZeroDate::Null,
            )
            .unwrap();
        assert_eq!(Json::Object(row), serde_json::json!({"v": "x", "id": 7}));
        assert_eq!(Json::Object(key), serde_json::json!({"id": 7}));
        assert!(t.project(&["v".into()]).is_none(), "key column missing");
        assert!(t.project(&["id".into(), "dropped".into()]).is_none());
    }

    #[test]
    fn parses_enum_lists_and_columns() {
        assert_eq!(
            parse_list("enum('a','b''c','d,e')"),
            vec!["a", "b'c", "d,e"]
        );
        let c = column_from_info(&ColumnInfo {
            name: "x".into(),
            data_type: "smallint".into(),
            column_type: "smallint(5) unsigned".into(),
            ..Default::default()
        });
        assert_eq!(
            c.kind,
            ColKind::Int {
                unsigned: true,
                bytes: 2
            }
        );
        let c = column_from_info(&ColumnInfo {
            name: "b".into(),
            data_type: "varchar".into(),
            column_type: "varbinary(3)".into(),
            charset: None,
            ..Default::default()
        });
        assert_eq!(c.kind, ColKind::Binary { pad_to: None });
    }
}
