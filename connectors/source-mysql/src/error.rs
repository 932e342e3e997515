//! Classifies MySQL / MariaDB errors into the runtime's [`ErrorKind`]s, and
//! opens connections.

use hstream_io_runtime::{Error, ErrorKind};
use mysql_async::{Conn, DriverError, OptsBuilder, SslOpts};

use crate::config::MysqlSourceConfig;
use hstream_io_runtime::TlsMode;

/// ER_ACCESS_DENIED_ERROR: bad user or password.
const ER_ACCESS_DENIED: u16 = 1045;
/// ER_MASTER_FATAL_ERROR_READING_BINLOG: purged binlog, unknown GTID, duplicate server id…
pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;

/// The server error code inside `e`, if it is a server error.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// `e` as a runtime error whose message is `what` (what failed and where).
pub fn classify(e: mysql_async::Error, what: impl Into<String>) -> Error {
    let what = what.into();
    let (kind, hint) = match &e {
        mysql_async::Error::Server(s) => match s.code {
            ER_ACCESS_DENIED => (
                ErrorKind::Authentication,
                Some("Check `user` and `password`, and that the user may connect from this host."),
            ),
            1044 | 1142 | 1143 | 1227 | 1370 => (
                ErrorKind::Permission,
                Some(
                    "Grant the connector's user what it needs: GRANT SELECT, REPLICATION SLAVE, \
                     REPLICATION CLIENT ON *.* TO 'user'@'%' (BINLOG MONITOR instead of REPLICATION \
                     CLIENT on MariaDB 10.5+).",
                ),
            ),
            1049 | 1146 => (
                ErrorKind::Setup,
                Some("Check `database` and `table`/`tables`: the table must exist."),
            ),
            ER_MASTER_FATAL_ERROR_READING_BINLOG => (
                ErrorKind::Setup,
                Some(
                    "The binlog position is no longer on the server (purged?) or the serverId is \
                     used by another replica. Use snapshotMode `when_needed` to copy the tables \
                     again, or set a unique `serverId`.",
                ),
            ),
            1205 | 1213 => (ErrorKind::Transient, None),
            2013 | 2006 | 1053 | 1927 => (ErrorKind::Connection, None),
            _ => (ErrorKind::Internal, None),
        },
        mysql_async::Error::Io(_) => (
            ErrorKind::Connection,
            Some("Check `host` and `port`, and that the server is running and reachable."),
        ),
        mysql_async::Error::Driver(_) => (ErrorKind::Connection, None),
        mysql_async::Error::Url(_) => (ErrorKind::Config, None),
        mysql_async::Error::Other(_) => (ErrorKind::Internal, None),
    };
    let mut error = Error::new(kind, what).with_source(e);
    if let Some(hint) = hint {
        error = error.with_hint(hint);
    }
    error
}

/// Connection options of `config` without TLS (UTF-8 connection).
pub fn opts(config: &MysqlSourceConfig) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(config.host.clone())
        .tcp_port(config.port)
        .user(Some(config.user.clone()))
        .pass(Some(config.password.expose().to_string()))
        .prefer_socket(false)
}

/// The TLS options of `mode`: `None` for plain text.
fn tls_opts(config: &MysqlSourceConfig, mode: TlsMode) -> Option<SslOpts> {
    match mode {
        TlsMode::Disable => None,
        TlsMode::Prefer | TlsMode::Require => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        TlsMode::VerifyFull => {
            let opts = SslOpts::default();
            Some(match &config.tls_ca {
                Some(ca) => opts
                    .with_root_certs(vec![ca.clone().into_bytes().into()])
                    .with_disable_built_in_roots(true),
                None => opts,
            })
        }
    }
}

/// Opens a connection to the configured server, with TLS per `tlsMode`
/// (`prefer` falls back to plain text only when the server has no TLS).
pub async fn connect(config: &MysqlSourceConfig) -> Result<Conn, Error> {
    let what = || format!("cannot connect to MySQL at {}:{}", config.host, config.port);
    let attempt = |mode| Conn::new(opts(config).ssl_opts(tls_opts(config, mode)));
    let result = match attempt(config.tls_mode).await {
        Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer))
            if config.tls_mode == TlsMode::Prefer =>
        {
            tracing::info!("the server offers no TLS; connecting without (tlsMode prefer)");
            attempt(TlsMode::Disable).await
        }
        other => other,
    };
    result.map_err(|e| {
        let certificate = hstream_io_runtime::error::tls_certificate_hint(&e);
        let error = classify(e, what());
        match certificate {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "x".into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn codes_map_to_kinds_with_hints() {
        let e = classify(server(1045), "cannot connect");
        assert_eq!(e.kind(), ErrorKind::Authentication);
        let e = classify(server(1227), "cannot read the binlog");
        assert_eq!(e.kind(), ErrorKind::Permission);
        assert!(e.hint().unwrap().contains("REPLICATION SLAVE"));
        let e = classify(server(1236), "cannot read the binlog");
        assert_eq!(e.kind(), ErrorKind::Setup);
        assert!(e.hint().unwrap().contains("when_needed"));
        assert_eq!(classify(server(1213), "x").kind(), ErrorKind::Transient);
        assert_eq!(server_code(&server(1236)), Some(1236));
    }
}
