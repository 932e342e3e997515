//! Connector errors as HServer reports them (reference §1.13): a gRPC status
//! whose details are `{"error": <code>, "message": "<ExceptionName>", "extra": …}`.

use serde_json::{Value, json};
use tonic::{Code, Status};

use crate::meta::MetaError;

/// A failed connector operation, mapped to HServer's error codes.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// 600: no connector with that name.
    #[error("connector {0:?} does not exist; list connectors with SHOW CONNECTORS")]
    NotFound(String),
    /// 601: the name is taken.
    #[error("connector {0:?} already exists; pick another name or DROP CONNECTOR it first")]
    Exists(String),
    /// 602: `type` is neither SOURCE nor SINK.
    #[error("invalid connector type {0:?}; use SOURCE or SINK")]
    InvalidType(String),
    /// 603: the name breaks HServer's identifier rules.
    #[error(
        "invalid connector name {name:?}: {why}; use 1-255 characters, a letter first, then letters, digits, '-' or '_'"
    )]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// 604: `check` returned `result: false` (payload: the CheckResult).
    #[error("connector check failed: {}", check_message(.0))]
    CheckFailed(Value),
    /// 605: no connector for this type and target.
    #[error("no {kind} connector for target {target:?}; available: {available}")]
    Unimplemented {
        /// SOURCE or SINK.
        kind: String,
        /// The target asked for.
        target: String,
        /// Targets this worker has for that type.
        available: String,
    },
    /// Code 0, FAILED_PRECONDITION: DROP CONNECTOR stopped the task but its
    /// connector could not drop what it owns; the connector is kept (STOPPED).
    #[error(
        "connector {name:?} was stopped but not deleted: its cleanup failed: {why}. Fix the cause and drop it again, or ALTER the setting that asks for the cleanup (e.g. slotOnDelete = keep) and drop it"
    )]
    CleanupFailed {
        /// The connector.
        name: String,
        /// The cleanup's error.
        why: String,
    },
    /// Code 0, INVALID_ARGUMENT: a malformed request field.
    #[error("{0}")]
    InvalidArgument(String),
    /// Code 0, INTERNAL: a task process could not be run (HServer's `ConnectorProcessError`).
    #[error("{0}")]
    Process(String),
    /// Code 0, INTERNAL: the metastore failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

fn check_message(v: &Value) -> String {
    let msg = v["message"].as_str().unwrap_or("no message");
    match v["type"].as_str() {
        Some(t) => format!("{t}: {msg}"),
        None => msg.to_string(),
    }
}

impl WorkerError {
    /// HServer's error code and exception name.
    pub fn code(&self) -> (i64, &'static str) {
        match self {
            Self::NotFound(_) => (600, "ConnectorNotFound"),
            Self::Exists(_) => (601, "ConnectorExists"),
            Self::InvalidType(_) => (602, "InvalidConnectorType"),
            Self::InvalidName { .. } => (603, "InvalidObjectIdentifier"),
            Self::CheckFailed(_) => (604, "ConnectorCheckFailed"),
            Self::Unimplemented { .. } => (605, "ConnectorUnimplemented"),
            Self::InvalidArgument(_) => (0, "InvalidArgument"),
            Self::CleanupFailed { .. } => (0, "ConnectorCleanupFailed"),
            Self::Process(_) => (0, "ConnectorProcessError"),
            Self::Meta(_) => (0, "MetaStoreError"),
        }
    }

    fn grpc_code(&self) -> Code {
        match self {
            Self::NotFound(_) => Code::NotFound,
            Self::Exists(_) => Code::AlreadyExists,
            Self::InvalidType(_) | Self::InvalidName { .. } | Self::InvalidArgument(_) => {
                Code::InvalidArgument
            }
            Self::CheckFailed(_) | Self::CleanupFailed { .. } => Code::FailedPrecondition,
            Self::Unimplemented { .. } => Code::Unimplemented,
            Self::Process(_) | Self::Meta(_) => Code::Internal,
        }
    }
}

impl From<WorkerError> for Status {
    fn from(e: WorkerError) -> Self {
        let (code, name) = e.code();
        let message = e.to_string();
        let extra = match &e {
            WorkerError::CheckFailed(result) => result.clone(),
            _ => Value::String(message.clone()),
        };
        let details = json!({"error": code, "message": name, "extra": extra});
        Status::with_details(
            e.grpc_code(),
            message,
            details.to_string().into_bytes().into(),
        )
    }
}

/// HServer's name rule (`validateNameAndThrow`): 1..255 chars, a letter first,
/// then alphanumerics, `-` or `_`.
pub fn validate_name(name: &str) -> Result<(), WorkerError> {
    let bad = |why: &str| {
        Err(WorkerError::InvalidName {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return bad("it must start with a letter");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return bad(&format!("character {c:?} is not allowed"));
    }
    if name == "zookeeper" {
        return bad("the name is reserved");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_hserver_rules() {
        assert!(validate_name("sink-01_a").is_ok());
        for bad in ["", "1abc", "a b", "a.b", "zookeeper", &"a".repeat(256)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn statuses_carry_the_hserver_code_in_details() {
        let s: Status = WorkerError::Exists("c".into()).into();
        assert_eq!(s.code(), Code::AlreadyExists);
        let d: Value = serde_json::from_slice(s.details()).unwrap();
        assert_eq!(d["error"], 601);
        assert_eq!(d["message"], "ConnectorExists");
        let s: Status =
            WorkerError::CheckFailed(json!({"result": false, "message": "no db"})).into();
        let d: Value = serde_json::from_slice(s.details()).unwrap();
        assert_eq!(
            (d["error"].as_i64(), d["extra"]["message"].as_str()),
            (Some(604), Some("no db"))
        );
    }
}
