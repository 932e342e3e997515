//! Plain data types of the stream API: record ids, records, shards, options.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::StreamError;

/// Identifies one record: the shard, the batch (its LSN) and the position in the batch.
///
/// Ordered by shard, then batch, then index. Its text (and serde) form is
/// `"<shard>-<batch>-<index>"`, e.g. `"1868472052563435-4294967301-9"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    /// The shard id.
    pub shard_id: u64,
    /// The batch id (LSN of the batch in its shard).
    pub batch_id: u64,
    /// The index of the record within its batch.
    pub batch_index: u32,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}",
            self.shard_id, self.batch_id, self.batch_index
        )
    }
}

impl FromStr for RecordId {
    type Err = StreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            StreamError::InvalidArgument(format!(
                "record id {s:?} is not \"<shardId>-<batchId>-<batchIndex>\" (three unsigned integers)"
            ))
        };
        let mut it = s.split('-');
        let (Some(a), Some(b), Some(c), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        Ok(Self {
            shard_id: a.parse().map_err(|_| bad())?,
            batch_id: b.parse().map_err(|_| bad())?,
            batch_index: c.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for RecordId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A record's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A JSON object, sent as a `google.protobuf.Struct` (flag JSON).
    /// Numbers travel as doubles, as in HStreamDB.
    Json(serde_json::Map<String, serde_json::Value>),
    /// Arbitrary bytes (flag RAW).
    Raw(Vec<u8>),
    /// A JSON object already serialized as a `google.protobuf.Struct`
    /// (flag JSON), appended as it is: what
    /// [`PayloadWriter`](super::PayloadWriter) builds for sources that write
    /// many records. Only a producer makes this form; readers decode every
    /// JSON record into [`Payload::Json`]. It never equals a `Json` payload of
    /// the same object (compare decoded records instead).
    EncodedJson(Vec<u8>),
}

/// A record to append, or one that was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Partition key; `""` means none (HServer routes it like any other key).
    pub key: String,
    /// Free-form attributes carried in the record header.
    pub attributes: BTreeMap<String, String>,
    /// The payload.
    pub payload: Payload,
}

impl Record {
    /// A JSON record.
    pub fn json(key: impl Into<String>, map: serde_json::Map<String, serde_json::Value>) -> Self {
        Self {
            key: key.into(),
            attributes: BTreeMap::new(),
            payload: Payload::Json(map),
        }
    }

    /// A JSON record whose payload is already a serialized
    /// `google.protobuf.Struct` (see [`PayloadWriter`](super::PayloadWriter)).
    pub fn encoded_json(key: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            key: key.into(),
            attributes: BTreeMap::new(),
            payload: Payload::EncodedJson(bytes),
        }
    }

    /// A RAW record.
    pub fn raw(key: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            attributes: BTreeMap::new(),
            payload: Payload::Raw(bytes.into()),
        }
    }

    /// Adds an attribute (builder style).
    pub fn with_attribute(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.attributes.insert(k.into(), v.into());
        self
    }

    /// Payload size as HStream counts it for batching and flow control: the RAW
    /// bytes, or the serialized `Struct` for JSON (its byte length when
    /// already encoded).
    pub fn encoded_len(&self) -> usize {
        match &self.payload {
            Payload::Raw(b) | Payload::EncodedJson(b) => b.len(),
            Payload::Json(m) => super::codec::json_struct_len(m),
        }
    }
}

/// A record read from a shard, with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRecord {
    /// Where the record is stored.
    pub record_id: RecordId,
    /// The record.
    pub record: Record,
    /// When its batch was appended (the server's publish time, unix ms), if the server said.
    pub publish_time_ms: Option<i64>,
}

/// A batch's publish time in unix milliseconds.
pub(crate) fn publish_time_ms(batch: &super::wire::BatchedRecord) -> Option<i64> {
    batch
        .publish_time
        .as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

/// One shard of a stream: an inclusive range of partition-key hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Server-assigned shard id (a large integer, not 0..N-1).
    pub shard_id: u64,
    /// The stream it belongs to.
    pub stream_name: String,
    /// First hash in the shard.
    pub start_hash_key: u128,
    /// Last hash in the shard (inclusive).
    pub end_hash_key: u128,
}

/// Options for creating a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    /// Number of shards (≥ 1). Default 1.
    pub shard_count: u32,
    /// Replication factor (≥ 1). Default 1.
    pub replication_factor: u32,
    /// Retention in seconds. Default 86400 (one day).
    pub backlog_duration_secs: u32,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            shard_count: 1,
            replication_factor: 1,
            backlog_duration_secs: 86400,
        }
    }
}

/// Where a shard reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderOffset {
    /// The oldest record still stored.
    Earliest,
    /// Only records appended after the reader is created.
    Latest,
    /// The batch containing this record (the whole batch is re-read).
    RecordId(RecordId),
    /// The first batch stored at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionOffset {
    /// From the oldest stored records.
    Earliest,
    /// From records appended after creation (HStream's default).
    #[default]
    Latest,
}

/// Compression of a whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// A gzip stream.
    Gzip,
    /// A zstd frame.
    Zstd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_id_text_roundtrip_and_order() {
        let s = "1868472052563435-4294967301-9";
        let id: RecordId = s.parse().unwrap();
        assert_eq!(id.shard_id, 1868472052563435);
        assert_eq!(id.batch_id, 4294967301);
        assert_eq!(id.batch_index, 9);
        assert_eq!(id.to_string(), s);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
        let back: RecordId = serde_json::from_str(&format!("\"{s}\"")).unwrap();
        assert_eq!(back, id);
        for bad in ["", "1-2", "1-2-3-4", "a-2-3", "1-2-99999999999", "-1-2-3"] {
            assert!(bad.parse::<RecordId>().is_err(), "{bad}");
        }
        let a = RecordId {
            shard_id: 1,
            batch_id: 2,
            batch_index: 9,
        };
        let b = RecordId {
            shard_id: 1,
            batch_id: 3,
            batch_index: 0,
        };
        assert!(a < b);
    }

    #[test]
    fn encoded_len_counts_payload() {
        assert_eq!(Record::raw("", vec![0u8; 100]).encoded_len(), 100);
        let mut m = serde_json::Map::new();
        m.insert("a".into(), serde_json::json!(1));
        assert!(Record::json("", m).encoded_len() > 0);
        // The clone-free length equals the encoded Struct's, for every kind of value.
        let v = serde_json::json!({"": 1, "n": null, "b": true, "f": 1.5, "s": "x".repeat(300),
            "a": [1, "two", null, [], {}], "o": {"k": {"deep": [false]}}, "e": "", "z": {}});
        let m = v.as_object().unwrap().clone();
        assert_eq!(
            crate::stream::codec::json_struct_len(&m),
            prost::Message::encoded_len(&crate::stream::codec::json_to_struct(&m))
        );
    }
}
