//! Conversions between [`Record`]s and the wire's `BatchedRecord`:
//! JSON ↔ `google.protobuf.Struct`, batching, compression.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use prost::Message;
use prost_types::value::Kind;

use super::error::StreamError;
use super::types::{Compression, Payload, Record, RecordId};
use super::wire;

/// Largest decompressed batch accepted when reading (guards against
/// decompression bombs in corrupt or hostile data).
pub(crate) const MAX_DECOMPRESSED_BATCH: u64 = 512 * 1024 * 1024;

/// JSON object → `Struct` (numbers become doubles).
pub(crate) fn json_to_struct(
    map: &serde_json::Map<String, serde_json::Value>,
) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// `json_to_struct(map).encoded_len()` without building the `Struct` (no
/// string copies): sources count every record's size for flow control.
pub(crate) fn json_struct_len(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    use prost::encoding::{encoded_len_varint, key_len};
    // Map entries (field 1): key string (field 1, omitted when empty) and
    // Value (field 2, always present: every JSON value sets `kind`).
    map.iter()
        .map(|(k, v)| {
            let key = if k.is_empty() {
                0
            } else {
                key_len(1) + encoded_len_varint(k.len() as u64) + k.len()
            };
            let value = json_value_len(v);
            let entry = key + key_len(2) + encoded_len_varint(value as u64) + value;
            key_len(1) + encoded_len_varint(entry as u64) + entry
        })
        .sum()
}

/// Encoded length of the `Value` message of `v`.
fn json_value_len(v: &serde_json::Value) -> usize {
    use prost::encoding::{encoded_len_varint, key_len};
    use serde_json::Value as J;
    let nested = |tag: u32, len: usize| key_len(tag) + encoded_len_varint(len as u64) + len;
    match v {
        J::Null => key_len(1) + 1,
        J::Bool(_) => key_len(4) + 1,
        J::Number(_) => key_len(2) + 8,
        J::String(s) => nested(3, s.len()),
        J::Array(a) => nested(
            6,
            a.iter()
                .map(|x| {
                    let l = json_value_len(x);
                    key_len(1) + encoded_len_varint(l as u64) + l
                })
                .sum(),
        ),
        J::Object(o) => nested(5, json_struct_len(o)),
    }
}

fn json_to_value(v: &serde_json::Value) -> prost_types::Value {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        J::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// `Struct` → JSON object. Doubles that are whole numbers within ±2^53 come
/// back as JSON integers; NaN/infinity become `null`.
pub(crate) fn struct_to_json(s: prost_types::Struct) -> serde_json::Map<String, serde_json::Value> {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, value_to_json(v)))
        .collect()
}

fn value_to_json(v: prost_types::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 {
                J::from(n as i64)
            } else {
                serde_json::Number::from_f64(n).map_or(J::Null, J::Number)
            }
        }
        Some(Kind::StringValue(s)) => J::String(s),
        Some(Kind::ListValue(l)) => J::Array(l.values.into_iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => J::Object(struct_to_json(s)),
    }
}

/// The wire message of a record: the oracle [`encode_records`] is tested against.
#[cfg(test)]
fn to_wire_record(r: Record) -> wire::HStreamRecord {
    let (flag, payload) = match r.payload {
        Payload::Json(m) => (
            wire::h_stream_record_header::Flag::Json,
            json_to_struct(&m).encode_to_vec(),
        ),
        Payload::EncodedJson(b) => (wire::h_stream_record_header::Flag::Json, b),
        Payload::Raw(b) => (wire::h_stream_record_header::Flag::Raw, b),
    };
    wire::HStreamRecord {
        header: Some(wire::HStreamRecordHeader {
            flag: flag as i32,
            attributes: r.attributes.into_iter().collect(),
            key: r.key,
        }),
        payload,
    }
}

fn from_wire_record(r: wire::HStreamRecord, target: &str) -> Result<Record, StreamError> {
    let header = r.header.unwrap_or_default();
    let payload = if header.flag == wire::h_stream_record_header::Flag::Raw as i32 {
        Payload::Raw(r.payload)
    } else {
        let s =
            prost_types::Struct::decode(r.payload.as_slice()).map_err(|e| StreamError::Decode {
                what: "JSON record payload (google.protobuf.Struct)",
                target: target.to_string(),
                reason: e.to_string(),
            })?;
        Payload::Json(struct_to_json(s))
    };
    Ok(Record {
        key: header.key,
        attributes: header.attributes.into_iter().collect::<BTreeMap<_, _>>(),
        payload,
    })
}

/// The bytes of `BatchHStreamRecords { records }`, written straight from the
/// records: exactly what prost writes for the wire messages (tested against
/// it), without building an `HStreamRecord` with a header and an attribute
/// map per record first. A source appends every record it captures through here.
fn encode_records(mut records: Vec<Record>) -> Vec<u8> {
    use prost::encoding::{
        WireType, btree_map, encode_key, encode_varint, encoded_len_varint, key_len, string,
    };
    for r in &mut records {
        if let Payload::Json(m) = &r.payload {
            r.payload = Payload::EncodedJson(json_to_struct(m).encode_to_vec());
        }
    }
    let flag_of = |r: &Record| match r.payload {
        Payload::Raw(_) => wire::h_stream_record_header::Flag::Raw as i32,
        _ => wire::h_stream_record_header::Flag::Json as i32,
    };
    fn payload_of(r: &Record) -> &[u8] {
        match &r.payload {
            Payload::Raw(b) | Payload::EncodedJson(b) => b,
            Payload::Json(_) => unreachable!("converted above"),
        }
    }
    let header_len = |r: &Record| {
        let flag = flag_of(r);
        let flag_len = if flag == 0 {
            0
        } else {
            key_len(1) + encoded_len_varint(flag as u64)
        };
        let key_field = if r.key.is_empty() {
            0
        } else {
            string::encoded_len(3, &r.key)
        };
        flag_len
            + btree_map::encoded_len(string::encoded_len, string::encoded_len, 2, &r.attributes)
            + key_field
    };
    let record_len = |r: &Record, header: usize| {
        let payload = payload_of(r).len();
        let payload_field = if payload == 0 {
            0
        } else {
            key_len(2) + encoded_len_varint(payload as u64) + payload
        };
        key_len(1) + encoded_len_varint(header as u64) + header + payload_field
    };
    let lens: Vec<(usize, usize)> = records
        .iter()
        .map(|r| {
            let header = header_len(r);
            (header, record_len(r, header))
        })
        .collect();
    let total: usize = lens
        .iter()
        .map(|&(_, len)| key_len(1) + encoded_len_varint(len as u64) + len)
        .sum();
    let mut out = Vec::with_capacity(total);
    for (r, &(header, len)) in records.iter().zip(&lens) {
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(len as u64, &mut out);
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(header as u64, &mut out);
        let flag = flag_of(r);
        if flag != 0 {
            encode_key(1, WireType::Varint, &mut out);
            encode_varint(flag as u64, &mut out);
        }
        btree_map::encode(
            string::encode,
            string::encoded_len,
            string::encode,
            string::encoded_len,
            2,
            &r.attributes,
            &mut out,
        );
        if !r.key.is_empty() {
            string::encode(3, &r.key, &mut out);
        }
        let payload = payload_of(r);
        if !payload.is_empty() {
            encode_key(2, WireType::LengthDelimited, &mut out);
            encode_varint(payload.len() as u64, &mut out);
            out.extend_from_slice(payload);
        }
    }
    debug_assert_eq!(out.len(), total);
    out
}

/// Encodes records as one `BatchedRecord` (payload compressed as a whole).
pub(crate) fn encode_batch(
    records: Vec<Record>,
    compression: Compression,
) -> Result<wire::BatchedRecord, StreamError> {
    let count = records.len();
    let raw = encode_records(records);
    let (ctype, payload) = match compression {
        Compression::None => (wire::CompressionType::None, raw),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&raw)
                .and_then(|()| enc.finish())
                .map(|v| (wire::CompressionType::Gzip, v))
                .map_err(|e| {
                    StreamError::InvalidArgument(format!("gzip compression failed: {e}"))
                })?
        }
        Compression::Zstd => (
            wire::CompressionType::Zstd,
            zstd::bulk::compress(&raw, 1).map_err(|e| {
                StreamError::InvalidArgument(format!("zstd compression failed: {e}"))
            })?,
        ),
    };
    Ok(wire::BatchedRecord {
        compression_type: ctype as i32,
        publish_time: None,
        batch_size: u32::try_from(count).map_err(|_| {
            StreamError::InvalidArgument(format!("batch of {count} records is too large"))
        })?,
        payload: payload.into(),
    })
}

/// Decodes a stored `BatchedRecord` into its records. `target` names where
/// it came from (for error messages).
pub(crate) fn decode_batch(
    b: &wire::BatchedRecord,
    target: &str,
) -> Result<Vec<Record>, StreamError> {
    wire_records(b, target)?
        .into_iter()
        .map(|r| from_wire_record(r, target))
        .collect()
}

/// Decodes a stored `BatchedRecord` into its records with each payload left
/// as stored (see [`EncodedRecord`]): for readers that decode JSON payloads
/// themselves, such as the sink driver.
///
/// Read by hand from the batch's bytes: every key and payload is a slice of the received (or
/// decompressed) batch, so a read costs no allocation and no copy per record. Attributes are
/// skipped. Decodes exactly what prost decodes (tested against it): a later field of a record
/// replaces an earlier one, unknown fields are skipped, a key must be UTF-8.
pub(crate) fn decode_batch_encoded(
    b: &wire::BatchedRecord,
    target: &str,
) -> Result<Vec<EncodedRecord>, StreamError> {
    let raw = decompressed(b, target)?;
    let derr = |reason: String| StreamError::Decode {
        what: "batch (BatchHStreamRecords)",
        target: target.to_string(),
        reason,
    };
    let mut out = Vec::with_capacity(b.batch_size as usize);
    let mut rest: &[u8] = &raw;
    while !rest.is_empty() {
        let (tag, wire_type) = next_field(&mut rest).map_err(derr)?;
        if tag == 1 {
            known(wire_type, prost::encoding::WireType::LengthDelimited).map_err(derr)?;
            let record = length_delimited(&mut rest).map_err(derr)?;
            out.push(encoded_record(&raw, record).map_err(derr)?);
        } else {
            skip(wire_type, tag, &mut rest).map_err(derr)?;
        }
    }
    if out.len() != b.batch_size as usize {
        return Err(derr(format!(
            "batchSize is {} but the payload holds {} records",
            b.batch_size,
            out.len()
        )));
    }
    Ok(out)
}

/// One `HStreamRecord` (`bytes`, a slice of `batch`) as an [`EncodedRecord`] sharing `batch`.
fn encoded_record(batch: &bytes::Bytes, mut bytes: &[u8]) -> Result<EncodedRecord, String> {
    use prost::encoding::{WireType, decode_varint};
    let mut flag = 0u64;
    let mut key: &[u8] = &[];
    let mut payload: &[u8] = &[];
    while !bytes.is_empty() {
        match next_field(&mut bytes)? {
            (1, wire_type) => {
                known(wire_type, WireType::LengthDelimited)?;
                let mut header = length_delimited(&mut bytes)?;
                while !header.is_empty() {
                    match next_field(&mut header)? {
                        (1, wire_type) => {
                            known(wire_type, WireType::Varint)?;
                            flag = decode_varint(&mut header).map_err(|e| e.to_string())?;
                        }
                        (2, wire_type) => {
                            // An attribute (map entry): checked as prost does, not kept.
                            known(wire_type, WireType::LengthDelimited)?;
                            let mut entry = length_delimited(&mut header)?;
                            while !entry.is_empty() {
                                match next_field(&mut entry)? {
                                    (1 | 2, wire_type) => {
                                        known(wire_type, WireType::LengthDelimited)?;
                                        let text = length_delimited(&mut entry)?;
                                        std::str::from_utf8(text).map_err(|e| {
                                            format!("an attribute is not UTF-8: {e}")
                                        })?;
                                    }
                                    (tag, wire_type) => skip(wire_type, tag, &mut entry)?,
                                }
                            }
                        }
                        (3, wire_type) => {
                            known(wire_type, WireType::LengthDelimited)?;
                            key = length_delimited(&mut header)?;
                        }
                        (tag, wire_type) => skip(wire_type, tag, &mut header)?,
                    }
                }
            }
            (2, wire_type) => {
                known(wire_type, WireType::LengthDelimited)?;
                payload = length_delimited(&mut bytes)?;
            }
            (tag, wire_type) => skip(wire_type, tag, &mut bytes)?,
        }
    }
    std::str::from_utf8(key).map_err(|e| format!("a record key is not UTF-8: {e}"))?;
    Ok(EncodedRecord {
        key: batch.slice_ref(key),
        // As prost reads the enum: the low 32 bits of the varint.
        is_json: flag as i32 != wire::h_stream_record_header::Flag::Raw as i32,
        payload: batch.slice_ref(payload),
    })
}

/// A known field must come with its own wire type (prost refuses it otherwise).
fn known(
    wire_type: prost::encoding::WireType,
    expected: prost::encoding::WireType,
) -> Result<(), String> {
    if wire_type == expected {
        Ok(())
    } else {
        Err(format!(
            "invalid wire type: {wire_type:?} (expected {expected:?})"
        ))
    }
}

/// Reads a field's key.
fn next_field(buf: &mut &[u8]) -> Result<(u32, prost::encoding::WireType), String> {
    prost::encoding::decode_key(buf).map_err(|e| e.to_string())
}

/// Reads a length-delimited field's bytes (after its key).
fn length_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = prost::encoding::decode_varint(buf).map_err(|e| e.to_string())?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= buf.len())
        .ok_or_else(|| format!("a field of {len} bytes where {} are left", buf.len()))?;
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Ok(field)
}

/// Skips a field this decoder does not keep.
fn skip(wire_type: prost::encoding::WireType, tag: u32, buf: &mut &[u8]) -> Result<(), String> {
    prost::encoding::skip_field(wire_type, tag, buf, Default::default()).map_err(|e| e.to_string())
}

/// A record read with its payload as stored, not decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRecord {
    /// Partition key (`""` when none), UTF-8 (checked when read); see [`EncodedRecord::key`].
    key: bytes::Bytes,
    /// True for a JSON (HRecord) record: `payload` is then the encoded
    /// `google.protobuf.Struct` (see `hstream_io_runtime::record::parse_struct`);
    /// false for a RAW record: `payload` is its bytes.
    pub is_json: bool,
    /// The payload bytes as stored (a slice of the batch that was read).
    pub payload: bytes::Bytes,
}

impl EncodedRecord {
    /// The partition key (`""` when none).
    pub fn key(&self) -> &str {
        std::str::from_utf8(&self.key).unwrap_or_default()
    }

    /// The partition key's bytes, shared with the batch that was read.
    pub fn key_bytes(&self) -> &bytes::Bytes {
        &self.key
    }
}

/// The batch's `BatchHStreamRecords` bytes: the payload itself when uncompressed (a cheap
/// clone of the received buffer), else decompressed (bounded by [`MAX_DECOMPRESSED_BATCH`]).
fn decompressed(b: &wire::BatchedRecord, target: &str) -> Result<bytes::Bytes, StreamError> {
    let derr = |what: &'static str, reason: String| StreamError::Decode {
        what,
        target: target.to_string(),
        reason,
    };
    match wire::CompressionType::try_from(b.compression_type) {
        Ok(wire::CompressionType::None) => Ok(b.payload.clone()),
        Ok(wire::CompressionType::Gzip) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&b.payload[..])
                .take(MAX_DECOMPRESSED_BATCH)
                .read_to_end(&mut out)
                .map_err(|e| derr("gzip batch", e.to_string()))?;
            Ok(out.into())
        }
        Ok(wire::CompressionType::Zstd) => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(&b.payload[..])
                .map_err(|e| derr("zstd batch", e.to_string()))?
                .take(MAX_DECOMPRESSED_BATCH)
                .read_to_end(&mut out)
                .map_err(|e| derr("zstd batch", e.to_string()))?;
            Ok(out.into())
        }
        Err(_) => Err(derr(
            "batch",
            format!("unknown compressionType {}", b.compression_type),
        )),
    }
}

/// Decompresses and decodes a `BatchedRecord` into its wire records.
fn wire_records(
    b: &wire::BatchedRecord,
    target: &str,
) -> Result<Vec<wire::HStreamRecord>, StreamError> {
    let derr = |what: &'static str, reason: String| StreamError::Decode {
        what,
        target: target.to_string(),
        reason,
    };
    let raw = decompressed(b, target)?;
    let batch = wire::BatchHStreamRecords::decode(raw.as_ref())
        .map_err(|e| derr("batch (BatchHStreamRecords)", e.to_string()))?;
    if batch.records.len() != b.batch_size as usize {
        return Err(derr(
            "batch",
            format!(
                "batchSize is {} but the payload holds {} records",
                b.batch_size,
                batch.records.len()
            ),
        ));
    }
    Ok(batch.records)
}

/// An `AppendResponse` whose record ids stay in their wire bytes until someone asks for them.
///
/// Sources append whole batches and only need to know that every record was stored, so decoding
/// one `RecordId` message per record (about 900 instructions each, measured) is work for nobody.
/// Decoding keeps field 3 (`recordIds`) as it came and counts its entries; `streamName` and
/// `shardId` (fields 1, 2) are skipped: the caller knows where it appended.
#[derive(Debug, Clone, Default)]
pub(crate) struct AppendAck {
    /// Number of record ids in the response.
    count: usize,
    /// The `recordIds` entries as on the wire: key, length, `RecordId` message, repeated.
    ids: Vec<u8>,
    /// The entry being read (reused).
    scratch: Vec<u8>,
}

/// Wire key of `AppendResponse.recordIds`: field 3, length-delimited.
const RECORD_IDS_KEY: u8 = (3 << 3) | 2;

impl AppendAck {
    /// Number of record ids the server returned.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Decodes the record ids, in order.
    pub(crate) fn ids(&self) -> Result<Vec<RecordId>, prost::DecodeError> {
        let response = wire::AppendResponse::decode(self.ids.as_slice())?;
        Ok(response
            .record_ids
            .iter()
            .map(super::client::record_id_from_wire)
            .collect())
    }
}

impl Message for AppendAck {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.ids);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        use prost::encoding::{WireType, encode_varint, skip_field};
        if tag != 3 || wire_type != WireType::LengthDelimited {
            return skip_field(wire_type, tag, buf, ctx);
        }
        // prost reads (and checks) the entry; it is kept with its key and length.
        prost::encoding::bytes::merge(wire_type, &mut self.scratch, buf, ctx)?;
        self.ids.push(RECORD_IDS_KEY);
        encode_varint(self.scratch.len() as u64, &mut self.ids);
        self.ids.extend_from_slice(&self.scratch);
        self.count += 1;
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.ids.len()
    }

    fn clear(&mut self) {
        self.count = 0;
        self.ids.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_ack_keeps_the_record_ids_until_asked() {
        let ids: Vec<wire::RecordId> = (0..300u64)
            .map(|i| wire::RecordId {
                shard_id: 7 + i % 2,
                batch_id: u64::MAX - i,
                batch_index: (i % 1000) as u32,
            })
            .collect();
        let response = wire::AppendResponse {
            stream_name: "orders".into(),
            shard_id: 7,
            record_ids: ids.clone(),
        };
        let bytes = response.encode_to_vec();
        let ack = AppendAck::decode(bytes.as_slice()).unwrap();
        assert_eq!(ack.len(), 300);
        let expected: Vec<RecordId> = ids
            .iter()
            .map(super::super::client::record_id_from_wire)
            .collect();
        assert_eq!(ack.ids().unwrap(), expected);
        // Re-encoded, it is the response without its stream name and shard id.
        let again = wire::AppendResponse::decode(ack.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again.record_ids, ids);
        // An empty response, and every truncation: an error or fewer ids, never a panic.
        assert_eq!(AppendAck::decode(&[][..]).unwrap().len(), 0);
        for cut in 0..bytes.len().min(200) {
            if let Ok(a) = AppendAck::decode(&bytes[..cut]) {
                assert!(a.len() < 300);
            }
        }
    }

    #[test]
    fn records_encode_exactly_as_prost_does() {
        let mut m = serde_json::Map::new();
        m.insert("s".into(), serde_json::json!("y".repeat(200)));
        let cases = vec![
            vec![],
            sample(),
            vec![Record::raw("", Vec::new())],
            vec![Record::encoded_json("", Vec::new())],
            vec![Record::encoded_json("key", vec![7; 300]).with_attribute("", "")],
            vec![
                Record::raw("k".repeat(130), vec![1; 20_000]).with_attribute("x", "y".repeat(129)),
            ],
            vec![
                Record::json("", m),
                Record::raw("a", b"b".to_vec()).with_attribute("k", ""),
            ],
        ];
        for records in cases {
            let expected = wire::BatchHStreamRecords {
                records: records.clone().into_iter().map(to_wire_record).collect(),
            }
            .encode_to_vec();
            assert_eq!(encode_records(records.clone()), expected, "{records:?}");
        }
        // Several attributes: prost's map order is the HashMap's, so compare decoded.
        let r = Record::raw("k", b"p".to_vec())
            .with_attribute("b", "2")
            .with_attribute("a", "1")
            .with_attribute("c", "");
        let back =
            wire::BatchHStreamRecords::decode(encode_records(vec![r.clone()]).as_slice()).unwrap();
        assert_eq!(back.records, vec![to_wire_record(r)]);
    }

    fn sample() -> Vec<Record> {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), serde_json::json!(42));
        m.insert("f".into(), serde_json::json!(1.5));
        m.insert("s".into(), serde_json::json!("x"));
        m.insert("n".into(), serde_json::json!({"a": [true, null]}));
        vec![
            Record::json("k1", m).with_attribute("a", "b"),
            Record::raw("", b"\x00\x01raw".to_vec()),
        ]
    }

    #[test]
    fn roundtrip_all_compressions() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let b = encode_batch(sample(), c).unwrap();
            assert_eq!(b.batch_size, 2);
            assert_eq!(decode_batch(&b, "t").unwrap(), sample(), "{c:?}");
        }
    }

    /// The old decoding of `decode_batch_encoded`: prost's messages, field by field.
    fn encoded_by_prost(
        b: &wire::BatchedRecord,
    ) -> Result<Vec<(String, bool, Vec<u8>)>, StreamError> {
        Ok(wire_records(b, "t")?
            .into_iter()
            .map(|r| {
                let header = r.header.unwrap_or_default();
                let is_json = header.flag != wire::h_stream_record_header::Flag::Raw as i32;
                (header.key, is_json, r.payload)
            })
            .collect())
    }

    fn encoded_by_hand(
        b: &wire::BatchedRecord,
    ) -> Result<Vec<(String, bool, Vec<u8>)>, StreamError> {
        Ok(decode_batch_encoded(b, "t")?
            .into_iter()
            .map(|r| (r.key().to_string(), r.is_json, r.payload.to_vec()))
            .collect())
    }

    #[test]
    fn hand_decoding_reads_what_prost_reads() {
        let mut m = serde_json::Map::new();
        m.insert("k".into(), serde_json::json!("v".repeat(300)));
        let records = vec![
            Record::json("k1", m.clone())
                .with_attribute("a", "b")
                .with_attribute("c", "d"),
            Record::raw("", b"".to_vec()),
            Record::raw("ключ", vec![7; 20_000]),
            Record::encoded_json("", vec![]),
            Record::json("x".repeat(200), m),
        ];
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let b = encode_batch(records.clone(), c).unwrap();
            assert_eq!(
                encoded_by_hand(&b).unwrap(),
                encoded_by_prost(&b).unwrap(),
                "{c:?}"
            );
        }
        // Unknown fields at every level, a header given twice (merged), a flag varint wider
        // than 32 bits: as prost reads them.
        let mut header = wire::HStreamRecordHeader {
            flag: 1,
            attributes: Default::default(),
            key: "first".into(),
        }
        .encode_to_vec();
        header.extend_from_slice(&[0x28, 0x05]); // field 5, varint: unknown
        let second = wire::HStreamRecordHeader {
            flag: 0,
            attributes: [("x".to_string(), "y".to_string())].into_iter().collect(),
            key: String::new(),
        }
        .encode_to_vec();
        let mut record = Vec::new();
        prost::encoding::bytes::encode(1, &header, &mut record);
        prost::encoding::bytes::encode(7, &b"junk".to_vec(), &mut record); // unknown
        prost::encoding::bytes::encode(2, &b"payload".to_vec(), &mut record);
        prost::encoding::bytes::encode(1, &second, &mut record);
        let mut wide_flag = Vec::new();
        prost::encoding::encode_key(1, prost::encoding::WireType::Varint, &mut wide_flag);
        prost::encoding::encode_varint((1u64 << 40) | 1, &mut wide_flag);
        let mut record2 = Vec::new();
        prost::encoding::bytes::encode(1, &wide_flag, &mut record2);
        let mut batch = Vec::new();
        prost::encoding::bytes::encode(1, &record, &mut batch);
        prost::encoding::uint64::encode(9, &3, &mut batch); // unknown
        prost::encoding::bytes::encode(1, &record2, &mut batch);
        let b = wire::BatchedRecord {
            compression_type: wire::CompressionType::None as i32,
            publish_time: None,
            batch_size: 2,
            payload: batch.clone().into(),
        };
        let by_prost = encoded_by_prost(&b).unwrap();
        assert_eq!(
            by_prost[0],
            ("first".to_string(), false, b"payload".to_vec())
        );
        assert_eq!(encoded_by_hand(&b).unwrap(), by_prost);
        // Every truncation and every single-byte change: both fail, or both read the same.
        let check = |bytes: Vec<u8>| {
            let b = wire::BatchedRecord {
                compression_type: wire::CompressionType::None as i32,
                publish_time: None,
                batch_size: 2,
                payload: bytes.into(),
            };
            match (encoded_by_hand(&b), encoded_by_prost(&b)) {
                (Ok(h), Ok(p)) => assert_eq!(h, p),
                (Err(_), Err(_)) => {}
                (h, p) => panic!("hand {h:?} vs prost {p:?}"),
            }
        };
        for cut in 0..batch.len() {
            check(batch[..cut].to_vec());
        }
        for at in 0..batch.len() {
            for v in [0x00, 0x01, 0x80, 0xff] {
                let mut changed = batch.clone();
                changed[at] = v;
                check(changed);
            }
        }
        let bad_key = Record::raw("k", b"p".to_vec());
        let mut bytes = encode_batch(vec![bad_key], Compression::None).unwrap();
        let mut raw = bytes.payload.to_vec();
        let at = raw.iter().position(|&c| c == b'k').unwrap();
        raw[at] = 0xff;
        bytes.payload = raw.into();
        assert!(decode_batch_encoded(&bytes, "t").is_err());
    }

    #[test]
    fn encoded_decode_keeps_payloads_as_stored() {
        let b = encode_batch(sample(), Compression::Zstd).unwrap();
        let got = decode_batch_encoded(&b, "t").unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_json);
        assert_eq!(got[0].key(), "k1");
        let Payload::Json(map) = &sample()[0].payload else {
            unreachable!()
        };
        assert_eq!(got[0].payload, json_to_struct(map).encode_to_vec());
        assert!(!got[1].is_json);
        assert_eq!(got[1].payload[..], b"\x00\x01raw"[..]);
    }

    #[test]
    fn encoded_json_records_travel_like_json_records() {
        let obj = serde_json::json!({"key": {"id": 42}, "value": {"s": "x", "f": 1.5, "n": null}});
        let mut w = super::super::PayloadWriter::new(super::super::PayloadEncoding::Struct);
        for (k, v) in obj.as_object().unwrap() {
            w.json(k, v);
        }
        let encoded = w.finish_record("k1").with_attribute("a", "b");
        let plain = Record::json("k1", obj.as_object().unwrap().clone()).with_attribute("a", "b");
        assert_eq!(encoded.encoded_len(), plain.encoded_len());
        let a = encode_batch(vec![encoded], Compression::None).unwrap();
        let b = encode_batch(vec![plain.clone()], Compression::None).unwrap();
        assert_eq!(decode_batch(&a, "t").unwrap(), vec![plain]);
        assert_eq!(a.payload.len(), b.payload.len());
    }

    #[test]
    fn wire_bytes_match_hstream_field_numbers() {
        let id = wire::RecordId {
            shard_id: 1,
            batch_id: 2,
            batch_index: 3,
        };
        assert_eq!(id.encode_to_vec(), vec![0x08, 1, 0x10, 2, 0x18, 3]);
        let b = wire::BatchedRecord {
            compression_type: wire::CompressionType::Zstd as i32,
            publish_time: None,
            batch_size: 1,
            payload: vec![0xaa].into(),
        };
        assert_eq!(b.encode_to_vec(), vec![0x08, 2, 0x18, 1, 0x22, 1, 0xaa]);
        let req = wire::AppendRequest {
            stream_name: "s".into(),
            shard_id: 5,
            records: None,
        };
        assert_eq!(req.encode_to_vec(), vec![0x0a, 1, b's', 0x10, 5]);
        let h = wire::HStreamRecordHeader {
            flag: wire::h_stream_record_header::Flag::Raw as i32,
            attributes: Default::default(),
            key: "k".into(),
        };
        assert_eq!(h.encode_to_vec(), vec![0x08, 1, 0x1a, 1, b'k']);
        let off = wire::ShardOffset {
            offset: Some(wire::shard_offset::Offset::TimestampOffset(
                wire::TimestampOffset {
                    timestamp_in_ms: 7,
                    strict_accuracy: false,
                },
            )),
        };
        assert_eq!(off.encode_to_vec(), vec![0x1a, 2, 0x08, 7]);
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let mut b = encode_batch(sample(), Compression::Gzip).unwrap();
        b.payload.truncate(5);
        assert!(decode_batch(&b, "t").is_err());
        let mut b = encode_batch(sample(), Compression::Zstd).unwrap();
        let mut p = b.payload.to_vec();
        p[0] ^= 0xff;
        b.payload = p.into();
        assert!(decode_batch(&b, "t").is_err());
        let mut b = encode_batch(sample(), Compression::None).unwrap();
        b.batch_size = 3;
        assert!(decode_batch(&b, "t").is_err());
        b.compression_type = 9;
        assert!(decode_batch(&b, "t").is_err());
        let bad = wire::BatchedRecord {
            compression_type: 0,
            publish_time: None,
            batch_size: 1,
            payload: vec![0xff, 0xff, 0xff].into(),
        };
        assert!(decode_batch(&bad, "t").is_err());
    }
}
