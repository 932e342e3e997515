//! Config of `source-generator` (the reference's parameters, plus `totalRecords`).

use hstream_io_runtime::validate::{ConfigIssue, unknown_key_message};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

const DEFAULT_SCHEMA: &str = r#"{"type":"object","properties":{"k1":{"type":"integer","minimum":10,"maximum":20},"v1":{"type":"string"}},"required":["k1","v1"]}"#;

fn default_schema() -> String {
    DEFAULT_SCHEMA.to_string()
}
const fn default_batch_size() -> u32 {
    1
}
const fn default_period() -> u32 {
    5
}

/// Config of `source-generator`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorConfig {
    /// Stream the records are appended to (created with one shard if missing).
    #[schemars(length(min = 1, max = 255), extend("examples" = ["stream01"]))]
    pub stream: String,
    /// Field whose value becomes each record's partition key, so a multi-shard
    /// stream keeps per-key order. Without it records carry no key.
    #[serde(default)]
    #[schemars(length(min = 1), extend("examples" = ["k1"]))]
    pub key_field: Option<String>,
    /// JSON Schema the records are generated from (as text): objects, integers
    /// and numbers within `minimum`/`maximum`, strings (`enum`, `format` uuid /
    /// date-time / email, `minLength`/`maxLength`), booleans, arrays, `const`.
    #[serde(default = "default_schema")]
    #[schemars(extend("default" = DEFAULT_SCHEMA, "ui:type" = "editor"))]
    pub schema: String,
    /// Records generated every period.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 100000))]
    pub batch_size: u32,
    /// Seconds between two batches.
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 100))]
    pub period: u32,
    /// Stop (exit 0, task COMPLETED) once this many records were generated,
    /// counted across restarts. Unset: run until stopped.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub total_records: Option<u64>,
}

impl GeneratorConfig {
    /// The `schema` parameter parsed, or why it cannot be used.
    pub fn parsed_schema(&self) -> Result<Value, String> {
        let value: Value =
            serde_json::from_str(&self.schema).map_err(|e| format!("is not valid JSON: {e}"))?;
        if !value.is_object() {
            return Err("must be a JSON Schema object such as {\"type\":\"object\",…}".into());
        }
        Ok(value)
    }

    /// Cross-field rules: `schema` parses, and `keyField` is one of its properties.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let schema = match self.parsed_schema() {
            Ok(schema) => schema,
            Err(message) => return vec![ConfigIssue::new("/schema", message)],
        };
        let mut issues = Vec::new();
        if let (Some(field), Some(props)) = (
            &self.key_field,
            schema.get("properties").and_then(Value::as_object),
        ) && !props.contains_key(field)
        {
            let names: Vec<String> = props.keys().cloned().collect();
            let message = unknown_key_message(field, &names).replacen(
                "unknown key",
                "is not a property of `schema`",
                1,
            );
            issues.push(ConfigIssue::new("/keyField", message));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schema: &str, key: Option<&str>) -> GeneratorConfig {
        GeneratorConfig {
            stream: "s".into(),
            key_field: key.map(str::to_string),
            schema: schema.into(),
            batch_size: 1,
            period: 1,
            total_records: None,
        }
    }

    #[test]
    fn default_schema_is_valid() {
        assert!(config(DEFAULT_SCHEMA, Some("k1")).validate().is_empty());
    }

    #[test]
    fn bad_schema_and_key_are_reported_with_pointers() {
        let issues = config("{", None).validate();
        assert_eq!(issues[0].pointer, "/schema");
        let issues = config(DEFAULT_SCHEMA, Some("k2")).validate();
        assert_eq!(issues[0].pointer, "/keyField");
        assert!(
            issues[0].message.contains("did you mean `k1`"),
            "{}",
            issues[0].message
        );
    }
}
