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

    /// Message and every cause, joined with ": " (no hint). A cause whose
    /// words the previous one already ended with (many libraries print their
    /// source inside their own message) is not repeated.
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut cause = self.source.as_deref().map(|s| s as &dyn std::error::Error);
        let mut previous = String::new();
        while let Some(c) = cause {
            let text = c.to_string();
            if !previous.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            previous = text;
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

/// The hint for a connection refused because of the server's TLS certificate
/// (for connectors' `tlsMode: verify-full`), when anything in `error`'s chain
/// says so; `None` for other errors.
pub fn tls_certificate_hint(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cause = Some(error);
    while let Some(c) = cause {
        let text = c.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("unknownissuer") {
            return Some(
                "The server's TLS certificate was not accepted (tlsMode verify-full): set tlsCa to the PEM \
                 of the CA that signed it and check that the certificate names `host`, or use tlsMode \
                 `require` to encrypt without verifying the server.",
            );
        }
        cause = c.source();
    }
    None
}

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
    fn a_cause_repeated_by_its_wrapper_is_shown_once() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "error communicating with database: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let wrapper = Wrapper(inner);
        assert!(tls_certificate_hint(&wrapper).is_some());
        assert!(tls_certificate_hint(&std::io::Error::other("connection refused")).is_none());
        let e = Error::new(ErrorKind::Connection, "cannot connect").with_source(wrapper);
        assert_eq!(
            e.chain(),
            "cannot connect: error communicating with database: invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn exit_codes_follow_the_documented_table() {
        assert_eq!(ErrorKind::Config.exit_code(), 2);
        assert_eq!(ErrorKind::Permission.exit_code(), 3);
        assert_eq!(ErrorKind::Internal.exit_code(), 1);
        assert_eq!(ErrorKind::Stream.exit_code(), 1);
    }
}
