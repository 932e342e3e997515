//! MySQL/MariaDB errors classified into the runtime's [`ErrorKind`]s (by error
//! number), which decide retry (transient, connection) versus skip-or-fail (data).

use hstream_io_runtime::{Error, ErrorKind};

/// The kind of a server error with number `number`.
pub(crate) fn kind_of_number(number: u16) -> ErrorKind {
    match number {
        // Deadlock, lock wait timeout, too many connections, query interrupted,
        // WSREP not ready (Galera), server shutting down (query killed).
        1213 | 1205 | 1040 | 1317 | 1047 | 3572 => ErrorKind::Transient,
        // Server gone away, lost connection, shutdown in progress, host blocked.
        2002 | 2003 | 2006 | 2013 | 1053 | 1077 | 1129 | 1927 => ErrorKind::Connection,
        // Access denied for user (password), plugin errors.
        1045 | 1251 | 1698 => ErrorKind::Authentication,
        // Command denied, database access denied, table/column access denied.
        1044 | 1142 | 1143 | 1227 => ErrorKind::Permission,
        // Unknown database/table/column, no such table.
        1049 | 1146 | 1054 => ErrorKind::Setup,
        // Data errors: too long, out of range, incorrect value, NULL into NOT
        // NULL, truncated, duplicate key on a second unique key, FK violations,
        // check constraints, invalid JSON.
        1048 | 1062 | 1136 | 1216 | 1217 | 1264 | 1265 | 1292 | 1366 | 1406 | 1451 | 1452
        | 3140 | 3819 | 4025 | 1690 | 1367 | 4078 => ErrorKind::Conversion,
        _ => ErrorKind::Internal,
    }
}

/// The kind of any sqlx error.
pub(crate) fn kind_of(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map_or(ErrorKind::Internal, |e| kind_of_number(e.number())),
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
    match db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        Some(e) => format!("{} (error {})", e.message(), e.number()),
        None => db.message().to_string(),
    }
}

/// Wraps a sqlx error with what was being done (`doing`: a lowercase fragment
/// naming the table), classified, with a hint for the kinds users can fix.
pub(crate) fn mysql_error(doing: impl Into<String>, error: sqlx::Error) -> Error {
    let kind = kind_of(&error);
    let hint = match kind {
        ErrorKind::Connection
            if hstream_io_runtime::error::tls_certificate_hint(&error).is_some() =>
        {
            hstream_io_runtime::error::tls_certificate_hint(&error)
        }
        ErrorKind::Connection => {
            Some("Check host, port and tlsMode, and that MySQL is running; the batch is retried.")
        }
        ErrorKind::Authentication => {
            Some("Check user and password, and that the user may connect from this host.")
        }
        ErrorKind::Permission => Some(
            "Grant the user INSERT, UPDATE, DELETE on the table (and CREATE on the database for the progress table), or set exactlyOnce to false.",
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
    fn error_numbers_map_to_policy_kinds() {
        assert_eq!(kind_of_number(1213), ErrorKind::Transient);
        assert_eq!(kind_of_number(1205), ErrorKind::Transient);
        assert_eq!(kind_of_number(2013), ErrorKind::Connection);
        assert_eq!(kind_of_number(1045), ErrorKind::Authentication);
        assert_eq!(kind_of_number(1142), ErrorKind::Permission);
        assert_eq!(kind_of_number(1146), ErrorKind::Setup);
        assert_eq!(kind_of_number(1406), ErrorKind::Conversion);
        assert_eq!(kind_of_number(1366), ErrorKind::Conversion);
        assert!(kind_of_number(1213).is_retryable());
        assert!(!kind_of_number(1264).is_retryable());
    }
}
