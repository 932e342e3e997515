//! The target table as the catalog describes it: columns with their types, and
//! the columns that identify a row.

use std::collections::HashMap;

use hstream_io_runtime::{Error, ErrorKind, Result};
use sqlx::{PgConnection, Row};

use crate::error::pg_error;

/// How values for a column are converted (from `pg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric,
    Float,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Json,
    Bytea,
    Uuid,
    /// A one-dimensional array of scalars (written as an array literal).
    Array,
    /// Text, enums and everything PostgreSQL parses from text itself.
    Text,
}

impl PgType {
    /// From `pg_type.typname` / `typcategory`.
    pub(crate) fn from_catalog(typname: &str, category: &str) -> Self {
        match typname {
            "bool" => Self::Bool,
            "int2" => Self::Int2,
            "int4" => Self::Int4,
            "int8" => Self::Int8,
            "numeric" | "money" => Self::Numeric,
            "float4" | "float8" => Self::Float,
            "date" => Self::Date,
            "time" => Self::Time,
            "timestamp" => Self::Timestamp,
            "timestamptz" => Self::TimestampTz,
            "json" | "jsonb" => Self::Json,
            "bytea" => Self::Bytea,
            "uuid" => Self::Uuid,
            _ if category == "A" => Self::Array,
            _ => Self::Text,
        }
    }
}

/// One column.
#[derive(Debug, Clone)]
pub(crate) struct PgColumn {
    pub name: String,
    /// `format_type` text, used for casts and the stage table.
    pub sql_type: String,
    pub ty: PgType,
}

/// The target table.
#[derive(Debug, Clone)]
pub(crate) struct PgTable {
    pub schema: String,
    pub name: String,
    pub columns: Vec<PgColumn>,
    /// Indices of the key columns (empty: append-only).
    pub key: Vec<usize>,
    by_name: HashMap<String, usize>,
}

/// Tables with at most this many columns find a column by comparing names
/// rather than through the hash map.
const LINEAR_LOOKUP_COLUMNS: usize = 16;

impl PgTable {
    pub(crate) fn new(
        schema: String,
        name: String,
        columns: Vec<PgColumn>,
        key: Vec<usize>,
    ) -> Self {
        let by_name = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Self {
            schema,
            name,
            columns,
            key,
            by_name,
        }
    }

    /// `schema.table`, for messages.
    pub(crate) fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        // Called for every field of every record: comparing a few names costs
        // less than hashing one.
        if self.columns.len() <= LINEAR_LOOKUP_COLUMNS {
            return self.columns.iter().position(|c| c.name == name);
        }
        self.by_name.get(name).copied()
    }
}

/// A unique index (or the primary key) of the table: its column names.
pub(crate) struct PgUniqueIndex {
    pub primary: bool,
    pub columns: Vec<String>,
    /// Every column is NOT NULL.
    pub not_null: bool,
}

/// Reads the table's columns and unique indexes; `None` when it does not exist.
pub(crate) async fn describe(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Option<(Vec<PgColumn>, Vec<PgUniqueIndex>)>> {
    let target = format!("{schema}.{table}");
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                COALESCE(bt.typname, t.typname)::text, COALESCE(bt.typcategory, t.typcategory)::text \
         FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
           AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| pg_error(format!("cannot read the columns of `{target}`"), e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        let sql_type: String = row.get(1);
        let typname: String = row.get(2);
        let category: String = row.get(3);
        columns.push(PgColumn {
            name,
            sql_type,
            ty: PgType::from_catalog(&typname, &category),
        });
    }
    let rows = sqlx::query(
        "SELECT i.indisprimary, \
                array_agg(a.attname::text ORDER BY k.ord), bool_and(a.attnotnull) \
         FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indisvalid \
           AND i.indpred IS NULL AND i.indexprs IS NULL \
         GROUP BY i.indexrelid, i.indisprimary \
         ORDER BY i.indisprimary DESC, i.indexrelid",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| pg_error(format!("cannot read the indexes of `{target}`"), e))?;
    let indexes = rows
        .into_iter()
        .map(|row| PgUniqueIndex {
            primary: row.get(0),
            columns: row.get(1),
            not_null: row.get(2),
        })
        .collect();
    Ok(Some((columns, indexes)))
}

/// Chooses the key columns: `configured` (which a unique index must cover
/// exactly), else the primary key, else the first unique index whose columns
/// are all NOT NULL; none → append-only.
pub(crate) fn choose_key(
    target: &str,
    columns: &[PgColumn],
    indexes: &[PgUniqueIndex],
    configured: Option<&[String]>,
) -> Result<Vec<usize>> {
    let position = |name: &str| columns.iter().position(|c| c.name == name);
    let names: Vec<String> = match configured {
        Some(list) => {
            for name in list {
                if position(name).is_none() {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("key column `{name}` is not a column of `{target}`"),
                    )
                    .with_hint("Fix keyColumns to name columns of the table."));
                }
            }
            let mut wanted: Vec<&String> = list.iter().collect();
            wanted.sort();
            let covered = indexes.iter().any(|i| {
                let mut have: Vec<&String> = i.columns.iter().collect();
                have.sort();
                have == wanted
            });
            if !covered {
                return Err(Error::new(
                    ErrorKind::Setup,
                    format!(
                        "key columns ({}) of `{target}` have no unique index",
                        list.join(", ")
                    ),
                )
                .with_hint(format!(
                    "Create one (CREATE UNIQUE INDEX ON {target} ({})) or change keyColumns.",
                    list.join(", ")
                )));
            }
            list.to_vec()
        }
        None => match indexes
            .iter()
            .find(|i| i.primary)
            .or_else(|| indexes.iter().find(|i| i.not_null))
        {
            Some(index) => index.columns.clone(),
            None => Vec::new(),
        },
    };
    Ok(names.iter().filter_map(|n| position(n)).collect())
}

/// Loads the table; a missing table is a setup error naming the fix.
pub(crate) async fn load(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    configured_key: Option<&[String]>,
) -> Result<PgTable> {
    let target = format!("{schema}.{table}");
    let Some((columns, indexes)) = describe(conn, schema, table).await? else {
        return Err(
            Error::new(ErrorKind::Setup, format!("table `{target}` does not exist")).with_hint(
                "Create the table first, or fix `schema`/`table` (names are case-sensitive).",
            ),
        );
    };
    let key = choose_key(&target, &columns, &indexes, configured_key)?;
    Ok(PgTable::new(schema.into(), table.into(), columns, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> PgColumn {
        PgColumn {
            name: name.into(),
            sql_type: "integer".into(),
            ty: PgType::Int4,
        }
    }

    fn index(primary: bool, cols: &[&str], not_null: bool) -> PgUniqueIndex {
        PgUniqueIndex {
            primary,
            columns: cols.iter().map(|c| c.to_string()).collect(),
            not_null,
        }
    }

    #[test]
    fn key_is_pk_then_not_null_unique_then_none() {
        let cols = [col("a"), col("b"), col("c")];
        let idx = [index(false, &["c"], true), index(true, &["b", "a"], true)];
        assert_eq!(choose_key("t", &cols, &idx, None).unwrap(), vec![1, 0]);
        let idx = [index(false, &["c"], false), index(false, &["b"], true)];
        assert_eq!(choose_key("t", &cols, &idx, None).unwrap(), vec![1]);
        assert!(choose_key("t", &cols, &[], None).unwrap().is_empty());
    }

    #[test]
    fn configured_key_needs_a_unique_index() {
        let cols = [col("a"), col("b")];
        let idx = [index(false, &["b", "a"], false)];
        let key = ["a".to_string(), "b".to_string()];
        assert_eq!(
            choose_key("t", &cols, &idx, Some(&key)).unwrap(),
            vec![0, 1]
        );
        let e = choose_key("t", &cols, &[], Some(&key)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Setup);
        assert!(e.hint().unwrap().contains("CREATE UNIQUE INDEX"));
        let e = choose_key("t", &cols, &idx, Some(&["x".to_string()])).unwrap_err();
        assert!(e.message().contains("`x`"));
    }

    #[test]
    fn types_from_the_catalog() {
        assert_eq!(PgType::from_catalog("int8", "N"), PgType::Int8);
        assert_eq!(PgType::from_catalog("_int4", "A"), PgType::Array);
        assert_eq!(PgType::from_catalog("mood", "E"), PgType::Text);
    }
}
