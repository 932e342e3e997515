//! Rows to records, in the reference's shape:
//! `{"key":{<primary key>},"value":{<row>}|null}` (null = delete), with the
//! partition key set to the canonical text of the primary key, so every
//! change of one row lands in one shard, in order.

use hstream_io_runtime::stream::Record;
use serde_json::{Map, Value};

use crate::config::{RecordFormat, TableName};
use crate::pgoutput::Cell;
use crate::types::{TypeCache, TypeKind, to_json};

/// Header attribute naming the table of every record (`schema.table`).
pub const TABLE_ATTRIBUTE: &str = "table";

/// Where and how one table's rows become records.
#[derive(Debug, Clone)]
pub struct Target {
    /// The table.
    pub table: TableName,
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

    /// The row's column values. Unchanged TOASTed values are left out (not
    /// `null`), so a sink keeps what it has for them.
    pub fn value(&self, cells: &[Cell]) -> Map<String, Value> {
        let mut map = Map::with_capacity(self.columns.len());
        for ((name, kind), cell) in self.columns.iter().zip(cells) {
            match cell {
                Cell::Null => {
                    map.insert(name.clone(), Value::Null);
                }
                Cell::Unchanged => {}
                Cell::Text(text) => {
                    map.insert(name.clone(), to_json(kind, text));
                }
            }
        }
        map
    }

    /// The primary-key values of `cells` (taking unchanged ones from `old`).
    pub fn key(&self, cells: &[Cell], old: Option<&[Cell]>) -> Map<String, Value> {
        let mut map = Map::with_capacity(self.key.len());
        for &i in &self.key {
            let (Some((name, kind)), Some(cell)) = (self.columns.get(i), cells.get(i)) else {
                continue;
            };
            let cell = match (cell, old.and_then(|o| o.get(i))) {
                (Cell::Unchanged, Some(old)) => old,
                (cell, _) => cell,
            };
            match cell {
                Cell::Text(text) => {
                    map.insert(name.clone(), to_json(kind, text));
                }
                Cell::Null => {
                    map.insert(name.clone(), Value::Null);
                }
                Cell::Unchanged => {}
            }
        }
        map
    }

    /// The record of a change: `value` `None` is a delete.
    pub fn record(&self, key: Map<String, Value>, value: Option<Map<String, Value>>) -> Record {
        let partition_key = partition_key(&key);
        let mut payload = Map::with_capacity(3);
        payload.insert("key".into(), Value::Object(key));
        payload.insert("value".into(), value.map_or(Value::Null, Value::Object));
        if self.shared {
            payload.insert("table".into(), Value::String(self.table.to_string()));
        }
        let record = match self.format {
            RecordFormat::Json => Record::json(partition_key, payload),
            RecordFormat::Raw => Record::raw(
                partition_key,
                serde_json::to_vec(&Value::Object(payload)).unwrap_or_default(),
            ),
        };
        record.with_attribute(TABLE_ATTRIBUTE, self.table.to_string())
    }
}

impl Target {
    /// The control record of a `TRUNCATE` of this table (see `TruncatePolicy::Record`).
    pub fn truncate_record(&self) -> Record {
        let table = self.table.to_string();
        let mut payload = Map::with_capacity(4);
        payload.insert("key".into(), Value::Null);
        payload.insert("value".into(), Value::Null);
        payload.insert("op".into(), Value::String("truncate".into()));
        payload.insert("table".into(), Value::String(table.clone()));
        let record = match self.format {
            RecordFormat::Json => Record::json(table.clone(), payload),
            RecordFormat::Raw => Record::raw(
                table.clone(),
                serde_json::to_vec(&Value::Object(payload)).unwrap_or_default(),
            ),
        };
        record
            .with_attribute(TABLE_ATTRIBUTE, table)
            .with_attribute("op", "truncate")
    }
}

/// The canonical text of a key: a single column's value as text (strings
/// unquoted), several columns as the compact JSON array of their values.
pub fn partition_key(key: &Map<String, Value>) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match key.len() {
        1 => key.values().next().map(text).unwrap_or_default(),
        _ => Value::Array(key.values().cloned().collect()).to_string(),
    }
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

    #[test]
    fn upsert_and_delete_in_the_reference_shape() {
        let t = target(RecordFormat::Json, false);
        let cells = [
            Cell::Text("7".into()),
            Cell::Null,
            Cell::Text("1.10".into()),
        ];
        let r = t.record(t.key(&cells, None), Some(t.value(&cells)));
        assert_eq!(r.key, "7");
        assert_eq!(
            r.attributes.get("table").map(String::as_str),
            Some("public.t1")
        );
        let Payload::Json(map) = r.payload else {
            panic!("not JSON")
        };
        assert_eq!(
            Value::Object(map),
            json!({"key":{"id":7},"value":{"id":7,"body":null,"n":"1.10"}})
        );
        let d = t.record(t.key(&cells, None), None);
        let Payload::Json(map) = d.payload else {
            panic!("not JSON")
        };
        assert_eq!(Value::Object(map), json!({"key":{"id":7},"value":null}));
    }

    #[test]
    fn unchanged_toast_is_absent_not_null() {
        let t = target(RecordFormat::Raw, true);
        let cells = [
            Cell::Text("9007199254740993".into()),
            Cell::Unchanged,
            Cell::Null,
        ];
        let r = t.record(t.key(&cells, None), Some(t.value(&cells)));
        let Payload::Raw(bytes) = r.payload else {
            panic!("not RAW")
        };
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"key":{"id":9007199254740993},"value":{"id":9007199254740993,"n":null},"table":"public.t1"}"#
        );
    }

    #[test]
    fn composite_keys_are_json_arrays() {
        let mut key = Map::new();
        key.insert("a".into(), json!(1));
        key.insert("b".into(), json!("x"));
        assert_eq!(partition_key(&key), r#"[1,"x"]"#);
    }
}
