//! PostgreSQL errors classified into the runtime's [`ErrorKind`]s (by SQLSTATE),
//! which decide retry (transient, connection) versus skip-or-fail (data).

use hstream_io_runtime::{Error, ErrorKind};

/// The kind of a PostgreSQL error with SQLSTATE `code`.
pub(crate) fn kind_of_sqlstate(code: &str) -> ErrorKind {
    match code {
        // Deadlock, serialization failure, lock not available, query canceled
        // (statement timeout), too many connections and other resource limits.
        "40P01" | "40001" | "55P03" | "57014" | "53300" => ErrorKind::Transient,
        c if c.starts_with("53") => ErrorKind::Transient,
        // Connection exceptions, admin/crash shutdown, cannot connect now.
        c if c.starts_with("08") => ErrorKind::Connection,
        "57P01" | "57P02" | "57P03" => ErrorKind::Connection,
        c if c.starts_with("28") => ErrorKind::Authentication,
        "42501" => ErrorKind::Permission,
        // Undefined table/column/object, no unique index for ON CONFLICT.
        "42P01" | "42703" | "42704" | "3F000" | "42P10" | "3D000" => ErrorKind::Setup,
        // Data exceptions and integrity violations: the record does not fit.
        c if c.starts_with("22") || c.starts_with("23") => ErrorKind::Conversion,
        _ => ErrorKind::Internal,
    }
}

/// The kind of any sqlx error.
pub(crate) fn kind_of(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .map_or(ErrorKind::Internal, |code| kind_of_sqlstate(&code)),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => ErrorKind::Connection,
        sqlx::Error::Configuration(_) => ErrorKind::Config,
        _ => ErrorKind::Internal,
    }
}

/// The database server's error message.
#[derive(Debug)]
struct ServerError(String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

fn server_words(db: &dyn sqlx::error::DatabaseError) -> String {
    format!(
        "{} (SQLSTATE {})",
        db.message(),
        db.code().unwrap_or_default()
    )
}

/// Wraps a sqlx error with what was being done (`doing`: a lowercase fragment
/// naming the table), classified, with a hint for the kinds users can fix.
pub(crate) fn pg_error(doing: impl Into<String>, error: sqlx::Error) -> Error {
    let kind = kind_of(&error);
    let hint = match kind {
        ErrorKind::Connection
            if hstream_io_runtime::error::tls_certificate_hint(&error).is_some() =>
        {
            hstream_io_runtime::error::tls_certificate_hint(&error)
        }
        ErrorKind::Connection => Some(
            "Check host, port and tlsMode, and that PostgreSQL is running; the batch is retried.",
        ),
        ErrorKind::Authentication => {
            Some("Check user and password, and that pg_hba.conf allows this client.")
        }
        ErrorKind::Permission => Some(
            "Grant the user INSERT, UPDATE, DELETE on the table (and CREATE on the schema for the progress table), or set exactlyOnce to false.",
        ),
        ErrorKind::Setup => Some(
            "Check that the table and its columns exist as the records expect; the sink re-reads the table's columns before retrying.",
        ),
        ErrorKind::Transient => {
            Some("This is retried; raise task.error.maxRetries if it persists.")
        }
        ErrorKind::Conversion => Some(
            "Fix the record or the column definition, or set task.error.skipStrategy to skip such batches.",
        ),
        _ => None,
    };
    let e = match error {
        // The server's own words, once (sqlx's Display would repeat them).
        sqlx::Error::Database(db) => {
            Error::new(kind, doing).with_source(ServerError(server_words(db.as_ref())))
        }
        other => Error::new(kind, doing).with_source(other),
    };
    match hint {
        Some(h) => e.with_hint(h),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_policy_kinds() {
        assert_eq!(kind_of_sqlstate("40P01"), ErrorKind::Transient);
        assert_eq!(kind_of_sqlstate("40001"), ErrorKind::Transient);
        assert_eq!(kind_of_sqlstate("55P03"), ErrorKind::Transient);
        assert_eq!(kind_of_sqlstate("08006"), ErrorKind::Connection);
        assert_eq!(kind_of_sqlstate("57P01"), ErrorKind::Connection);
        assert_eq!(kind_of_sqlstate("28P01"), ErrorKind::Authentication);
        assert_eq!(kind_of_sqlstate("42501"), ErrorKind::Permission);
        assert_eq!(kind_of_sqlstate("42P01"), ErrorKind::Setup);
        assert_eq!(kind_of_sqlstate("22P02"), ErrorKind::Conversion);
        assert_eq!(kind_of_sqlstate("23502"), ErrorKind::Conversion);
        assert!(kind_of_sqlstate("40P01").is_retryable());
        assert!(!kind_of_sqlstate("22003").is_retryable());
    }
}
