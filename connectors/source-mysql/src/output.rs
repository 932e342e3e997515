//! Turns row changes into HStream records in the reference shape and sends
//! them, in order, with the position reached after them.
//!
//! Record: `{"key": {<pk columns>}, "value": {<row>} | null}` (null = delete),
//! plus `"table": "db.t"` when several tables share one stream. Partition key:
//! the canonical text of the primary key — the value itself for a one-column
//! key (`42`, `abc`), a compact JSON array for a composite key (`[1,"a"]`),
//! prefixed with `db.t/` on a shared stream — so a multi-shard stream keeps
//! per-key order.

use hstream_io_runtime::stream::Record;
use hstream_io_runtime::{Result, SourceContext};
use serde_json::{Map, Value as Json};

use crate::config::{MysqlSourceConfig, RecordFormat, TableRef};
use crate::events::Position;

/// Records buffered before they are handed to the runtime.
pub const FLUSH_RECORDS: usize = 1000;

/// Builds records and buffers them per transaction.
pub struct Output {
    format: RecordFormat,
    shared: bool,
    tables: Vec<TableRef>,
    streams: Vec<String>,
    buffer: Vec<(usize, Record)>,
    /// Commit time (unix ms) of the newest change buffered, for the task's lag.
    event_unix_ms: Option<i64>,
}

impl Output {
    /// The output of `config`: table `i` of `config.table_refs()` goes to `streams[i]`.
    pub fn new(config: &MysqlSourceConfig) -> Self {
        let tables = config.table_refs();
        let streams = tables.iter().map(|t| config.stream_for(t)).collect();
        Self {
            format: config.record_format,
            shared: config.shared_stream(),
            tables,
            streams,
            buffer: Vec::new(),
            event_unix_ms: None,
        }
    }

    /// The captured tables.
    pub fn tables(&self) -> &[TableRef] {
        &self.tables
    }

    /// Index of `table` among the captured tables.
    pub fn index_of(&self, database: &str, name: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.database == database && t.name == name)
    }

    /// Buffers an upsert (`value` = the row) or a delete (`value` = None).
    pub fn push(&mut self, table: usize, key: Map<String, Json>, value: Option<Map<String, Json>>) {
        let record = self.record(table, key, value);
        self.buffer.push((table, record));
    }

    /// Notes the time (unix ms) of the binlog event being read; sent with the
    /// next flush so the runtime reports the task's lag once it is acknowledged.
    pub fn set_event_time(&mut self, unix_ms: i64) {
        self.event_unix_ms = Some(unix_ms);
    }

    /// Records buffered.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Drops buffered records (they will be read again after a restart).
    pub fn discard(&mut self) {
        self.buffer.clear();
    }

    fn record(
        &self,
        table: usize,
        key: Map<String, Json>,
        value: Option<Map<String, Json>>,
    ) -> Record {
        let mut partition = partition_key(&key);
        if self.shared {
            partition = format!("{}/{partition}", self.tables[table]);
        }
        let mut obj = Map::with_capacity(3);
        if self.shared {
            obj.insert("table".into(), Json::String(self.tables[table].to_string()));
        }
        obj.insert("key".into(), Json::Object(key));
        obj.insert("value".into(), value.map_or(Json::Null, Json::Object));
        match self.format {
            RecordFormat::Json => Record::json(partition, obj),
            RecordFormat::Raw => Record::raw(
                partition,
                serde_json::to_vec(&Json::Object(obj)).unwrap_or_default(),
            ),
        }
    }

    /// Sends everything buffered, in order (consecutive records of one stream
    /// in one call); `position` is attached to the last call, so it is
    /// committed once all of them are acknowledged. With nothing buffered, a
    /// position is still sent (an empty append to the first stream).
    pub async fn flush(&mut self, ctx: &SourceContext, position: Option<&Position>) -> Result<()> {
        let position = position.map(|p| serde_json::to_value(p).unwrap_or(Json::Null));
        if self.buffer.is_empty() {
            if let Some(position) = position {
                let at = self.event_unix_ms.take();
                ctx.send_at(&self.streams[0], Vec::new(), Some(position), at)
                    .await?;
            }
            return Ok(());
        }
        let mut items = std::mem::take(&mut self.buffer).into_iter().peekable();
        let mut position = position;
        while let Some((table, first)) = items.next() {
            let stream = &self.streams[table];
            let mut run = vec![first];
            while let Some((_, r)) = items.next_if(|(t, _)| &self.streams[*t] == stream) {
                run.push(r);
            }
            let last = items.peek().is_none();
            let at = if last {
                self.event_unix_ms.take()
            } else {
                None
            };
            ctx.send_at(stream, run, if last { position.take() } else { None }, at)
                .await?;
        }
        Ok(())
    }
}

/// The canonical text of a primary key: a one-column key's value as text
/// (strings unquoted), a composite key as a compact JSON array of its values.
pub fn partition_key(key: &Map<String, Json>) -> String {
    if key.len() == 1 {
        return match key.values().next() {
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
    }
    Json::Array(key.values().cloned().collect()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hstream_io_runtime::stream::Payload;
    use serde_json::json;

    fn config(v: Json) -> MysqlSourceConfig {
        let mut base = json!({"stream": "s", "host": "h", "user": "u", "password": "p",
                              "database": "shop", "table": "orders"});
        for (k, val) in v.as_object().unwrap() {
            base[k] = val.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn obj(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn partition_keys_are_canonical() {
        assert_eq!(partition_key(&obj(json!({"id": 42}))), "42");
        assert_eq!(partition_key(&obj(json!({"id": "abc"}))), "abc");
        assert_eq!(partition_key(&obj(json!({"a": 1, "b": "x"}))), r#"[1,"x"]"#);
        assert_eq!(
            partition_key(&obj(json!({"id": 18446744073709551615u64}))),
            "18446744073709551615"
        );
    }

    #[test]
    fn records_have_the_reference_shape() {
        let out = Output::new(&config(json!({})));
        let r = out.record(
            0,
            obj(json!({"id": 1})),
            Some(obj(json!({"id": 1, "n": "a"}))),
        );
        assert_eq!(r.key, "1");
        assert_eq!(
            r.payload,
            Payload::Json(obj(json!({"key": {"id": 1}, "value": {"id": 1, "n": "a"}})))
        );
        let r = out.record(0, obj(json!({"id": 1})), None);
        assert_eq!(
            r.payload,
            Payload::Json(obj(json!({"key": {"id": 1}, "value": null})))
        );
    }

    #[test]
    fn raw_records_keep_big_integers_and_shared_streams_name_the_table() {
        let out = Output::new(&config(
            json!({"recordFormat": "raw", "tables": ["customers"]}),
        ));
        let r = out.record(
            1,
            obj(json!({"id": 9007199254740993u64})),
            Some(obj(json!({"id": 9007199254740993u64}))),
        );
        assert_eq!(r.key, "shop.customers/9007199254740993");
        let Payload::Raw(bytes) = r.payload else {
            panic!("expected a RAW record")
        };
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"table":"shop.customers","key":{"id":9007199254740993},"value":{"id":9007199254740993}}"#
        );
    }
}
