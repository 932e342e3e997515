//! PostgreSQL errors classified into the runtime's [`ErrorKind`]s, with hints.

use hstream_io_runtime::{Error, ErrorKind};
use pgwire_replication::PgWireError;

/// The kind of a PostgreSQL SQLSTATE.
pub fn kind_of_sqlstate(code: &str) -> ErrorKind {
    match code {
        "28P01" | "28000" => ErrorKind::Authentication,
        "42501" => ErrorKind::Permission,
        "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300" => ErrorKind::Transient,
        c if c.starts_with("08") => ErrorKind::Connection,
        c if c.starts_with("42") || c.starts_with("55") || c.starts_with("53") => ErrorKind::Setup,
        _ => ErrorKind::Internal,
    }
}

fn hint_of(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::Connection => Some(
            "Check host, port, database and tlsMode, and that PostgreSQL accepts connections from this host (pg_hba.conf).",
        ),
        ErrorKind::Authentication => Some("Check user and password."),
        ErrorKind::Permission => Some(
            "Grant what is missing, e.g. `ALTER ROLE <user> WITH REPLICATION;` and `GRANT SELECT ON <table> TO <user>;`.",
        ),
        _ => None,
    }
}

/// A `tokio_postgres` error while doing `what` (a lowercase fragment).
pub fn sql(what: impl Into<String>, error: tokio_postgres::Error) -> Error {
    let kind = match error.code() {
        Some(code) => kind_of_sqlstate(code.code()),
        None if error.is_closed() || error.as_db_error().is_none() => ErrorKind::Connection,
        None => ErrorKind::Internal,
    };
    with_hint(Error::new(kind, what).with_source(error))
}

/// `error` with the hint of its kind; for a connection refused because of the
/// server's certificate (tlsMode verify-full), the tlsCa hint.
fn with_hint(error: Error) -> Error {
    let certificate = match error.kind() {
        ErrorKind::Connection => hstream_io_runtime::error::tls_certificate_hint(&error),
        _ => None,
    };
    match certificate.or_else(|| hint_of(error.kind())) {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

/// A replication-protocol error while doing `what`.
pub fn replication(what: impl Into<String>, error: PgWireError) -> Error {
    let kind = match &error {
        PgWireError::Io(_) | PgWireError::Tls(_) => ErrorKind::Connection,
        PgWireError::Auth(_) => ErrorKind::Authentication,
        PgWireError::Server(message) => server_message_kind(message),
        PgWireError::Protocol(_) => ErrorKind::Protocol,
        _ => ErrorKind::Internal,
    };
    with_hint(Error::new(kind, what).with_source(error))
}

/// Server error texts of the replication session carry the SQLSTATE; find it.
fn server_message_kind(message: &str) -> ErrorKind {
    message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| {
            w.len() == 5
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                && w.chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .map_or(ErrorKind::Setup, kind_of_sqlstate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        assert_eq!(kind_of_sqlstate("28P01"), ErrorKind::Authentication);
        assert_eq!(kind_of_sqlstate("42501"), ErrorKind::Permission);
        assert_eq!(kind_of_sqlstate("42P01"), ErrorKind::Setup);
        assert_eq!(kind_of_sqlstate("08006"), ErrorKind::Connection);
        assert_eq!(kind_of_sqlstate("40001"), ErrorKind::Transient);
        assert_eq!(
            server_message_kind("ERROR 42704: replication slot \"x\" does not exist"),
            ErrorKind::Setup
        );
        assert_eq!(
            server_message_kind("FATAL 28P01: password authentication failed"),
            ErrorKind::Authentication
        );
    }

    #[test]
    fn a_rejected_certificate_is_a_connection_error_with_the_tlsca_hint() {
        let e = replication(
            "cannot open the replication session",
            PgWireError::Tls(
                "TLS handshake failed: invalid peer certificate: UnknownIssuer".into(),
            ),
        );
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(e.to_string().contains("set tlsCa"), "{e}");
        let e = replication(
            "cannot open the replication session",
            PgWireError::Tls("server does not support TLS (SSLRequest rejected)".into()),
        );
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(e.to_string().contains("tlsMode"), "{e}");
    }
}
