//! JSON values → values MySQL takes for a column's type, exactly.
//!
//! Time-zone rule: the session runs with `time_zone = '+00:00'`. A timestamp
//! with an offset (`…Z`, `…+02:00`) is converted to UTC; one without an offset
//! is written as given (DATETIME) or taken as UTC (TIMESTAMP). Integers into
//! DATETIME/TIMESTAMP are epoch milliseconds, into DATE days since 1970-01-01,
//! into TIME microseconds since midnight (Debezium's encodings).

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use hstream_io_runtime::record::{
    decimal_text, float_text, integer_text, json_text, parse_iso_datetime, text_value, type_name,
};
use serde_json::Value;

use crate::catalog::{MysqlColumn, MysqlType};

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Cell {
    Null,
    Text(String),
    Bytes(Vec<u8>),
    /// For BIT columns, which take numbers, not text.
    Uint(u64),
}

/// The value to bind for `value` in `column`, or what was expected instead.
pub(crate) fn to_cell(column: &MysqlColumn, value: &Value) -> Result<Cell, String> {
    if value.is_null() {
        return Ok(Cell::Null);
    }
    let text = match column.ty {
        MysqlType::Int { min, max } => match value {
            Value::Bool(b) => (if *b { "1" } else { "0" }).to_string(),
            _ => integer_text(value, min, max)?,
        },
        MysqlType::Decimal => decimal_text(value)?,
        MysqlType::Float => match float_text(value)? {
            t if t == "NaN" || t.ends_with("Infinity") => {
                return Err("a finite number (MySQL has no NaN or infinity)".into());
            }
            t => t,
        },
        MysqlType::Date => date_text(value)?,
        MysqlType::Time => time_text(value)?,
        MysqlType::DateTime => datetime_text(value)?,
        MysqlType::Json => json_text(value),
        MysqlType::Bytes => return bytes(value).map(Cell::Bytes),
        MysqlType::Uuid => uuid_text(value)?,
        MysqlType::Bit => {
            return match value {
                Value::Bool(b) => Ok(Cell::Uint(u64::from(*b))),
                _ => integer_text(value, 0, u64::MAX.into())
                    .map(|t| Cell::Uint(t.parse().unwrap_or_default())),
            };
        }
        MysqlType::Text => match value {
            Value::Bool(b) => (if *b { "1" } else { "0" }).to_string(),
            _ => text_value(value),
        },
    };
    Ok(Cell::Text(text))
}

fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    if let Some(t) = parse_iso_datetime(text) {
        let naive = NaiveDate::from_ymd_opt(t.year, t.month, t.day)?.and_time(
            NaiveTime::from_hms_nano_opt(t.hour, t.minute, t.second, t.nanos)?,
        );
        return Some(match t.offset_secs {
            Some(offset) => naive - chrono::TimeDelta::seconds(offset.into()),
            None => naive,
        });
    }
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_utc());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(t, format) {
            return Some(dt.naive_utc());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, format) {
            return Some(dt);
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(NaiveTime::MIN))
}

fn datetime_text(value: &Value) -> Result<String, String> {
    const EXPECTED: &str = "an ISO-8601 timestamp (2024-01-31T12:00:00.5Z) or epoch milliseconds";
    let dt = match value {
        Value::String(text) => parse_timestamp(text),
        Value::Number(_) => integer_text(value, i64::MIN.into(), i64::MAX.into())
            .ok()
            .and_then(|m| m.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis)
            .map(|d| d.naive_utc()),
        _ => None,
    }
    .ok_or(EXPECTED)?;
    Ok(datetime_text_of(dt))
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

/// MySQL's own TIME text: `[-]H…H:MM[:SS[.fraction]]`, up to ±838 hours
/// (what our MySQL source writes for TIME columns).
fn is_mysql_time(text: &str) -> bool {
    let t = text.strip_prefix('-').unwrap_or(text);
    let mut parts = t.splitn(3, ':');
    let hours = parts.next().unwrap_or("");
    let minutes = parts.next().unwrap_or("");
    let seconds = parts.next();
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    let seconds_ok = seconds.is_none_or(|s| {
        let (whole, fraction) = s.split_once('.').unwrap_or((s, "0"));
        digits(whole, 2..=2) && digits(fraction, 1..=9)
    });
    digits(hours, 1..=3) && digits(minutes, 2..=2) && seconds_ok
}

fn time_text(value: &Value) -> Result<String, String> {
    const EXPECTED: &str = "an ISO-8601 time (12:30:00.25) or microseconds since midnight";
    if let Value::String(text) = value
        && is_mysql_time(text.trim())
    {
        return Ok(text.trim().to_string());
    }
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

fn bytes(value: &Value) -> Result<Vec<u8>, String> {
    let Value::String(text) = value else {
        return Err(format!("base64 text, not {}", type_name(value)));
    };
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "base64 text".to_string())
}

fn uuid_text(value: &Value) -> Result<String, String> {
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

    fn col(ty: MysqlType) -> MysqlColumn {
        MysqlColumn {
            name: "c".into(),
            sql_type: "x".into(),
            ty,
        }
    }

    fn text(ty: MysqlType, v: Value) -> String {
        match to_cell(&col(ty), &v).unwrap() {
            Cell::Text(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scalars() {
        let int = MysqlType::Int {
            min: -128,
            max: 127,
        };
        assert_eq!(to_cell(&col(int), &Value::Null).unwrap(), Cell::Null);
        assert_eq!(text(int, json!(true)), "1");
        assert_eq!(text(int, json!(5.0)), "5");
        assert!(to_cell(&col(int), &json!(128)).is_err());
        let u64 = MysqlType::Int {
            min: 0,
            max: u64::MAX.into(),
        };
        assert_eq!(
            text(u64, json!("18446744073709551615")),
            "18446744073709551615"
        );
        assert_eq!(
            text(
                MysqlType::Decimal,
                json!("0.1000000000000000055511151231257827")
            ),
            "0.1000000000000000055511151231257827"
        );
        assert!(to_cell(&col(MysqlType::Float), &json!("NaN")).is_err());
        assert_eq!(
            text(MysqlType::Json, json!([1, {"a": null}])),
            r#"[1,{"a":null}]"#
        );
        assert_eq!(
            to_cell(&col(MysqlType::Bytes), &json!("AAH/")).unwrap(),
            Cell::Bytes(vec![0, 1, 255])
        );
    }

    #[test]
    fn times_follow_the_documented_zone_rule() {
        assert_eq!(
            text(MysqlType::DateTime, json!("2024-01-31T12:00:00.25+02:00")),
            "2024-01-31 10:00:00.250"
        );
        assert_eq!(
            text(MysqlType::DateTime, json!("2024-01-31 12:00:00")),
            "2024-01-31 12:00:00"
        );
        assert_eq!(
            text(MysqlType::DateTime, json!(1000)),
            "1970-01-01 00:00:01"
        );
        assert_eq!(text(MysqlType::Date, json!(19753)), "2024-01-31");
        assert_eq!(text(MysqlType::Time, json!("23:59:59.5")), "23:59:59.5");
        assert!(to_cell(&col(MysqlType::Date), &json!("31/01/2024")).is_err());
        assert_eq!(
            text(MysqlType::Time, json!("-838:59:59.000000")),
            "-838:59:59.000000"
        );
        assert!(to_cell(&col(MysqlType::Time), &json!("noon")).is_err());
        assert_eq!(
            to_cell(&col(MysqlType::Bit), &json!(true)).unwrap(),
            Cell::Uint(1)
        );
        assert_eq!(
            to_cell(&col(MysqlType::Bit), &json!(5.0)).unwrap(),
            Cell::Uint(5)
        );
    }
}
