//! JSON values → PostgreSQL text input for a column's type, exactly.
//!
//! Time-zone rule: a timestamp with an offset (`…Z`, `…+02:00`) is converted to
//! UTC; one without an offset is taken as UTC for `timestamptz` (the session
//! runs with `TimeZone=UTC`) and written as given for `timestamp`. Integers
//! into `timestamp`/`timestamptz` are epoch milliseconds, into `date` days since
//! 1970-01-01, into `time` microseconds since midnight (Debezium's encodings).

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use hstream_io_runtime::record::{
    bool_value, decimal_text, float_text, integer_text, json_text, number_text, parse_iso_datetime,
    text_value, type_name,
};
use serde_json::Value;

use crate::catalog::{PgColumn, PgType};

/// The column's text input for `value` (`None` for SQL NULL), or what was
/// expected instead.
pub(crate) fn to_text(column: &PgColumn, value: &Value) -> Result<Option<String>, String> {
    if value.is_null() {
        return Ok(None);
    }
    let text = match column.ty {
        PgType::Bool => (if bool_value(value)? { "t" } else { "f" }).to_string(),
        PgType::Int2 => integer_text(value, i16::MIN.into(), i16::MAX.into())?,
        PgType::Int4 => integer_text(value, i32::MIN.into(), i32::MAX.into())?,
        PgType::Int8 => integer_text(value, i64::MIN.into(), i64::MAX.into())?,
        PgType::Numeric => match value {
            Value::String(t) if matches!(t.trim(), "NaN" | "Infinity" | "-Infinity") => {
                t.trim().to_string()
            }
            _ => decimal_text(value)?,
        },
        PgType::Float => float_text(value)?,
        PgType::Date | PgType::Timestamp | PgType::TimestampTz if is_infinity(value) => {
            text_value(value).trim().to_string()
        }
        PgType::Date => date_text(value)?,
        PgType::Time => time_text(value)?,
        PgType::Timestamp => timestamp_text(value, false)?,
        PgType::TimestampTz => timestamp_text(value, true)?,
        PgType::Json => json_text(value),
        PgType::Bytea => bytea_text(value)?,
        PgType::Uuid => uuid_text(value)?,
        PgType::Array => array_text(value)?,
        PgType::Text => text_value(value),
    };
    if text.contains('\0') {
        return Err("text without NUL characters (PostgreSQL cannot store them)".into());
    }
    Ok(Some(text))
}

pub(crate) fn parse_timestamp(text: &str) -> Option<(NaiveDateTime, bool)> {
    if let Some(t) = parse_iso_datetime(text) {
        let naive = NaiveDate::from_ymd_opt(t.year, t.month, t.day)?.and_time(
            NaiveTime::from_hms_nano_opt(t.hour, t.minute, t.second, t.nanos)?,
        );
        return Some(match t.offset_secs {
            Some(offset) => (naive - chrono::TimeDelta::seconds(offset.into()), true),
            None => (naive, false),
        });
    }
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some((dt.naive_utc(), true));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(t, format) {
            return Some((dt.naive_utc(), true));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, format) {
            return Some((dt, false));
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .map(|d| (d.and_time(NaiveTime::MIN), false))
}

fn epoch_millis(value: &Value) -> Option<NaiveDateTime> {
    let millis: i64 = integer_text(value, i64::MIN.into(), i64::MAX.into())
        .ok()?
        .parse()
        .ok()?;
    DateTime::from_timestamp_millis(millis).map(|d| d.naive_utc())
}

fn timestamp_text(value: &Value, with_zone: bool) -> Result<String, String> {
    const EXPECTED: &str = "an ISO-8601 timestamp (2024-01-31T12:00:00.5Z) or epoch milliseconds";
    let dt = match value {
        Value::String(text) => parse_timestamp(text).map(|(dt, _)| dt),
        Value::Number(_) => epoch_millis(value),
        _ => None,
    }
    .ok_or(EXPECTED)?;
    let text = datetime_text_of(dt);
    Ok(if with_zone {
        format!("{text}+00")
    } else {
        text
    })
}

fn date_text(value: &Value) -> Result<String, String> {
    const EXPECTED: &str = "an ISO-8601 date (2024-01-31) or days since 1970-01-01";
    let date = match value {
        Value::String(text) => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok(),
        Value::Number(_) => integer_text(value, i32::MIN.into(), i32::MAX.into())
            .ok()
            .and_then(|d| d.parse::<i64>().ok())
            .and_then(|days| {
                NaiveDate::from_ymd_opt(1970, 1, 1)?
                    .checked_add_signed(chrono::TimeDelta::try_days(days)?)
            }),
        _ => None,
    }
    .ok_or(EXPECTED)?;
    Ok(date.format("%Y-%m-%d").to_string())
}

fn time_text(value: &Value) -> Result<String, String> {
    const EXPECTED: &str = "an ISO-8601 time (12:30:00.25) or microseconds since midnight";
    let time = match value {
        Value::String(text) => {
            let t = text.trim();
            NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
                .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
                .ok()
        }
        Value::Number(_) => integer_text(value, 0, 86_400_000_000)
            .ok()
            .and_then(|m| m.parse::<i64>().ok())
            .and_then(|micros| {
                NaiveTime::from_num_seconds_from_midnight_opt(
                    (micros / 1_000_000) as u32,
                    ((micros % 1_000_000) * 1000) as u32,
                )
            }),
        _ => None,
    }
    .ok_or(EXPECTED)?;
    Ok(time.format("%H:%M:%S%.f").to_string())
}

fn bytea_text(value: &Value) -> Result<String, String> {
    let Value::String(text) = value else {
        return Err(format!("base64 text, not {}", type_name(value)));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "base64 text".to_string())?;
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    Ok(out)
}

pub(crate) fn uuid_text(value: &Value) -> Result<String, String> {
    const EXPECTED: &str = "a UUID (8-4-4-4-12 hex digits)";
    let Value::String(text) = value else {
        return Err(EXPECTED.into());
    };
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(EXPECTED.into());
    }
    let h = hex.to_ascii_lowercase();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// `infinity` / `-infinity`, which PostgreSQL dates and timestamps (and our
/// PostgreSQL source) use.
fn is_infinity(value: &Value) -> bool {
    matches!(value, Value::String(t) if matches!(t.trim(), "infinity" | "-infinity"))
}

fn array_text(value: &Value) -> Result<String, String> {
    let Value::Array(items) = value else {
        if let Value::String(text) = value
            && text.trim_start().starts_with('{')
        {
            return Ok(text.clone());
        }
        return Err(format!("an array, not {}", type_name(value)));
    };
    let mut out = String::new();
    array_literal(items, &mut out);
    Ok(out)
}

/// A PostgreSQL array literal; nested JSON arrays become dimensions.
fn array_literal(items: &[Value], out: &mut String) {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => array_literal(inner, out),
            other => {
                let text = match other {
                    Value::Number(n) => number_text(n),
                    v => text_value(v),
                };
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

/// `YYYY-MM-DD HH:MM:SS[.fff|.ffffff|.fffffffff]` (like chrono's `%.f`, without
/// parsing a format string per value).
pub(crate) fn datetime_text_of(dt: NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let nanos = dt.nanosecond();
    if nanos != 0 {
        if nanos.is_multiple_of(1_000_000) {
            s.push_str(&format!(".{:03}", nanos / 1_000_000));
        } else if nanos.is_multiple_of(1000) {
            s.push_str(&format!(".{:06}", nanos / 1000));
        } else {
            s.push_str(&format!(".{nanos:09}"));
        }
    }
    s
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
