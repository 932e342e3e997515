//! Record formats the SQL sinks accept, and exact readers for JSON values.
//!
//! A sink record's payload is JSON text: the compact JSON of a JSON (HRecord)
//! record's Struct, or the bytes of a RAW record. Two shapes are accepted, as in
//! the reference's JDBC sinks:
//!
//! - **key/value**: an object with both `key` and `value` where `key` is an
//!   object — `{"key":{"id":1},"value":{"id":1,"name":"a"}}` upserts the row,
//!   `{"key":{"id":1},"value":null}` deletes it. This is what our CDC sources
//!   write.
//! - **plain**: any other object is the row itself, upserted on the table's key.
//!
//! Before the shape is read, MongoDB extended JSON wrappers are unwrapped the
//! way the reference's BSON round trip did (`{"$numberLong":"5"}` → `5`), see
//! [`normalize`].
//!
//! The value readers ([`integer_text`], [`decimal_text`], [`bool_value`], …)
//! turn a JSON value into the exact text a database column takes, without
//! going through a float where precision could be lost. Numbers in JSON
//! (HRecord) records are doubles, so `1.0` is read as the integer `1`.

use serde_json::{Map, Number, Value};

/// One change a record asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert the row, or update the columns present in it when the key exists.
    Upsert {
        /// The row: column name → value; absent columns are left untouched on update.
        row: Map<String, Value>,
        /// The key fields of a key/value record (`None` for a plain record).
        key: Option<Map<String, Value>>,
    },
    /// Delete the row with this key.
    Delete {
        /// The key fields.
        key: Map<String, Value>,
    },
}

/// Parses a record payload into the change it asks for (after [`normalize`]).
///
/// The error is a lowercase fragment saying what is wrong with the payload.
pub fn parse(payload: &[u8]) -> Result<Change, String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON text ({e})"))?;
    let Value::Object(mut object) = normalize(value) else {
        return Err("payload is not a JSON object".into());
    };
    let key_value = object.len() >= 2
        && object.contains_key("value")
        && matches!(object.get("key"), Some(Value::Object(_)));
    if !key_value {
        if object.is_empty() {
            return Err("payload is an empty object: no columns to write".into());
        }
        return Ok(Change::Upsert {
            row: object,
            key: None,
        });
    }
    let Some(Value::Object(key)) = object.remove("key") else {
        unreachable!("checked above")
    };
    match object.remove("value") {
        Some(Value::Null) => Ok(Change::Delete { key }),
        Some(Value::Object(mut row)) => {
            for (name, value) in &key {
                if !row.contains_key(name) {
                    row.insert(name.clone(), value.clone());
                }
            }
            Ok(Change::Upsert {
                row,
                key: Some(key),
            })
        }
        Some(other) => Err(format!(
            "`value` of a key/value record must be an object or null, not {}",
            type_name(&other)
        )),
        None => unreachable!("checked above"),
    }
}

/// Unwraps MongoDB extended JSON (canonical or relaxed) into plain JSON, at any
/// depth: `$numberLong`/`$numberInt` → integer, `$numberDouble` → number (text
/// for NaN/Infinity), `$numberDecimal` → its decimal text (exact), `$oid` → hex
/// text, `$date` → ISO-8601 text or epoch milliseconds as given, `$binary` →
/// base64 text, `$symbol` → text. Other objects are left as they are.
pub fn normalize(mut value: Value) -> Value {
    normalize_in_place(&mut value);
    value
}

/// [`normalize`] without rebuilding objects that hold no extended JSON.
fn normalize_in_place(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(unwrapped) = unwrap_extended(map) {
                *value = unwrapped;
                return;
            }
            for v in map.values_mut() {
                normalize_in_place(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_in_place),
        _ => {}
    }
}

fn unwrap_extended(map: &Map<String, Value>) -> Option<Value> {
    if map.len() == 2
        && let (Some(Value::String(data)), Some(Value::String(_))) =
            (map.get("$binary"), map.get("$type"))
    {
        return Some(Value::String(data.clone()));
    }
    if map.len() != 1 {
        return None;
    }
    let (name, inner) = map.iter().next()?;
    match (name.as_str(), inner) {
        ("$numberLong" | "$numberInt", Value::String(text)) => {
            let text = text.trim();
            if let Ok(i) = text.parse::<i64>() {
                Some(Value::Number(i.into()))
            } else if let Ok(u) = text.parse::<u64>() {
                Some(Value::Number(u.into()))
            } else {
                Some(Value::String(text.to_string()))
            }
        }
        ("$numberDouble", Value::String(text)) => Some(
            text.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map_or_else(|| Value::String(text.clone()), Value::Number),
        ),
        ("$numberDecimal" | "$oid" | "$symbol", Value::String(text)) => {
            Some(Value::String(text.clone()))
        }
        ("$date", Value::String(_) | Value::Number(_)) => Some(inner.clone()),
        ("$date", Value::Object(_)) => Some(normalize(inner.clone())),
        ("$binary", Value::Object(binary)) => binary.get("base64").cloned(),
        _ => None,
    }
}

/// `null`, `boolean`, `number`, `string`, `array` or `object`.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The value as compact JSON, cut to at most `max` characters (with `…`), for
/// error messages.
pub fn excerpt(value: &Value, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// Largest integer a double holds exactly (2^53).
const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

/// An integer in `min..=max` as decimal text. Accepts JSON integers, doubles
/// with no fraction up to 2^53 (HRecord numbers), and decimal text (for
/// integers beyond 2^53, which a double cannot carry).
pub fn integer_text(value: &Value, min: i128, max: i128) -> Result<String, String> {
    let n: i128 = match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err("an integer, not a fraction".into());
                }
                if f.abs() > EXACT_F64_INT {
                    return Err(
                        "an integer beyond 2^53 sent as text; as a double it has lost precision"
                            .into(),
                    );
                }
                f as i128
            }
        }
        Value::String(text) => text
            .trim()
            .parse::<i128>()
            .map_err(|_| "an integer (decimal digits)".to_string())?,
        other => return Err(format!("an integer, not {}", type_name(other))),
    };
    if n < min || n > max {
        return Err(format!("an integer in {min}..={max}"));
    }
    Ok(n.to_string())
}

/// A decimal number as exact text (`-12.50`, `1e3`). JSON numbers keep the
/// text they were parsed from where possible; strings are checked for
/// decimal syntax and passed through unchanged, so no digit is lost.
pub fn decimal_text(value: &Value) -> Result<String, String> {
    match value {
        Value::Number(n) => Ok(number_text(n)),
        Value::String(text) if is_decimal(text.trim()) => Ok(text.trim().to_string()),
        Value::String(_) => Err("a decimal number such as -12.50".into()),
        other => Err(format!("a decimal number, not {}", type_name(other))),
    }
}

/// A floating-point number as text: JSON numbers, decimal text, and
/// `NaN`/`Infinity`/`-Infinity` as strings.
pub fn float_text(value: &Value) -> Result<String, String> {
    match value {
        Value::Number(n) => Ok(number_text(n)),
        Value::String(text) => {
            let t = text.trim();
            match t {
                "NaN" | "Infinity" | "-Infinity" => Ok(t.to_string()),
                _ if is_decimal(t) => Ok(t.to_string()),
                _ => Err("a number".into()),
            }
        }
        other => Err(format!("a number, not {}", type_name(other))),
    }
}

/// A boolean: `true`/`false`, the numbers 1/0, or the text
/// `true`/`false`/`t`/`f`/`1`/`0`/`yes`/`no` (any case).
pub fn bool_value(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
        Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "y" | "on" => Ok(true),
            "false" | "f" | "0" | "no" | "n" | "off" => Ok(false),
            _ => Err("a boolean".into()),
        },
        other => Err(format!("a boolean, not {}", type_name(other))),
    }
}

/// Text for a character column: strings as they are, numbers as their text
/// (doubles with no fraction print as integers: `1.0` → `1`), booleans as
/// `true`/`false`, arrays and objects as compact JSON.
pub fn text_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(n) => number_text(n),
        other => other.to_string(),
    }
}

/// JSON text for a JSON column. A string holding a JSON object or array is
/// taken as that document (records often carry JSON as text); any other value
/// is stored as itself.
pub fn json_text(value: &Value) -> String {
    if let Value::String(text) = value {
        let trimmed = text.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && serde_json::from_str::<Value>(text).is_ok()
        {
            return text.clone();
        }
    }
    value.to_string()
}

/// A date and time read from ISO-8601 text by [`parse_iso_datetime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoDateTime {
    /// Year (0000–9999).
    pub year: i32,
    /// Month, 1–12.
    pub month: u32,
    /// Day of month, 1–31 (not checked against the month).
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
    /// Fraction of the second in nanoseconds.
    pub nanos: u32,
    /// The offset from UTC in seconds, when the text had one (`Z` is 0).
    pub offset_secs: Option<i32>,
}

/// Reads `YYYY-MM-DD`, optionally followed by `T` or a space and
/// `HH:MM[:SS[.fraction]]`, optionally followed by `Z`, `±HH:MM`, `±HHMM` or
/// `±HH`. A fast path for the common shapes; `None` for anything else.
pub fn parse_iso_datetime(text: &str) -> Option<IsoDateTime> {
    let b = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let year = num(0, 4)? as i32;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (month, day) = (num(5, 2)?, num(8, 2)?);
    let mut out = IsoDateTime {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset_secs: None,
    };
    let mut i = 10;
    if i < b.len() {
        if !matches!(b[i], b'T' | b't' | b' ') {
            return None;
        }
        out.hour = num(i + 1, 2)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        out.minute = num(i + 4, 2)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            out.second = num(i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    if i - start < 9 {
                        out.nanos = out.nanos * 10 + u32::from(b[i] - b'0');
                    }
                    i += 1;
                }
                let digits = (i - start).min(9);
                if digits == 0 {
                    return None;
                }
                out.nanos *= 10u32.pow(9 - digits as u32);
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') if i + 1 == b.len() => out.offset_secs = Some(0),
            Some(&sign @ (b'+' | b'-')) => {
                let hours = num(i + 1, 2)?;
                let minutes = match b.len() - (i + 3) {
                    0 => 0,
                    2 => num(i + 3, 2)?,
                    3 if b[i + 3] == b':' => num(i + 4, 2)?,
                    _ => return None,
                };
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let secs = (hours * 3600 + minutes * 60) as i32;
                out.offset_secs = Some(if sign == b'-' { -secs } else { secs });
            }
            Some(_) => return None,
        }
    }
    (out.month >= 1
        && out.month <= 12
        && out.day >= 1
        && out.day <= 31
        && out.hour <= 23
        && out.minute <= 59
        && out.second <= 59)
        .then_some(out)
}

/// A number's text, with integral doubles up to 2^53 printed as integers.
pub fn number_text(n: &Number) -> String {
    if n.is_f64()
        && let Some(f) = n.as_f64()
        && f.fract() == 0.0
        && f.abs() <= EXACT_F64_INT
    {
        return format!("{}", f as i64);
    }
    n.to_string()
}

fn is_decimal(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return false;
    }
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn key_value_upsert_and_delete() {
        let c = parse(br#"{"key":{"id":1},"value":{"id":1,"name":"a"}}"#).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                row: obj(json!({"id":1,"name":"a"})),
                key: Some(obj(json!({"id":1})))
            }
        );
        let c = parse(br#"{"key":{"id":1},"value":null}"#).unwrap();
        assert_eq!(
            c,
            Change::Delete {
                key: obj(json!({"id":1}))
            }
        );
    }

    #[test]
    fn key_fields_missing_from_value_are_added() {
        let c = parse(br#"{"key":{"id":7},"value":{"name":"a"}}"#).unwrap();
        let Change::Upsert { row, .. } = c else {
            panic!("not an upsert")
        };
        assert_eq!(row.get("id"), Some(&json!(7)));
    }

    #[test]
    fn plain_records_are_rows() {
        // A plain row whose columns happen to be called key/value, but key is not an object.
        let c = parse(br#"{"key":"k","value":3}"#).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                row: obj(json!({"key":"k","value":3})),
                key: None
            }
        );
        let c = parse(br#"{"k1":1,"v2":"x"}"#).unwrap();
        assert!(matches!(c, Change::Upsert { key: None, .. }));
    }

    #[test]
    fn bad_payloads_say_what_is_wrong() {
        assert!(parse(b"not json").unwrap_err().contains("not JSON"));
        assert!(parse(b"[1]").unwrap_err().contains("not a JSON object"));
        assert!(parse(b"{}").unwrap_err().contains("empty"));
        assert!(
            parse(br#"{"key":{"a":1},"value":5}"#)
                .unwrap_err()
                .contains("object or null")
        );
    }

    #[test]
    fn extended_json_is_unwrapped() {
        let v = normalize(json!({
            "k1": {"$numberLong": "5"},
            "big": {"$numberLong": "18446744073709551615"},
            "i": {"$numberInt": "-3"},
            "d": {"$numberDecimal": "1.10"},
            "f": {"$numberDouble": "2.5"},
            "id": {"$oid": "5f1b2c3d4e5f6a7b8c9d0e1f"},
            "t": {"$date": {"$numberLong": "1600000000000"}},
            "b": {"$binary": {"base64": "AAE=", "subType": "00"}},
            "nested": [{"x": {"$numberLong": "1"}}],
            "keep": {"$other": 1}
        }));
        assert_eq!(
            v,
            json!({
                "k1": 5, "big": 18446744073709551615u64, "i": -3, "d": "1.10", "f": 2.5,
                "id": "5f1b2c3d4e5f6a7b8c9d0e1f", "t": 1600000000000i64, "b": "AAE=",
                "nested": [{"x": 1}], "keep": {"$other": 1}
            })
        );
    }

    #[test]
    fn bson_record_parses_like_the_reference_test() {
        let c = parse(br#"{"k1":{"$numberLong":"3"},"v1":{"$numberLong":"9"},"v2":"x"}"#).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                row: obj(json!({"k1":3,"v1":9,"v2":"x"})),
                key: None
            }
        );
    }

    #[test]
    fn integers_are_exact() {
        assert_eq!(integer_text(&json!(1.0), -10, 10).unwrap(), "1");
        assert_eq!(
            integer_text(
                &json!("9223372036854775807"),
                i64::MIN.into(),
                i64::MAX.into()
            )
            .unwrap(),
            "9223372036854775807"
        );
        assert!(integer_text(&json!(1.5), -10, 10).is_err());
        assert!(
            integer_text(&json!(11), -10, 10)
                .unwrap_err()
                .contains("-10..=10")
        );
        assert!(integer_text(&json!(1e17), i64::MIN.into(), i64::MAX.into()).is_err());
        assert!(integer_text(&json!(true), 0, 1).is_err());
    }

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(
            decimal_text(&json!("12345678901234567890.123456789")).unwrap(),
            "12345678901234567890.123456789"
        );
        assert_eq!(decimal_text(&json!(0.1)).unwrap(), "0.1");
        assert_eq!(decimal_text(&json!(2.0)).unwrap(), "2");
        assert_eq!(decimal_text(&json!("-1e3")).unwrap(), "-1e3");
        assert!(decimal_text(&json!("1.2.3")).is_err());
        assert!(decimal_text(&json!("")).is_err());
        assert!(decimal_text(&json!(".")).is_err());
        assert!(decimal_text(&json!("1e")).is_err());
    }

    #[test]
    fn iso_datetimes() {
        let t = parse_iso_datetime("2024-01-31T12:34:56.789+02:00").unwrap();
        assert_eq!(
            (
                t.year,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second,
                t.nanos,
                t.offset_secs
            ),
            (2024, 1, 31, 12, 34, 56, 789_000_000, Some(7200))
        );
        let t = parse_iso_datetime("2024-01-31 00:00:00").unwrap();
        assert_eq!((t.hour, t.offset_secs), (0, None));
        assert_eq!(parse_iso_datetime("2024-01-31").unwrap().day, 31);
        assert_eq!(
            parse_iso_datetime("2024-01-31T01:02Z").unwrap().offset_secs,
            Some(0)
        );
        assert_eq!(
            parse_iso_datetime("2024-01-31T01:02:03-0530")
                .unwrap()
                .offset_secs,
            Some(-19800)
        );
        assert_eq!(
            parse_iso_datetime("2024-01-31T01:02:03.123456789123")
                .unwrap()
                .nanos,
            123_456_789
        );
        for bad in [
            "2024-13-01",
            "2024-01-31X",
            "2024-01-31T25:00",
            "24-01-31",
            "2024-01-31T01:02:03.",
            "2024-01-31T01:02+5",
        ] {
            assert!(parse_iso_datetime(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn booleans_and_text() {
        assert!(bool_value(&json!("T")).unwrap());
        assert!(!bool_value(&json!(0)).unwrap());
        assert!(bool_value(&json!(2)).is_err());
        assert_eq!(text_value(&json!(3.0)), "3");
        assert_eq!(text_value(&json!({"a":1})), r#"{"a":1}"#);
        assert_eq!(json_text(&json!(r#"{"a":1}"#)), r#"{"a":1}"#);
        assert_eq!(json_text(&json!("plain")), r#""plain""#);
        assert_eq!(excerpt(&json!("abcdefghij"), 5), "\"abcd…");
    }
}
