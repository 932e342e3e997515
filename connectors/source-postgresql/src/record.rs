//! Rows to records, in the reference's shape:
//! `{"key":{<primary key>},"value":{<row>}|null}` (null = delete; `"table"`
//! follows on a shared stream), with the partition key set to the canonical
//! text of the primary key, so every change of one row lands in one shard, in
//! order.
//!
//! Each row is converted cell by cell straight into the record's wire bytes
//! (the runtime's [`PayloadWriter`]: a `Struct` for JSON records, JSON text
//! for RAW ones); only the primary key is kept as JSON values ([`Key`]), for
//! the key object, the partition key and the key-change test of updates.

use std::fmt::Write as _;

use hstream_io_runtime::stream::{Field, PayloadEncoding, PayloadWriter, Record};
use serde_json::Value;

use crate::config::{RecordFormat, TableName};
use crate::pgoutput::Cell;
use crate::types::{TypeCache, TypeKind, convert, to_json};

/// Header attribute naming the table of every record (`schema.table`).
pub const TABLE_ATTRIBUTE: &str = "table";

/// One cell of a row, borrowed: from a pgoutput tuple or a COPY text line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellRef<'a> {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value that was not sent.
    Unchanged,
    /// The value in text format.
    Text(&'a str),
}

/// A row whose cells can be read by column index.
pub trait Row {
    /// The cell of column `i`, `None` past the row's end.
    fn cell(&self, i: usize) -> Option<CellRef<'_>>;
}

impl Row for [Cell<'_>] {
    fn cell(&self, i: usize) -> Option<CellRef<'_>> {
        self.get(i).map(|c| match c {
            Cell::Null => CellRef::Null,
            Cell::Unchanged => CellRef::Unchanged,
            Cell::Text(text) => CellRef::Text(text),
        })
    }
}

/// A row's primary key: `(column index, value)` in key order (a key cell
/// that is unchanged TOAST with no old value is left out).
pub type Key = Vec<(usize, Value)>;

/// The record encoding of `format`.
pub fn encoding(format: RecordFormat) -> PayloadEncoding {
    match format {
        RecordFormat::Json => PayloadEncoding::Struct,
        RecordFormat::Raw => PayloadEncoding::JsonText,
    }
}

/// Where and how one table's rows become records.
#[derive(Debug, Clone)]
pub struct Target {
    /// The table.
    pub table: TableName,
    /// `schema.table` (the `"table"` field, the attribute).
    pub label: String,
    /// Its stream.
    pub stream: String,
    /// Columns in tuple order: name and conversion.
    pub columns: Vec<(String, TypeKind)>,
    /// Indices of the primary-key columns, in key order.
    pub key: Vec<usize>,
    /// Whether the stream is shared with other tables (records then carry `"table"`).
    pub shared: bool,
    /// Record encoding.
    pub format: RecordFormat,
}

impl Target {
    /// A target for `columns` (name, type OID), keyed by `primary_key` names.
    /// Key columns missing from `columns` fall back to `fallback_key` flags.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        table: TableName,
        stream: String,
        columns: &[(String, u32)],
        primary_key: &[String],
        fallback_key: &[bool],
        types: &TypeCache,
        shared: bool,
        format: RecordFormat,
    ) -> Self {
        let mut key: Vec<usize> = primary_key
            .iter()
            .filter_map(|k| columns.iter().position(|(name, _)| name == k))
            .collect();
        if key.len() != primary_key.len() || key.is_empty() {
            key = fallback_key
                .iter()
                .enumerate()
                .filter_map(|(i, &k)| k.then_some(i))
                .collect();
        }
        Self {
            label: table.to_string(),
            table,
            stream,
            columns: columns
                .iter()
                .map(|(name, oid)| (name.clone(), types.kind(*oid)))
                .collect(),
            key,
            shared,
            format,
        }
    }

    /// Writes the row's column values as fields of the open object.
    /// Unchanged TOASTed values are left out (not `null`), so a sink keeps
    /// what it has for them.
    fn write_value<R: Row + ?Sized>(&self, w: &mut PayloadWriter, row: &R) {
        for (i, (name, kind)) in self.columns.iter().enumerate() {
            match row.cell(i) {
                None => break,
                Some(CellRef::Null) => w.null(name),
                Some(CellRef::Unchanged) => {}
                Some(CellRef::Text(text)) => convert(kind, text, Field { writer: w, name }),
            }
        }
    }

    /// The key cells of `row` in key order — `(column index, kind, cell)` —
    /// an unchanged TOASTed one taken from `old` (left out when `old` has
    /// none either).
    fn key_cells<'r, R: Row + ?Sized>(
        &'r self,
        row: &'r R,
        old: Option<&'r R>,
    ) -> impl Iterator<Item = (usize, &'r TypeKind, CellRef<'r>)> + 'r {
        self.key.iter().filter_map(move |&i| {
            let (_, kind) = self.columns.get(i)?;
            let cell = match (row.cell(i)?, old.and_then(|o| o.cell(i))) {
                (CellRef::Unchanged, Some(old)) => old,
                (cell, _) => cell,
            };
            (cell != CellRef::Unchanged).then_some((i, kind, cell))
        })
    }

    /// The primary-key values of `row` (taking unchanged ones from `old`).
    pub fn key<R: Row + ?Sized>(&self, row: &R, old: Option<&R>) -> Key {
        self.key_cells(row, old)
            .map(|(i, kind, cell)| match cell {
                CellRef::Text(text) => (i, to_json(kind, text)),
                _ => (i, Value::Null),
            })
            .collect()
    }

    /// Whether the primary key of the new row `new` (unchanged cells taken
    /// from `old`) is the key of `old`: equal text is the same key; different
    /// text is compared as the JSON values the records would carry.
    pub fn same_key<R: Row + ?Sized>(&self, new: &R, old: &R) -> bool {
        let cells = |row, old| self.key_cells(row, old).map(|(i, _, cell)| (i, cell));
        cells(new, Some(old)).eq(cells(old, None))
            || self.key(new, Some(old)) == self.key(old, None)
    }

    /// The partition key of `row`'s record: [`partition_key`] of its
    /// primary key (unchanged cells taken from `old`), without building the
    /// key's JSON values when one text column or canonical integer is the key.
    pub fn partition_key<R: Row + ?Sized>(&self, row: &R, old: Option<&R>) -> String {
        if self.key.len() == 1
            && let Some((_, kind, CellRef::Text(text))) = self.key_cells(row, old).next()
        {
            // The key's JSON value is this very text: a string (written
            // unquoted), or an integer whose decimal form it is.
            let same = match kind {
                TypeKind::Text | TypeKind::Numeric => true,
                TypeKind::Int => is_canonical_integer(text),
                _ => false,
            };
            if same {
                return text.to_string();
            }
        }
        partition_key(&self.key(row, old))
    }

    /// Writes the `"key"` object of `row` (unchanged cells taken from `old`).
    fn write_key<R: Row + ?Sized>(&self, w: &mut PayloadWriter, row: &R, old: Option<&R>) {
        w.begin_object("key");
        for (i, kind, cell) in self.key_cells(row, old) {
            let name = &self.columns[i].0;
            match cell {
                CellRef::Text(text) => convert(kind, text, Field { writer: w, name }),
                _ => w.null(name),
            }
        }
        w.end_object();
    }

    /// The record of a change of the row whose primary key is in `key_row`
    /// (unchanged key cells taken from `key_old`): `value` `None` is a
    /// delete. `w` must write this target's format.
    pub fn record<R: Row + ?Sized>(
        &self,
        w: &mut PayloadWriter,
        key_row: &R,
        key_old: Option<&R>,
        value: Option<&R>,
    ) -> Record {
        debug_assert_eq!(w.encoding(), encoding(self.format));
        w.reset();
        self.write_key(w, key_row, key_old);
        match value {
            None => w.null("value"),
            Some(row) => {
                w.begin_object("value");
                self.write_value(w, row);
                w.end_object();
            }
        }
        if self.shared {
            w.string("table", &self.label);
        }
        w.finish_record(self.partition_key(key_row, key_old))
            .with_attribute(TABLE_ATTRIBUTE, self.label.as_str())
    }

    /// The control record of a `TRUNCATE` of this table (see `TruncatePolicy::Record`):
    /// `{"key":null,"value":null,"op":"truncate","table":"schema.table"}`.
    pub fn truncate_record(&self, w: &mut PayloadWriter) -> Record {
        w.reset();
        w.null("key");
        w.null("value");
        w.string("op", "truncate");
        w.string("table", &self.label);
        w.finish_record(self.label.as_str())
            .with_attribute(TABLE_ATTRIBUTE, self.label.as_str())
            .with_attribute("op", "truncate")
    }
}

/// Whether `text` is the decimal form serde_json writes for the integer it
/// denotes (no sign but `-`, no leading zero, no `-0`); PostgreSQL writes
/// integers this way.
fn is_canonical_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text).as_bytes();
    match digits {
        [] => false,
        [b'0'] => digits.len() == text.len(),
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    }
}

/// The canonical text of a key: a single column's value as text (strings
/// unquoted), several columns as the compact JSON array of their values.
pub fn partition_key(key: &Key) -> String {
    // Display of a JSON value is its compact text; writing to a String cannot fail.
    let mut out = String::new();
    match key.as_slice() {
        [(_, Value::String(s))] => out.push_str(s),
        [(_, one)] => {
            let _ = write!(out, "{one}");
        }
        many => {
            out.push('[');
            for (n, (_, v)) in many.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{v}");
            }
            out.push(']');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hstream_io_runtime::stream::Payload;
    use serde_json::json;

    fn target(format: RecordFormat, shared: bool) -> Target {
        Target::new(
            TableName::parse("t1"),
            "s".into(),
            &[("id".into(), 20), ("body".into(), 25), ("n".into(), 1700)],
            &["id".into()],
            &[],
            &TypeCache::default(),
            shared,
            format,
        )
    }

    /// The payload the old path (a JSON map, then `Record::json` / `to_vec`) gave for `obj`.
    fn payload_of(format: RecordFormat, obj: Value) -> Payload {
        let mut w = PayloadWriter::new(encoding(format));
        for (k, v) in obj.as_object().unwrap() {
            w.json(k, v);
        }
        w.finish()
    }

    fn record(t: &Target, cells: &[Cell<'_>], value: bool) -> Record {
        let mut w = PayloadWriter::new(encoding(t.format));
        t.record(&mut w, cells, None, value.then_some(cells))
    }

    #[test]
    fn upsert_and_delete_in_the_reference_shape() {
        let t = target(RecordFormat::Json, false);
        let cells = [Cell::Text("7"), Cell::Null, Cell::Text("1.10")];
        let r = record(&t, &cells, true);
        assert_eq!(r.key, "7");
        assert_eq!(
            r.attributes.get("table").map(String::as_str),
            Some("public.t1")
        );
        assert_eq!(
            r.payload,
            payload_of(
                RecordFormat::Json,
                json!({"key":{"id":7},"value":{"id":7,"body":null,"n":"1.10"}})
            )
        );
        let d = record(&t, &cells, false);
        assert_eq!(
            d.payload,
            payload_of(RecordFormat::Json, json!({"key":{"id":7},"value":null}))
        );
    }

    #[test]
    fn unchanged_toast_is_absent_not_null() {
        let t = target(RecordFormat::Raw, true);
        let cells = [Cell::Text("9007199254740993"), Cell::Unchanged, Cell::Null];
        let r = record(&t, &cells, true);
        let Payload::Raw(bytes) = r.payload else {
            panic!("not RAW")
        };
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"key":{"id":9007199254740993},"value":{"id":9007199254740993,"n":null},"table":"public.t1"}"#
        );
        let d = record(&t, &cells, false);
        assert_eq!(
            d.payload,
            Payload::Raw(
                br#"{"key":{"id":9007199254740993},"value":null,"table":"public.t1"}"#.to_vec()
            )
        );
    }

    #[test]
    fn truncate_records_name_the_table() {
        let t = target(RecordFormat::Raw, false);
        let mut w = PayloadWriter::new(PayloadEncoding::JsonText);
        let r = t.truncate_record(&mut w);
        assert_eq!(r.key, "public.t1");
        assert_eq!(r.attributes.get("op").map(String::as_str), Some("truncate"));
        assert_eq!(
            r.payload,
            Payload::Raw(
                br#"{"key":null,"value":null,"op":"truncate","table":"public.t1"}"#.to_vec()
            )
        );
    }

    #[test]
    fn keys_take_unchanged_cells_from_the_old_row() {
        let t = Target::new(
            TableName::parse("t1"),
            "s".into(),
            &[("a".into(), 25), ("b".into(), 20), ("c".into(), 25)],
            &["b".into(), "a".into()],
            &[],
            &TypeCache::default(),
            false,
            RecordFormat::Raw,
        );
        let new = [Cell::Unchanged, Cell::Text("2"), Cell::Null];
        let old = [Cell::Text("x"), Cell::Text("1"), Cell::Null];
        assert_eq!(
            t.key(&new[..], Some(&old[..])),
            vec![(1, json!(2)), (0, json!("x"))]
        );
        // Without an old row an unchanged key cell is left out.
        assert_eq!(t.key(&new[..], None), vec![(1, json!(2))]);
        let mut w = PayloadWriter::new(PayloadEncoding::JsonText);
        let r = t.record(&mut w, &new[..], Some(&old[..]), Some(&new[..]));
        assert_eq!(r.key, r#"[2,"x"]"#);
        assert_eq!(
            r.payload,
            Payload::Raw(br#"{"key":{"b":2,"a":"x"},"value":{"b":2,"c":null}}"#.to_vec())
        );
    }

    #[test]
    fn partition_keys_taken_from_the_text_match_the_json_values() {
        let t = Target::new(
            TableName::parse("t1"),
            "s".into(),
            &[("k".into(), 20), ("v".into(), 25)],
            &["k".into()],
            &[],
            &TypeCache::default(),
            false,
            RecordFormat::Raw,
        );
        for text in [
            "0",
            "-0",
            "7",
            "-7",
            "007",
            "+7",
            "-",
            "",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "-9223372036854775809",
            "1e3",
        ] {
            let row = [Cell::Text(text), Cell::Null];
            assert_eq!(
                t.partition_key(&row[..], None),
                partition_key(&t.key(&row[..], None)),
                "{text:?}"
            );
        }
        let null = [Cell::Null, Cell::Null];
        assert_eq!(t.partition_key(&null[..], None), "null");
        let unchanged = [Cell::Unchanged, Cell::Null];
        assert_eq!(t.partition_key(&unchanged[..], None), "[]");
        let old = [Cell::Text("5"), Cell::Null];
        assert_eq!(t.partition_key(&unchanged[..], Some(&old[..])), "5");
    }

    #[test]
    fn key_changes_compare_values_not_only_text() {
        let t = Target::new(
            TableName::parse("t1"),
            "s".into(),
            &[("k".into(), 20), ("j".into(), 114), ("v".into(), 25)],
            &["k".into(), "j".into()],
            &[],
            &TypeCache::default(),
            false,
            RecordFormat::Raw,
        );
        let old = [Cell::Text("1"), Cell::Text(r#"{"a":1}"#), Cell::Text("x")];
        let same = [Cell::Text("1"), Cell::Unchanged, Cell::Text("y")];
        assert!(t.same_key(&same[..], &old[..]));
        // Other text, same JSON value: the same key, as before.
        let spaced = [Cell::Text("1"), Cell::Text(r#"{"a": 1}"#), Cell::Text("y")];
        assert!(t.same_key(&spaced[..], &old[..]));
        let moved = [Cell::Text("2"), Cell::Unchanged, Cell::Text("y")];
        assert!(!t.same_key(&moved[..], &old[..]));
        let nulled = [Cell::Text("1"), Cell::Null, Cell::Text("y")];
        assert!(!t.same_key(&nulled[..], &old[..]));
    }

    #[test]
    fn composite_keys_are_json_arrays() {
        let key = vec![(0, json!(1)), (1, json!("x"))];
        assert_eq!(partition_key(&key), r#"[1,"x"]"#);
        assert_eq!(partition_key(&vec![(0, json!("a\"b"))]), "a\"b");
        assert_eq!(
            partition_key(&vec![(0, json!(9223372036854775807i64))]),
            "9223372036854775807"
        );
        assert_eq!(partition_key(&vec![(0, json!(1.5))]), "1.5");
        assert_eq!(partition_key(&Vec::new()), "[]");
    }
}
