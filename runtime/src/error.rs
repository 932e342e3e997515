//! One error type for everything a task can fail with, and the policy that maps
//! its kind to a retry decision, a `check` result type and a process exit code.

use std::fmt;

/// What went wrong, as a closed list that policy decisions are made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The config is invalid (schema, cross-field rules, unreadable file).
    Config,
    /// A server (database or HStream) cannot be reached.
    Connection,
    /// Credentials were rejected.
    Authentication,
    /// The user lacks a privilege the connector needs.
    Permission,
    /// The source or target is not set up as required (binlog format, wal_level, missing table…).
    Setup,
    /// A value could not be converted between the database and a record.
    Conversion,
    /// A transient conflict (deadlock, serialization failure, lock timeout): retry.
    Transient,
    /// The HStream stream service failed a request.
    Stream,
    /// The HServer channel (stdin/stdout) failed or timed out.
    Protocol,
    /// A bug or an unexpected state.
    Internal,
}

impl ErrorKind {
    /// Whether an operation that failed with this kind is worth retrying with backoff.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Connection | Self::Transient | Self::Stream)
    }

    /// The process exit code for a task that ends with this kind of error
    /// (documented in the README): 2 invalid config, 3 environment, 1 otherwise.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Config => 2,
            Self::Connection | Self::Authentication | Self::Permission | Self::Setup => 3,
            _ => 1,
        }
    }

    /// The `type` of a failed `CheckResult` for this kind.
    pub fn check_type(self) -> &'static str {
        match self {
            Self::Config | Self::Conversion => "CONFIG",
            Self::Connection | Self::Authentication | Self::Stream | Self::Protocol => "CONNECTION",
            Self::Permission => "PERMISSION",
            Self::Setup => "SETUP",
            Self::Transient | Self::Internal => "INTERNAL",
        }
    }

    /// snake_case name, used as a metric label and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Connection => "connection",
            Self::Authentication => "authentication",
            Self::Permission => "permission",
            Self::Setup => "setup",
            Self::Conversion => "conversion",
            Self::Transient => "transient",
            Self::Stream => "stream",
            Self::Protocol => "protocol",
            Self::Internal => "internal",
        }
    }
}

/// A task error: what failed and where (`message`, a lowercase fragment with no
/// trailing period), what to do about it (`hint`, a full sentence), and the cause.
///
/// Secret values and row contents never go into any field.
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// Adds a hint: a full sentence telling the user how to fix it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind, for policy decisions.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without cause or hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Message and every cause, joined with ": " (no hint).
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut cause = self.source.as_deref().map(|s| s as &dyn std::error::Error);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    /// Shorthand for a config error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for an internal error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain())?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}: {self})", self.kind.as_str())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_chains_causes_and_hint() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = Error::new(ErrorKind::Connection, "cannot connect to 127.0.0.1:1")
            .with_source(io)
            .with_hint("Check that the server is running.");
        assert_eq!(
            e.to_string(),
            "cannot connect to 127.0.0.1:1: connection refused (hint: Check that the server is running.)"
        );
        assert_eq!(e.kind().exit_code(), 3);
        assert!(e.kind().is_retryable());
    }

    #[test]
    fn exit_codes_follow_the_documented_table() {
        assert_eq!(ErrorKind::Config.exit_code(), 2);
        assert_eq!(ErrorKind::Permission.exit_code(), 3);
        assert_eq!(ErrorKind::Internal.exit_code(), 1);
        assert_eq!(ErrorKind::Stream.exit_code(), 1);
    }
}
