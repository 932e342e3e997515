//! [`PayloadWriter`]: builds a record's JSON payload straight into its wire
//! bytes — a `google.protobuf.Struct` for a JSON record, compact JSON text for
//! a RAW one — without a `serde_json::Map` per record.
//!
//! Sources that emit many records (CDC snapshots, binlog/WAL backlogs) write
//! each row's fields here; the record is then appended as it is
//! ([`Payload::EncodedJson`] or [`Payload::Raw`]), never re-encoded.
//!
//! The `Struct` bytes decode (`prost_types::Struct::decode`) to exactly what
//! [`Record::json`] of the same object sends; the JSON text is byte for byte
//! what `serde_json::to_vec` of the same object gives (same field order,
//! escaping, integer and float forms).

use std::fmt;

use prost::encoding::encoded_len_varint;

use super::types::{Payload, Record};

/// What a [`PayloadWriter`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadEncoding {
    /// A serialized `google.protobuf.Struct`: a JSON record (flag JSON).
    /// Numbers become doubles, as with [`Record::json`].
    Struct,
    /// Compact JSON text: a RAW record. Integers stay exact.
    JsonText,
}

/// Struct wire tags (field number << 3 | wire type).
mod tag {
    /// `Struct.fields` entry, `ListValue.values` item (field 1, length-delimited).
    pub const ENTRY: u8 = 0x0a;
    /// Map entry key (field 1, length-delimited).
    pub const ENTRY_KEY: u8 = 0x0a;
    /// Map entry value (field 2, length-delimited).
    pub const ENTRY_VALUE: u8 = 0x12;
    /// `Value.null_value` (field 1, varint).
    pub const NULL: u8 = 0x08;
    /// `Value.number_value` (field 2, 64-bit).
    pub const NUMBER: u8 = 0x11;
    /// `Value.string_value` (field 3, length-delimited).
    pub const STRING: u8 = 0x1a;
    /// `Value.bool_value` (field 4, varint).
    pub const BOOL: u8 = 0x20;
    /// `Value.struct_value` (field 5, length-delimited).
    pub const STRUCT: u8 = 0x2a;
    /// `Value.list_value` (field 6, length-delimited).
    pub const LIST: u8 = 0x32;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    List,
}

/// An open object or list.
#[derive(Debug, Clone, Copy)]
struct Frame {
    container: Container,
    /// Whether its parent is a list (its items carry no names).
    in_list: bool,
    /// Struct: where its header starts (the entry or list item tag).
    header: usize,
    /// Struct: where its content starts (after the reserved header).
    content: usize,
    /// Struct: the name's position and length inside the header (parent an object).
    name_at: usize,
    name_len: usize,
    /// JSON text: nothing written in it yet (no comma before the next item).
    empty: bool,
}

/// Writes one JSON object at a time into the wire form of a record payload.
///
/// Call the value methods (`null`, `bool`, `i64`, `u64`, `f64`, `string`,
/// `json`, `begin_object`/`end_object`, `begin_list`/`end_list`) for the
/// fields of the top-level object, in the order they should appear; then
/// [`finish`](Self::finish) or [`finish_record`](Self::finish_record) takes
/// the payload out and readies the writer for the next object. The buffers
/// are kept, so a writer reused across records allocates only the payload it
/// hands out (sized exactly).
///
/// Every value method takes the field `name`; inside a list (after
/// `begin_list`) the name is ignored (pass `""`). Names in one object must be
/// distinct (a decoder keeps the last of a repeated name). Unbalanced
/// `begin_*`/`end_*` calls are a programming error: debug builds panic,
/// release builds close what is open at `finish`.
///
/// Floats that are not finite become `null`, as `serde_json` makes them (a
/// `serde_json::Value` cannot hold NaN or infinities), in both encodings.
///
/// ```
/// use hstream_io_runtime::stream::{Payload, PayloadEncoding, PayloadWriter};
/// let mut w = PayloadWriter::new(PayloadEncoding::JsonText);
/// w.begin_object("key");
/// w.i64("id", 7);
/// w.end_object();
/// w.null("value");
/// assert_eq!(w.finish(), Payload::Raw(br#"{"key":{"id":7},"value":null}"#.to_vec()));
/// ```
pub struct PayloadWriter {
    encoding: PayloadEncoding,
    buf: Vec<u8>,
    frames: Vec<Frame>,
    /// Reused text for [`string_with`](Self::string_with) / [`string_fmt`](Self::string_fmt).
    scratch: String,
    /// Reused header bytes when a nested header outgrows its reservation.
    header: Vec<u8>,
}

impl fmt::Debug for PayloadWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadWriter")
            .field("encoding", &self.encoding)
            .field("len", &self.buf.len())
            .field("depth", &self.frames.len())
            .finish()
    }
}

const ROOT: Frame = Frame {
    container: Container::Object,
    in_list: false,
    header: 0,
    content: 0,
    name_at: 0,
    name_len: 0,
    empty: true,
};

impl PayloadWriter {
    /// A writer producing `encoding`, with an empty top-level object open.
    pub fn new(encoding: PayloadEncoding) -> Self {
        let mut w = Self {
            encoding,
            buf: Vec::with_capacity(256),
            frames: Vec::with_capacity(4),
            scratch: String::new(),
            header: Vec::new(),
        };
        w.reset();
        w
    }

    /// What this writer produces.
    pub fn encoding(&self) -> PayloadEncoding {
        self.encoding
    }

    /// Bytes written so far for the current object.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was written for the current object yet.
    pub fn is_empty(&self) -> bool {
        self.frames.len() == 1 && self.frames[0].empty
    }

    /// Drops what was written and opens a new empty top-level object.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.frames.clear();
        self.frames.push(ROOT);
        if self.encoding == PayloadEncoding::JsonText {
            self.buf.push(b'{');
        }
    }

    /// Closes the top-level object and returns its payload
    /// ([`Payload::EncodedJson`] for [`PayloadEncoding::Struct`],
    /// [`Payload::Raw`] for [`PayloadEncoding::JsonText`]); the writer is then
    /// ready for the next object.
    pub fn finish(&mut self) -> Payload {
        debug_assert_eq!(self.frames.len(), 1, "unclosed begin_object/begin_list");
        while self.frames.len() > 1 {
            self.end(None);
        }
        if self.encoding == PayloadEncoding::JsonText {
            self.buf.push(b'}');
        }
        let bytes = self.buf.as_slice().to_vec();
        self.reset();
        match self.encoding {
            PayloadEncoding::Struct => Payload::EncodedJson(bytes),
            PayloadEncoding::JsonText => Payload::Raw(bytes),
        }
    }

    /// [`finish`](Self::finish) as a record with partition key `key`.
    pub fn finish_record(&mut self, key: impl Into<String>) -> Record {
        Record {
            key: key.into(),
            attributes: Default::default(),
            payload: self.finish(),
        }
    }

    fn top(&mut self) -> &mut Frame {
        // The root frame is never popped.
        let last = self.frames.len() - 1;
        &mut self.frames[last]
    }

    /// JSON text: the comma and `"name":` before a value.
    fn text_prefix(&mut self, name: &str) {
        let top = self.top();
        let first = std::mem::replace(&mut top.empty, false);
        let in_object = top.container == Container::Object;
        if !first {
            self.buf.push(b',');
        }
        if in_object {
            write_json_string(&mut self.buf, name);
            self.buf.push(b':');
        }
    }

    /// Struct: the header of a scalar value whose `Value` message is `value_len` bytes.
    fn struct_prefix(&mut self, name: &str, value_len: usize) {
        let top = self.top();
        top.empty = false;
        let in_object = top.container == Container::Object;
        let buf = &mut self.buf;
        if in_object {
            let entry = name_part_len(name) + 1 + encoded_len_varint(value_len as u64) + value_len;
            buf.push(tag::ENTRY);
            put_varint(buf, entry as u64);
            put_name(buf, name);
            buf.push(tag::ENTRY_VALUE);
        } else {
            buf.push(tag::ENTRY);
        }
        put_varint(buf, value_len as u64);
    }

    /// A `null` field.
    pub fn null(&mut self, name: &str) {
        match self.encoding {
            PayloadEncoding::JsonText => {
                self.text_prefix(name);
                self.buf.extend_from_slice(b"null");
            }
            PayloadEncoding::Struct => {
                self.struct_prefix(name, 2);
                self.buf.extend_from_slice(&[tag::NULL, 0]);
            }
        }
    }

    /// A boolean field.
    pub fn bool(&mut self, name: &str, b: bool) {
        match self.encoding {
            PayloadEncoding::JsonText => {
                self.text_prefix(name);
                self.buf
                    .extend_from_slice(if b { b"true" } else { b"false" });
            }
            PayloadEncoding::Struct => {
                self.struct_prefix(name, 2);
                self.buf.extend_from_slice(&[tag::BOOL, u8::from(b)]);
            }
        }
    }

    fn double(&mut self, name: &str, d: f64) {
        self.struct_prefix(name, 9);
        self.buf.push(tag::NUMBER);
        self.buf.extend_from_slice(&d.to_le_bytes());
    }

    /// A signed integer field: exact in JSON text, a double in a `Struct`.
    pub fn i64(&mut self, name: &str, n: i64) {
        match self.encoding {
            PayloadEncoding::JsonText => {
                self.text_prefix(name);
                let mut b = itoa_buf();
                self.buf.extend_from_slice(format_i64(&mut b, n));
            }
            PayloadEncoding::Struct => self.double(name, n as f64),
        }
    }

    /// An unsigned integer field: exact in JSON text, a double in a `Struct`.
    pub fn u64(&mut self, name: &str, n: u64) {
        match self.encoding {
            PayloadEncoding::JsonText => {
                self.text_prefix(name);
                let mut b = itoa_buf();
                self.buf.extend_from_slice(format_u64(&mut b, n));
            }
            PayloadEncoding::Struct => self.double(name, n as f64),
        }
    }

    /// A floating-point field; NaN and infinities are written as `null`.
    /// JSON text uses `serde_json`'s shortest form (`1.5`, `1e+300`, `2.0`).
    pub fn f64(&mut self, name: &str, d: f64) {
        if !d.is_finite() {
            return self.null(name);
        }
        match self.encoding {
            PayloadEncoding::JsonText => {
                self.text_prefix(name);
                // serde_json's own float text (ryu), so RAW records read as before.
                serde_json::to_writer(&mut self.buf, &d).expect("writing to a Vec cannot fail");
            }
            PayloadEncoding::Struct => self.double(name, d),
        }
    }

    /// A string field.
    pub fn string(&mut self, name: &str, s: &str) {
        match self.encoding {
            PayloadEncoding::JsonText => {
                self.text_prefix(name);
                write_json_string(&mut self.buf, s);
            }
            PayloadEncoding::Struct => {
                let value = 1 + encoded_len_varint(s.len() as u64) + s.len();
                self.struct_prefix(name, value);
                self.buf.push(tag::STRING);
                put_varint(&mut self.buf, s.len() as u64);
                self.buf.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// A string field whose text `f` appends to the (emptied) `String` it is
    /// given: formats dates, base64 and the like without a `String` per value.
    pub fn string_with(&mut self, name: &str, f: impl FnOnce(&mut String)) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        f(&mut s);
        self.string(name, &s);
        self.scratch = s;
    }

    /// A string field holding `args` formatted (`format_args!(…)`), without
    /// a `String` per value.
    pub fn string_fmt(&mut self, name: &str, args: fmt::Arguments<'_>) {
        self.string_with(name, |s| {
            // Formatting into a String fails only if a Display impl does.
            let _ = fmt::Write::write_fmt(s, args);
        });
    }

    /// Any JSON value as a field (objects and arrays nested), as
    /// [`Record::json`] / `serde_json::to_vec` would write it.
    pub fn json(&mut self, name: &str, v: &serde_json::Value) {
        use serde_json::Value as J;
        match v {
            J::Null => self.null(name),
            J::Bool(b) => self.bool(name, *b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.i64(name, i)
                } else if let Some(u) = n.as_u64() {
                    self.u64(name, u)
                } else {
                    self.f64(name, n.as_f64().unwrap_or(f64::NAN))
                }
            }
            J::String(s) => self.string(name, s),
            J::Array(items) => {
                self.begin_list(name);
                for item in items {
                    self.json("", item);
                }
                self.end_list();
            }
            J::Object(fields) => {
                self.begin_object(name);
                for (k, item) in fields {
                    self.json(k, item);
                }
                self.end_object();
            }
        }
    }

    /// Opens a nested object field; its fields follow, then [`end_object`](Self::end_object).
    pub fn begin_object(&mut self, name: &str) {
        self.begin(name, Container::Object);
    }

    /// Closes the object opened last.
    pub fn end_object(&mut self) {
        self.end(Some(Container::Object));
    }

    /// Opens a list field; its items follow (names ignored), then [`end_list`](Self::end_list).
    pub fn begin_list(&mut self, name: &str) {
        self.begin(name, Container::List);
    }

    /// Closes the list opened last.
    pub fn end_list(&mut self) {
        self.end(Some(Container::List));
    }

    fn begin(&mut self, name: &str, container: Container) {
        match self.encoding {
            PayloadEncoding::JsonText => {
                self.text_prefix(name);
                self.buf.push(match container {
                    Container::Object => b'{',
                    Container::List => b'[',
                });
                self.frames.push(Frame {
                    container,
                    in_list: false,
                    header: 0,
                    content: 0,
                    name_at: 0,
                    name_len: 0,
                    empty: true,
                });
            }
            PayloadEncoding::Struct => {
                let top = self.top();
                top.empty = false;
                let in_list = top.container == Container::List;
                let header = self.buf.len();
                // Reserve one byte per length; `end` widens them when needed.
                let (name_at, name_len) = if in_list {
                    self.buf.extend_from_slice(&[tag::ENTRY, 0]);
                    (0, 0)
                } else {
                    self.buf.extend_from_slice(&[tag::ENTRY, 0]);
                    put_name(&mut self.buf, name);
                    let at = self.buf.len() - name.len();
                    self.buf.extend_from_slice(&[tag::ENTRY_VALUE, 0]);
                    (at, name.len())
                };
                self.buf.extend_from_slice(&[
                    match container {
                        Container::Object => tag::STRUCT,
                        Container::List => tag::LIST,
                    },
                    0,
                ]);
                let content = self.buf.len();
                self.frames.push(Frame {
                    container,
                    in_list,
                    header,
                    content,
                    name_at,
                    name_len,
                    empty: true,
                });
            }
        }
    }

    fn end(&mut self, expected: Option<Container>) {
        if self.frames.len() <= 1 {
            debug_assert!(false, "end_object/end_list without a matching begin");
            return;
        }
        let Some(frame) = self.frames.pop() else {
            return;
        };
        debug_assert!(
            expected.is_none_or(|c| c == frame.container),
            "end_{:?} closes a {:?}",
            expected,
            frame.container
        );
        match self.encoding {
            PayloadEncoding::JsonText => self.buf.push(match frame.container {
                Container::Object => b'}',
                Container::List => b']',
            }),
            PayloadEncoding::Struct => self.close_struct_frame(&frame),
        }
    }

    /// Writes the lengths of a closed nested object/list into its header,
    /// moving its content when a length needs more than the reserved byte.
    fn close_struct_frame(&mut self, f: &Frame) {
        let inner = self.buf.len() - f.content;
        let kind_tag = match f.container {
            Container::Object => tag::STRUCT,
            Container::List => tag::LIST,
        };
        let value = 1 + encoded_len_varint(inner as u64) + inner;
        let name_part = if f.in_list || f.name_len == 0 {
            0
        } else {
            1 + encoded_len_varint(f.name_len as u64) + f.name_len
        };
        let entry = if f.in_list {
            value
        } else {
            name_part + 1 + encoded_len_varint(value as u64) + value
        };
        let fits = inner < 128 && value < 128 && entry < 128;
        if fits {
            // Every length is one byte: fill the reserved slots in place.
            self.buf[f.header + 1] = entry as u8;
            if f.in_list {
                self.buf[f.content - 1] = inner as u8;
            } else {
                self.buf[f.content - 3] = value as u8;
                self.buf[f.content - 1] = inner as u8;
            }
            return;
        }
        let mut h = std::mem::take(&mut self.header);
        h.clear();
        h.push(tag::ENTRY);
        put_varint(&mut h, entry as u64);
        if !f.in_list {
            if f.name_len > 0 {
                h.push(tag::ENTRY_KEY);
                put_varint(&mut h, f.name_len as u64);
                h.extend_from_slice(&self.buf[f.name_at..f.name_at + f.name_len]);
            }
            h.push(tag::ENTRY_VALUE);
            put_varint(&mut h, value as u64);
        }
        h.push(kind_tag);
        put_varint(&mut h, inner as u64);
        // The header only grows (same fields, wider lengths): move the content right in one
        // memmove, then write the header in front of it.
        match h.len().checked_sub(f.content - f.header) {
            Some(grow) => {
                let end = self.buf.len();
                self.buf.resize(end + grow, 0);
                self.buf.copy_within(f.content..end, f.content + grow);
                self.buf[f.header..f.header + h.len()].copy_from_slice(&h);
            }
            None => {
                self.buf.splice(f.header..f.content, h.iter().copied());
            }
        }
        self.header = h;
    }
}

/// Encoded length of a map entry's key field (omitted when empty, as prost does).
fn name_part_len(name: &str) -> usize {
    if name.is_empty() {
        0
    } else {
        1 + encoded_len_varint(name.len() as u64) + name.len()
    }
}

fn put_name(buf: &mut Vec<u8>, name: &str) {
    if !name.is_empty() {
        buf.push(tag::ENTRY_KEY);
        put_varint(buf, name.len() as u64);
        buf.extend_from_slice(name.as_bytes());
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn format_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

fn format_i64(buf: &mut [u8; 20], n: i64) -> &[u8] {
    if n >= 0 {
        return format_u64(buf, n as u64);
    }
    // |i64::MIN| has 19 digits: room for the sign in 20 bytes.
    let digits = format_u64(buf, n.unsigned_abs()).len();
    let start = buf.len() - digits - 1;
    buf[start] = b'-';
    &buf[start..]
}

/// A JSON string literal with `serde_json`'s escaping (`"`, `\`, control
/// characters; `\n` `\t` … short forms, `\u00XX` otherwise; non-ASCII kept).
fn write_json_string(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                buf.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(esc);
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// Receives one converted column value, so a source converts a database value
/// once and writes it either into a record ([`Field`]) or into a JSON value
/// ([`JsonOut`], for keys and tests): one conversion, two outputs that cannot
/// disagree.
pub trait ValueOut {
    /// `null`.
    fn null(self);
    /// A boolean.
    fn bool(self, b: bool);
    /// A signed integer.
    fn i64(self, n: i64);
    /// An unsigned integer.
    fn u64(self, n: u64);
    /// A double (not finite: `null`, as serde_json writes it).
    fn f64(self, d: f64);
    /// A string.
    fn str(self, s: &str);
    /// A string that `f` appends to the empty `String` it is given.
    fn string_with(self, f: impl FnOnce(&mut String));
    /// A JSON value as it is (JSON columns, arrays).
    fn json(self, v: serde_json::Value);
}

/// A field of the object a [`PayloadWriter`] is writing.
pub struct Field<'a> {
    /// The writer.
    pub writer: &'a mut PayloadWriter,
    /// The field's name.
    pub name: &'a str,
}

impl ValueOut for Field<'_> {
    fn null(self) {
        self.writer.null(self.name);
    }
    fn bool(self, b: bool) {
        self.writer.bool(self.name, b);
    }
    fn i64(self, n: i64) {
        self.writer.i64(self.name, n);
    }
    fn u64(self, n: u64) {
        self.writer.u64(self.name, n);
    }
    fn f64(self, d: f64) {
        self.writer.f64(self.name, d);
    }
    fn str(self, s: &str) {
        self.writer.string(self.name, s);
    }
    fn string_with(self, f: impl FnOnce(&mut String)) {
        self.writer.string_with(self.name, f);
    }
    fn json(self, v: serde_json::Value) {
        self.writer.json(self.name, &v);
    }
}

/// Stores the value as a JSON value.
pub struct JsonOut<'a>(pub &'a mut serde_json::Value);

impl ValueOut for JsonOut<'_> {
    fn null(self) {
        *self.0 = serde_json::Value::Null;
    }
    fn bool(self, b: bool) {
        *self.0 = serde_json::Value::Bool(b);
    }
    fn i64(self, n: i64) {
        *self.0 = serde_json::Value::from(n);
    }
    fn u64(self, n: u64) {
        *self.0 = serde_json::Value::from(n);
    }
    fn f64(self, d: f64) {
        *self.0 = serde_json::Number::from_f64(d)
            .map_or(serde_json::Value::Null, serde_json::Value::Number);
    }
    fn str(self, s: &str) {
        *self.0 = serde_json::Value::String(s.to_string());
    }
    fn string_with(self, f: impl FnOnce(&mut String)) {
        let mut s = String::new();
        f(&mut s);
        *self.0 = serde_json::Value::String(s);
    }
    fn json(self, v: serde_json::Value) {
        *self.0 = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use serde_json::{Value, json};

    /// Writes the fields of `obj` one by one (the generic `json` path for nested values).
    fn write(enc: PayloadEncoding, obj: &Value) -> Payload {
        let mut w = PayloadWriter::new(enc);
        for (k, v) in obj.as_object().unwrap() {
            w.json(k, v);
        }
        w.finish()
    }

    fn old_struct(obj: &Value) -> prost_types::Struct {
        super::super::codec::json_to_struct(obj.as_object().unwrap())
    }

    fn assert_same(obj: Value) {
        let Payload::EncodedJson(bytes) = write(PayloadEncoding::Struct, &obj) else {
            panic!("Struct encoding gives EncodedJson")
        };
        let decoded = prost_types::Struct::decode(bytes.as_slice()).unwrap();
        let old = old_struct(&obj);
        assert_eq!(decoded, old, "{obj}");
        // Same size as the old path's, so flow control counts the same.
        assert_eq!(bytes.len(), old.encoded_len(), "{obj}");
        let Payload::Raw(text) = write(PayloadEncoding::JsonText, &obj) else {
            panic!("JsonText encoding gives Raw")
        };
        assert_eq!(
            String::from_utf8(text).unwrap(),
            serde_json::to_string(&obj).unwrap()
        );
    }

    #[test]
    fn every_value_kind_matches_the_old_path() {
        assert_same(json!({}));
        assert_same(json!({"n": null, "t": true, "f": false}));
        assert_same(json!({"i": 42, "neg": -7, "min": i64::MIN, "max": u64::MAX,
            "big": 9007199254740993u64, "zero": 0, "f": 1.5, "tiny": 1e-300, "huge": 1.7e308,
            "negf": -0.25, "whole": 2.0}));
        assert_same(
            json!({"s": "x", "e": "", "": "empty name", "u": "h\u{e9}llo \u{20ac} \u{1F600}",
            "esc": "q\"b\\n\nt\tc\u{1}\u{1f}\u{7f}/", "long": "y".repeat(300)}),
        );
        assert_same(json!({"key": {"id": 1}, "value": {"id": 1, "n": "a", "d": null}}));
        assert_same(
            json!({"a": [1, "two", null, [], {}, [true, [false]], {"k": {"deep": [false]}}],
            "o": {"": {"": ""}}, "z": {}, "l": []}),
        );
    }

    #[test]
    fn long_names_and_large_nested_values_widen_their_lengths() {
        // Lengths from 1 to 3 varint bytes at each nesting level.
        for n in [0usize, 1, 100, 127, 128, 130, 200, 16_383, 16_384, 70_000] {
            let s = "v".repeat(n);
            let name = "n".repeat(n.min(300));
            let mut inner = serde_json::Map::new();
            inner.insert(name.clone(), json!(s));
            inner.insert("x".into(), json!([s, {"y": s}]));
            let mut obj = serde_json::Map::new();
            obj.insert("key".into(), json!({"id": n}));
            obj.insert(name, Value::Object(inner.clone()));
            obj.insert("list".into(), json!([Value::Object(inner), [[s]]]));
            assert_same(Value::Object(obj));
        }
    }

    #[test]
    fn not_finite_floats_are_null_as_in_serde_json() {
        for enc in [PayloadEncoding::Struct, PayloadEncoding::JsonText] {
            let mut w = PayloadWriter::new(enc);
            w.f64("nan", f64::NAN);
            w.f64("inf", f64::INFINITY);
            w.f64("ninf", f64::NEG_INFINITY);
            let got = w.finish();
            let mut w = PayloadWriter::new(enc);
            for k in ["nan", "inf", "ninf"] {
                w.null(k);
            }
            assert_eq!(got, w.finish());
        }
        // What a map built with serde_json holds for them.
        assert_eq!(json!(f64::NAN), Value::Null);
    }

    #[test]
    fn typed_methods_equal_the_json_of_the_same_values() {
        let obj = json!({"table": "db.t", "key": {"a": -3, "b": "k"},
            "value": {"a": -3, "b": "k", "u": 18446744073709551615u64, "f": 0.1, "t": true,
                      "d": "2024-02-29", "n": null}});
        for enc in [PayloadEncoding::Struct, PayloadEncoding::JsonText] {
            let mut w = PayloadWriter::new(enc);
            w.string("table", "db.t");
            w.begin_object("key");
            w.i64("a", -3);
            w.string("b", "k");
            w.end_object();
            w.begin_object("value");
            w.i64("a", -3);
            w.string_with("b", |s| s.push('k'));
            w.u64("u", u64::MAX);
            w.f64("f", 0.1);
            w.bool("t", true);
            w.string_fmt("d", format_args!("{:04}-{:02}-{:02}", 2024, 2, 29));
            w.null("n");
            w.end_object();
            let first = w.finish();
            assert_eq!(first, write(enc, &obj), "{enc:?}");
            // The writer is reusable: the next object starts empty.
            assert!(w.is_empty());
            w.null("x");
            assert_eq!(w.finish(), write(enc, &json!({"x": null})));
        }
    }

    #[test]
    fn records_carry_the_payload_and_count_its_bytes() {
        let mut w = PayloadWriter::new(PayloadEncoding::Struct);
        w.i64("id", 1);
        let r = w.finish_record("1");
        assert_eq!(r.key, "1");
        let Payload::EncodedJson(b) = &r.payload else {
            panic!("EncodedJson expected")
        };
        assert_eq!(r.encoded_len(), b.len());
        let mut w = PayloadWriter::new(PayloadEncoding::JsonText);
        w.i64("id", 1);
        let r = w.finish_record("1");
        assert_eq!(r.payload, Payload::Raw(br#"{"id":1}"#.to_vec()));
        assert_eq!(r.encoded_len(), 8);
    }

    #[test]
    fn integers_format_like_serde_json() {
        for n in [0i64, 1, -1, 9, 10, -10, 12345, i64::MAX, i64::MIN] {
            let mut b = itoa_buf();
            assert_eq!(format_i64(&mut b, n), n.to_string().as_bytes());
        }
        for n in [0u64, 7, 100, u64::MAX] {
            let mut b = itoa_buf();
            assert_eq!(format_u64(&mut b, n), n.to_string().as_bytes());
        }
    }
}
