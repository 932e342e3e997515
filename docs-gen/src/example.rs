//! Example configs built from a schema, and the three forms a page shows them in.

use serde_json::{Map, Value};

use crate::schema::{self, Resolved};

/// `hstream.serviceUrl` in the example `config.json` (HServer's default listener).
const EXAMPLE_SERVICE_URL: &str = "hstream://127.0.0.1:6570";
/// `task` in the example `config.json`: HServer writes the task's UUID there.
const EXAMPLE_TASK_ID: &str = "6f0e2c56-6c0b-4c1e-9d8a-3f3e7b0b7a11";
/// What a secret shows in every example, whatever the schema's examples or defaults say.
const SECRET_PLACEHOLDER: &str = "<password>";

/// The example object for `object`: every required property and every property with an
/// example or a default, in display order. Optional deprecated properties are left out.
pub(crate) fn example_object(root: &Value, object: &Resolved) -> Map<String, Value> {
    let mut out = Map::new();
    for section in schema::sections(object) {
        for (name, node) in section.properties {
            let prop = schema::resolve(root, node);
            let required = object.is_required(name) && !prop.nullable;
            let explicit = prop.example().or_else(|| prop.default_value());
            if !required && (explicit.is_none() || prop.is_deprecated()) {
                continue;
            }
            let value = if prop.is_secret() {
                Value::String(SECRET_PLACEHOLDER.to_owned())
            } else if let Some(value) = explicit {
                value.clone()
            } else {
                placeholder(root, name, &prop)
            };
            out.insert(name.to_owned(), value);
        }
    }
    out
}

/// A value of the right type for a required property that has neither example nor default.
fn placeholder(root: &Value, name: &str, prop: &Resolved) -> Value {
    if prop.is_secret() {
        return Value::String(SECRET_PLACEHOLDER.to_owned());
    }
    if let Some(first) = prop.enum_values(root).into_iter().next() {
        return first.value;
    }
    let number = |key: &str| prop.get(key).filter(|v| v.is_number()).cloned();
    match prop.primary_type(root).as_deref() {
        Some("integer") => number("minimum")
            .or_else(|| {
                let bound = prop.get("exclusiveMinimum")?;
                bound.as_i64().map(|b| Value::from(b + 1))
            })
            .unwrap_or_else(|| Value::from(0)),
        Some("number") => number("minimum").unwrap_or_else(|| Value::from(0.0)),
        Some("boolean") => Value::Bool(false),
        Some("array") => {
            let min_items = prop.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            match prop.get("items").filter(|_| min_items > 0) {
                Some(items) => {
                    let item = placeholder(root, name, &schema::resolve(root, items));
                    Value::Array(vec![item; usize::try_from(min_items).unwrap_or(1)])
                }
                None => Value::Array(Vec::new()),
            }
        }
        Some("object") => Value::Object(example_object(root, prop)),
        _ => Value::String(format!("<{name}>")),
    }
}

/// `config.json` as HServer writes it for a task of this connector.
pub(crate) fn config_json(connector: Map<String, Value>) -> Value {
    let mut hstream = Map::new();
    hstream.insert("serviceUrl".to_owned(), Value::from(EXAMPLE_SERVICE_URL));
    let mut config = Map::new();
    config.insert("hstream".to_owned(), Value::Object(hstream));
    config.insert("connector".to_owned(), Value::Object(connector));
    config.insert("task".to_owned(), Value::from(EXAMPLE_TASK_ID));
    Value::Object(config)
}

/// The HStreamDB SQL statement that creates this connector with `options`.
///
/// `name` is turned into an SQL identifier (`source-generator` → `source_generator`).
/// Keys are double-quoted, strings double-quoted with JSON escapes, numbers and booleans bare.
/// SQL options are scalar constants only: nulls are left out and arrays or objects are written as
/// a string holding their JSON (the page says so).
pub(crate) fn sql(kind: &str, name: &str, target: &str, options: &Map<String, Value>) -> String {
    let ident: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ident = if ident.starts_with(|c: char| c.is_ascii_alphabetic()) {
        ident
    } else {
        format!("c_{ident}")
    };
    let (keyword, direction) = if kind == "sink" {
        ("SINK", "TO")
    } else {
        ("SOURCE", "FROM")
    };
    let with: Vec<String> = options
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let value = match v {
                Value::Bool(_) | Value::Number(_) | Value::String(_) => v.to_string(),
                other => Value::String(other.to_string()).to_string(),
            };
            format!("{} = {value}", Value::String(k.clone()))
        })
        .collect();
    format!(
        "CREATE {keyword} CONNECTOR {ident} {direction} {target} WITH ({});",
        with.join(", ")
    )
}

/// True when `sql` had to turn some option into a JSON string.
pub(crate) fn has_structured_values(options: &Map<String, Value>) -> bool {
    options.values().any(|v| v.is_array() || v.is_object())
}
