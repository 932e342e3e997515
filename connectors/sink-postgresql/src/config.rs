//! Config of `sink-postgresql`: the reference's parameters (stream, host, port,
//! user, password, database, table), the shared sink options, and what a user
//! moving data into PostgreSQL expects (schema, TLS, key columns, pool size,
//! exactly-once).

use hstream_io_runtime::TlsMode;
use hstream_io_runtime::validate::ConfigIssue;
use hstream_io_runtime::{Secret, SinkOptions};
use schemars::JsonSchema;
use serde::Deserialize;

const fn default_port() -> u16 {
    5432
}
fn default_schema() -> String {
    "public".into()
}
const fn default_pool_size() -> u32 {
    2
}
const fn default_exactly_once() -> bool {
    true
}
fn default_progress_table() -> String {
    "hstream_io_progress".into()
}

/// Config of `sink-postgresql`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgSinkConfig {
    /// Stream whose records are written to the table.
    #[schemars(length(min = 1, max = 255), extend("examples" = ["stream01"]))]
    pub stream: String,
    /// PostgreSQL host name or IP address.
    #[schemars(length(min = 1), extend("examples" = ["127.0.0.1"]))]
    pub host: String,
    /// PostgreSQL port.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// User the sink connects as; needs INSERT, UPDATE and DELETE on the table
    /// (and CREATE on its schema for the progress table when `exactlyOnce` is on).
    #[schemars(length(min = 1))]
    pub user: String,
    /// Password of `user`.
    pub password: Secret,
    /// Database that holds the table.
    #[schemars(length(min = 1))]
    pub database: String,
    /// Target table. `schema.table` is accepted and overrides `schema`. Names
    /// are used exactly as written (case-sensitive, no quoting needed).
    #[schemars(length(min = 1), extend("examples" = ["t1", "sales.orders"]))]
    pub table: String,
    /// Schema of the table (and of the progress table).
    #[serde(default = "default_schema")]
    #[schemars(length(min = 1))]
    pub schema: String,
    /// Columns that identify a row, instead of the table's primary key. They
    /// must be covered by a unique index. Unset: the primary key, else the
    /// first unique index whose columns are all NOT NULL; a table with neither
    /// is append-only (plain inserts, deletes are rejected).
    #[serde(default)]
    #[schemars(length(min = 1), extend("examples" = [["k1", "k2"]]))]
    pub key_columns: Option<Vec<String>>,
    /// TLS mode of the connection.
    #[serde(default)]
    pub tls_mode: TlsMode,
    /// CA certificate(s) (PEM text) trusted for `verify-full`; unset: the
    /// built-in web PKI roots.
    #[serde(default)]
    #[schemars(extend("ui:type" = "file", "ui:options" = {"sensitive": true}))]
    pub tls_ca: Option<String>,
    /// Connections kept open to PostgreSQL. Batches are written one at a time,
    /// so more than one only saves reconnecting after a connection is lost.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 64))]
    pub pool_size: u32,
    /// Exactly-once delivery: the position of every shard is stored in
    /// `progressTable` in the same transaction as the rows, and the sink
    /// resumes from it, so no record is applied twice even into a table without
    /// a key. Off: at-least-once (rows are upserted, so replays are harmless on
    /// keyed tables).
    #[serde(default = "default_exactly_once")]
    pub exactly_once: bool,
    /// Table (in `schema`) that keeps the exactly-once positions; created if missing.
    #[serde(default = "default_progress_table")]
    #[schemars(length(min = 1, max = 63))]
    pub progress_table: String,
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub options: SinkOptions,
}

impl PgSinkConfig {
    /// The target as (schema, table): `table` may be `schema.table`.
    pub fn target(&self) -> (String, String) {
        match self.table.split_once('.') {
            Some((schema, table)) if !schema.is_empty() && !table.is_empty() => {
                (schema.to_string(), table.to_string())
            }
            _ => (self.schema.clone(), self.table.clone()),
        }
    }

    /// Connection options (session time zone UTC, statements not logged).
    pub(crate) fn connect_options(&self) -> sqlx::postgres::PgConnectOptions {
        use sqlx::ConnectOptions;
        use sqlx::postgres::{PgConnectOptions, PgSslMode};
        let mut options = PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .password(self.password.expose())
            .database(&self.database)
            .application_name("hstream-io sink-postgresql")
            .options([("TimeZone", "UTC")])
            .ssl_mode(match self.tls_mode {
                TlsMode::Disable => PgSslMode::Disable,
                TlsMode::Prefer => PgSslMode::Prefer,
                TlsMode::Require => PgSslMode::Require,
                TlsMode::VerifyFull => PgSslMode::VerifyFull,
            });
        if let Some(ca) = &self.tls_ca {
            options = options.ssl_root_cert_from_pem(ca.as_bytes().to_vec());
        }
        options.disable_statement_logging()
    }

    /// The (lazily connecting) pool of `poolSize` connections.
    pub(crate) fn pool(&self) -> sqlx::PgPool {
        let port = self.port;
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(self.pool_size)
            .acquire_timeout(std::time::Duration::from_secs(30))
            // sqlx leaves Nagle on: a batch's last partial segment would wait
            // for the server's delayed ACK (see `hstream_io_runtime::net`).
            .after_connect(move |_conn, _meta| {
                Box::pin(async move {
                    hstream_io_runtime::net::disable_nagle_to_port(port);
                    Ok(())
                })
            })
            .connect_lazy_with(self.connect_options())
    }

    /// Cross-field rules.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Some(columns) = &self.key_columns {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in columns.iter().enumerate() {
                if c.is_empty() {
                    issues.push(ConfigIssue::new(
                        format!("/keyColumns/{i}"),
                        "must be a column name, not empty",
                    ));
                } else if !seen.insert(c) {
                    issues.push(ConfigIssue::new(
                        format!("/keyColumns/{i}"),
                        format!("column `{c}` is listed twice"),
                    ));
                }
            }
        }
        if self.tls_ca.is_some() && self.tls_mode != TlsMode::VerifyFull {
            issues.push(ConfigIssue::new(
                "/tlsCa",
                "is only used with tlsMode `verify-full`",
            ));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> PgSinkConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reference_config_gets_defaults() {
        let c = parse(
            json!({"stream":"s","host":"h","user":"u","password":"p","database":"d","table":"t1"}),
        );
        assert_eq!(c.port, 5432);
        assert_eq!(c.target(), ("public".into(), "t1".into()));
        assert!(c.exactly_once);
        assert_eq!(c.tls_mode, TlsMode::Prefer);
        assert!(c.validate().is_empty());
    }

    #[test]
    fn schema_dot_table_and_rules() {
        let c = parse(
            json!({"stream":"s","host":"h","user":"u","password":"p","database":"d",
            "table":"sales.orders","keyColumns":["a","a"],"tlsMode":"require","tlsCa":"x"}),
        );
        assert_eq!(c.target(), ("sales".into(), "orders".into()));
        let pointers: Vec<_> = c.validate().into_iter().map(|i| i.pointer).collect();
        assert_eq!(pointers, vec!["/keyColumns/1", "/tlsCa"]);
    }
}
