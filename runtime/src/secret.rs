//! [`Secret`]: a string that never shows itself.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret prints as, everywhere: logs, errors, `check` output, APIs.
pub const REDACTED: &str = "******";

/// A password, key or token taken from a connector config.
///
/// `Debug`, `Display` and `Serialize` all print [`REDACTED`]; the only way to the
/// value is [`Secret::expose`], which names the intent at the call site. In the
/// JSON Schema it is a string marked `writeOnly` and `format: password`, with
/// HServer's front-end hint `ui:type: secret`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself, for handing to a database driver. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "writeOnly": true,
            "format": "password",
            "ui:type": "secret"
        })
    }
}

/// Replaces the values of secret properties in `value` (a config object checked
/// against `schema`) with [`REDACTED`], so a config can be echoed back safely.
pub fn redact_config(schema: &serde_json::Value, value: &mut serde_json::Value) {
    let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(|p| p.as_object()),
        value.as_object_mut(),
    ) else {
        return;
    };
    for (key, prop) in props {
        if is_secret_schema(prop)
            && let Some(v) = obj.get_mut(key)
            && !v.is_null()
        {
            *v = serde_json::Value::String(REDACTED.into());
        }
    }
}

/// Removes the secret values of one config from any text (error chains from
/// drivers may quote what they were given).
#[derive(Debug, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    /// Collects the values of `config`'s secret properties (per `schema`).
    pub fn new(schema: &serde_json::Value, config: &serde_json::Value) -> Self {
        let mut secrets: Vec<String> = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
            .filter(|(_, prop)| is_secret_schema(prop))
            .filter_map(|(key, _)| config.get(key))
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            })
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, secret| {
            t.replace(secret.as_str(), REDACTED)
        })
    }

    /// Every string inside `value` scrubbed.
    pub fn scrub_value(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.scrub(&s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.scrub_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, self.scrub_value(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// True for a property schema that holds a secret.
pub fn is_secret_schema(prop: &serde_json::Value) -> bool {
    prop.get("writeOnly") == Some(&serde_json::Value::Bool(true))
        || prop.get("format").and_then(|f| f.as_str()) == Some("password")
        || prop.get("ui:type").and_then(|f| f.as_str()) == Some("secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendering_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn schema_is_write_only_password() {
        let schema = schemars::schema_for!(Secret);
        let v = serde_json::to_value(&schema).unwrap();
        assert_eq!(v["writeOnly"], true);
        assert_eq!(v["format"], "password");
        assert!(is_secret_schema(&v));
    }

    #[test]
    fn scrubber_removes_secret_values_from_text() {
        let schema = serde_json::json!({"properties": {
            "password": {"type": "string", "format": "password"},
            "user": {"type": "string"}}});
        let cfg = serde_json::json!({"password": "hunter2", "user": "root"});
        let s = Scrubber::new(&schema, &cfg);
        assert_eq!(
            s.scrub("auth failed for root with hunter2"),
            format!("auth failed for root with {REDACTED}")
        );
    }

    #[test]
    fn redact_config_hides_only_secret_properties() {
        let schema = serde_json::json!({"properties": {
            "password": {"type": "string", "writeOnly": true},
            "user": {"type": "string"}}});
        let mut cfg = serde_json::json!({"password": "hunter2", "user": "root"});
        redact_config(&schema, &mut cfg);
        assert_eq!(
            cfg,
            serde_json::json!({"password": REDACTED, "user": "root"})
        );
    }
}
