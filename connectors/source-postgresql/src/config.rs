//! Config of `source-postgresql`: the reference's parameters (stream, host,
//! port, user, password, database, table) plus what a user of a logical
//! replication CDC connector expects: several tables, a stable slot, the
//! publication, the snapshot mode, the record format and the slot's fate.

use hstream_io_runtime::validate::ConfigIssue;
use hstream_io_runtime::{Secret, TlsMode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const fn default_port() -> u16 {
    5432
}
const fn default_create_publication() -> bool {
    true
}
const fn default_status_interval() -> u32 {
    10
}
const fn default_snapshot_batch_rows() -> u32 {
    1000
}
const fn default_snapshot_chunk_size() -> u32 {
    10000
}

/// When the connector reads the tables' existing rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// On the first run: existing rows once, then every change (the reference's behaviour).
    #[default]
    Initial,
    /// Existing rows once, then stop (the task completes); no replication slot is kept.
    InitialOnly,
    /// Only changes made after the slot was created; existing rows are not read.
    Never,
    /// Like `initial`, and again whenever the slot is missing or lost
    /// (invalidated by `max_slot_wal_keep_size`, dropped, failover), instead of failing.
    WhenNeeded,
}

/// How each change is encoded in the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// HRecord (JSON flag, a protobuf Struct), as the reference writes. Every
    /// number is a double inside a Struct, so `int8` values beyond ±2^53 lose precision.
    #[default]
    Json,
    /// RAW records holding the same object as JSON text: exact for every value.
    Raw,
}

/// What happens to the replication slot when the task ends for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotOnDelete {
    /// Keep the slot (it retains WAL until it is dropped by hand or reused).
    #[default]
    Keep,
    /// Drop the slot when the task completes, and when the connector is
    /// deleted on `hstream-io serve` (`DROP CONNECTOR` runs the `cleanup`
    /// verb; HServer does not). `initial_only` never keeps one.
    Drop,
}

/// What a `TRUNCATE` of a captured table becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TruncatePolicy {
    /// Nothing in the stream (as Debezium's default `skipped.operations = t`):
    /// a warning in the log with the running count of skipped truncates.
    #[default]
    Skip,
    /// A control record `{"key":null,"value":null,"op":"truncate","table":"schema.table"}`
    /// (header attributes `table` and `op=truncate`, partition key the table name), in order
    /// with the table's changes. sink-postgresql and sink-mysql do not apply it: use it
    /// with consumers that do.
    Record,
    /// Stop the task with an error naming the table (the truncate is not acknowledged, so it
    /// is read again after a restart with another policy).
    Fail,
}

/// What a change to a captured table's columns (`ALTER TABLE … ADD / DROP /
/// RENAME / ALTER COLUMN … TYPE`) does. pgoutput announces the new columns
/// (a Relation message) before the first change written with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DdlPolicy {
    /// Follow the change: records carry the new columns from the first change
    /// made after it (logged with the old and new column lists).
    #[default]
    Evolve,
    /// Stop the task at the first change written with new columns, before
    /// sending it, with an error naming the table and both column lists. The
    /// stop is remembered (KV key `postgresql_ddl_stop`): a restart stops there
    /// again until the policy is changed to `evolve`.
    Strict,
    /// As `evolve`: unlike MySQL's binlog, pgoutput describes every change with
    /// its own columns, so no change is ever unreadable or skipped. Accepted
    /// so one config shape fits both CDC sources.
    Ignore,
}

/// Config of `source-postgresql`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgSourceConfig {
    /// Stream the changes are appended to. With several tables, `{schema}`
    /// and `{table}` in the name give one stream per table (e.g.
    /// `pg_{schema}_{table}`); without them all tables share the stream and
    /// each record names its table.
    #[schemars(length(min = 1, max = 255), extend("examples" = ["stream01", "pg_{table}"]))]
    pub stream: String,
    /// PostgreSQL host name or IP address.
    #[schemars(length(min = 1), extend("examples" = ["127.0.0.1"]))]
    pub host: String,
    /// PostgreSQL port.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// User the connector connects as; needs the REPLICATION attribute and
    /// SELECT on the tables (and table ownership to create the publication).
    #[schemars(length(min = 1))]
    pub user: String,
    /// Password of `user`.
    pub password: Secret,
    /// Database that holds the tables.
    #[schemars(length(min = 1))]
    pub database: String,
    /// TLS mode of the connections (snapshot and replication).
    #[serde(default)]
    pub tls_mode: TlsMode,
    /// CA certificate(s) (PEM text) trusted for `verify-full`; unset: the
    /// built-in web PKI roots.
    #[serde(default)]
    #[schemars(extend("ui:type" = "file", "ui:options" = {"sensitive": true}))]
    pub tls_ca: Option<String>,
    /// Table to capture; without a dot it is `public.<table>`. Names are used
    /// exactly as written (case-sensitive, no quoting needed).
    #[serde(default)]
    #[schemars(length(min = 1), extend("examples" = ["t1", "public.t1"]))]
    pub table: Option<String>,
    /// More tables to capture, as `table` (either or both may be given).
    #[serde(default)]
    #[schemars(extend("examples" = [["orders", "sales.customers"]]))]
    pub tables: Vec<String>,
    /// Logical replication slot, created on the first run and reused on every
    /// restart. Default: `hstream_io_<task id>` (lowercase letters, digits and
    /// `_` only), or `hstream_io_<stream>` when the task has no id.
    #[serde(default)]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9_]+$"))]
    pub slot_name: Option<String>,
    /// Publication the slot decodes with. Default: the slot name.
    #[serde(default)]
    #[schemars(length(min = 1, max = 63))]
    pub publication: Option<String>,
    /// Create the publication (or add missing tables to it) when needed.
    #[serde(default = "default_create_publication")]
    pub create_publication: bool,
    /// When the tables' existing rows are read.
    #[serde(default)]
    pub snapshot_mode: SnapshotMode,
    /// Rows per snapshot chunk: each table is read in primary-key order, this
    /// many rows at a time; after a crash the snapshot resumes after the last
    /// chunk HStream acknowledged. A chunk is held in memory while it is sent.
    #[serde(default = "default_snapshot_chunk_size")]
    #[schemars(range(min = 1, max = 1000000))]
    pub snapshot_chunk_size: u32,
    /// Rows per append while reading existing rows.
    #[serde(default = "default_snapshot_batch_rows")]
    #[schemars(range(min = 1, max = 100000))]
    pub snapshot_batch_rows: u32,
    /// Record encoding.
    #[serde(default)]
    pub format: RecordFormat,
    /// What a `TRUNCATE` of a captured table becomes.
    #[serde(default)]
    pub truncate: TruncatePolicy,
    /// What a change to a captured table's columns does.
    #[serde(default)]
    pub ddl_policy: DdlPolicy,
    /// What happens to the slot when the task completes or the connector is deleted.
    #[serde(default)]
    pub slot_on_delete: SlotOnDelete,
    /// Seconds between two standby status updates (confirmed LSN feedback).
    #[serde(default = "default_status_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub status_interval_seconds: u32,
}

/// A table to capture: schema and name, unquoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// Schema (namespace).
    pub schema: String,
    /// Table name.
    pub name: String,
}

impl TableName {
    /// `t` → `public.t`; `s.t` → `s.t` (the first dot splits).
    pub fn parse(text: &str) -> Self {
        match text.split_once('.') {
            Some((schema, name)) => Self {
                schema: schema.into(),
                name: name.into(),
            },
            None => Self {
                schema: "public".into(),
                name: text.into(),
            },
        }
    }

    /// `"schema"."table"`, quoted for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// An identifier quoted for SQL.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A string literal quoted for SQL.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `prefix` + lowercase letters, digits and `_` of `raw`, at most 63 bytes.
fn sanitised_name(prefix: &str, raw: &str) -> String {
    let mut name = String::from(prefix);
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        name.push(if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        });
    }
    name.truncate(63);
    name
}

impl PgSourceConfig {
    /// The tables, `table` first, without duplicates.
    pub fn table_names(&self) -> Vec<TableName> {
        let mut out: Vec<TableName> = Vec::new();
        for t in self.table.iter().chain(self.tables.iter()) {
            let t = TableName::parse(t);
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    /// The slot name: configured, or derived from the task id (else the stream).
    pub fn slot(&self, task_id: Option<&str>) -> String {
        if let Some(slot) = &self.slot_name {
            return slot.clone();
        }
        match task_id {
            Some(id) => sanitised_name("hstream_io_", id),
            None => sanitised_name("hstream_io_", &self.stream),
        }
    }

    /// The publication name: configured, or the slot name.
    pub fn publication_name(&self, slot: &str) -> String {
        self.publication.clone().unwrap_or_else(|| slot.to_string())
    }

    /// The stream of `table`: `stream` with `{schema}` and `{table}` replaced.
    pub fn stream_for(&self, table: &TableName) -> String {
        self.stream
            .replace("{schema}", &table.schema)
            .replace("{table}", &table.name)
    }

    /// Whether several tables write into one stream (records then name their table).
    pub fn shared_stream(&self) -> bool {
        !self.stream.contains("{table}") && self.table_names().len() > 1
    }

    /// Cross-field rules: at least one table, well-formed names.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.table.is_none() && self.tables.is_empty() {
            issues.push(ConfigIssue::new(
                "/table",
                "is required unless `tables` lists at least one table",
            ));
        }
        for (i, t) in self.tables.iter().enumerate() {
            let parsed = TableName::parse(t);
            if parsed.schema.is_empty() || parsed.name.is_empty() {
                issues.push(ConfigIssue::new(
                    format!("/tables/{i}"),
                    "must be `table` or `schema.table`",
                ));
            }
        }
        if let Some(t) = &self.table {
            let parsed = TableName::parse(t);
            if parsed.schema.is_empty() || parsed.name.is_empty() {
                issues.push(ConfigIssue::new(
                    "/table",
                    "must be `table` or `schema.table`",
                ));
            }
        }
        if !self.create_publication && self.publication.is_none() {
            issues.push(ConfigIssue::new(
                "/publication",
                "is required when `createPublication` is false (name the publication to use)",
            ));
        }
        if let Some(ca) = &self.tls_ca {
            if self.tls_mode != TlsMode::VerifyFull {
                issues.push(ConfigIssue::new(
                    "/tlsCa",
                    "is only used with tlsMode `verify-full`",
                ));
            } else if let Err(e) = crate::tls::ca_certificates(ca) {
                issues.push(ConfigIssue::new("/tlsCa", e.to_string()));
            }
        }
        if self.stream.contains("{schema}") && !self.stream.contains("{table}") {
            issues.push(ConfigIssue::new(
                "/stream",
                "uses `{schema}` without `{table}`: tables of one schema would share a stream; add `{table}`",
            ));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> PgSourceConfig {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({"stream":"s","host":"h","user":"u","password":"p","database":"d","table":"t1"})
    }

    #[test]
    fn table_without_dot_is_in_public() {
        let c = config(base());
        assert_eq!(c.port, 5432);
        assert_eq!(c.table_names(), vec![TableName::parse("public.t1")]);
        assert_eq!(c.table_names()[0].quoted(), r#""public"."t1""#);
    }

    #[test]
    fn slot_is_stable_and_sanitised() {
        let c = config(base());
        assert_eq!(
            c.slot(Some("6F0E2C56-aa.b")),
            "hstream_io_6f0e2c56_aa_b",
            "derived from the task id"
        );
        assert_eq!(c.slot(None), "hstream_io_s");
        assert_eq!(c.publication_name("x"), "x");
        let long = "x".repeat(100);
        assert_eq!(c.slot(Some(&long)).len(), 63);
    }

    #[test]
    fn stream_per_table_and_shared_stream() {
        let mut j = base();
        j["tables"] = serde_json::json!(["s2.t2", "t1"]);
        let c = config(j.clone());
        assert_eq!(c.table_names().len(), 2, "duplicates removed");
        assert!(c.shared_stream());
        j["stream"] = "pg_{schema}_{table}".into();
        let c = config(j);
        assert!(!c.shared_stream());
        assert_eq!(c.stream_for(&TableName::parse("s2.t2")), "pg_s2_t2");
    }

    #[test]
    fn a_table_is_required() {
        let mut j = base();
        j.as_object_mut().unwrap().remove("table");
        let issues = config(j).validate();
        assert_eq!(issues[0].pointer, "/table");
        assert!(config(base()).validate().is_empty());
    }

    #[test]
    fn an_existing_publication_must_be_named() {
        let mut j = base();
        j["createPublication"] = false.into();
        let issues = config(j.clone()).validate();
        assert_eq!(issues[0].pointer, "/publication");
        j["publication"] = "pub1".into();
        assert!(config(j).validate().is_empty());
    }

    #[test]
    fn tls_defaults_to_prefer_and_a_ca_needs_verify_full() {
        let c = config(base());
        assert_eq!(c.tls_mode, TlsMode::Prefer);
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBSTCB8KADAgECAhQ=\n-----END CERTIFICATE-----\n";
        let mut j = base();
        j["tlsCa"] = pem.into();
        let issues = config(j.clone()).validate();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].pointer, "/tlsCa");
        j["tlsMode"] = "verify-full".into();
        assert!(config(j.clone()).validate().is_empty());
        j["tlsCa"] = "not PEM".into();
        assert_eq!(config(j).validate()[0].pointer, "/tlsCa");
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
