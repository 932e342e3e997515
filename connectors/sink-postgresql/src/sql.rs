//! SQL text the PostgreSQL sink sends; every identifier is quoted.

use crate::catalog::{PgColumn, PgTable};

/// `"name"` with embedded quotes doubled.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

fn column_list(table: &PgTable, cols: &[usize]) -> String {
    cols.iter()
        .map(|&i| quote(&table.columns[i].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The session's stage table for `table`: same column names and types, no
/// constraints, emptied at commit. Its name changes with the table's columns
/// so a changed table gets a fresh stage.
pub(crate) fn stage_name(table: &PgTable) -> String {
    // FNV-1a over the qualified name and the column definitions.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |s: &str| {
        for b in s.bytes().chain([0u8]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&table.schema);
    feed(&table.name);
    for c in &table.columns {
        feed(&c.name);
        feed(&c.sql_type);
    }
    format!("hstream_io_stage_{hash:016x}")
}

/// `CREATE TEMP TABLE IF NOT EXISTS stage (…) ON COMMIT DELETE ROWS`.
pub(crate) fn create_stage(table: &PgTable, stage: &str) -> String {
    let defs = table
        .columns
        .iter()
        .map(|c: &PgColumn| format!("{} {}", quote(&c.name), c.sql_type))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS {} ({defs}) ON COMMIT DELETE ROWS",
        quote(stage)
    )
}

/// `COPY <into> (cols) FROM STDIN` (text format).
pub(crate) fn copy_into(into: &str, table: &PgTable, cols: &[usize]) -> String {
    format!("COPY {into} ({}) FROM STDIN", column_list(table, cols))
}

/// Upsert of the stage's rows into the table on the key columns; only the
/// columns present (`cols`) are set on conflict.
pub(crate) fn upsert_from_stage(table: &PgTable, stage: &str, cols: &[usize]) -> String {
    let list = column_list(table, cols);
    let updates: Vec<String> = cols
        .iter()
        .filter(|i| !table.key.contains(i))
        .map(|&i| {
            let c = quote(&table.columns[i].name);
            format!("{c} = EXCLUDED.{c}")
        })
        .collect();
    let action = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {} ({list}) SELECT {list} FROM {} ON CONFLICT ({}) {action}",
        qualified(&table.schema, &table.name),
        quote(stage),
        column_list(table, &table.key),
    )
}

/// Deletes the rows whose keys are given as one text array per key column
/// (`$1`, `$2`, …), each cast to the column's type.
pub(crate) fn delete_by_keys(table: &PgTable) -> String {
    let arrays: Vec<String> = (1..=table.key.len())
        .map(|n| format!("${n}::text[]"))
        .collect();
    let names: Vec<String> = (0..table.key.len()).map(|n| format!("k{n}")).collect();
    let cond: Vec<String> = table
        .key
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let c = &table.columns[i];
            format!("t.{} = d.k{n}::{}", quote(&c.name), c.sql_type)
        })
        .collect();
    format!(
        "DELETE FROM {} AS t USING unnest({}) AS d({}) WHERE {}",
        qualified(&table.schema, &table.name),
        arrays.join(", "),
        names.join(", "),
        cond.join(" AND ")
    )
}

/// Appends `text` to a COPY text-format line, escaped.
pub(crate) fn copy_escape(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        out.extend_from_slice(escaped);
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

/// Appends one COPY text-format row (`\N` for NULL).
pub(crate) fn copy_row<'a>(out: &mut Vec<u8>, cells: impl Iterator<Item = Option<&'a str>>) {
    for (n, cell) in cells.enumerate() {
        if n > 0 {
            out.push(b'\t');
        }
        match cell {
            Some(text) => copy_escape(out, text),
            None => out.extend_from_slice(b"\\N"),
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PgType;

    fn table() -> PgTable {
        let col = |n: &str, t: &str| PgColumn {
            name: n.into(),
            sql_type: t.into(),
            ty: PgType::Text,
        };
        PgTable::new(
            "public".into(),
            "My \"T\"".into(),
            vec![col("k1", "integer"), col("K2", "text"), col("v", "jsonb")],
            vec![0, 1],
        )
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            qualified("public", "My \"T\""),
            "\"public\".\"My \"\"T\"\"\""
        );
    }

    #[test]
    fn upsert_sets_only_present_non_key_columns() {
        let t = table();
        assert_eq!(
            upsert_from_stage(&t, "s", &[0, 1, 2]),
            "INSERT INTO \"public\".\"My \"\"T\"\"\" (\"k1\", \"K2\", \"v\") SELECT \"k1\", \"K2\", \"v\" FROM \"s\" \
             ON CONFLICT (\"k1\", \"K2\") DO UPDATE SET \"v\" = EXCLUDED.\"v\""
        );
        assert!(upsert_from_stage(&t, "s", &[0, 1]).ends_with("DO NOTHING"));
    }

    #[test]
    fn composite_delete_joins_with_and_and_casts() {
        assert_eq!(
            delete_by_keys(&table()),
            "DELETE FROM \"public\".\"My \"\"T\"\"\" AS t USING unnest($1::text[], $2::text[]) AS d(k0, k1) \
             WHERE t.\"k1\" = d.k0::integer AND t.\"K2\" = d.k1::text"
        );
    }

    #[test]
    fn copy_rows_escape_and_null() {
        let mut out = Vec::new();
        copy_row(&mut out, [Some("a\tb\\c\nd"), None, Some("")].into_iter());
        assert_eq!(out, b"a\\tb\\\\c\\nd\t\\N\t\n");
    }

    #[test]
    fn stage_changes_with_columns() {
        let a = table();
        let mut b = table();
        b.columns[2].sql_type = "json".into();
        assert_ne!(stage_name(&a), stage_name(&b));
        assert!(create_stage(&a, "s").contains("\"v\" jsonb"));
    }
}
