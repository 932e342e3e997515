//! The one mapping from PostgreSQL values to JSON, used by the snapshot and
//! by streaming alike, so a row reads the same whichever path delivered it.
//!
//! Both paths receive values in PostgreSQL's *text* output format (COPY for
//! the snapshot, pgoutput's text tuples for streaming), rendered under the
//! same session settings ([`SESSION_OPTIONS`]); this module converts that text
//! by the column's type:
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | `bool` | `true` / `false` |
//! | `int2`, `int4`, `int8`, `oid` | number (exact as JSON text; `int8` beyond ±2^53 is exact only in `raw` format) |
//! | `float4`, `float8` | number; `NaN`, `Infinity`, `-Infinity` as those strings |
//! | `numeric` | string with the exact decimal (`"-0.0001"`, `"NaN"`) |
//! | `json`, `jsonb` | the JSON value itself |
//! | `bytea` | base64 string |
//! | `timestamp` | `"2024-01-31T12:00:00.5"` (no zone, as stored) |
//! | `timestamptz` | `"2024-01-31T12:00:00.5Z"` (UTC) |
//! | `date`, `time`, `timetz` | ISO text (`"2024-01-31"`, `"12:00:00"`) |
//! | `interval` | ISO-8601 duration (`"P1Y2M3DT4H5M6S"`) |
//! | `uuid`, text types, enums, anything else | string (PostgreSQL's text) |
//! | arrays (any dimension) | JSON arrays of the element mapping, `null` for NULL |
//! | domains | as their base type |
//!
//! `infinity` / `-infinity` dates and timestamps stay those strings.

use std::collections::HashMap;

use base64::Engine;
use hstream_io_runtime::stream::{JsonOut, ValueOut};
use serde_json::Value;

/// Session settings pinned on every connection, so text output is identical
/// on the snapshot and the replication connections (libpq `options` syntax).
pub const SESSION_OPTIONS: &str = "-c DateStyle=ISO,MDY -c TimeZone=UTC -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex";

/// How a column's text is converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeKind {
    /// `bool`.
    Bool,
    /// Integer types.
    Int,
    /// `float4`, `float8`.
    Float,
    /// `numeric`: exact decimal string.
    Numeric,
    /// `json`, `jsonb`.
    Json,
    /// `bytea`: base64.
    Bytea,
    /// `timestamp` without time zone.
    Timestamp,
    /// `timestamptz`, rendered in UTC.
    TimestampTz,
    /// Everything else: the text itself.
    Text,
    /// An array of the element kind, with the element type's delimiter.
    Array(Box<TypeKind>, u8),
}

/// Kinds of the types known by OID.
#[derive(Debug, Default, Clone)]
pub struct TypeCache {
    kinds: HashMap<u32, TypeKind>,
}

/// One row of `pg_type` (see [`TYPE_QUERY`]).
#[derive(Debug, Clone)]
pub struct TypeRow {
    /// `oid`.
    pub oid: u32,
    /// `typtype`: b base, d domain, e enum, …
    pub typtype: u8,
    /// `typelem`: element type of an array, else 0.
    pub typelem: u32,
    /// `typbasetype`: base of a domain, else 0.
    pub typbasetype: u32,
    /// `typdelim`.
    pub typdelim: u8,
    /// `typcategory`: A for arrays.
    pub typcategory: u8,
}

/// The query that lists every type (`oid, typtype, typelem, typbasetype, typdelim, typcategory`).
pub const TYPE_QUERY: &str =
    "SELECT oid, typtype, typelem, typbasetype, typdelim, typcategory FROM pg_catalog.pg_type";

fn builtin(oid: u32) -> TypeKind {
    match oid {
        16 => TypeKind::Bool,
        20 | 21 | 23 | 26 => TypeKind::Int,
        700 | 701 => TypeKind::Float,
        1700 => TypeKind::Numeric,
        114 | 3802 => TypeKind::Json,
        17 => TypeKind::Bytea,
        1114 => TypeKind::Timestamp,
        1184 => TypeKind::TimestampTz,
        _ => TypeKind::Text,
    }
}

impl TypeCache {
    /// Builds the cache from `pg_type` rows: domains resolve to their base,
    /// arrays to their element.
    pub fn from_rows(rows: &[TypeRow]) -> Self {
        let by_oid: HashMap<u32, &TypeRow> = rows.iter().map(|r| (r.oid, r)).collect();
        let mut kinds = HashMap::with_capacity(rows.len());
        for row in rows {
            kinds.insert(row.oid, resolve(row.oid, &by_oid, 0));
        }
        Self { kinds }
    }

    /// The kind of `oid`; unknown types are text.
    pub fn kind(&self, oid: u32) -> TypeKind {
        self.kinds
            .get(&oid)
            .cloned()
            .unwrap_or_else(|| builtin(oid))
    }

    /// Whether `oid` is known.
    pub fn contains(&self, oid: u32) -> bool {
        self.kinds.contains_key(&oid)
    }
}

fn resolve(oid: u32, rows: &HashMap<u32, &TypeRow>, depth: u32) -> TypeKind {
    let Some(row) = rows.get(&oid) else {
        return builtin(oid);
    };
    if depth > 8 {
        return TypeKind::Text;
    }
    if row.typtype == b'd' && row.typbasetype != 0 {
        return resolve(row.typbasetype, rows, depth + 1);
    }
    if row.typcategory == b'A' && row.typelem != 0 {
        let delim = rows.get(&row.typelem).map_or(b',', |e| e.typdelim);
        return TypeKind::Array(Box::new(resolve(row.typelem, rows, depth + 1)), delim);
    }
    builtin(oid)
}

/// Converts one non-NULL value's text into a JSON value.
pub fn to_json(kind: &TypeKind, text: &str) -> Value {
    let mut v = Value::Null;
    convert(kind, text, JsonOut(&mut v));
    v
}

/// Converts one non-NULL value's text into `out` (the table in the module docs).
pub fn convert(kind: &TypeKind, text: &str, out: impl ValueOut) {
    match kind {
        TypeKind::Bool => match text {
            "t" | "true" => out.bool(true),
            "f" | "false" => out.bool(false),
            other => out.str(other),
        },
        TypeKind::Int => {
            if let Ok(n) = text.parse::<i64>() {
                out.i64(n)
            } else if let Ok(n) = text.parse::<u64>() {
                out.u64(n)
            } else {
                out.str(text)
            }
        }
        TypeKind::Float => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => out.f64(f),
            _ => out.str(text),
        },
        TypeKind::Numeric | TypeKind::Text => out.str(text),
        TypeKind::Json => match serde_json::from_str(text) {
            Ok(v) => out.json(v),
            Err(_) => out.str(text),
        },
        TypeKind::Bytea => match text.strip_prefix("\\x").filter(|h| is_hex(h)) {
            Some(hex) => out.string_with(|s| hex_to_base64(hex.as_bytes(), s)),
            None => out.str(text),
        },
        TypeKind::Timestamp => out.string_with(|s| iso_timestamp(text, false, s)),
        TypeKind::TimestampTz => out.string_with(|s| iso_timestamp(text, true, s)),
        TypeKind::Array(element, delim) => match parse_array(text, element, *delim) {
            Some(v) => out.json(v),
            None => out.str(text),
        },
    }
}

/// An even number of hex digits.
fn is_hex(hex: &str) -> bool {
    hex.len().is_multiple_of(2) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Appends the base64 of the bytes whose hex digits are `hex` (valid: see
/// [`is_hex`]), decoding a block at a time on the stack.
fn hex_to_base64(hex: &[u8], out: &mut String) {
    // A multiple of 3 bytes, so the blocks' base64 texts concatenate.
    const BLOCK: usize = 3 * 256;
    let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    let mut block = [0u8; BLOCK];
    for pairs in hex.chunks(BLOCK * 2) {
        let n = pairs.len() / 2;
        for (slot, pair) in block.iter_mut().zip(pairs.chunks_exact(2)) {
            *slot = digit(pair[0]) << 4 | digit(pair[1]);
        }
        base64::engine::general_purpose::STANDARD.encode_string(&block[..n], out);
    }
}

/// `2024-01-31 12:00:00.5+00` → `2024-01-31T12:00:00.5Z` (with `zone`);
/// `2024-01-31 12:00:00` → `2024-01-31T12:00:00`. Other text (infinity, BC
/// dates) is kept. Appended to `out`.
fn iso_timestamp(text: &str, zone: bool, out: &mut String) {
    if text.len() < 19 || text.as_bytes()[10] != b' ' || text.ends_with(" BC") {
        out.push_str(text);
        return;
    }
    out.push_str(&text[..10]);
    out.push('T');
    let rest = &text[11..];
    if !zone {
        out.push_str(rest);
        return;
    }
    // The zone starts at the last '+' or '-' after the time.
    match rest.rfind(['+', '-']) {
        Some(at) => {
            let (time, offset) = rest.split_at(at);
            out.push_str(time);
            match offset {
                "+00" | "-00" | "+00:00" => out.push('Z'),
                o if o.len() == 3 => {
                    out.push_str(o);
                    out.push_str(":00");
                }
                o => out.push_str(o),
            }
        }
        None => out.push_str(rest),
    }
}

/// Parses an array literal (`{1,2,NULL}`, `{{a,"b c"},{d,e}}`,
/// `[0:1]={x,y}`) converting each element; `None` if malformed.
fn parse_array(text: &str, element: &TypeKind, delim: u8) -> Option<Value> {
    let bytes = text.as_bytes();
    let mut at = 0;
    if bytes.first() == Some(&b'[') {
        at = text.find('=')? + 1;
    }
    let mut parser = ArrayParser {
        bytes,
        at,
        element,
        delim,
    };
    let value = parser.array()?;
    (parser.at == bytes.len()).then_some(value)
}

struct ArrayParser<'a> {
    bytes: &'a [u8],
    at: usize,
    element: &'a TypeKind,
    delim: u8,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn array(&mut self) -> Option<Value> {
        if self.peek()? != b'{' {
            return None;
        }
        self.at += 1;
        let mut items = Vec::new();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(Value::Array(items));
        }
        loop {
            let item = match self.peek()? {
                b'{' => self.array()?,
                b'"' => {
                    let text = self.quoted()?;
                    to_json(self.element, &text)
                }
                _ => {
                    let start = self.at;
                    while let Some(b) = self.peek() {
                        if b == self.delim || b == b'}' {
                            break;
                        }
                        self.at += 1;
                    }
                    let raw = std::str::from_utf8(&self.bytes[start..self.at])
                        .ok()?
                        .trim();
                    if raw.eq_ignore_ascii_case("NULL") {
                        Value::Null
                    } else {
                        to_json(self.element, raw)
                    }
                }
            };
            items.push(item);
            match self.peek()? {
                b'}' => {
                    self.at += 1;
                    return Some(Value::Array(items));
                }
                b if b == self.delim => self.at += 1,
                _ => return None,
            }
        }
    }

    fn quoted(&mut self) -> Option<String> {
        self.at += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    out.push(*self.bytes.get(self.at + 1)?);
                    self.at += 2;
                }
                b => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hstream_io_runtime::stream::{Field, PayloadWriter};
    use serde_json::json;

    #[test]
    fn scalars() {
        assert_eq!(to_json(&TypeKind::Bool, "t"), json!(true));
        assert_eq!(
            to_json(&TypeKind::Int, "-9007199254740993"),
            json!(-9007199254740993i64)
        );
        assert_eq!(
            serde_json::to_string(&to_json(&TypeKind::Int, "9223372036854775807")).unwrap(),
            "9223372036854775807"
        );
        assert_eq!(to_json(&TypeKind::Float, "1.5"), json!(1.5));
        assert_eq!(to_json(&TypeKind::Float, "NaN"), json!("NaN"));
        assert_eq!(to_json(&TypeKind::Float, "-Infinity"), json!("-Infinity"));
        assert_eq!(to_json(&TypeKind::Numeric, "-0.0001"), json!("-0.0001"));
        assert_eq!(to_json(&TypeKind::Json, r#"{"a":[1]}"#), json!({"a":[1]}));
        assert_eq!(to_json(&TypeKind::Bytea, "\\xdeadbeef"), json!("3q2+7w=="));
        assert_eq!(to_json(&TypeKind::Bytea, "\\xzz"), json!("\\xzz"));
    }

    #[test]
    fn timestamps_are_iso_8601() {
        assert_eq!(
            to_json(&TypeKind::TimestampTz, "2024-01-31 12:00:00.5+00"),
            json!("2024-01-31T12:00:00.5Z")
        );
        assert_eq!(
            to_json(&TypeKind::TimestampTz, "2024-01-31 12:00:00+05:30"),
            json!("2024-01-31T12:00:00+05:30")
        );
        assert_eq!(
            to_json(&TypeKind::TimestampTz, "2024-01-31 12:00:00-08"),
            json!("2024-01-31T12:00:00-08:00")
        );
        assert_eq!(
            to_json(&TypeKind::Timestamp, "2024-01-31 12:00:00"),
            json!("2024-01-31T12:00:00")
        );
        assert_eq!(to_json(&TypeKind::Timestamp, "infinity"), json!("infinity"));
    }

    #[test]
    fn arrays_nest_quote_and_null() {
        let ints = TypeKind::Array(Box::new(TypeKind::Int), b',');
        assert_eq!(to_json(&ints, "{1,2,NULL}"), json!([1, 2, null]));
        assert_eq!(to_json(&ints, "{{1,2},{3,4}}"), json!([[1, 2], [3, 4]]));
        assert_eq!(to_json(&ints, "[0:1]={5,6}"), json!([5, 6]));
        assert_eq!(to_json(&ints, "{}"), json!([]));
        let texts = TypeKind::Array(Box::new(TypeKind::Text), b',');
        assert_eq!(
            to_json(&texts, r#"{"a b","c,\"d\"","NULL",NULL}"#),
            json!(["a b", "c,\"d\"", "NULL", null])
        );
        // Malformed literals are kept as text, never a panic.
        assert_eq!(to_json(&ints, "{1,2"), json!("{1,2"));
        assert_eq!(to_json(&texts, r#"{"a"#), json!(r#"{"a"#));
    }

    #[test]
    fn writer_fields_equal_the_json_values() {
        use hstream_io_runtime::stream::PayloadEncoding;
        let ints = TypeKind::Array(Box::new(TypeKind::Int), b',');
        let stamps = TypeKind::Array(Box::new(TypeKind::TimestampTz), b',');
        let cases: &[(TypeKind, &str)] = &[
            (TypeKind::Bool, "t"),
            (TypeKind::Bool, "f"),
            (TypeKind::Bool, "maybe"),
            (TypeKind::Int, "-9223372036854775808"),
            (TypeKind::Int, "9007199254740993"),
            (TypeKind::Int, "18446744073709551615"),
            (TypeKind::Int, "99999999999999999999"),
            (TypeKind::Float, "1.5"),
            (TypeKind::Float, "-0"),
            (TypeKind::Float, "1e-300"),
            (TypeKind::Float, "NaN"),
            (TypeKind::Float, "Infinity"),
            (TypeKind::Numeric, "-0.0001"),
            (TypeKind::Json, r#"{"b": [1, 2.5, null], "a": "x"}"#),
            (TypeKind::Json, "not json"),
            (TypeKind::Bytea, "\\x"),
            (TypeKind::Bytea, "\\xdeadbeef"),
            (TypeKind::Bytea, "\\xDEADBE"),
            (TypeKind::Bytea, "\\xdeadbee"),
            (TypeKind::Timestamp, "2024-01-31 12:00:00.123456"),
            (TypeKind::TimestampTz, "2024-01-31 12:00:00+00"),
            (TypeKind::TimestampTz, "0044-03-15 12:00:00+00 BC"),
            (TypeKind::TimestampTz, "-infinity"),
            (TypeKind::Text, "h\u{e9}\"llo\n"),
            (ints.clone(), "{{1,2},{3,NULL}}"),
            (ints, "{1,"),
            (stamps, r#"{"2024-01-31 12:00:00+00",NULL}"#),
        ];
        // Bytea longer than one stack block.
        let long_hex = format!("\\x{}", "0aff7c".repeat(1000));
        let long = [(TypeKind::Bytea, long_hex.as_str())];
        for enc in [PayloadEncoding::Struct, PayloadEncoding::JsonText] {
            for (kind, text) in cases.iter().chain(&long) {
                let mut direct = PayloadWriter::new(enc);
                convert(
                    kind,
                    text,
                    Field {
                        writer: &mut direct,
                        name: "c",
                    },
                );
                let mut via_json = PayloadWriter::new(enc);
                via_json.json("c", &to_json(kind, text));
                assert_eq!(direct.finish(), via_json.finish(), "{kind:?} {text:?}");
            }
        }
        assert_eq!(
            to_json(&TypeKind::Bytea, &long_hex),
            json!(
                base64::engine::general_purpose::STANDARD
                    .encode([0x0a_u8, 0xff, 0x7c].repeat(1000))
            )
        );
    }

    #[test]
    fn domains_and_arrays_resolve_through_pg_type() {
        let row = |oid, typtype, typelem, typbasetype, typcategory| TypeRow {
            oid,
            typtype,
            typelem,
            typbasetype,
            typdelim: b',',
            typcategory,
        };
        let cache = TypeCache::from_rows(&[
            row(1700, b'b', 0, 0, b'N'),
            row(1231, b'b', 1700, 0, b'A'),
            row(90000, b'd', 0, 1700, b'N'),
            row(90001, b'e', 0, 0, b'E'),
        ]);
        assert_eq!(cache.kind(90000), TypeKind::Numeric);
        assert_eq!(
            cache.kind(1231),
            TypeKind::Array(Box::new(TypeKind::Numeric), b',')
        );
        assert_eq!(cache.kind(90001), TypeKind::Text);
        assert_eq!(
            cache.kind(16),
            TypeKind::Bool,
            "unknown oids fall back to builtins"
        );
    }
}
