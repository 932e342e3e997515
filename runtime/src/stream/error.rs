//! [`StreamError`]: every way a stream operation can fail, with what failed,
//! where, and how to fix it.

use std::fmt;

/// A gRPC status code (mirror of the standard codes, so no tonic type leaks out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum StatusCode {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl StatusCode {
    pub(crate) fn from_tonic(c: tonic::Code) -> Self {
        use tonic::Code as C;
        match c {
            C::Ok => Self::Ok,
            C::Cancelled => Self::Cancelled,
            C::Unknown => Self::Unknown,
            C::InvalidArgument => Self::InvalidArgument,
            C::DeadlineExceeded => Self::DeadlineExceeded,
            C::NotFound => Self::NotFound,
            C::AlreadyExists => Self::AlreadyExists,
            C::PermissionDenied => Self::PermissionDenied,
            C::ResourceExhausted => Self::ResourceExhausted,
            C::FailedPrecondition => Self::FailedPrecondition,
            C::Aborted => Self::Aborted,
            C::OutOfRange => Self::OutOfRange,
            C::Unimplemented => Self::Unimplemented,
            C::Internal => Self::Internal,
            C::Unavailable => Self::Unavailable,
            C::DataLoss => Self::DataLoss,
            C::Unauthenticated => Self::Unauthenticated,
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An error from the stream client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The service URL could not be parsed.
    #[error(
        "invalid HStream service URL {url:?}: {reason}; expected hstream://host1[:port][,host2[:port]…] (default port 6570)"
    )]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS (`hstreams://`) could not be set up: the CA file is unreadable or
    /// holds no certificate, or no system CA certificates were found.
    #[error("cannot set up TLS for {url}: {reason}")]
    TlsConfig {
        /// The URL as given.
        url: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The TLS handshake with a node failed (untrusted or mismatching
    /// certificate, or the node does not speak TLS).
    #[error("TLS handshake with HStream server {node} failed: {reason}")]
    Tls {
        /// `host:port`.
        node: String,
        /// The TLS error and how to fix it.
        reason: String,
    },
    /// No connection could be made to a node.
    #[error(
        "cannot connect to HStream server {node}: {reason}; check that HServer is running, listening there and reachable from this host"
    )]
    Connect {
        /// `host:port`.
        node: String,
        /// The transport error.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{operation} on {target} failed at {node}: {status}{}: {message}{}",
        .hserver_code.map(|c| format!(" (HServer error {c})")).unwrap_or_default(),
        hint(*.status))]
    Server {
        /// The RPC, e.g. `Append`.
        operation: &'static str,
        /// What it was about, e.g. `stream "s" shard 12`.
        target: String,
        /// The node that answered (`host:port`).
        node: String,
        /// The gRPC status code.
        status: StatusCode,
        /// HServer's error code from the status details, when present.
        hserver_code: Option<i64>,
        /// The server's message.
        message: String,
    },
    /// A retryable error persisted through the retry budget.
    #[error("{operation} on {target} still failing after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// The RPC.
        operation: &'static str,
        /// What it was about.
        target: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        last: Box<StreamError>,
    },
    /// The caller passed something invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Data from the server could not be decoded.
    #[error(
        "cannot decode {what} from {target}: {reason}; the data is corrupt or was written by an incompatible client"
    )]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Where it came from.
        target: String,
        /// The decoder's error.
        reason: String,
    },
    /// No shard of the stream covers a key (the shard list is incomplete).
    #[error(
        "stream {stream:?} has no shard covering key {key:?}; the shard list is incomplete, re-create the producer"
    )]
    NoShard {
        /// The stream.
        stream: String,
        /// The partition key.
        key: String,
    },
    /// The producer was closed or its worker stopped.
    #[error(
        "producer for stream {stream:?} is closed; create a new producer to append more records"
    )]
    ProducerClosed {
        /// The stream.
        stream: String,
    },
}

fn hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NotFound => " (create it first or check the name)",
        StatusCode::AlreadyExists => " (use a different name or reuse the existing one)",
        StatusCode::Unavailable => " (the server is down or restarting; retry later)",
        StatusCode::InvalidArgument => " (fix the request)",
        StatusCode::Unimplemented => " (this server does not support the RPC)",
        _ => "",
    }
}

impl StreamError {
    /// Whether retrying the same operation later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Server { status, .. } => matches!(
                status,
                StatusCode::Unavailable
                    | StatusCode::DeadlineExceeded
                    | StatusCode::Aborted
                    | StatusCode::ResourceExhausted
            ),
            _ => false,
        }
    }

    /// HServer's error code (e.g. 201 StreamExists), if the server sent one.
    pub fn hserver_code(&self) -> Option<i64> {
        match self {
            Self::Server { hserver_code, .. } => *hserver_code,
            Self::RetriesExhausted { last, .. } => last.hserver_code(),
            _ => None,
        }
    }

    /// The gRPC status code, if the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Server { status, .. } => Some(*status),
            Self::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    pub(crate) fn from_status(
        operation: &'static str,
        target: impl Into<String>,
        node: &str,
        s: &tonic::Status,
    ) -> Self {
        if let Some(reason) = tls_failure(s) {
            return Self::Tls {
                node: node.to_string(),
                reason,
            };
        }
        let status = StatusCode::from_tonic(s.code());
        if status == StatusCode::Unavailable && s.message().contains("transport error") {
            return Self::Connect {
                node: node.to_string(),
                reason: with_sources(s),
            };
        }
        let hserver_code = serde_json::from_slice::<serde_json::Value>(s.details())
            .ok()
            .and_then(|v| v.get("error").and_then(serde_json::Value::as_i64));
        Self::Server {
            operation,
            target: target.into(),
            node: node.to_string(),
            status,
            hserver_code,
            message: s.message().to_string(),
        }
    }
}

/// `status`'s message followed by its source chain (tonic's transport errors
/// say only "transport error"; the cause is in the chain).
pub(crate) fn with_sources(status: &tonic::Status) -> String {
    chain(
        status.message().to_string(),
        std::error::Error::source(status),
    )
}

/// `head` followed by the messages of `src` and its sources (duplicates skipped).
pub(crate) fn chain(head: String, src: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut out = head;
    let mut src = src;
    while let Some(e) = src {
        let m = e.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = e.source();
    }
    out
}

/// The rustls error inside `status`'s source chain, explained, if any.
pub(crate) fn tls_failure(status: &tonic::Status) -> Option<String> {
    tls_failure_in(std::error::Error::source(status))
}

/// The rustls error in `src` or its sources, explained, if any.
pub(crate) fn tls_failure_in(src: Option<&(dyn std::error::Error + 'static)>) -> Option<String> {
    let mut src = src;
    while let Some(e) = src {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(t) = tls {
            return Some(explain_tls(t));
        }
        src = e.source();
    }
    None
}

fn explain_tls(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(_) => format!(
            "{e}; the server's certificate is not trusted or does not name this host: \
             point HSTREAM_TLS_CA (or ClientOptions::tls_ca_pem) at the PEM file of the CA \
             that signed it (default: the system CA store), and connect with a host name \
             the certificate lists"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "{e}; the server does not seem to speak TLS: connect with hstream:// instead of hstreams://"
        ),
        _ => format!(
            "{e}; check the server's TLS certificate and HSTREAM_TLS_CA (or ClientOptions::tls_ca_pem)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hserver_code_and_retryability() {
        let st = tonic::Status::with_details(
            tonic::Code::AlreadyExists,
            "stream s exists",
            bytes::Bytes::from_static(br#"{"error":201,"message":"StreamExists","extra":null}"#),
        );
        let e = StreamError::from_status("CreateStream", "stream \"s\"", "h:1", &st);
        assert_eq!(e.hserver_code(), Some(201));
        assert_eq!(e.status(), Some(StatusCode::AlreadyExists));
        assert!(!e.is_retryable());
        let msg = e.to_string();
        assert!(
            msg.contains("CreateStream") && msg.contains("h:1") && msg.contains("201"),
            "{msg}"
        );
        let u = StreamError::from_status("Append", "x", "h:1", &tonic::Status::unavailable("down"));
        assert!(u.is_retryable());
        assert_eq!(u.hserver_code(), None);
    }
}
