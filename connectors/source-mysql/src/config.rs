//! Config of `source-mysql`: the reference's parameters (`stream`, `host`,
//! `port`, `user`, `password`, `database`, `table`, `serverTimeZone`) plus
//! several tables, `serverId`, snapshot mode, record format, zero-date
//! handling and the heartbeat interval.

use hstream_io_runtime::Secret;
use hstream_io_runtime::TlsMode;
use hstream_io_runtime::validate::ConfigIssue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const fn default_port() -> u16 {
    3306
}
const fn default_heartbeat() -> u32 {
    10
}
const fn default_min_retention() -> u32 {
    24
}
const fn default_chunk() -> u32 {
    10_000
}

/// The placeholder in `stream` replaced by each table's name (one stream per table).
pub const TABLE_PLACEHOLDER: &str = "{table}";

/// Config of `source-mysql`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlSourceConfig {
    /// Target stream. With several tables, either one shared stream (each
    /// record then names its table in a `table` field) or, when the name
    /// contains `{table}`, one stream per table (`cdc_{table}` → `cdc_orders`).
    #[schemars(length(min = 1, max = 255), extend("examples" = ["stream01", "cdc_{table}"]))]
    pub stream: String,
    /// MySQL or MariaDB host name.
    #[schemars(length(min = 1), extend("examples" = ["127.0.0.1", "localhost"]))]
    pub host: String,
    /// Port number.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// User name; needs REPLICATION SLAVE, REPLICATION CLIENT (BINLOG MONITOR
    /// on MariaDB) and SELECT on the captured tables.
    #[schemars(length(min = 1))]
    pub user: String,
    /// Password of the user.
    pub password: Secret,
    /// Database (schema) of the captured tables.
    #[schemars(length(min = 1), extend("examples" = ["shop"]))]
    pub database: String,
    /// One table to capture (the reference's parameter); `db.t` names a table
    /// of another database. Use `tables` for several.
    #[serde(default)]
    #[schemars(length(min = 1), extend("examples" = ["t1", "shop.orders"]))]
    pub table: Option<String>,
    /// Several tables to capture, each `t` (in `database`) or `db.t`.
    /// Combined with `table` when both are given.
    #[serde(default)]
    #[schemars(extend("examples" = [["orders", "customers"]]))]
    pub tables: Vec<String>,
    /// The server's time zone (the reference's `connectionTimeZone`). Accepted
    /// for compatibility: TIMESTAMP values are read as UTC instants in both the
    /// snapshot (session `time_zone='+00:00'`) and the binlog (epoch seconds),
    /// so they are exact whatever this says.
    #[serde(default)]
    #[schemars(extend("examples" = ["UTC"]))]
    pub server_time_zone: Option<String>,
    /// Replication client id; must be unique among all replicas and CDC tasks
    /// of the server. Default: derived from the task id (a stable value in
    /// 1073741824..2147483647), so two tasks never share one.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub server_id: Option<u32>,
    /// When to copy the rows that exist before streaming starts.
    #[serde(default)]
    pub snapshot_mode: SnapshotMode,
    /// Rows per snapshot chunk: tables are read in primary-key order and the
    /// progress (last key of the chunk) is committed after each chunk's
    /// records are acknowledged, so a task stopped mid-snapshot resumes after
    /// the last such chunk instead of from the first row.
    #[serde(default = "default_chunk")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub snapshot_chunk_size: u32,
    /// How each record is encoded.
    #[serde(default)]
    pub record_format: RecordFormat,
    /// What a schema change (DDL) of a captured table does.
    #[serde(default)]
    pub ddl_policy: DdlPolicy,
    /// What zero dates (`0000-00-00`, `0000-00-00 00:00:00`) become.
    #[serde(default)]
    pub zero_date: ZeroDate,
    /// Seconds between the server's heartbeats while the binlog is idle, so a
    /// dead connection is noticed; 0 disables them.
    #[serde(default = "default_heartbeat")]
    #[schemars(range(min = 0, max = 3600))]
    pub heartbeat_interval_seconds: u32,
    /// Shortest binlog retention `check` accepts, in hours: it fails when the
    /// server purges binlogs sooner (`binlog_expire_logs_seconds`, or
    /// `expire_logs_days` on older servers), because a task stopped for
    /// longer than that could not resume and would need a new snapshot. A
    /// server that never purges always passes; 0 skips the check.
    #[serde(default = "default_min_retention")]
    #[schemars(range(min = 0, max = 87_600))]
    pub min_binlog_retention_hours: u32,
    /// TLS mode of the connections (snapshot and binlog).
    #[serde(default)]
    pub tls_mode: TlsMode,
    /// CA certificate(s) (PEM text) trusted for `verify-full`; unset: the
    /// built-in web PKI roots.
    #[serde(default)]
    #[schemars(extend("ui:type" = "file", "ui:options" = {"sensitive": true}))]
    pub tls_ca: Option<String>,
}

/// When the connector copies existing rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Copy existing rows on the first start (no stored position), then stream changes.
    #[default]
    Initial,
    /// Copy existing rows, then stop (the task completes).
    InitialOnly,
    /// Never copy; stream changes from the current end of the binlog.
    Never,
    /// Like `initial`, and copy again when the stored binlog position is no
    /// longer on the server (purged), instead of failing.
    WhenNeeded,
}

/// Handling of DDL on captured tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DdlPolicy {
    /// Follow the change: the table's definition is read again after any DDL
    /// and records carry the new columns. A row that cannot be mapped to the
    /// current definition (older than a DROP COLUMN and without column names
    /// in the binlog) stops the task with the position.
    #[default]
    Evolve,
    /// Stop the task at any DDL statement that names a captured table, before
    /// reading past it, so an operator decides (a restart stops there again
    /// until the policy is changed).
    Strict,
    /// Like `evolve`, but never stop for a schema change: a row that cannot be
    /// mapped to the current definition is skipped with a warning naming the
    /// table and position.
    Ignore,
}

/// Record encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// HStream JSON record (protobuf Struct), as the reference: numbers travel
    /// as doubles, so integers beyond 2^53 lose precision.
    #[default]
    Json,
    /// RAW record holding the same object as JSON text: integers stay exact.
    Raw,
}

/// Zero-date handling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ZeroDate {
    /// `null`, as Debezium does.
    #[default]
    Null,
    /// The zero value as text, e.g. `"0000-00-00"` or `"0000-00-00T00:00:00"`.
    String,
}

/// A captured table: database and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// Database (schema).
    pub database: String,
    /// Table name.
    pub name: String,
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.database, self.name)
    }
}

impl TableRef {
    /// `` `db`.`t` `` for SQL.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.database),
            quote_ident(&self.name)
        )
    }
}

/// A MySQL identifier in backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl MysqlSourceConfig {
    /// The captured tables, in config order, without duplicates.
    pub fn table_refs(&self) -> Vec<TableRef> {
        let mut out: Vec<TableRef> = Vec::new();
        for spec in self.table.iter().chain(self.tables.iter()) {
            let r = match spec.split_once('.') {
                Some((db, t)) => TableRef {
                    database: db.to_string(),
                    name: t.to_string(),
                },
                None => TableRef {
                    database: self.database.clone(),
                    name: spec.clone(),
                },
            };
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// The stream of `table`.
    pub fn stream_for(&self, table: &TableRef) -> String {
        self.stream.replace(TABLE_PLACEHOLDER, &table.name)
    }

    /// True when several tables share one stream, so records name their table.
    pub fn shared_stream(&self) -> bool {
        !self.stream.contains(TABLE_PLACEHOLDER) && self.table_refs().len() > 1
    }

    /// The replication server id: configured, else derived from `task_id`
    /// (else from host, port and tables) into 1073741824..2147483647.
    pub fn effective_server_id(&self, task_id: Option<&str>) -> u32 {
        if let Some(id) = self.server_id {
            return id;
        }
        let seed = match task_id {
            Some(id) => id.to_string(),
            None => format!(
                "{}:{}/{:?}",
                self.host,
                self.port,
                self.table_refs()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            ),
        };
        // FNV-1a: stable across builds and platforms.
        let mut h: u32 = 0x811c_9dc5;
        for b in seed.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        0x4000_0000 | (h & 0x3fff_ffff)
    }

    /// Cross-field rules: at least one table; names well formed; one stream per
    /// table must give distinct names.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.table.is_none() && self.tables.is_empty() {
            issues.push(ConfigIssue::new(
                "",
                "set `table` or `tables`: at least one table must be captured",
            ));
        }
        let specs = self.table.iter().map(|t| ("/table".to_string(), t)).chain(
            self.tables
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("/tables/{i}"), t)),
        );
        for (pointer, spec) in specs {
            let bad = spec.is_empty()
                || spec.split('.').count() > 2
                || spec.split('.').any(str::is_empty);
            if bad {
                issues.push(ConfigIssue::new(
                    pointer,
                    "must be a table name `t` or `database.t` (one dot at most, no empty part)",
                ));
            }
        }
        if self.stream.contains(TABLE_PLACEHOLDER) {
            let mut names: Vec<String> = self
                .table_refs()
                .iter()
                .map(|t| self.stream_for(t))
                .collect();
            let n = names.len();
            names.sort();
            names.dedup();
            if names.len() != n {
                issues.push(ConfigIssue::new(
                    "/stream",
                    "`{table}` gives two tables of different databases the same stream; \
                     use distinct table names or one shared stream",
                ));
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

    fn parse(v: serde_json::Value) -> MysqlSourceConfig {
        serde_json::from_value(v).expect("config parses")
    }

    fn base() -> serde_json::Value {
        json!({"stream": "s", "host": "h", "user": "u", "password": "p",
               "database": "shop", "table": "orders"})
    }

    #[test]
    fn tls_defaults_to_prefer_and_a_ca_needs_verify_full() {
        let c = parse(base());
        assert_eq!(c.tls_mode, TlsMode::Prefer);
        let mut v = base();
        v["tlsCa"] = json!("-----BEGIN CERTIFICATE-----");
        let issues = parse(v.clone()).validate();
        assert_eq!(issues.len(), 1);
        v["tlsMode"] = json!("verify-full");
        assert!(parse(v).validate().is_empty());
    }

    #[test]
    fn reference_config_gets_defaults() {
        let c = parse(base());
        assert_eq!(c.port, 3306);
        assert_eq!(c.snapshot_mode, SnapshotMode::Initial);
        assert_eq!(c.record_format, RecordFormat::Json);
        assert_eq!(c.zero_date, ZeroDate::Null);
        assert_eq!(c.snapshot_chunk_size, 10_000);
        assert_eq!(c.ddl_policy, DdlPolicy::Evolve);
        assert_eq!(
            c.table_refs(),
            vec![TableRef {
                database: "shop".into(),
                name: "orders".into()
            }]
        );
        assert!(c.validate().is_empty());
        assert!(!c.shared_stream());
        assert_eq!(format!("{:?}", c.password), "******");
    }

    #[test]
    fn several_tables_and_stream_per_table() {
        let mut v = base();
        v["tables"] = json!(["customers", "crm.leads", "orders"]);
        v["stream"] = json!("cdc_{table}");
        v["snapshotMode"] = json!("when_needed");
        v["recordFormat"] = json!("raw");
        let c = parse(v);
        let t = c.table_refs();
        assert_eq!(t.len(), 3, "duplicate `orders` removed");
        assert_eq!(t[2].to_string(), "crm.leads");
        assert_eq!(c.stream_for(&t[2]), "cdc_leads");
        assert!(!c.shared_stream());
        assert_eq!(c.snapshot_mode, SnapshotMode::WhenNeeded);
        assert_eq!(c.record_format, RecordFormat::Raw);
    }

    #[test]
    fn validation_reports_pointers() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("table");
        assert_eq!(parse(v.clone()).validate()[0].pointer, "");
        v["tables"] = json!(["a..b"]);
        assert_eq!(parse(v.clone()).validate()[0].pointer, "/tables/0");
        v["tables"] = json!(["x.t", "y.t"]);
        v["stream"] = json!("s_{table}");
        assert_eq!(parse(v).validate()[0].pointer, "/stream");
    }

    #[test]
    fn server_id_is_stable_and_in_range() {
        let c = parse(base());
        let a = c.effective_server_id(Some("task-1"));
        assert_eq!(a, c.effective_server_id(Some("task-1")));
        assert_ne!(a, c.effective_server_id(Some("task-2")));
        assert!((0x4000_0000..=0x7fff_ffff).contains(&a));
        let mut v = base();
        v["serverId"] = json!(42);
        assert_eq!(parse(v).effective_server_id(Some("task-1")), 42);
    }

    #[test]
    fn quotes_identifiers() {
        let t = TableRef {
            database: "d".into(),
            name: "we`ird".into(),
        };
        assert_eq!(t.quoted(), "`d`.`we``ird`");
    }
}
