//! JSON values → PostgreSQL text input for a column's type, exactly.
//!
//! Time-zone rule: a timestamp with an offset (`…Z`, `…+02:00`) is converted to
//! UTC; one without an offset is taken as UTC for `timestamptz` (the session
//! runs with `TimeZone=UTC`) and written as given for `timestamp`. Integers
//! into `timestamp`/`timestamptz` are epoch milliseconds, into `date` days since
//! 1970-01-01, into `time` microseconds since midnight (Debezium's encodings).
//! The conversions both SQL sinks share are the runtime's
//! ([`hstream_io_runtime::sql_values`], [`hstream_io_runtime::record`]); this
//! module keeps PostgreSQL's own rules: `infinity`, `NaN`, `+00` on
//! `timestamptz`, `bytea` hex, array literals and no NUL characters.

use std::fmt::Write;

use hstream_io_runtime::record::{
    ValueRef, bool_value, type_name, write_decimal, write_float, write_integer, write_json_text,
    write_number, write_text,
};
use hstream_io_runtime::sql_values::{
    base64_bytes, write_date, write_time, write_timestamp, write_uuid,
};
use serde_json::Value;

use crate::catalog::{PgColumn, PgType};

/// The column's text input for `value` (`None` for SQL NULL), or what was
/// expected instead.
#[cfg(test)]
pub(crate) fn to_text(column: &PgColumn, value: &Value) -> Result<Option<String>, String> {
    let mut out = String::new();
    Ok(write_text_input(column, value.into(), &mut out)?.then_some(out))
}

/// Appends the column's text input for `value` to `out`: `Ok(false)` (nothing
/// appended) for SQL NULL, or what was expected instead (`out` may then hold
/// part of the text: the caller drops the row).
pub(crate) fn write_text_input(
    column: &PgColumn,
    value: ValueRef<'_>,
    out: &mut String,
) -> Result<bool, String> {
    if value.is_null() {
        return Ok(false);
    }
    let start = out.len();
    match column.ty {
        PgType::Bool => out.push(if bool_value(value)? { 't' } else { 'f' }),
        PgType::Int2 => write_integer(value, i16::MIN.into(), i16::MAX.into(), out)?,
        PgType::Int4 => write_integer(value, i32::MIN.into(), i32::MAX.into(), out)?,
        PgType::Int8 => write_integer(value, i64::MIN.into(), i64::MAX.into(), out)?,
        PgType::Numeric => match value {
            ValueRef::String(t) if matches!(t.trim(), "NaN" | "Infinity" | "-Infinity") => {
                out.push_str(t.trim());
            }
            _ => write_decimal(value, out)?,
        },
        PgType::Float => write_float(value, out)?,
        PgType::Date | PgType::Timestamp | PgType::TimestampTz if infinity(value).is_some() => {
            out.push_str(infinity(value).unwrap_or_default());
        }
        PgType::Date => write_date(value, out)?,
        PgType::Time => write_time(value, out)?,
        PgType::Timestamp => write_timestamp(value, out)?,
        PgType::TimestampTz => {
            write_timestamp(value, out)?;
            out.push_str("+00");
        }
        PgType::Json => write_json_text(value, out),
        PgType::Bytea => write_bytea(value, out)?,
        PgType::Uuid => write_uuid(value, out)?,
        PgType::Array => write_array(value, out)?,
        PgType::Text => write_text(value, out),
    }
    if out[start..].contains('\0') {
        return Err("text without NUL characters (PostgreSQL cannot store them)".into());
    }
    Ok(true)
}

/// `bytea` hex input (`\x0001ff`) of base64 text.
fn write_bytea(value: ValueRef<'_>, out: &mut String) -> Result<(), String> {
    let bytes = base64_bytes(value)?;
    out.reserve(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    Ok(())
}

/// `infinity` / `-infinity`, which PostgreSQL dates and timestamps (and our
/// PostgreSQL source) use.
fn infinity(value: ValueRef<'_>) -> Option<&str> {
    match value {
        ValueRef::String(t) if matches!(t.trim(), "infinity" | "-infinity") => Some(t.trim()),
        _ => None,
    }
}

fn write_array(value: ValueRef<'_>, out: &mut String) -> Result<(), String> {
    let ValueRef::Array(items) = value else {
        if let ValueRef::String(text) = value
            && text.trim_start().starts_with('{')
        {
            out.push_str(text);
            return Ok(());
        }
        return Err(format!("an array, not {}", type_name(value)));
    };
    array_literal(items, out);
    Ok(())
}

/// A PostgreSQL array literal; nested JSON arrays become dimensions.
fn array_literal(items: &[Value], out: &mut String) {
    out.push('{');
    let mut text = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => array_literal(inner, out),
            other => {
                text.clear();
                match other {
                    Value::Number(n) => write_number(n, &mut text),
                    v => write_text(v, &mut text),
                }
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(ty: PgType) -> PgColumn {
        PgColumn {
            name: "c".into(),
            sql_type: "x".into(),
            ty,
        }
    }

    fn ok(ty: PgType, v: Value) -> String {
        to_text(&col(ty), &v).unwrap().unwrap()
    }

    #[test]
    fn scalars() {
        assert_eq!(to_text(&col(PgType::Int4), &Value::Null).unwrap(), None);
        assert_eq!(ok(PgType::Bool, json!(true)), "t");
        assert_eq!(
            ok(PgType::Int8, json!("9223372036854775807")),
            "9223372036854775807"
        );
        assert!(to_text(&col(PgType::Int2), &json!(40000)).is_err());
        assert_eq!(
            ok(PgType::Numeric, json!("123456789012345678901234.5")),
            "123456789012345678901234.5"
        );
        assert_eq!(ok(PgType::Json, json!({"a":[1]})), r#"{"a":[1]}"#);
        assert_eq!(ok(PgType::Bytea, json!("AAH/")), "\\x0001ff");
        assert_eq!(
            ok(PgType::Uuid, json!("A0EEBC999C0B4EF8BB6D6BB9BD380A11")),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(
            ok(PgType::Array, json!([1, null, "a\"b"])),
            r#"{"1",NULL,"a\"b"}"#
        );
        assert!(to_text(&col(PgType::Text), &json!("a\u{0}b")).is_err());
        assert_eq!(
            ok(PgType::Array, json!([[1, 2], [3, null]])),
            r#"{{"1","2"},{"3",NULL}}"#
        );
        assert_eq!(ok(PgType::Numeric, json!("NaN")), "NaN");
        assert_eq!(ok(PgType::TimestampTz, json!("-infinity")), "-infinity");
        assert_eq!(ok(PgType::Date, json!("infinity")), "infinity");
    }

    #[test]
    fn times_follow_the_documented_zone_rule() {
        assert_eq!(
            ok(PgType::TimestampTz, json!("2024-01-31T12:00:00+02:00")),
            "2024-01-31 10:00:00+00"
        );
        assert_eq!(
            ok(PgType::Timestamp, json!("2024-01-31T12:00:00.5")),
            "2024-01-31 12:00:00.500"
        );
        assert_eq!(ok(PgType::Timestamp, json!(0)), "1970-01-01 00:00:00");
        assert_eq!(ok(PgType::Date, json!(1)), "1970-01-02");
        assert_eq!(ok(PgType::Date, json!("2024-02-29")), "2024-02-29");
        assert!(to_text(&col(PgType::Date), &json!("2023-02-29")).is_err());
        assert_eq!(ok(PgType::Time, json!(1_500_000)), "00:00:01.500");
        assert!(to_text(&col(PgType::Timestamp), &json!("yesterday")).is_err());
    }
}
