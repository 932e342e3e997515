//! Exactly-once positions: one row per (stream, target table, shard) in the
//! progress table, holding the RecordId of the last applied record, written
//! in the same transaction as the rows.

use std::collections::BTreeMap;

use hstream_io_runtime::stream::RecordId;
use hstream_io_runtime::{Error, ErrorKind, Result};
use sqlx::{PgConnection, Row};

use crate::error::pg_error;
use crate::sql::qualified;

/// Where positions are kept, and whose they are.
#[derive(Debug, Clone)]
pub(crate) struct PgProgress {
    /// Quoted `"schema"."table"` of the progress table.
    table: String,
    display: String,
    stream: String,
    /// `schema.table` of the target, as stored.
    target: String,
}

impl PgProgress {
    pub(crate) fn new(schema: &str, table: &str, stream: &str, target: String) -> Self {
        Self {
            table: qualified(schema, table),
            display: format!("{schema}.{table}"),
            stream: stream.into(),
            target,
        }
    }

    /// Creates the progress table if it is missing.
    pub(crate) async fn ensure(&self, conn: &mut PgConnection) -> Result<()> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (stream text NOT NULL, target text NOT NULL, \
             shard_id text NOT NULL, record_id text NOT NULL, \
             updated_at timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (stream, target, shard_id))",
            self.table
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(|e| {
                pg_error(
                    format!("cannot create the progress table `{}`", self.display),
                    e,
                )
                .with_hint("Grant CREATE on the schema, create the table once as an owner, or set exactlyOnce to false.")
            })
    }

    /// Every shard's stored position.
    pub(crate) async fn load(&self, conn: &mut PgConnection) -> Result<BTreeMap<u64, RecordId>> {
        let sql = format!(
            "SELECT shard_id, record_id FROM {} WHERE stream = $1 AND target = $2",
            self.table
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&self.stream)
            .bind(&self.target)
            .fetch_all(conn)
            .await
            .map_err(|e| pg_error(format!("cannot read `{}`", self.display), e))?;
        rows.into_iter()
            .map(|row| {
                let shard: String = row.get(0);
                let id: String = row.get(1);
                self.parse(&shard, &id)
            })
            .collect()
    }

    fn parse(&self, shard: &str, id: &str) -> Result<(u64, RecordId)> {
        let bad = || {
            Error::new(
                ErrorKind::Setup,
                format!(
                    "progress table `{}` holds a bad position `{shard}`/`{id}` for stream `{}`",
                    self.display, self.stream
                ),
            )
            .with_hint("Delete that row to restart the shard from task.reader.fromOffset.")
        };
        Ok((
            shard.parse().map_err(|_| bad())?,
            id.parse().map_err(|_| bad())?,
        ))
    }

    /// Locks and reads the shard's position inside the batch's transaction.
    pub(crate) async fn lock(
        &self,
        conn: &mut PgConnection,
        shard: u64,
    ) -> Result<Option<RecordId>> {
        let sql = format!(
            "SELECT record_id FROM {} WHERE stream = $1 AND target = $2 AND shard_id = $3 FOR UPDATE",
            self.table
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&self.stream)
            .bind(&self.target)
            .bind(shard.to_string())
            .fetch_optional(conn)
            .await
            .map_err(|e| pg_error(format!("cannot read `{}`", self.display), e))?;
        row.map(|r| {
            let id: String = r.get(0);
            self.parse(&shard.to_string(), &id).map(|(_, id)| id)
        })
        .transpose()
    }

    /// Stores the shard's position inside the batch's transaction.
    pub(crate) async fn save(
        &self,
        conn: &mut PgConnection,
        shard: u64,
        id: RecordId,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (stream, target, shard_id, record_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stream, target, shard_id) DO UPDATE \
             SET record_id = EXCLUDED.record_id, updated_at = now()",
            self.table
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&self.stream)
            .bind(&self.target)
            .bind(shard.to_string())
            .bind(id.to_string())
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(|e| pg_error(format!("cannot write `{}`", self.display), e))
    }
}
