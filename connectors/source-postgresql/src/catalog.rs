//! Normal SQL against the source database: connecting, the tables' shape,
//! types, the publication and the replication slot.

use hstream_io_runtime::{Error, ErrorKind, Result};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::config::{PgSourceConfig, TableName, quote_ident};
use crate::error;
use crate::types::{SESSION_OPTIONS, TYPE_QUERY, TypeCache, TypeRow};

/// Opens a normal SQL session with the pinned session settings, with TLS
/// per `tlsMode` (`prefer` falls back to plain text only when the server has
/// no TLS).
pub async fn connect(config: &PgSourceConfig) -> Result<Client> {
    let (ssl_mode, tls) = crate::tls::sql(config)?;
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .password(config.password.expose())
        .dbname(&config.database)
        .options(SESSION_OPTIONS)
        .application_name("hstream-io source-postgresql")
        .ssl_mode(ssl_mode)
        .connect_timeout(std::time::Duration::from_secs(10));
    let (client, connection) = pg.connect(tls).await.map_err(|e| {
        error::sql(
            format!(
                "cannot connect to PostgreSQL at {}:{} (database `{}`, user `{}`)",
                config.host, config.port, config.database, config.user
            ),
            e,
        )
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "PostgreSQL session ended");
        }
    });
    Ok(client)
}

/// Rows of a simple query, each column as text (`None` for NULL).
pub async fn simple_rows(
    client: &Client,
    sql: &str,
    what: &str,
) -> Result<Vec<Vec<Option<String>>>> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| error::sql(what.to_string(), e))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// Every type of the database, resolved ([`TypeCache`]).
pub async fn load_types(client: &Client) -> Result<TypeCache> {
    let rows = simple_rows(client, TYPE_QUERY, "cannot read pg_type").await?;
    let num = |v: &Option<String>| {
        v.as_deref()
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let byte = |v: &Option<String>| v.as_deref().and_then(|s| s.bytes().next()).unwrap_or(b' ');
    let rows: Vec<TypeRow> = rows
        .iter()
        .filter(|r| r.len() >= 6)
        .map(|r| TypeRow {
            oid: num(&r[0]),
            typtype: byte(&r[1]),
            typelem: num(&r[2]),
            typbasetype: num(&r[3]),
            typdelim: byte(&r[4]),
            typcategory: byte(&r[5]),
        })
        .collect();
    Ok(TypeCache::from_rows(&rows))
}

/// A captured table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Its name.
    pub name: TableName,
    /// Columns pgoutput sends (not dropped, not generated), in order: name and type OID.
    pub columns: Vec<(String, u32)>,
    /// Primary-key columns, in key order.
    pub primary_key: Vec<String>,
    /// The primary-key columns' types and collations, in key order.
    pub key_columns: Vec<KeyColumn>,
    /// The planner's row estimate (`pg_class.reltuples`; 0 when never analysed).
    pub rows_estimate: u64,
    /// No primary key, but REPLICA IDENTITY FULL: the key is the whole row
    /// (`primary_key` and `key_columns` then list every column).
    pub whole_row_key: bool,
}

/// A primary-key column's type, as needed to order keys like PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// `format_type` of the column (e.g. `character varying(20)`).
    pub type_sql: String,
    /// Schema-qualified, quoted collation (`pg_catalog."C"`), for collatable types.
    pub collation: Option<String>,
}

/// Describes `table`, or fails with what is wrong and how to fix it.
pub async fn describe_table(client: &Client, table: &TableName) -> Result<TableInfo> {
    let what = format!("cannot read the definition of `{table}`");
    let row = client
        .query_opt(
            "SELECT c.oid, greatest(c.reltuples, 0)::float8, c.relreplident::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| error::sql(what.clone(), e))?
        .ok_or_else(|| {
            Error::new(ErrorKind::Setup, format!("table `{table}` does not exist"))
                .with_hint("Check `table`/`tables` (without a dot a table is looked up in schema `public`; names are case-sensitive).")
        })?;
    let oid: u32 = row.get(0);
    let rows_estimate = row.get::<_, f64>(1) as u64;
    let replica_identity_full = row.get::<_, String>(2) == "f";
    let columns = client
        .query(
            "SELECT attname::text, atttypid FROM pg_catalog.pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' \
             ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(|e| error::sql(what.clone(), e))?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, u32>(1)))
        .collect();
    let mut key_columns: Vec<KeyColumn> = client
        .query(
            "SELECT a.attname::text, a.atttypid, format_type(a.atttypid, a.atttypmod), \
             (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.collname) \
              FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace \
              WHERE c.oid = a.attcollation) \
             FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1 AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid],
        )
        .await
        .map_err(|e| error::sql(what.clone(), e))?
        .iter()
        .map(|r| KeyColumn {
            name: r.get(0),
            type_oid: r.get(1),
            type_sql: r.get(2),
            collation: r.get(3),
        })
        .collect();
    let whole_row_key = key_columns.is_empty() && replica_identity_full;
    if whole_row_key {
        key_columns = client
            .query(
                "SELECT a.attname::text, a.atttypid, format_type(a.atttypid, a.atttypmod), \
                 (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.collname) \
                  FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace \
                  WHERE c.oid = a.attcollation) \
                 FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
                 ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .map_err(|e| error::sql(what, e))?
            .iter()
            .map(|r| KeyColumn {
                name: r.get(0),
                type_oid: r.get(1),
                type_sql: r.get(2),
                collation: r.get(3),
            })
            .collect();
    }
    Ok(TableInfo {
        name: table.clone(),
        columns,
        primary_key: key_columns.iter().map(|k| k.name.clone()).collect(),
        key_columns,
        rows_estimate,
        whole_row_key,
    })
}

/// The error for a table without a primary key (nor REPLICA IDENTITY FULL).
pub fn no_primary_key(table: &TableName) -> Error {
    Error::new(
        ErrorKind::Setup,
        format!("table `{table}` has no primary key"),
    )
    .with_hint(format!(
        "Records are keyed by the primary key: add one, e.g. `ALTER TABLE {t} ADD PRIMARY KEY (<columns>);`, or key them by the whole row with `ALTER TABLE {t} REPLICA IDENTITY FULL;`.",
        t = table.quoted()
    ))
}

/// The publication's tables, or `None` when it does not exist.
pub async fn publication_tables(
    client: &Client,
    publication: &str,
) -> Result<Option<Vec<TableName>>> {
    let what = format!("cannot read publication `{publication}`");
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| error::sql(what.clone(), e))?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_catalog.pg_publication_tables WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| error::sql(what, e))?;
    Ok(Some(
        rows.iter()
            .map(|r| TableName {
                schema: r.get(0),
                name: r.get(1),
            })
            .collect(),
    ))
}

/// The SQL that makes `publication` cover `missing` (creating it when `exists` is false).
pub fn publication_sql(publication: &str, exists: bool, missing: &[TableName]) -> String {
    let list = missing
        .iter()
        .map(TableName::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    if exists {
        format!(
            "ALTER PUBLICATION {} ADD TABLE {list}",
            quote_ident(publication)
        )
    } else {
        format!(
            "CREATE PUBLICATION {} FOR TABLE {list}",
            quote_ident(publication)
        )
    }
}

/// Makes sure `publication` exists and covers `tables`, creating or
/// extending it when `create` allows, else failing with the SQL to run.
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
    tables: &[TableName],
    create: bool,
) -> Result<()> {
    let current = publication_tables(client, publication).await?;
    let missing: Vec<TableName> = tables
        .iter()
        .filter(|t| current.as_ref().is_none_or(|c| !c.contains(t)))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sql = publication_sql(publication, current.is_some(), &missing);
    if !create {
        let what = if current.is_some() {
            format!("publication `{publication}` does not include every captured table")
        } else {
            format!("publication `{publication}` does not exist")
        };
        return Err(Error::new(ErrorKind::Setup, what).with_hint(format!(
            "Run `{sql};` as the tables' owner, or set createPublication to true."
        )));
    }
    tracing::info!(publication, "creating or extending the publication");
    client.batch_execute(&sql).await.map_err(|e| {
        error::sql(format!("cannot create or extend publication `{publication}`"), e)
    })
    .map_err(|e| e.with_hint(format!("Run `{sql};` as the tables' owner (or a superuser), or grant ownership of the tables to the connector's user.")))
}

/// A replication slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone)]
pub struct SlotState {
    /// `database`.
    pub database: Option<String>,
    /// `plugin`.
    pub plugin: Option<String>,
    /// `wal_status`: reserved, extended, unreserved or lost.
    pub wal_status: Option<String>,
    /// `active_pid`, when a session holds the slot.
    pub active_pid: Option<i32>,
    /// `confirmed_flush_lsn` as text.
    pub confirmed_flush_lsn: Option<String>,
}

impl SlotState {
    /// Why this slot cannot be resumed for `database`, if it cannot.
    pub fn problem(&self, slot: &str, database: &str) -> Option<String> {
        if self.wal_status.as_deref() == Some("lost") {
            return Some(format!(
                "replication slot `{slot}` is invalidated (wal_status = lost): the WAL it needed was removed, usually because max_slot_wal_keep_size was exceeded"
            ));
        }
        if self.plugin.as_deref() != Some("pgoutput") {
            return Some(format!(
                "replication slot `{slot}` uses plugin `{}`, not pgoutput",
                self.plugin.as_deref().unwrap_or("none (physical slot)")
            ));
        }
        if self.database.as_deref() != Some(database) {
            return Some(format!(
                "replication slot `{slot}` belongs to database `{}`, not `{database}`",
                self.database.as_deref().unwrap_or("none")
            ));
        }
        None
    }
}

/// The slot called `slot`, if it exists.
pub async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>> {
    let row = client
        .query_opt(
            "SELECT database::text, plugin::text, wal_status, active_pid, confirmed_flush_lsn::text \
             FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| error::sql(format!("cannot read replication slot `{slot}`"), e))?;
    Ok(row.map(|r| SlotState {
        database: r.get(0),
        plugin: r.get(1),
        wal_status: r.get(2),
        active_pid: r.get(3),
        confirmed_flush_lsn: r.get(4),
    }))
}

/// Drops `slot` (it must not be in use).
pub async fn drop_slot(client: &Client, slot: &str) -> Result<()> {
    client
        .execute("SELECT pg_catalog.pg_drop_replication_slot($1)", &[&slot])
        .await
        .map(drop)
        .map_err(|e| {
            error::sql(format!("cannot drop replication slot `{slot}`"), e).with_hint(format!(
                "Stop the session using it (see pg_replication_slots.active_pid) or drop it by hand: `SELECT pg_drop_replication_slot('{slot}');`."
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_sql_quotes_everything() {
        let t = [TableName::parse("t1"), TableName::parse("S.T\"2")];
        assert_eq!(
            publication_sql("p", false, &t),
            r#"CREATE PUBLICATION "p" FOR TABLE "public"."t1", "S"."T""2""#
        );
        assert_eq!(
            publication_sql("p", true, &t[..1]),
            r#"ALTER PUBLICATION "p" ADD TABLE "public"."t1""#
        );
    }

    #[test]
    fn lost_or_foreign_slots_are_problems() {
        let mut s = SlotState {
            database: Some("db".into()),
            plugin: Some("pgoutput".into()),
            wal_status: Some("reserved".into()),
            active_pid: None,
            confirmed_flush_lsn: None,
        };
        assert!(s.problem("x", "db").is_none());
        assert!(s.problem("x", "other").unwrap().contains("database `db`"));
        s.wal_status = Some("lost".into());
        assert!(
            s.problem("x", "db")
                .unwrap()
                .contains("max_slot_wal_keep_size")
        );
    }
}
