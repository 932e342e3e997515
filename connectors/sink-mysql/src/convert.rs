//! JSON values → values MySQL takes for a column's type, exactly.
//!
//! Time-zone rule: the session runs with `time_zone = '+00:00'`. A timestamp
//! with an offset (`…Z`, `…+02:00`) is converted to UTC; one without an offset
//! is written as given (DATETIME) or taken as UTC (TIMESTAMP). Integers into
//! DATETIME/TIMESTAMP are epoch milliseconds, into DATE days since 1970-01-01,
//! into TIME microseconds since midnight (Debezium's encodings).
//! The conversions both SQL sinks share are the runtime's
//! ([`hstream_io_runtime::sql_values`], [`hstream_io_runtime::record`]); this
//! module keeps MySQL's own rules: booleans as 1/0, no NaN or infinity,
//! MySQL's TIME text (beyond 24 hours), BIT as a number, bytes bound as bytes.

use hstream_io_runtime::record::{
    ValueRef, decimal_text, float_text, integer_text, integer_value, json_text, text_value,
};
use hstream_io_runtime::sql_values::{
    base64_bytes, write_date, write_time, write_timestamp, write_uuid,
};

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
pub(crate) fn to_cell(column: &MysqlColumn, value: ValueRef<'_>) -> Result<Cell, String> {
    if value.is_null() {
        return Ok(Cell::Null);
    }
    let written = |write: fn(ValueRef<'_>, &mut String) -> Result<(), &'static str>| {
        let mut out = String::new();
        write(value, &mut out).map(|()| Cell::Text(out))
    };
    let text = match column.ty {
        MysqlType::Int { min, max } => match value {
            ValueRef::Bool(b) => (if b { "1" } else { "0" }).to_string(),
            _ => integer_text(value, min, max)?,
        },
        MysqlType::Decimal => decimal_text(value)?,
        MysqlType::Float => match float_text(value)? {
            t if t == "NaN" || t.ends_with("Infinity") => {
                return Err("a finite number (MySQL has no NaN or infinity)".into());
            }
            t => t,
        },
        MysqlType::Date => return Ok(written(write_date)?),
        MysqlType::Time => match value {
            // MySQL's own TIME text, which our MySQL source writes.
            ValueRef::String(text) if is_mysql_time(text.trim()) => text.trim().to_string(),
            _ => return Ok(written(write_time)?),
        },
        MysqlType::DateTime => return Ok(written(write_timestamp)?),
        MysqlType::Json => json_text(value),
        MysqlType::Bytes => return base64_bytes(value).map(Cell::Bytes),
        MysqlType::Uuid => return Ok(written(write_uuid)?),
        MysqlType::Bit => {
            return match value {
                ValueRef::Bool(b) => Ok(Cell::Uint(u64::from(b))),
                _ => integer_value(value, 0, u64::MAX.into())
                    .map(|n| Cell::Uint(u64::try_from(n).unwrap_or_default())),
            };
        }
        MysqlType::Text => match value {
            ValueRef::Bool(b) => (if b { "1" } else { "0" }).to_string(),
            _ => text_value(value),
        },
    };
    Ok(Cell::Text(text))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn to_cell(column: &MysqlColumn, value: &Value) -> Result<Cell, String> {
        super::to_cell(column, value.into())
    }

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
