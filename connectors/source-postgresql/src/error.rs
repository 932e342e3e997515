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
            "Check host, port and database, and that PostgreSQL accepts connections from this host (pg_hba.conf).",
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
    let e = Error::new(kind, what).with_source(error);
    match hint_of(kind) {
        Some(hint) => e.with_hint(hint),
        None => e,
    }
}

/// A replication-protocol error while doing `what`.
pub fn replication(what: impl Into<String>, error: PgWireError) -> Error {
    let kind = match &error {
        PgWireError::Io(_) => ErrorKind::Connection,
        PgWireError::Auth(_) => ErrorKind::Authentication,
        PgWireError::Server(message) => server_message_kind(message),
        PgWireError::Protocol(_) => ErrorKind::Protocol,
        _ => ErrorKind::Internal,
    };
    let e = Error::new(kind, what).with_source(error);
    match hint_of(kind) {
        Some(hint) => e.with_hint(hint),
        None => e,
    }
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
}
