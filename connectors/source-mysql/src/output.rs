//! Turns row changes into HStream records in the reference shape and sends
//! them, in order, with the position reached after them.
//!
//! Record: `{"key": {<pk columns>}, "value": {<row>} | null}` (null = delete),
//! plus `"table": "db.t"` when several tables share one stream. Partition key:
//! the canonical text of the primary key — the value itself for a one-column
//! key (`42`, `abc`), a compact JSON array for a composite key (`[1,"a"]`),
//! prefixed with `db.t/` on a shared stream — so a multi-shard stream keeps
//! per-key order.

use hstream_io_runtime::stream::{PayloadEncoding, PayloadWriter, Record};
use hstream_io_runtime::{Result, SourceContext};
use serde_json::Value as Json;

use crate::config::{MysqlSourceConfig, RecordFormat, TableRef, ZeroDate};
use crate::events::Position;
use crate::types::{ConvError, Origin, RowCells, TableSchema};

/// Records buffered before they are handed to the runtime.
pub const FLUSH_RECORDS: usize = 1000;

/// Builds records and buffers them per transaction.
pub struct Output {
    /// Writes each record's payload in its wire form (no JSON map per row).
    writer: PayloadWriter,
    zero: ZeroDate,
    shared: bool,
    tables: Vec<TableRef>,
    /// `db.t` of each table (the `"table"` field and key prefix on a shared stream).
    names: Vec<String>,
    streams: Vec<String>,
    /// Records buffered, in order.
    buffer: Vec<Record>,
    /// Where the stream changes in `buffer`: (table whose stream the run
    /// goes to, index after its last record), in order.
    runs: Vec<(usize, usize)>,
    /// Commit time (unix ms) of the newest change buffered, for the task's lag.
    event_unix_ms: Option<i64>,
}

impl Output {
    /// The output of `config`: table `i` of `config.table_refs()` goes to `streams[i]`.
    pub fn new(config: &MysqlSourceConfig) -> Self {
        let tables = config.table_refs();
        let streams = tables.iter().map(|t| config.stream_for(t)).collect();
        let encoding = match config.record_format {
            RecordFormat::Json => PayloadEncoding::Struct,
            RecordFormat::Raw => PayloadEncoding::JsonText,
        };
        Self {
            writer: PayloadWriter::new(encoding),
            zero: config.zero_date,
            shared: config.shared_stream(),
            names: tables.iter().map(ToString::to_string).collect(),
            tables,
            streams,
            buffer: Vec::new(),
            runs: Vec::new(),
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

    /// Buffers an upsert (`row` = the row image `schema` describes) or a
    /// delete (`row` = None) of table `table`, whose primary key `key` was
    /// converted by [`TableSchema::key_of`].
    pub fn push<R: RowCells + ?Sized>(
        &mut self,
        table: usize,
        schema: &TableSchema,
        key: &[Json],
        row: Option<&R>,
        origin: Origin,
    ) -> std::result::Result<(), ConvError> {
        let record = self.record(table, schema, key, row, origin)?;
        self.buffer.push(record);
        let end = self.buffer.len();
        match self.runs.last_mut() {
            Some((t, last)) if *t == table || self.streams[*t] == self.streams[table] => {
                *last = end
            }
            _ => self.runs.push((table, end)),
        }
        Ok(())
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
        self.runs.clear();
    }

    /// The record `{"table"?, "key": {…}, "value": {…} | null}` of a change.
    fn record<R: RowCells + ?Sized>(
        &mut self,
        table: usize,
        schema: &TableSchema,
        key: &[Json],
        row: Option<&R>,
        origin: Origin,
    ) -> std::result::Result<Record, ConvError> {
        let w = &mut self.writer;
        w.reset();
        if self.shared {
            w.string("table", &self.names[table]);
        }
        w.begin_object("key");
        for (&i, v) in schema.key.iter().zip(key) {
            w.json(&schema.columns[i].name, v);
        }
        w.end_object();
        match row {
            None => w.null("value"),
            Some(values) => {
                w.begin_object("value");
                if let Err(e) = schema.write_row(w, values, key, origin, self.zero) {
                    w.reset();
                    return Err(e);
                }
                w.end_object();
            }
        }
        let mut partition = String::new();
        if self.shared {
            partition.push_str(&self.names[table]);
            partition.push('/');
        }
        push_partition_key(&mut partition, key);
        Ok(self.writer.finish_record(partition))
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
        // The next flush likely holds as many: reserved at once, the buffer
        // is not regrown (and copied) by doubling.
        let reserve = self.buffer.len();
        let mut records = std::mem::replace(&mut self.buffer, Vec::with_capacity(reserve));
        let runs = std::mem::take(&mut self.runs);
        let mut position = position;
        let mut start = 0;
        for (n, &(table, end)) in runs.iter().enumerate() {
            let last = n + 1 == runs.len();
            // The common case, one stream: the buffer is sent as it is.
            let run = if last {
                std::mem::take(&mut records)
            } else {
                let rest = records.split_off(end - start);
                std::mem::replace(&mut records, rest)
            };
            start = end;
            let at = if last {
                self.event_unix_ms.take()
            } else {
                None
            };
            ctx.send_at(
                &self.streams[table],
                run,
                if last { position.take() } else { None },
                at,
            )
            .await?;
        }
        Ok(())
    }
}

/// The canonical text of a primary key (its values in key order): a
/// one-column key's value as text (strings unquoted), a composite key as a
/// compact JSON array of its values.
#[cfg(test)]
fn partition_key(key: &[Json]) -> String {
    let mut out = String::new();
    push_partition_key(&mut out, key);
    out
}

fn push_partition_key(out: &mut String, key: &[Json]) {
    match key {
        [Json::String(s)] => out.push_str(s),
        [one] => push_json(out, one),
        many => {
            out.push('[');
            for (n, v) in many.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                push_json(out, v);
            }
            out.push(']');
        }
    }
}

/// The compact JSON text of `v` (its `Display`), integers without
/// `core::fmt`: a key is written for every record.
fn push_json(out: &mut String, v: &Json) {
    use std::fmt::Write as _;
    let integer = match v {
        Json::Number(n) => n
            .as_u64()
            .map(|u| (false, u))
            .or_else(|| n.as_i64().map(|i| (true, i.unsigned_abs()))),
        _ => None,
    };
    match integer {
        Some((negative, magnitude)) => {
            if negative {
                out.push('-');
            }
            hstream_io_runtime::sql_values::push_padded(out, magnitude, 1);
        }
        // Display of a JSON value is its compact text; writing to a String cannot fail.
        None => {
            let _ = write!(out, "{v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Charset, ColKind, Column};
    use hstream_io_runtime::stream::Payload;
    use mysql_async::Value;
    use serde_json::json;

    fn config(v: Json) -> MysqlSourceConfig {
        let mut base = json!({"stream": "s", "host": "h", "user": "u", "password": "p",
                              "database": "shop", "table": "orders"});
        for (k, val) in v.as_object().unwrap() {
            base[k] = val.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    /// `(id BIGINT UNSIGNED PRIMARY KEY, n TEXT)` of `shop.<name>`.
    fn schema(name: &str) -> TableSchema {
        TableSchema {
            table: TableRef {
                database: "shop".into(),
                name: name.into(),
            },
            columns: vec![
                Column {
                    name: "id".into(),
                    kind: ColKind::Int {
                        unsigned: true,
                        bytes: 8,
                    },
                },
                Column {
                    name: "n".into(),
                    kind: ColKind::Text(Charset::Utf8),
                },
            ],
            key: vec![0],
        }
    }

    fn record(out: &mut Output, table: usize, id: u64, value: Option<&str>) -> Record {
        let s = schema(if table == 0 { "orders" } else { "customers" });
        let row = [Some(Value::UInt(id)), value.map(|v| Value::Bytes(v.into()))];
        let key = s.key_of(&row[..], Origin::Binlog, ZeroDate::Null).unwrap();
        out.record(table, &s, &key, value.map(|_| &row[..]), Origin::Binlog)
            .unwrap()
    }

    fn struct_of(v: Json) -> Payload {
        let mut w = PayloadWriter::new(PayloadEncoding::Struct);
        for (k, v) in v.as_object().unwrap() {
            w.json(k, v);
        }
        w.finish()
    }

    #[test]
    fn partition_keys_are_canonical() {
        assert_eq!(partition_key(&[json!(42)]), "42");
        assert_eq!(partition_key(&[json!("abc")]), "abc");
        assert_eq!(partition_key(&[json!(1), json!("x")]), r#"[1,"x"]"#);
        assert_eq!(
            partition_key(&[json!(18446744073709551615u64)]),
            "18446744073709551615"
        );
        assert_eq!(
            partition_key(&[json!("a\"b"), json!(null)]),
            r#"["a\"b",null]"#
        );
        for n in [
            json!(0),
            json!(-1),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1.5),
            json!(-0.25),
        ] {
            assert_eq!(partition_key(std::slice::from_ref(&n)), n.to_string());
            assert_eq!(partition_key(&[n.clone(), json!(7)]), format!("[{n},7]"));
        }
    }

    #[test]
    fn records_have_the_reference_shape() {
        let mut out = Output::new(&config(json!({})));
        let r = record(&mut out, 0, 1, Some("a"));
        assert_eq!(r.key, "1");
        assert_eq!(
            r.payload,
            struct_of(json!({"key": {"id": 1}, "value": {"id": 1, "n": "a"}}))
        );
        let r = record(&mut out, 0, 1, None);
        assert_eq!(
            r.payload,
            struct_of(json!({"key": {"id": 1}, "value": null}))
        );
    }

    #[test]
    fn raw_records_keep_big_integers_and_shared_streams_name_the_table() {
        let mut out = Output::new(&config(
            json!({"recordFormat": "raw", "tables": ["customers"]}),
        ));
        let r = record(&mut out, 1, 9007199254740993, Some("x"));
        assert_eq!(r.key, "shop.customers/9007199254740993");
        let Payload::Raw(bytes) = r.payload else {
            panic!("expected a RAW record")
        };
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"table":"shop.customers","key":{"id":9007199254740993},"value":{"id":9007199254740993,"n":"x"}}"#
        );
        let r = record(&mut out, 0, 2, None);
        assert_eq!(
            r.payload,
            Payload::Raw(br#"{"table":"shop.orders","key":{"id":2},"value":null}"#.to_vec())
        );
    }

    #[test]
    fn a_conversion_error_leaves_no_half_record() {
        let mut out = Output::new(&config(json!({"recordFormat": "raw"})));
        let s = schema("orders");
        let row = [Some(Value::UInt(1)), Some(Value::Bytes(vec![0xff]))];
        let key = s
            .key_of(&row[..], Origin::Snapshot, ZeroDate::Null)
            .unwrap();
        let e = out
            .push(0, &s, &key, Some(&row[..]), Origin::Snapshot)
            .unwrap_err();
        assert_eq!(e.column, "n");
        assert_eq!(out.buffered(), 0);
        let r = record(&mut out, 0, 3, Some("ok"));
        assert_eq!(
            r.payload,
            Payload::Raw(br#"{"key":{"id":3},"value":{"id":3,"n":"ok"}}"#.to_vec())
        );
    }
}
