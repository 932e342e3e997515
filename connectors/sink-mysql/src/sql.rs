//! SQL text the MySQL sink sends; every identifier is quoted with backticks.

use crate::catalog::MysqlTable;

/// Most rows per multi-row statement.
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;
/// MySQL's limit of placeholders per prepared statement.
pub(crate) const MAX_PLACEHOLDERS: usize = 65_535;

/// `` `name` `` with embedded backticks doubled.
pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `` `database`.`table` ``.
pub(crate) fn qualified(database: &str, table: &str) -> String {
    format!("{}.{}", quote(database), quote(table))
}

/// How many rows of `columns` placeholders go into one statement.
pub(crate) fn rows_per_statement(columns: usize) -> usize {
    (MAX_PLACEHOLDERS / columns.max(1)).clamp(1, ROWS_PER_STATEMENT)
}

fn tuple(n: usize) -> String {
    let mut s = String::with_capacity(2 + n * 3);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s.push(')');
    s
}

fn values(cols: usize, rows: usize) -> String {
    let one = tuple(cols);
    let mut s = String::with_capacity(rows * (one.len() + 2));
    for i in 0..rows {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&one);
    }
    s
}

fn column_list(table: &MysqlTable, cols: &[usize]) -> String {
    cols.iter()
        .map(|&i| quote(&table.columns[i].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Multi-row insert of `rows` rows of `cols`; with `upsert`, existing keys get
/// the columns present updated (`ON DUPLICATE KEY UPDATE c = VALUES(c)`).
pub(crate) fn insert(table: &MysqlTable, cols: &[usize], rows: usize, upsert: bool) -> String {
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        qualified(&table.database, &table.name),
        column_list(table, cols),
        values(cols.len(), rows)
    );
    if upsert {
        let updates: Vec<String> = cols
            .iter()
            .filter(|i| !table.key.contains(i))
            .map(|&i| {
                let c = quote(&table.columns[i].name);
                format!("{c} = VALUES({c})")
            })
            .collect();
        sql.push_str(" ON DUPLICATE KEY UPDATE ");
        if updates.is_empty() {
            // Nothing but the key: keep the row as it is.
            let c = quote(&table.columns[table.key[0]].name);
            sql.push_str(&format!("{c} = {c}"));
        } else {
            sql.push_str(&updates.join(", "));
        }
    }
    sql
}

/// Deletes `rows` keys: `k IN (?, …)` or `(k1, k2) IN ((?, ?), …)`.
pub(crate) fn delete(table: &MysqlTable, rows: usize) -> String {
    let target = qualified(&table.database, &table.name);
    if table.key.len() == 1 {
        format!(
            "DELETE FROM {target} WHERE {} IN {}",
            quote(&table.columns[table.key[0]].name),
            tuple(rows)
        )
    } else {
        format!(
            "DELETE FROM {target} WHERE ({}) IN ({})",
            column_list(table, &table.key),
            values(table.key.len(), rows)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{MysqlColumn, MysqlType};

    fn table(key: Vec<usize>) -> MysqlTable {
        let col = |n: &str| MysqlColumn {
            name: n.into(),
            sql_type: "int".into(),
            ty: MysqlType::Text,
        };
        MysqlTable::new(
            "db".into(),
            "t`1".into(),
            vec![col("k1"), col("k2"), col("v")],
            key,
        )
    }

    #[test]
    fn upsert_updates_present_non_key_columns() {
        assert_eq!(
            insert(&table(vec![0, 1]), &[0, 1, 2], 2, true),
            "INSERT INTO `db`.`t``1` (`k1`, `k2`, `v`) VALUES (?, ?, ?), (?, ?, ?) \
             ON DUPLICATE KEY UPDATE `v` = VALUES(`v`)"
        );
        assert!(insert(&table(vec![0, 1]), &[0, 1], 1, true).ends_with("UPDATE `k1` = `k1`"));
        assert_eq!(
            insert(&table(vec![]), &[2], 1, false),
            "INSERT INTO `db`.`t``1` (`v`) VALUES (?)"
        );
    }

    #[test]
    fn deletes_single_and_composite() {
        assert_eq!(
            delete(&table(vec![0]), 3),
            "DELETE FROM `db`.`t``1` WHERE `k1` IN (?, ?, ?)"
        );
        assert_eq!(
            delete(&table(vec![0, 1]), 2),
            "DELETE FROM `db`.`t``1` WHERE (`k1`, `k2`) IN ((?, ?), (?, ?))"
        );
    }

    #[test]
    fn statements_stay_under_the_placeholder_limit() {
        assert_eq!(rows_per_statement(6), 1000);
        assert_eq!(rows_per_statement(100), 655);
        assert_eq!(rows_per_statement(70_000), 1);
    }
}
