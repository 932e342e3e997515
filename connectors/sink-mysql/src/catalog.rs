//! The target table as `information_schema` describes it: columns with their
//! types, and the columns that identify a row.

use std::collections::HashMap;

use hstream_io_runtime::{Error, ErrorKind, Result};
use sqlx::{MySqlConnection, Row};

use crate::error::mysql_error;

/// How values for a column are converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MysqlType {
    /// Integers in `min..=max` (booleans are 1/0).
    Int {
        min: i128,
        max: i128,
    },
    Decimal,
    Float,
    Date,
    Time,
    /// DATETIME and TIMESTAMP (the session time zone is UTC).
    DateTime,
    Json,
    Bytes,
    /// MariaDB's UUID type.
    Uuid,
    /// BIT(n): bound as an unsigned integer (booleans are 1/0).
    Bit,
    /// Character types, ENUM, SET and everything the server parses from text.
    Text,
}

impl MysqlType {
    /// From `DATA_TYPE` and `COLUMN_TYPE`.
    pub(crate) fn from_catalog(data_type: &str, column_type: &str) -> Self {
        let unsigned = column_type.contains("unsigned");
        let int = |bits: u32| {
            if unsigned {
                Self::Int {
                    min: 0,
                    max: (1i128 << bits) - 1,
                }
            } else {
                Self::Int {
                    min: -(1i128 << (bits - 1)),
                    max: (1i128 << (bits - 1)) - 1,
                }
            }
        };
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "bool" | "boolean" => int(8),
            "smallint" => int(16),
            "mediumint" => int(24),
            "int" | "integer" => int(32),
            "bigint" => int(64),
            "year" => Self::Int { min: 0, max: 2155 },
            "decimal" | "numeric" => Self::Decimal,
            "float" | "double" | "real" => Self::Float,
            "date" => Self::Date,
            "time" => Self::Time,
            "datetime" | "timestamp" => Self::DateTime,
            "json" => Self::Json,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => Self::Bytes,
            "uuid" => Self::Uuid,
            "bit" => Self::Bit,
            _ => Self::Text,
        }
    }
}

/// One column.
#[derive(Debug, Clone)]
pub(crate) struct MysqlColumn {
    pub name: String,
    /// `COLUMN_TYPE`, for messages.
    pub sql_type: String,
    pub ty: MysqlType,
}

/// The target table.
#[derive(Debug, Clone)]
pub(crate) struct MysqlTable {
    pub database: String,
    pub name: String,
    pub columns: Vec<MysqlColumn>,
    /// Indices of the key columns (empty: append-only).
    pub key: Vec<usize>,
    by_name: HashMap<String, usize>,
}

/// Tables with at most this many columns find a column by comparing names
/// rather than through the hash map.
const LINEAR_LOOKUP_COLUMNS: usize = 16;

impl MysqlTable {
    pub(crate) fn new(
        database: String,
        name: String,
        columns: Vec<MysqlColumn>,
        key: Vec<usize>,
    ) -> Self {
        let by_name = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Self {
            database,
            name,
            columns,
            key,
            by_name,
        }
    }

    /// `database.table`, for messages.
    pub(crate) fn display(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// The column called `name` (MySQL column names are case-insensitive).
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        // Called for every field of every record: comparing a few names costs
        // less than hashing one.
        let exact = if self.columns.len() <= LINEAR_LOOKUP_COLUMNS {
            self.columns.iter().position(|c| c.name == name)
        } else {
            self.by_name.get(name).copied()
        };
        exact.or_else(|| {
            self.columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
        })
    }
}

/// A unique index (or the primary key) of the table.
pub(crate) struct MysqlUniqueIndex {
    pub primary: bool,
    pub columns: Vec<String>,
    /// Every column is NOT NULL.
    pub not_null: bool,
}

/// Reads the table's columns and unique indexes; `None` when it does not exist.
pub(crate) async fn describe(
    conn: &mut MySqlConnection,
    database: &str,
    table: &str,
) -> Result<Option<(Vec<MysqlColumn>, Vec<MysqlUniqueIndex>)>> {
    let target = format!("{database}.{table}");
    let rows = sqlx::query(
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), CAST(COLUMN_TYPE AS CHAR), \
                CAST(IS_NULLABLE AS CHAR) \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
         ORDER BY ORDINAL_POSITION",
    )
    .bind(database)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| mysql_error(format!("cannot read the columns of `{target}`"), e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut columns = Vec::with_capacity(rows.len());
    let mut nullable = HashMap::new();
    for row in rows {
        let name: String = row.get(0);
        let data_type: String = row.get(1);
        let column_type: String = row.get(2);
        let is_nullable: String = row.get(3);
        nullable.insert(name.clone(), is_nullable == "YES");
        columns.push(MysqlColumn {
            ty: MysqlType::from_catalog(&data_type, &column_type),
            name,
            sql_type: column_type,
        });
    }
    let rows = sqlx::query(
        "SELECT CAST(INDEX_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR) \
         FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
         ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
    )
    .bind(database)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| mysql_error(format!("cannot read the indexes of `{target}`"), e))?;
    let mut indexes: Vec<(String, MysqlUniqueIndex)> = Vec::new();
    for row in rows {
        let index: String = row.get(0);
        let column: String = row.get(1);
        let not_null = !nullable.get(&column).copied().unwrap_or(true);
        match indexes.last_mut() {
            Some((name, entry)) if *name == index => {
                entry.columns.push(column);
                entry.not_null &= not_null;
            }
            _ => indexes.push((
                index.clone(),
                MysqlUniqueIndex {
                    primary: index == "PRIMARY",
                    columns: vec![column],
                    not_null,
                },
            )),
        }
    }
    Ok(Some((
        columns,
        indexes.into_iter().map(|(_, i)| i).collect(),
    )))
}

/// Chooses the key columns: `configured` (which a unique index must cover
/// exactly), else the primary key, else the first unique index whose columns
/// are all NOT NULL; none → append-only.
pub(crate) fn choose_key(
    target: &str,
    columns: &[MysqlColumn],
    indexes: &[MysqlUniqueIndex],
    configured: Option<&[String]>,
) -> Result<Vec<usize>> {
    let position = |name: &str| {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    };
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
            let mut wanted: Vec<String> = list.iter().map(|c| c.to_ascii_lowercase()).collect();
            wanted.sort();
            let covered = indexes.iter().any(|i| {
                let mut have: Vec<String> =
                    i.columns.iter().map(|c| c.to_ascii_lowercase()).collect();
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
                    "Create one (CREATE UNIQUE INDEX … ON {target} ({})) or change keyColumns.",
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
    conn: &mut MySqlConnection,
    database: &str,
    table: &str,
    configured_key: Option<&[String]>,
) -> Result<MysqlTable> {
    let target = format!("{database}.{table}");
    let Some((columns, indexes)) = describe(conn, database, table).await? else {
        return Err(
            Error::new(ErrorKind::Setup, format!("table `{target}` does not exist"))
                .with_hint("Create the table first, or fix `database`/`table`."),
        );
    };
    let key = choose_key(&target, &columns, &indexes, configured_key)?;
    Ok(MysqlTable::new(database.into(), table.into(), columns, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> MysqlColumn {
        MysqlColumn {
            name: name.into(),
            sql_type: "int".into(),
            ty: MysqlType::Int { min: 0, max: 1 },
        }
    }

    fn index(primary: bool, cols: &[&str], not_null: bool) -> MysqlUniqueIndex {
        MysqlUniqueIndex {
            primary,
            columns: cols.iter().map(|c| c.to_string()).collect(),
            not_null,
        }
    }

    #[test]
    fn key_is_pk_then_not_null_unique_then_none() {
        let cols = [col("a"), col("b"), col("c")];
        let idx = [index(true, &["b", "a"], true), index(false, &["c"], true)];
        assert_eq!(choose_key("t", &cols, &idx, None).unwrap(), vec![1, 0]);
        let idx = [index(false, &["c"], false), index(false, &["b"], true)];
        assert_eq!(choose_key("t", &cols, &idx, None).unwrap(), vec![1]);
        assert!(choose_key("t", &cols, &[], None).unwrap().is_empty());
        let e = choose_key("t", &cols, &[], Some(&["a".into()])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Setup);
    }

    #[test]
    fn integer_ranges_follow_signedness() {
        assert_eq!(
            MysqlType::from_catalog("tinyint", "tinyint(3) unsigned"),
            MysqlType::Int { min: 0, max: 255 }
        );
        assert_eq!(
            MysqlType::from_catalog("bigint", "bigint(20) unsigned"),
            MysqlType::Int {
                min: 0,
                max: u64::MAX.into()
            }
        );
        assert_eq!(
            MysqlType::from_catalog("mediumint", "mediumint(9)"),
            MysqlType::Int {
                min: -8_388_608,
                max: 8_388_607
            }
        );
        assert_eq!(
            MysqlType::from_catalog("longblob", "longblob"),
            MysqlType::Bytes
        );
        assert_eq!(
            MysqlType::from_catalog("enum", "enum('a','b')"),
            MysqlType::Text
        );
    }
}
