//! Exact conversions of JSON values into the text SQL columns take, shared by
//! the SQL sinks (`sink-postgresql`, `sink-mysql`): dates, times and
//! timestamps (ISO-8601 text or Debezium's integer encodings), UUIDs and
//! base64 bytes. Each sink keeps only its dialect's rules (PostgreSQL's
//! `infinity` and `+00` suffix, MySQL's own TIME text, …).
//!
//! The `write_*` functions append to a caller's buffer instead of returning a
//! new `String`, so a sink converts a row's cells into one buffer. On an
//! error they return what was expected instead (a lowercase fragment for
//! "column `c` (type) expects …") and may have appended part of the text: the
//! caller drops the row.
//!
//! Timestamp rule: a timestamp with an offset (`…Z`, `…+02:00`) is converted
//! to UTC; one without an offset is returned as given (the sinks' sessions run
//! in UTC). Integers are epoch milliseconds for timestamps, days since
//! 1970-01-01 for dates and microseconds since midnight for times.

use std::fmt::Write;

use base64::Engine;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::record::{ValueRef, integer_value, parse_iso_datetime, type_name};

/// What a timestamp column expects.
pub const EXPECTED_TIMESTAMP: &str =
    "an ISO-8601 timestamp (2024-01-31T12:00:00.5Z) or epoch milliseconds";
/// What a date column expects.
pub const EXPECTED_DATE: &str = "an ISO-8601 date (2024-01-31) or days since 1970-01-01";
/// What a time column expects.
pub const EXPECTED_TIME: &str = "an ISO-8601 time (12:30:00.25) or microseconds since midnight";
/// What a UUID column expects.
pub const EXPECTED_UUID: &str = "a UUID (8-4-4-4-12 hex digits)";

/// Reads a timestamp from text: the common ISO-8601 shapes
/// ([`parse_iso_datetime`]), then RFC 3339 and a few `chrono` formats. Returns
/// the time (in UTC when the text had an offset) and whether it had one.
pub fn parse_timestamp(text: &str) -> Option<(NaiveDateTime, bool)> {
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

/// A timestamp value: ISO-8601 text ([`parse_timestamp`], in UTC when it had
/// an offset) or epoch milliseconds.
pub fn timestamp(value: ValueRef<'_>) -> Result<NaiveDateTime, &'static str> {
    match value {
        ValueRef::String(text) => parse_timestamp(text).map(|(dt, _)| dt),
        ValueRef::Number(_) => integer_value(value, i64::MIN.into(), i64::MAX.into())
            .ok()
            .and_then(|millis| DateTime::from_timestamp_millis(millis as i64))
            .map(|d| d.naive_utc()),
        _ => None,
    }
    .ok_or(EXPECTED_TIMESTAMP)
}

/// Appends `YYYY-MM-DD HH:MM:SS[.fff|.ffffff|.fffffffff]` (like chrono's
/// `%.f`, without parsing a format string per value).
pub fn write_datetime(out: &mut String, dt: NaiveDateTime) {
    let year = dt.year();
    if (0..=9999).contains(&year) {
        // The common case by hand: `write!` costs several times more per value.
        push_padded(out, u64::from(year as u32), 4);
        out.push('-');
        push_padded(out, u64::from(dt.month()), 2);
        out.push('-');
        push_padded(out, u64::from(dt.day()), 2);
        out.push(' ');
        push_padded(out, u64::from(dt.hour()), 2);
        out.push(':');
        push_padded(out, u64::from(dt.minute()), 2);
        out.push(':');
        push_padded(out, u64::from(dt.second()), 2);
    } else {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            year,
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
    }
    let nanos = dt.nanosecond();
    if nanos >= 1_000_000_000 {
        // A leap second: the fraction has more digits than its width, as
        // `write!` prints them.
        if nanos.is_multiple_of(1_000_000) {
            let _ = write!(out, ".{:03}", nanos / 1_000_000);
        } else if nanos.is_multiple_of(1000) {
            let _ = write!(out, ".{:06}", nanos / 1000);
        } else {
            let _ = write!(out, ".{nanos:09}");
        }
    } else if nanos != 0 {
        out.push('.');
        if nanos.is_multiple_of(1_000_000) {
            push_padded(out, u64::from(nanos / 1_000_000), 3);
        } else if nanos.is_multiple_of(1000) {
            push_padded(out, u64::from(nanos / 1000), 6);
        } else {
            push_padded(out, u64::from(nanos), 9);
        }
    }
}

/// Appends `n` in decimal, zero-padded to at least `width` digits, as
/// `format!("{n:0width$}")` does but without `core::fmt` (dates and times are
/// written for every row: the sinks' cells and source-mysql's DATETIME text).
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(digits.len() - width.min(digits.len()));
    out.push_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"));
}

/// Appends a timestamp value as `YYYY-MM-DD HH:MM:SS[.fraction]` (see [`timestamp`]).
pub fn write_timestamp(value: ValueRef<'_>, out: &mut String) -> Result<(), &'static str> {
    write_datetime(out, timestamp(value)?);
    Ok(())
}

/// Appends a date value as `YYYY-MM-DD`: ISO-8601 text or days since 1970-01-01.
pub fn write_date(value: ValueRef<'_>, out: &mut String) -> Result<(), &'static str> {
    let date = match value {
        ValueRef::String(text) => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok(),
        ValueRef::Number(_) => integer_value(value, i32::MIN.into(), i32::MAX.into())
            .ok()
            .and_then(|days| {
                NaiveDate::from_ymd_opt(1970, 1, 1)?
                    .checked_add_signed(chrono::TimeDelta::try_days(days as i64)?)
            }),
        _ => None,
    }
    .ok_or(EXPECTED_DATE)?;
    let _ = write!(out, "{}", date.format("%Y-%m-%d"));
    Ok(())
}

/// Appends a time value as `HH:MM:SS[.fraction]`: ISO-8601 text
/// (`HH:MM[:SS[.fraction]]`) or microseconds since midnight.
pub fn write_time(value: ValueRef<'_>, out: &mut String) -> Result<(), &'static str> {
    let time = match value {
        ValueRef::String(text) => {
            let t = text.trim();
            NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
                .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
                .ok()
        }
        ValueRef::Number(_) => integer_value(value, 0, 86_400_000_000)
            .ok()
            .and_then(|micros| {
                let micros = micros as i64;
                NaiveTime::from_num_seconds_from_midnight_opt(
                    (micros / 1_000_000) as u32,
                    ((micros % 1_000_000) * 1000) as u32,
                )
            }),
        _ => None,
    }
    .ok_or(EXPECTED_TIME)?;
    let _ = write!(out, "{}", time.format("%H:%M:%S%.f"));
    Ok(())
}

/// The bytes of base64 text (standard alphabet, padded).
pub fn base64_bytes(value: ValueRef<'_>) -> Result<Vec<u8>, String> {
    let ValueRef::String(text) = value else {
        return Err(format!("base64 text, not {}", type_name(value)));
    };
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "base64 text".to_string())
}

/// Appends a UUID in its canonical form (lowercase, 8-4-4-4-12) from text with
/// 32 hex digits and any dashes.
pub fn write_uuid(value: ValueRef<'_>, out: &mut String) -> Result<(), &'static str> {
    let ValueRef::String(text) = value else {
        return Err(EXPECTED_UUID);
    };
    let mut hex = [0u8; 32];
    let mut n = 0;
    for c in text.trim().bytes().filter(|&c| c != b'-') {
        if n == 32 || !c.is_ascii_hexdigit() {
            return Err(EXPECTED_UUID);
        }
        hex[n] = c.to_ascii_lowercase();
        n += 1;
    }
    if n != 32 {
        return Err(EXPECTED_UUID);
    }
    for (i, &c) in hex.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn written(
        f: fn(ValueRef<'_>, &mut String) -> Result<(), &'static str>,
        v: Value,
    ) -> Result<String, &'static str> {
        let mut out = String::new();
        f((&v).into(), &mut out).map(|()| out)
    }

    #[test]
    fn datetimes_print_like_format() {
        for (date, (h, m, s, n)) in [
            ((2024, 1, 31), (12, 0, 0, 0)),
            ((1, 2, 3), (4, 5, 6, 7)),
            ((9999, 12, 31), (23, 59, 59, 250_000_000)),
            ((-44, 3, 15), (0, 0, 0, 1000)),
            ((12345, 1, 1), (0, 0, 0, 123_456_789)),
            ((2016, 12, 31), (23, 59, 59, 1_500_000_000)),
        ] {
            let dt = NaiveDate::from_ymd_opt(date.0, date.1, date.2)
                .unwrap()
                .and_hms_nano_opt(h, m, s, n)
                .unwrap();
            let mut out = String::new();
            write_datetime(&mut out, dt);
            let frac = match n {
                0 => String::new(),
                n if n % 1_000_000 == 0 => format!(".{:03}", n / 1_000_000),
                n if n % 1000 == 0 => format!(".{:06}", n / 1000),
                n => format!(".{n:09}"),
            };
            let expected = format!(
                "{:04}-{:02}-{:02} {h:02}:{m:02}:{s:02}{frac}",
                date.0, date.1, date.2
            );
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn timestamps() {
        let ts = |v| written(write_timestamp, v);
        assert_eq!(
            ts(json!("2024-01-31T12:00:00.25+02:00")).unwrap(),
            "2024-01-31 10:00:00.250"
        );
        assert_eq!(
            ts(json!("2024-01-31 12:00:00")).unwrap(),
            "2024-01-31 12:00:00"
        );
        assert_eq!(ts(json!("2024-01-31")).unwrap(), "2024-01-31 00:00:00");
        assert_eq!(ts(json!(1000)).unwrap(), "1970-01-01 00:00:01");
        assert_eq!(
            ts(json!("2024-01-31T12:00:00.000001Z")).unwrap(),
            "2024-01-31 12:00:00.000001"
        );
        assert_eq!(ts(json!("yesterday")), Err(EXPECTED_TIMESTAMP));
        assert_eq!(ts(json!(true)), Err(EXPECTED_TIMESTAMP));
        assert_eq!(
            parse_timestamp("2024-01-31T12:00:00+02:00").map(|(_, zoned)| zoned),
            Some(true)
        );
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(written(write_date, json!(19753)).unwrap(), "2024-01-31");
        assert_eq!(
            written(write_date, json!(" 2024-02-29")).unwrap(),
            "2024-02-29"
        );
        assert_eq!(written(write_date, json!("2023-02-29")), Err(EXPECTED_DATE));
        assert_eq!(
            written(write_time, json!(1_500_000)).unwrap(),
            "00:00:01.500"
        );
        assert_eq!(written(write_time, json!("12:30")).unwrap(), "12:30:00");
        assert_eq!(written(write_time, json!("noon")), Err(EXPECTED_TIME));
    }

    #[test]
    fn uuids_and_bytes() {
        assert_eq!(
            written(write_uuid, json!("A0EEBC999C0B4EF8BB6D6BB9BD380A11")).unwrap(),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(
            written(write_uuid, json!(" a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ")).unwrap(),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        for bad in [
            json!("a0eebc99"),
            json!("g0eebc999c0b4ef8bb6d6bb9bd380a11"),
            json!(1),
        ] {
            assert_eq!(written(write_uuid, bad), Err(EXPECTED_UUID));
        }
        assert_eq!(
            base64_bytes((&json!("AAH/")).into()).unwrap(),
            vec![0, 1, 255]
        );
        assert_eq!(
            base64_bytes((&json!(1)).into()).unwrap_err(),
            "base64 text, not number"
        );
        assert_eq!(
            base64_bytes((&json!("*")).into()).unwrap_err(),
            "base64 text"
        );
    }
}
