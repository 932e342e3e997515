//! The `check` verb's result and the declared environment checks of a connector.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::validate::ConfigIssue;

/// The one line `check` prints, exactly as HServer parses it:
/// `{"result":bool,"type":…,"message":…,"detail":…}` (absent fields are `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// True when the config is valid and the environment is ready.
    pub result: bool,
    /// What kind of check failed: `CONFIG`, `CONNECTION`, `KEYS`, …
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// One sentence on what failed and how to fix it.
    pub message: Option<String>,
    /// Machine-readable detail: for `CONFIG`, every error with its JSON pointer.
    pub detail: Option<Value>,
}

impl CheckResult {
    /// A passing result.
    pub fn ok() -> Self {
        Self {
            result: true,
            kind: None,
            message: None,
            detail: None,
        }
    }

    /// The result for a config that failed validation: every issue at once.
    pub fn invalid_config(issues: &[ConfigIssue]) -> Self {
        let summary = issues
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            result: false,
            kind: Some(CheckType::Config.as_str().into()),
            message: Some(format!(
                "invalid config: {} error{}: {summary}",
                issues.len(),
                if issues.len() == 1 { "" } else { "s" }
            )),
            detail: Some(serde_json::to_value(issues).unwrap_or(Value::Null)),
        }
    }

    /// The result for a failed environment check.
    pub fn failed(failure: &CheckFailure) -> Self {
        let hint = failure.error.hint().unwrap_or(failure.spec.hint);
        Self {
            result: false,
            kind: Some(failure.spec.kind.as_str().into()),
            message: Some(format!(
                "{} failed: {}. {hint}",
                failure.spec.description,
                failure.error.chain()
            )),
            detail: Some(serde_json::json!({
                "check": failure.spec.id,
                "error": failure.error.chain(),
                "hint": hint,
            })),
        }
    }
}

/// The `type` of a check, as HServer and its front ends know them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckType {
    /// The config itself.
    Config,
    /// Reaching a server.
    Connection,
    /// Primary keys of a table.
    Keys,
    /// Privileges of the configured user.
    Permission,
    /// Server settings (binlog format, wal_level, …).
    Setup,
}

impl CheckType {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "CONFIG",
            Self::Connection => "CONNECTION",
            Self::Keys => "KEYS",
            Self::Permission => "PERMISSION",
            Self::Setup => "SETUP",
        }
    }
}

/// One environment check a connector declares; the same list drives `check`
/// and the "what check verifies" section of the generated docs.
#[derive(Debug)]
pub struct CheckSpec {
    /// Stable identifier, e.g. `connect`.
    pub id: &'static str,
    /// The `type` reported when it fails.
    pub kind: CheckType,
    /// What is verified, as a noun phrase ("connection to the database").
    pub description: &'static str,
    /// How to fix it when it fails, as a full sentence.
    pub hint: &'static str,
}

/// A declared check that failed, with the error that made it fail.
#[derive(Debug)]
pub struct CheckFailure {
    /// Which check.
    pub spec: &'static CheckSpec,
    /// Why.
    pub error: Error,
}

impl CheckFailure {
    /// Pairs a declared check with the error that failed it.
    pub fn new(spec: &'static CheckSpec, error: Error) -> Self {
        Self { spec, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_serialises_nulls_like_the_reference() {
        assert_eq!(
            serde_json::to_string(&CheckResult::ok()).unwrap(),
            r#"{"result":true,"type":null,"message":null,"detail":null}"#
        );
    }

    #[test]
    fn failed_check_names_type_and_hint() {
        static SPEC: CheckSpec = CheckSpec {
            id: "connect",
            kind: CheckType::Connection,
            description: "connection to the database",
            hint: "Check host and port.",
        };
        let r = CheckResult::failed(&CheckFailure::new(
            &SPEC,
            Error::new(
                crate::error::ErrorKind::Connection,
                "cannot connect to db:1",
            ),
        ));
        assert!(!r.result);
        assert_eq!(r.kind.as_deref(), Some("CONNECTION"));
        assert_eq!(
            r.message.as_deref(),
            Some("connection to the database failed: cannot connect to db:1. Check host and port.")
        );
    }
}
