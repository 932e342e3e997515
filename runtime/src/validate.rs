//! Config validation against a connector's JSON Schema: every error at once,
//! each with its JSON pointer and a plain-words message.
//!
//! Messages never echo the offending value (it may be a secret); they say what
//! the value must be. Unknown keys get a "did you mean …" suggestion.

use std::fmt;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde::Serialize;
use serde_json::Value;

/// One problem in a config: where (`pointer`, RFC 6901 into the connector
/// config; `""` is the whole object) and what (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigIssue {
    /// JSON pointer of the offending value.
    pub pointer: String,
    /// What is wrong, in plain words.
    pub message: String,
}

impl ConfigIssue {
    /// A new issue.
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// A compiled schema.
pub struct SchemaValidator {
    schema: Value,
    validator: Validator,
}

impl SchemaValidator {
    /// Compiles `schema` (draft 2020-12).
    ///
    /// # Panics
    /// If the schema itself is invalid: schemas are generated from our own
    /// types, so that is a bug caught by every test that validates a config.
    pub fn new(schema: Value) -> Self {
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("connector schema does not compile: {e}"));
        Self { schema, validator }
    }

    /// Every problem with `instance`, in document order of discovery; empty when valid.
    pub fn validate(&self, instance: &Value) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        for error in self.validator.iter_errors(instance) {
            self.describe(&error, &mut issues);
        }
        issues.dedup();
        issues
    }

    fn describe(&self, error: &ValidationError<'_>, out: &mut Vec<ConfigIssue>) {
        let pointer = error.instance_path().as_str().to_string();
        let message = match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                let allowed = self.allowed_keys(error.schema_path().as_str());
                for key in unexpected {
                    out.push(ConfigIssue::new(
                        format!("{pointer}/{}", escape_pointer(key)),
                        unknown_key_message(key, &allowed),
                    ));
                }
                return;
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                out.push(ConfigIssue::new(
                    format!("{pointer}/{}", escape_pointer(name)),
                    "is required but missing",
                ));
                return;
            }
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => {
                if let Some(values) = constants(context) {
                    format!("must be one of: {values}")
                } else if let Some(branch) = only_non_null_branch(context) {
                    for e in branch {
                        self.describe(e, out);
                    }
                    return;
                } else {
                    "does not match any of the allowed forms".into()
                }
            }
            ValidationErrorKind::OneOfMultipleValid { .. } => {
                "matches more than one of the allowed forms".into()
            }
            ValidationErrorKind::Type { kind } => format!(
                "must be {}, but is {}",
                expected_types(kind),
                type_name(error.instance())
            ),
            ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
            ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
            ValidationErrorKind::ExclusiveMinimum { limit } => {
                format!("must be greater than {limit}")
            }
            ValidationErrorKind::ExclusiveMaximum { limit } => {
                format!("must be less than {limit}")
            }
            ValidationErrorKind::MinLength { limit } => {
                format!("must be at least {limit} character{} long", plural(*limit))
            }
            ValidationErrorKind::MaxLength { limit } => {
                format!("must be at most {limit} character{} long", plural(*limit))
            }
            ValidationErrorKind::MinItems { limit } => {
                format!("must have at least {limit} item{}", plural(*limit))
            }
            ValidationErrorKind::MaxItems { limit } => {
                format!("must have at most {limit} item{}", plural(*limit))
            }
            ValidationErrorKind::Pattern { pattern } => {
                format!("must match the regular expression `{pattern}`")
            }
            ValidationErrorKind::Enum { options } => format!(
                "must be one of: {}",
                options
                    .as_array()
                    .map(|a| join_values(a.iter()))
                    .unwrap_or_default()
            ),
            ValidationErrorKind::Constant { expected_value } => {
                format!("must be {expected_value}")
            }
            ValidationErrorKind::Format { format } => format!("must be a valid {format}"),
            ValidationErrorKind::UniqueItems => "must not contain duplicate items".into(),
            _ => error.masked().to_string(),
        };
        out.push(ConfigIssue::new(pointer, message));
    }

    /// The property names allowed by the object schema that rejected extra keys.
    fn allowed_keys(&self, schema_path: &str) -> Vec<String> {
        let parent = schema_path
            .rsplit_once('/')
            .map(|(p, _)| p)
            .unwrap_or_default();
        let mut node = &self.schema;
        for segment in parent.split('/').filter(|s| !s.is_empty()) {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            node = match node
                .get(segment.as_str())
                .or_else(|| segment.parse::<usize>().ok().and_then(|i| node.get(i)))
            {
                Some(Value::String(reference)) if segment == "$ref" => {
                    match reference.strip_prefix('#') {
                        Some(ptr) => match self.schema.pointer(ptr) {
                            Some(n) => n,
                            None => return Vec::new(),
                        },
                        None => return Vec::new(),
                    }
                }
                Some(n) => n,
                None => return Vec::new(),
            };
        }
        node.get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// "unknown key" plus the closest allowed key when one is close enough to be a typo.
pub fn unknown_key_message(key: &str, allowed: &[String]) -> String {
    match closest(key, allowed) {
        Some(name) => format!("unknown key; did you mean `{name}`?"),
        None if allowed.is_empty() => "unknown key".into(),
        None => format!("unknown key; allowed keys are: {}", allowed.join(", ")),
    }
}

/// The candidate a typo most likely meant: within a few edits (transpositions
/// count as one), case-insensitive.
pub fn closest<'a>(key: &str, candidates: &'a [String]) -> Option<&'a str> {
    let key = key.to_lowercase();
    let budget = (key.chars().count() / 4).max(1);
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&key, &c.to_lowercase()), c))
        .filter(|(distance, _)| *distance <= budget)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c.as_str())
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn join_values<'a>(values: impl Iterator<Item = &'a Value>) -> String {
    values.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

/// When every branch failed only on a `const`, the list of those constants.
fn constants(context: &[Vec<ValidationError<'static>>]) -> Option<String> {
    let mut values = Vec::new();
    for branch in context {
        match branch.as_slice() {
            [e] => match e.kind() {
                ValidationErrorKind::Constant { expected_value } => {
                    values.push(expected_value.as_ref().clone())
                }
                ValidationErrorKind::Enum { options } => {
                    values.extend(options.as_array().into_iter().flatten().cloned())
                }
                ValidationErrorKind::Type {
                    kind: TypeKind::Single(t),
                } if t.to_string() == "null" => {}
                _ => return None,
            },
            _ => return None,
        }
    }
    (!values.is_empty()).then(|| join_values(values.iter()))
}

/// For `Option<T>` schemas (`anyOf: [T, {type: null}]`): the errors of the `T` branch.
fn only_non_null_branch<'c>(
    context: &'c [Vec<ValidationError<'static>>],
) -> Option<&'c [ValidationError<'static>]> {
    let mut rest = context.iter().filter(|branch| {
        !matches!(branch.as_slice(), [e] if matches!(e.kind(),
            ValidationErrorKind::Type { kind: TypeKind::Single(t) } if t.to_string() == "null"))
    });
    let branch = rest.next()?;
    rest.next().is_none().then_some(branch.as_slice())
}

fn expected_types(kind: &TypeKind) -> String {
    let names: Vec<String> = match kind {
        TypeKind::Single(t) => vec![t.to_string()],
        TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
    };
    names
        .into_iter()
        .filter(|n| n != "null")
        .map(|n| with_article(&n))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn with_article(name: &str) -> String {
    match name {
        "integer" | "array" | "object" => format!("an {name}"),
        other => format!("a {other}"),
    }
}

/// The JSON type of a value, with an article ("a string", "an integer").
pub fn type_name(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["stream", "host"],
            "properties": {
                "stream": {"type": "string", "minLength": 1},
                "host": {"type": "string"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "mode": {"oneOf": [{"const": "a"}, {"const": "b"}]},
                "level": {"anyOf": [{"$ref": "#/$defs/Level"}, {"type": "null"}]}
            },
            "$defs": {"Level": {"type": "string", "enum": ["low", "high"]}}
        })
    }

    #[test]
    fn reports_every_error_with_pointer_and_words() {
        let v = SchemaValidator::new(schema());
        let issues = v.validate(&json!({
            "stream": 5, "port": 70000, "hots": "x", "mode": "c", "level": "mid"
        }));
        let find = |p: &str| {
            issues
                .iter()
                .find(|i| i.pointer == p)
                .unwrap_or_else(|| panic!("no issue at {p}: {issues:?}"))
                .message
                .clone()
        };
        assert_eq!(find("/stream"), "must be a string, but is an integer");
        assert_eq!(find("/port"), "must be at most 65535");
        assert_eq!(find("/host"), "is required but missing");
        assert_eq!(find("/hots"), "unknown key; did you mean `host`?");
        assert_eq!(find("/mode"), r#"must be one of: "a", "b""#);
        assert_eq!(find("/level"), r#"must be one of: "low", "high""#);
        assert_eq!(issues.len(), 6, "{issues:?}");
    }

    #[test]
    fn far_off_key_lists_allowed_keys() {
        let msg = unknown_key_message("zzz", &["stream".into(), "host".into()]);
        assert_eq!(msg, "unknown key; allowed keys are: stream, host");
    }

    #[test]
    fn valid_config_has_no_issues() {
        let v = SchemaValidator::new(schema());
        assert!(
            v.validate(&json!({"stream": "s", "host": "h", "level": null}))
                .is_empty()
        );
    }
}
