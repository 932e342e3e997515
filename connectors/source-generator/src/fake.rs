//! Values generated natively from a JSON Schema (no external process).

use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Map, Number, Value};

/// A random value that satisfies the supported keywords of `schema`.
pub fn generate(schema: &Value, rng: &mut impl Rng) -> Value {
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array)
        && let Some(choice) = choices.choose(rng)
    {
        return choice.clone();
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut map = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    map.insert(name.clone(), generate(prop, rng));
                }
            }
            Value::Object(map)
        }
        "integer" => {
            let (lo, hi) = int_bounds(schema);
            Value::Number(rng.random_range(lo..=hi).into())
        }
        "number" => {
            let lo = schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0);
            let hi = schema
                .get("maximum")
                .and_then(Value::as_f64)
                .unwrap_or(lo + 1000.0)
                .max(lo);
            let x = if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            };
            Number::from_f64(x).map_or(Value::Null, Value::Number)
        }
        "boolean" => Value::Bool(rng.random()),
        "null" => Value::Null,
        "array" => {
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(1);
            let max = schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(min + 2)
                .max(min);
            let n = rng.random_range(min..=max);
            let items = schema
                .get("items")
                .cloned()
                .unwrap_or(Value::Object(Map::new()));
            Value::Array((0..n).map(|_| generate(&items, rng)).collect())
        }
        _ => Value::String(string(schema, rng)),
    }
}

fn int_bounds(schema: &Value) -> (i64, i64) {
    let get = |k: &str| schema.get(k).and_then(Value::as_i64);
    let lo = get("minimum")
        .or(get("exclusiveMinimum").map(|x| x + 1))
        .unwrap_or(0);
    let hi = get("maximum")
        .or(get("exclusiveMaximum").map(|x| x - 1))
        .unwrap_or(lo.saturating_add(1000));
    (lo, hi.max(lo))
}

fn string(schema: &Value, rng: &mut impl Rng) -> String {
    match schema.get("format").and_then(Value::as_str) {
        Some("uuid") => return uuid::Uuid::from_u128(rng.random()).hyphenated().to_string(),
        Some("date-time") => {
            let secs: i64 = rng.random_range(1_600_000_000..1_900_000_000);
            return format_rfc3339(secs);
        }
        Some("email") => return format!("{}@example.com", alnum(rng, 8)),
        _ => {}
    }
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(5) as usize;
    let max = schema
        .get("maxLength")
        .and_then(Value::as_u64)
        .map(|m| m as usize)
        .unwrap_or(min.max(5) + 5)
        .max(min);
    let len = rng.random_range(min..=max);
    alnum(rng, len)
}

fn alnum(rng: &mut impl Rng, len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` for epoch seconds (civil-from-days algorithm).
fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn respects_types_ranges_and_enums() {
        let schema = json!({"type": "object", "properties": {
            "k1": {"type": "integer", "minimum": 10, "maximum": 20},
            "s": {"type": "string", "enum": ["a", "b"]},
            "id": {"type": "string", "format": "uuid"},
            "n": {"type": "string", "minLength": 3, "maxLength": 3},
            "c": {"const": 7},
            "l": {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 2}
        }});
        let mut rng = rand::rng();
        for _ in 0..200 {
            let v = generate(&schema, &mut rng);
            let k1 = v["k1"].as_i64().unwrap();
            assert!((10..=20).contains(&k1));
            assert!(["a", "b"].contains(&v["s"].as_str().unwrap()));
            assert!(uuid::Uuid::parse_str(v["id"].as_str().unwrap()).is_ok());
            assert_eq!(v["n"].as_str().unwrap().len(), 3);
            assert_eq!(v["c"], 7);
            assert_eq!(v["l"].as_array().unwrap().len(), 2);
        }
    }

    #[test]
    fn formats_dates() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    }
}
