//! Record formats the SQL sinks accept, and exact readers for JSON values.
//!
//! A sink record's payload is a JSON object: the `google.protobuf.Struct` of a
//! JSON (HRecord) record ([`parse_struct`], decoded straight from its protobuf
//! bytes), or the JSON text of a RAW record ([`parse`]). Both give the same
//! change for the same object. Two shapes are accepted, as in the reference's
//! JDBC sinks:
//!
//! - **key/value**: an object with both `key` and `value` where `key` is an
//!   object — `{"key":{"id":1},"value":{"id":1,"name":"a"}}` upserts the row,
//!   `{"key":{"id":1},"value":null}` deletes it. This is what our CDC sources
//!   write.
//! - **plain**: any other object is the row itself, upserted on the table's key.
//!
//! Before the shape is read, MongoDB extended JSON wrappers are unwrapped the
//! way the reference's BSON round trip did (`{"$numberLong":"5"}` → `5`), see
//! [`normalize`].
//!
//! The value readers ([`integer_text`], [`decimal_text`], [`bool_value`], …)
//! turn a JSON value into the exact text a database column takes, without
//! going through a float where precision could be lost. Numbers in JSON
//! (HRecord) records are doubles, so `1.0` is read as the integer `1`.

use std::borrow::Cow;
use std::fmt::Write;

use serde_json::{Map, Number, Value};

/// A field's value: a JSON value, or — for the text fields of a JSON
/// (HRecord) record's Struct — text that borrows from the payload, so a text
/// field is not copied out of the record before it is converted.
///
/// Compares by its JSON value (`Text("a")` equals `Json(Value::String("a"))`).
#[derive(Debug, Clone)]
pub enum FieldValue<'a> {
    /// A string, borrowed from the record's payload.
    Text(&'a str),
    /// Any JSON value.
    Json(Value),
}

impl FieldValue<'_> {
    /// The value, borrowed.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Self::Text(text) => ValueRef::String(text),
            Self::Json(value) => value.into(),
        }
    }
}

impl PartialEq for FieldValue<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

/// A borrowed JSON value, as the value readers ([`integer_text`],
/// [`write_text`], …) and the sinks' converters take it: from a `&Value`
/// (`value.into()`) or a record's [`FieldValue`] ([`FieldValue::as_ref`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(&'a Number),
    /// A string.
    String(&'a str),
    /// An array.
    Array(&'a [Value]),
    /// An object.
    Object(&'a Map<String, Value>),
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Number(n),
            Value::String(s) => Self::String(s),
            Value::Array(items) => Self::Array(items),
            Value::Object(map) => Self::Object(map),
        }
    }
}

impl<'a> From<&'a FieldValue<'_>> for ValueRef<'a> {
    fn from(value: &'a FieldValue<'_>) -> Self {
        value.as_ref()
    }
}

impl ValueRef<'_> {
    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// An owned copy.
    pub fn to_value(&self) -> Value {
        match *self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(s) => Value::String(s.to_string()),
            Self::Array(items) => Value::Array(items.to_vec()),
            Self::Object(map) => Value::Object(map.clone()),
        }
    }
}

/// Compact JSON text, as `serde_json::Value`'s `Display`.
impl std::fmt::Display for ValueRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json = |r: serde_json::Result<String>| r.map_err(|_| std::fmt::Error);
        match *self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => f.write_str(&json(serde_json::to_string(s))?),
            Self::Array(items) => f.write_str(&json(serde_json::to_string(items))?),
            Self::Object(map) => f.write_str(&json(serde_json::to_string(map))?),
        }
    }
}

/// The fields of a record's object, in the object's order: column name →
/// value. A JSON (HRecord) record's top-level names and text values (those of
/// the `key` and `value` objects of a key/value record too) borrow from its
/// payload, so no name or text is copied per record; nested objects stay
/// `serde_json` maps.
///
/// Two `Fields` are equal when they hold the same names with equal values, in
/// any order (as `serde_json::Map`'s equality).
#[derive(Debug, Clone, Default)]
pub struct Fields<'a>(Vec<(Cow<'a, str>, FieldValue<'a>)>);

impl<'a> Fields<'a> {
    /// The value of field `name`, if present.
    pub fn get(&self, name: &str) -> Option<ValueRef<'_>> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Whether field `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields as (name, value) pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ValueRef<'_>)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// Removes and returns field `name`.
    fn remove(&mut self, name: &str) -> Option<FieldValue<'a>> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }

    /// The fields of a JSON object, in its order.
    fn from_map(map: Map<String, Value>) -> Self {
        Self(
            map.into_iter()
                .map(|(n, v)| (Cow::Owned(n), FieldValue::Json(v)))
                .collect(),
        )
    }

    /// The fields of a decoded Struct (names and texts borrowed), each value
    /// normalized ([`normalize`]).
    fn from_entries(entries: Vec<(&'a str, Raw<'a>)>) -> Self {
        Self(
            entries
                .into_iter()
                .map(|(n, raw)| {
                    let value = match raw {
                        Raw::Text(text) => FieldValue::Text(text),
                        other => {
                            let mut value = other.into_value();
                            normalize_in_place(&mut value);
                            FieldValue::Json(value)
                        }
                    };
                    (Cow::Borrowed(n), value)
                })
                .collect(),
        )
    }
}

impl<'a, 'b> IntoIterator for &'b Fields<'a> {
    type Item = (&'b str, ValueRef<'b>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'b, (Cow<'a, str>, FieldValue<'a>)>,
        fn(&'b (Cow<'a, str>, FieldValue<'a>)) -> (&'b str, ValueRef<'b>),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }
}

impl PartialEq for Fields<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(n, v)| other.get(n) == Some(v))
    }
}

/// One change a record asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<'a> {
    /// Insert the row, or update the columns present in it when the key exists.
    Upsert {
        /// The row: column name → value; absent columns are left untouched on update.
        row: Fields<'a>,
        /// The key fields of a key/value record (`None` for a plain record).
        key: Option<Fields<'a>>,
    },
    /// Delete the row with this key.
    Delete {
        /// The key fields.
        key: Fields<'a>,
    },
}

/// Parses a JSON text payload (a RAW record) into the change it asks for
/// (after [`normalize`]).
///
/// The error is a lowercase fragment saying what is wrong with the payload.
pub fn parse(payload: &[u8]) -> Result<Change<'static>, String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON text ({e})"))?;
    change_of(value)
}

/// Parses the encoded `google.protobuf.Struct` of a JSON (HRecord) record
/// into the change it asks for — the same change [`parse`] gives for the
/// object's JSON text, without building that text: fields in key order (a
/// repeated key: the last one wins), whole doubles within ±2^53 as integers,
/// NaN and infinities as `null`, then [`normalize`] and the shape rules.
///
/// The field names and text values of the top-level object (and of the `key`
/// and `value` objects of a key/value record) borrow from `payload`.
///
/// The error is a lowercase fragment saying what is wrong with the payload.
pub fn parse_struct(payload: &[u8]) -> Result<Change<'_>, String> {
    let mut fields = entries(&mut Proto { buf: payload }, MAX_STRUCT_DEPTH)
        .map_err(|e| format!("payload is not a protobuf Struct ({e})"))?;
    // Objects that may themselves be extended JSON (`{"$numberLong":"5"}`)
    // take the general path, which unwraps them as a whole.
    let general = |fields: Vec<(&str, Raw<'_>)>| {
        change_of(Value::Object(
            fields
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.into_value()))
                .collect(),
        ))
    };
    if may_be_extended(&fields) {
        return general(fields);
    }
    // Key/value records: a `key` object and a `value` object or null.
    let key_at = fields.iter().position(|(n, _)| *n == "key");
    let value_at = fields.iter().position(|(n, _)| *n == "value");
    if let (Some(key_at), Some(value_at)) = (key_at, value_at) {
        let Raw::Struct(key) = &fields[key_at].1 else {
            // `key` is not an object: a plain row.
            return change_of_fields(Fields::from_entries(fields));
        };
        let value_kind = match &fields[value_at].1 {
            Raw::Struct(row) if !may_be_extended(row) => Some(true),
            Raw::Value(Value::Null) => Some(false),
            _ => None,
        };
        let (Some(is_upsert), false) = (value_kind, may_be_extended(key)) else {
            return general(fields);
        };
        let Raw::Struct(key) = std::mem::replace(&mut fields[key_at].1, Raw::Value(Value::Null))
        else {
            unreachable!("checked above")
        };
        let key = Fields::from_entries(key);
        if !is_upsert {
            return Ok(Change::Delete { key });
        }
        let Raw::Struct(row) = std::mem::replace(&mut fields[value_at].1, Raw::Value(Value::Null))
        else {
            unreachable!("checked above")
        };
        let mut row = Fields::from_entries(row);
        add_key_fields(&mut row, &key);
        return Ok(Change::Upsert {
            row,
            key: Some(key),
        });
    }
    change_of_fields(Fields::from_entries(fields))
}

/// Whether a Struct's entries may be MongoDB extended JSON that
/// [`normalize`] unwraps as a whole (at most two fields, one named `$…`).
fn may_be_extended(fields: &[(&str, Raw<'_>)]) -> bool {
    fields.len() <= 2 && fields.iter().any(|(n, _)| n.starts_with('$'))
}

/// Adds the key fields a key/value record's row does not carry.
fn add_key_fields<'a>(row: &mut Fields<'a>, key: &Fields<'a>) {
    for (name, value) in &key.0 {
        if !row.contains_key(name) {
            row.0.push((name.clone(), value.clone()));
        }
    }
}

/// The change a JSON value asks for.
fn change_of(value: Value) -> Result<Change<'static>, String> {
    let Value::Object(object) = normalize(value) else {
        return Err("payload is not a JSON object".into());
    };
    change_of_fields(Fields::from_map(object))
}

/// The change a (normalized) JSON object asks for.
fn change_of_fields(mut object: Fields<'_>) -> Result<Change<'_>, String> {
    let key_value = object.len() >= 2
        && object.contains_key("value")
        && matches!(object.get("key"), Some(ValueRef::Object(_)));
    if !key_value {
        if object.is_empty() {
            return Err("payload is an empty object: no columns to write".into());
        }
        return Ok(Change::Upsert {
            row: object,
            key: None,
        });
    }
    let Some(FieldValue::Json(Value::Object(key))) = object.remove("key") else {
        unreachable!("checked above")
    };
    let key = Fields::from_map(key);
    match object.remove("value") {
        Some(FieldValue::Json(Value::Null)) => Ok(Change::Delete { key }),
        Some(FieldValue::Json(Value::Object(row))) => {
            let mut row = Fields::from_map(row);
            add_key_fields(&mut row, &key);
            Ok(Change::Upsert {
                row,
                key: Some(key),
            })
        }
        Some(other) => Err(format!(
            "`value` of a key/value record must be an object or null, not {}",
            type_name(&other)
        )),
        None => unreachable!("checked above"),
    }
}

/// Nesting depth of Structs and lists a payload may have (prost's limit).
const MAX_STRUCT_DEPTH: u32 = 100;

/// Decodes an encoded `google.protobuf.Struct` straight into a JSON object,
/// as `prost_types::Struct` decoding followed by the stream reader's
/// conversion to JSON did (see [`parse_struct`]).
pub fn decode_struct(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let mut reader = Proto { buf: bytes };
    let object = struct_fields(&mut reader, MAX_STRUCT_DEPTH)?;
    Ok(object)
}

/// A cursor over protobuf bytes.
struct Proto<'a> {
    buf: &'a [u8],
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

impl<'a> Proto<'a> {
    #[inline]
    fn varint(&mut self) -> Result<u64, String> {
        // Tags, lengths and small numbers: one byte.
        if let Some(&byte) = self.buf.first()
            && byte < 0x80
        {
            self.buf = &self.buf[1..];
            return Ok(u64::from(byte));
        }
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err("invalid varint".into())
    }

    /// The next field's number and wire type, or `None` at the end.
    #[inline]
    fn tag(&mut self) -> Result<Option<(u32, u8)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = u32::try_from(tag >> 3).map_err(|_| "invalid tag".to_string())?;
        if field == 0 {
            return Err("invalid tag value: 0".into());
        }
        Ok(Some((field, (tag & 7) as u8)))
    }

    #[inline]
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if len > self.buf.len() {
            return Err("buffer underflow".into());
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()?;
        self.take(usize::try_from(len).map_err(|_| "buffer underflow".to_string())?)
    }

    #[inline]
    fn str(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| "invalid string value: data is not UTF-8 encoded".into())
    }

    fn double(&mut self) -> Result<f64, String> {
        let bytes = self.take(8)?;
        Ok(f64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// Skips a field of an unknown number.
    fn skip(&mut self, wire_type: u8) -> Result<(), String> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            other => Err(format!("unsupported wire type {other}")),
        }
    }

    /// Calls `f` with each occurrence of message field 1 (`Struct.fields`,
    /// `ListValue.values`), skipping other fields.
    fn each_message_of_field_1(
        &mut self,
        mut f: impl FnMut(Proto<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        while let Some((field, wire_type)) = self.tag()? {
            if field != 1 {
                self.skip(wire_type)?;
                continue;
            }
            Self::expect(wire_type, LEN)?;
            f(Proto { buf: self.bytes()? })?;
        }
        Ok(())
    }

    /// Checks that a known field has the wire type it is declared with.
    fn expect(wire_type: u8, expected: u8) -> Result<(), String> {
        if wire_type == expected {
            Ok(())
        } else {
            Err(format!(
                "invalid wire type: {wire_type} (expected {expected})"
            ))
        }
    }
}

/// A decoded `Value` message whose strings and Struct names still borrow
/// from the payload.
enum Raw<'a> {
    /// `string_value`.
    Text(&'a str),
    /// `struct_value`: its entries (see [`entries`]).
    Struct(Vec<(&'a str, Raw<'a>)>),
    /// Any other kind (lists are decoded into owned values at once).
    Value(Value),
}

impl Raw<'_> {
    /// The owned JSON value.
    fn into_value(self) -> Value {
        match self {
            Raw::Text(text) => Value::String(text.to_string()),
            Raw::Struct(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), value.into_value()))
                    .collect(),
            ),
            Raw::Value(value) => value,
        }
    }
}

/// The fields of a `Struct` message (field 1: repeated map entries).
fn struct_fields(reader: &mut Proto<'_>, depth: u32) -> Result<Map<String, Value>, String> {
    let fields = entries(reader, depth)?;
    Ok(fields
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.into_value()))
        .collect())
}

/// The entries of a `Struct` message, sorted by key (a repeated key: the last
/// one wins), keys and strings borrowed from the message bytes.
fn entries<'a>(reader: &mut Proto<'a>, depth: u32) -> Result<Vec<(&'a str, Raw<'a>)>, String> {
    let depth = depth
        .checked_sub(1)
        .ok_or_else(|| "recursion limit reached".to_string())?;
    let mut fields: Vec<(&'a str, Raw<'a>)> = Vec::new();
    reader.each_message_of_field_1(|mut entry| {
        let mut key = "";
        let mut value = Raw::Value(Value::Null);
        while let Some((field, wire_type)) = entry.tag()? {
            match field {
                1 => {
                    Proto::expect(wire_type, LEN)?;
                    key = entry.str()?;
                }
                2 => {
                    Proto::expect(wire_type, LEN)?;
                    let mut inner = Proto {
                        buf: entry.bytes()?,
                    };
                    value = value_message(&mut inner, depth)?;
                }
                _ => entry.skip(wire_type)?,
            }
        }
        fields.push((key, value));
        Ok(())
    })?;
    // A protobuf map has no order and a repeated key replaces the earlier
    // entry; prost keeps it in a BTreeMap, so fields come out sorted by key.
    if !fields.windows(2).all(|w| w[0].0 < w[1].0) {
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut deduped: Vec<(&'a str, Raw<'a>)> = Vec::with_capacity(fields.len());
        for (key, value) in fields {
            match deduped.last_mut() {
                Some(last) if last.0 == key => last.1 = value,
                _ => deduped.push((key, value)),
            }
        }
        fields = deduped;
    }
    Ok(fields)
}

/// A `Value` message (one of its `kind` fields; the last one wins; none is null).
fn value_message<'a>(reader: &mut Proto<'a>, depth: u32) -> Result<Raw<'a>, String> {
    let mut value = Raw::Value(Value::Null);
    while let Some((field, wire_type)) = reader.tag()? {
        value = match field {
            1 => {
                Proto::expect(wire_type, VARINT)?;
                reader.varint()?;
                Raw::Value(Value::Null)
            }
            2 => {
                Proto::expect(wire_type, FIXED64)?;
                Raw::Value(number_value(reader.double()?))
            }
            3 => {
                Proto::expect(wire_type, LEN)?;
                Raw::Text(reader.str()?)
            }
            4 => {
                Proto::expect(wire_type, VARINT)?;
                Raw::Value(Value::Bool(reader.varint()? != 0))
            }
            5 => {
                Proto::expect(wire_type, LEN)?;
                let mut inner = Proto {
                    buf: reader.bytes()?,
                };
                Raw::Struct(entries(&mut inner, depth)?)
            }
            6 => {
                Proto::expect(wire_type, LEN)?;
                let mut inner = Proto {
                    buf: reader.bytes()?,
                };
                Raw::Value(list_values(&mut inner, depth)?)
            }
            _ => {
                reader.skip(wire_type)?;
                continue;
            }
        };
    }
    Ok(value)
}

/// A `ListValue` message (field 1: repeated `Value`).
fn list_values(reader: &mut Proto<'_>, depth: u32) -> Result<Value, String> {
    let depth = depth
        .checked_sub(1)
        .ok_or_else(|| "recursion limit reached".to_string())?;
    let mut items = Vec::new();
    reader.each_message_of_field_1(|mut item| {
        items.push(value_message(&mut item, depth)?.into_value());
        Ok(())
    })?;
    Ok(Value::Array(items))
}

/// A Struct number as JSON: whole doubles within ±2^53 as integers, NaN and
/// infinities as `null`.
fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() <= EXACT_F64_INT {
        Value::from(n as i64)
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Unwraps MongoDB extended JSON (canonical or relaxed) into plain JSON, at any
/// depth: `$numberLong`/`$numberInt` → integer, `$numberDouble` → number (text
/// for NaN/Infinity), `$numberDecimal` → its decimal text (exact), `$oid` → hex
/// text, `$date` → ISO-8601 text or epoch milliseconds as given, `$binary` →
/// base64 text, `$symbol` → text. Other objects are left as they are.
pub fn normalize(mut value: Value) -> Value {
    normalize_in_place(&mut value);
    value
}

/// [`normalize`] without rebuilding objects that hold no extended JSON.
fn normalize_in_place(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(unwrapped) = unwrap_extended(map) {
                *value = unwrapped;
                return;
            }
            for v in map.values_mut() {
                normalize_in_place(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_in_place),
        _ => {}
    }
}

fn unwrap_extended(map: &Map<String, Value>) -> Option<Value> {
    if map.len() == 2
        && let (Some(Value::String(data)), Some(Value::String(_))) =
            (map.get("$binary"), map.get("$type"))
    {
        return Some(Value::String(data.clone()));
    }
    if map.len() != 1 {
        return None;
    }
    let (name, inner) = map.iter().next()?;
    match (name.as_str(), inner) {
        ("$numberLong" | "$numberInt", Value::String(text)) => {
            let text = text.trim();
            if let Ok(i) = text.parse::<i64>() {
                Some(Value::Number(i.into()))
            } else if let Ok(u) = text.parse::<u64>() {
                Some(Value::Number(u.into()))
            } else {
                Some(Value::String(text.to_string()))
            }
        }
        ("$numberDouble", Value::String(text)) => Some(
            text.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map_or_else(|| Value::String(text.clone()), Value::Number),
        ),
        ("$numberDecimal" | "$oid" | "$symbol", Value::String(text)) => {
            Some(Value::String(text.clone()))
        }
        ("$date", Value::String(_) | Value::Number(_)) => Some(inner.clone()),
        ("$date", Value::Object(_)) => Some(normalize(inner.clone())),
        ("$binary", Value::Object(binary)) => binary.get("base64").cloned(),
        _ => None,
    }
}

/// The message for a value a column does not take:
/// ``column `name` (sql_type) expects <expected>, got <value, cut to 40 characters>``.
pub fn column_mismatch<'v>(
    name: &str,
    sql_type: &str,
    expected: &str,
    value: impl Into<ValueRef<'v>>,
) -> String {
    format!(
        "column `{name}` ({sql_type}) expects {expected}, got {}",
        excerpt(value, 40)
    )
}

/// `null`, `boolean`, `number`, `string`, `array` or `object`.
pub fn type_name<'v>(value: impl Into<ValueRef<'v>>) -> &'static str {
    match value.into() {
        ValueRef::Null => "null",
        ValueRef::Bool(_) => "boolean",
        ValueRef::Number(_) => "number",
        ValueRef::String(_) => "string",
        ValueRef::Array(_) => "array",
        ValueRef::Object(_) => "object",
    }
}

/// The value as compact JSON, cut to at most `max` characters (with `…`), for
/// error messages.
pub fn excerpt<'v>(value: impl Into<ValueRef<'v>>, max: usize) -> String {
    let text = value.into().to_string();
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// Largest integer a double holds exactly (2^53).
const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

/// An integer in `min..=max` as decimal text. Accepts JSON integers, doubles
/// with no fraction up to 2^53 (HRecord numbers), and decimal text (for
/// integers beyond 2^53, which a double cannot carry).
pub fn integer_text<'v>(
    value: impl Into<ValueRef<'v>>,
    min: i128,
    max: i128,
) -> Result<String, String> {
    integer_value(value, min, max).map(|n| n.to_string())
}

/// [`integer_text`]'s integer, not as text.
pub fn integer_value<'v>(
    value: impl Into<ValueRef<'v>>,
    min: i128,
    max: i128,
) -> Result<i128, String> {
    let n: i128 = match value.into() {
        ValueRef::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err("an integer, not a fraction".into());
                }
                if f.abs() > EXACT_F64_INT {
                    return Err(
                        "an integer beyond 2^53 sent as text; as a double it has lost precision"
                            .into(),
                    );
                }
                f as i128
            }
        }
        ValueRef::String(text) => text
            .trim()
            .parse::<i128>()
            .map_err(|_| "an integer (decimal digits)".to_string())?,
        other => return Err(format!("an integer, not {}", type_name(other))),
    };
    if n < min || n > max {
        return Err(format!("an integer in {min}..={max}"));
    }
    Ok(n)
}

/// Appends [`integer_text`]'s text to `out`.
pub fn write_integer<'v>(
    value: impl Into<ValueRef<'v>>,
    min: i128,
    max: i128,
    out: &mut String,
) -> Result<(), String> {
    let n = integer_value(value, min, max)?;
    match i64::try_from(n) {
        Ok(small) => out.push_str(itoa_i64(small, &mut [0; 20])),
        Err(_) => {
            let _ = write!(out, "{n}");
        }
    }
    Ok(())
}

/// `n` as decimal text in `buf` (faster than `fmt` for the common case).
fn itoa_i64(n: i64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

/// A decimal number as exact text (`-12.50`, `1e3`). JSON numbers keep the
/// text they were parsed from where possible; strings are checked for
/// decimal syntax and passed through unchanged, so no digit is lost.
pub fn decimal_text<'v>(value: impl Into<ValueRef<'v>>) -> Result<String, String> {
    let mut out = String::new();
    write_decimal(value, &mut out).map(|()| out)
}

/// Appends [`decimal_text`]'s text to `out`.
pub fn write_decimal<'v>(value: impl Into<ValueRef<'v>>, out: &mut String) -> Result<(), String> {
    match value.into() {
        ValueRef::Number(n) => write_number(n, out),
        ValueRef::String(text) if is_decimal(text.trim()) => out.push_str(text.trim()),
        ValueRef::String(_) => return Err("a decimal number such as -12.50".into()),
        other => return Err(format!("a decimal number, not {}", type_name(other))),
    }
    Ok(())
}

/// A floating-point number as text: JSON numbers, decimal text, and
/// `NaN`/`Infinity`/`-Infinity` as strings.
pub fn float_text<'v>(value: impl Into<ValueRef<'v>>) -> Result<String, String> {
    let mut out = String::new();
    write_float(value, &mut out).map(|()| out)
}

/// Appends [`float_text`]'s text to `out`.
pub fn write_float<'v>(value: impl Into<ValueRef<'v>>, out: &mut String) -> Result<(), String> {
    match value.into() {
        ValueRef::Number(n) => write_number(n, out),
        ValueRef::String(text) => {
            let t = text.trim();
            match t {
                "NaN" | "Infinity" | "-Infinity" => out.push_str(t),
                _ if is_decimal(t) => out.push_str(t),
                _ => return Err("a number".into()),
            }
        }
        other => return Err(format!("a number, not {}", type_name(other))),
    }
    Ok(())
}

/// A boolean: `true`/`false`, the numbers 1/0, or the text
/// `true`/`false`/`t`/`f`/`1`/`0`/`yes`/`no` (any case).
pub fn bool_value<'v>(value: impl Into<ValueRef<'v>>) -> Result<bool, String> {
    match value.into() {
        ValueRef::Bool(b) => Ok(b),
        ValueRef::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
        ValueRef::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
        ValueRef::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "y" | "on" => Ok(true),
            "false" | "f" | "0" | "no" | "n" | "off" => Ok(false),
            _ => Err("a boolean".into()),
        },
        other => Err(format!("a boolean, not {}", type_name(other))),
    }
}

/// Text for a character column: strings as they are, numbers as their text
/// (doubles with no fraction print as integers: `1.0` → `1`), booleans as
/// `true`/`false`, arrays and objects as compact JSON.
pub fn text_value<'v>(value: impl Into<ValueRef<'v>>) -> String {
    let mut out = String::new();
    write_text(value, &mut out);
    out
}

/// Appends [`text_value`]'s text to `out`.
pub fn write_text<'v>(value: impl Into<ValueRef<'v>>, out: &mut String) {
    match value.into() {
        ValueRef::String(text) => out.push_str(text),
        ValueRef::Number(n) => write_number(n, out),
        other => write_json(other, out),
    }
}

/// JSON text for a JSON column. A string holding a JSON object or array is
/// taken as that document (records often carry JSON as text); any other value
/// is stored as itself.
pub fn json_text<'v>(value: impl Into<ValueRef<'v>>) -> String {
    let mut out = String::new();
    write_json_text(value, &mut out);
    out
}

/// Appends [`json_text`]'s text to `out`.
pub fn write_json_text<'v>(value: impl Into<ValueRef<'v>>, out: &mut String) {
    let value = value.into();
    if let ValueRef::String(text) = value {
        let trimmed = text.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && serde_json::from_str::<Value>(text).is_ok()
        {
            out.push_str(text);
            return;
        }
    }
    write_json(value, out);
}

/// Appends the compact JSON of `value`.
fn write_json(value: ValueRef<'_>, out: &mut String) {
    // Safe: serde_json writes UTF-8 only.
    let _ = write!(out, "{value}");
}

/// A date and time read from ISO-8601 text by [`parse_iso_datetime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoDateTime {
    /// Year (0000–9999).
    pub year: i32,
    /// Month, 1–12.
    pub month: u32,
    /// Day of month, 1–31 (not checked against the month).
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
    /// Fraction of the second in nanoseconds.
    pub nanos: u32,
    /// The offset from UTC in seconds, when the text had one (`Z` is 0).
    pub offset_secs: Option<i32>,
}

/// Reads `YYYY-MM-DD`, optionally followed by `T` or a space and
/// `HH:MM[:SS[.fraction]]`, optionally followed by `Z`, `±HH:MM`, `±HHMM` or
/// `±HH`. A fast path for the common shapes; `None` for anything else.
pub fn parse_iso_datetime(text: &str) -> Option<IsoDateTime> {
    let b = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let year = num(0, 4)? as i32;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (month, day) = (num(5, 2)?, num(8, 2)?);
    let mut out = IsoDateTime {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset_secs: None,
    };
    let mut i = 10;
    if i < b.len() {
        if !matches!(b[i], b'T' | b't' | b' ') {
            return None;
        }
        out.hour = num(i + 1, 2)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        out.minute = num(i + 4, 2)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            out.second = num(i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    if i - start < 9 {
                        out.nanos = out.nanos * 10 + u32::from(b[i] - b'0');
                    }
                    i += 1;
                }
                let digits = (i - start).min(9);
                if digits == 0 {
                    return None;
                }
                out.nanos *= 10u32.pow(9 - digits as u32);
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') if i + 1 == b.len() => out.offset_secs = Some(0),
            Some(&sign @ (b'+' | b'-')) => {
                let hours = num(i + 1, 2)?;
                let minutes = match b.len() - (i + 3) {
                    0 => 0,
                    2 => num(i + 3, 2)?,
                    3 if b[i + 3] == b':' => num(i + 4, 2)?,
                    _ => return None,
                };
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let secs = (hours * 3600 + minutes * 60) as i32;
                out.offset_secs = Some(if sign == b'-' { -secs } else { secs });
            }
            Some(_) => return None,
        }
    }
    (out.month >= 1
        && out.month <= 12
        && out.day >= 1
        && out.day <= 31
        && out.hour <= 23
        && out.minute <= 59
        && out.second <= 59)
        .then_some(out)
}

/// A number's text, with integral doubles up to 2^53 printed as integers.
pub fn number_text(n: &Number) -> String {
    let mut out = String::new();
    write_number(n, &mut out);
    out
}

/// Appends [`number_text`]'s text to `out`.
pub fn write_number(n: &Number, out: &mut String) {
    if n.is_f64()
        && let Some(f) = n.as_f64()
        && f.fract() == 0.0
        && f.abs() <= EXACT_F64_INT
    {
        out.push_str(itoa_i64(f as i64, &mut [0; 20]));
        return;
    }
    if let Some(i) = n.as_i64() {
        out.push_str(itoa_i64(i, &mut [0; 20]));
        return;
    }
    let _ = write!(out, "{n}");
}

fn is_decimal(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return false;
    }
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Fields<'static> {
        Fields::from_map(v.as_object().unwrap().clone())
    }

    #[test]
    fn key_value_upsert_and_delete() {
        let c = parse(br#"{"key":{"id":1},"value":{"id":1,"name":"a"}}"#).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                row: obj(json!({"id":1,"name":"a"})),
                key: Some(obj(json!({"id":1})))
            }
        );
        let c = parse(br#"{"key":{"id":1},"value":null}"#).unwrap();
        assert_eq!(
            c,
            Change::Delete {
                key: obj(json!({"id":1}))
            }
        );
    }

    #[test]
    fn key_fields_missing_from_value_are_added() {
        let c = parse(br#"{"key":{"id":7},"value":{"name":"a"}}"#).unwrap();
        let Change::Upsert { row, .. } = c else {
            panic!("not an upsert")
        };
        assert_eq!(row.get("id"), Some((&json!(7)).into()));
    }

    #[test]
    fn plain_records_are_rows() {
        // A plain row whose columns happen to be called key/value, but key is not an object.
        let c = parse(br#"{"key":"k","value":3}"#).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                row: obj(json!({"key":"k","value":3})),
                key: None
            }
        );
        let c = parse(br#"{"k1":1,"v2":"x"}"#).unwrap();
        assert!(matches!(c, Change::Upsert { key: None, .. }));
    }

    #[test]
    fn bad_payloads_say_what_is_wrong() {
        assert!(parse(b"not json").unwrap_err().contains("not JSON"));
        assert!(parse(b"[1]").unwrap_err().contains("not a JSON object"));
        assert!(parse(b"{}").unwrap_err().contains("empty"));
        assert!(
            parse(br#"{"key":{"a":1},"value":5}"#)
                .unwrap_err()
                .contains("object or null")
        );
    }

    /// The change of a JSON record as the sink driver computed it before
    /// `parse_struct`: prost decode, conversion to a JSON map, JSON text, parse.
    fn via_json_text(bytes: &[u8]) -> Result<Change<'static>, String> {
        use prost::Message;
        let s = prost_types::Struct::decode(bytes).expect("a valid Struct");
        let map = crate::stream::codec::struct_to_json(s);
        parse(&serde_json::to_vec(&map).unwrap())
    }

    fn encoded(v: Value) -> Vec<u8> {
        use prost::Message;
        crate::stream::codec::json_to_struct(v.as_object().unwrap()).encode_to_vec()
    }

    #[test]
    fn struct_payloads_parse_like_their_json_text() {
        for v in [
            json!({"key": {"id": 1}, "value": {"id": 1, "name": "a"}}),
            json!({"key": {"id": 1}, "value": null}),
            json!({"key": {"id": 7}, "value": {"z": "x", "a": 2.5}}),
            json!({"key": "k", "value": 3}),
            json!({"key": {"a": 1}, "value": 5}),
            json!({"key": {"a": 1}, "value": "x"}),
            json!({"key": {"id": "k"}, "value": {"name": "n", "n": {"$numberLong": "5"}}}),
            json!({"key": {"id": "k"}, "value": {"$numberLong": "5"}}),
            json!({"key": {"$oid": "5f1b"}, "value": {"a": 1}}),
            json!({"key": {"id": {"$numberLong": "7"}}, "value": null}),
            json!({"key": {"id": 1}, "value": {"id": 2, "s": "t"}, "extra": "e"}),
            json!({"key": {"id": 1}}),
            json!({}),
            json!({"k1": {"$numberLong": "3"}, "v1": {"$numberLong": "9"}, "v2": "x"}),
            json!({"$numberLong": "5"}),
            json!({"$binary": "AAE=", "$type": "00"}),
            json!({"$x": 1, "a": {"$numberLong": "2"}}),
            json!({"$x": 1, "a": 2, "b": {"$numberInt": "3"}}),
            json!({"$date": {"b": 1, "a": [1, {"$numberInt": "2"}]}}),
            json!({"t": {"$date": {"$numberLong": "1600000000000"}},
                   "b": {"$binary": {"base64": "AAE=", "subType": "00"}},
                   "b2": {"$binary": "AAE=", "$type": "00"}}),
            json!({"zeta": 1, "alpha": -0.0, "mid": 1e17, "f": 0.1, "neg": -9007199254740992.0,
                   "big": 9007199254740994.0, "n": null, "t": true, "s": "\u{0}é\"",
                   "nested": {"y": [1.5, [], {}, {"b": 1, "a": 2}], "x": ""}, "": 3}),
        ] {
            let bytes = encoded(v.clone());
            assert_eq!(parse_struct(&bytes), via_json_text(&bytes), "{v}");
        }
    }

    #[test]
    fn struct_fields_come_sorted_and_the_last_repeated_key_wins() {
        use prost::Message;
        // Hand-built Struct: entries "b"=1, "a"=2, "b"=3 (protobuf maps may repeat keys).
        let entry = |k: &str, n: f64| prost_types::Struct {
            fields: [(
                k.to_string(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::NumberValue(n)),
                },
            )]
            .into(),
        };
        let mut bytes = entry("b", 1.0).encode_to_vec();
        bytes.extend(entry("a", 2.0).encode_to_vec());
        bytes.extend(entry("b", 3.0).encode_to_vec());
        let map = decode_struct(&bytes).unwrap();
        assert_eq!(Value::Object(map.clone()), json!({"a": 2, "b": 3}));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(parse_struct(&bytes), via_json_text(&bytes));
    }

    #[test]
    fn struct_field_names_borrow_from_the_payload() {
        let bytes = encoded(json!({"id": 1, "name": "a"}));
        let Ok(Change::Upsert { row, key: None }) = parse_struct(&bytes) else {
            panic!("not a plain upsert")
        };
        assert!(row.0.iter().all(|(n, _)| matches!(n, Cow::Borrowed(_))));
        assert_eq!(
            row.iter().collect::<Vec<_>>(),
            [("id", (&json!(1)).into()), ("name", ValueRef::String("a"))]
        );
    }

    #[test]
    fn fields_compare_like_maps() {
        let a = obj(json!({"a": 1, "b": 2}));
        assert_eq!(a, obj(json!({"b": 2, "a": 1})));
        assert_ne!(a, obj(json!({"a": 1, "b": 3})));
        assert_ne!(a, obj(json!({"a": 1})));
        assert_ne!(a, obj(json!({"a": 1, "b": 2, "c": 3})));
    }

    #[test]
    fn bad_struct_payloads_say_what_is_wrong() {
        for bad in [
            &b"\x0a\x05\x0a\x01"[..],     // an entry longer than the payload
            &b"\x0a\x03\x0a\x01\xff"[..], // a key that is not UTF-8
            &b"\x09"[..],                 // field 1 with the wrong wire type
            &b"\xff"[..],                 // a truncated varint
        ] {
            let e = parse_struct(bad).unwrap_err();
            assert!(e.starts_with("payload is not a protobuf Struct ("), "{e}");
            assert!(
                prost::Message::decode(bad)
                    .map(|_: prost_types::Struct| ())
                    .is_err(),
                "prost accepts {bad:?}"
            );
        }
        assert!(parse_struct(b"").unwrap_err().contains("empty"));
        // Unknown fields are skipped, as prost does.
        let mut bytes = vec![0x10, 0x05, 0x1d, 0, 0, 0, 0];
        bytes.extend(encoded(json!({"a": 1})));
        assert_eq!(parse_struct(&bytes), via_json_text(&bytes));
    }

    #[test]
    fn extended_json_is_unwrapped() {
        let v = normalize(json!({
            "k1": {"$numberLong": "5"},
            "big": {"$numberLong": "18446744073709551615"},
            "i": {"$numberInt": "-3"},
            "d": {"$numberDecimal": "1.10"},
            "f": {"$numberDouble": "2.5"},
            "id": {"$oid": "5f1b2c3d4e5f6a7b8c9d0e1f"},
            "t": {"$date": {"$numberLong": "1600000000000"}},
            "b": {"$binary": {"base64": "AAE=", "subType": "00"}},
            "nested": [{"x": {"$numberLong": "1"}}],
            "keep": {"$other": 1}
        }));
        assert_eq!(
            v,
            json!({
                "k1": 5, "big": 18446744073709551615u64, "i": -3, "d": "1.10", "f": 2.5,
                "id": "5f1b2c3d4e5f6a7b8c9d0e1f", "t": 1600000000000i64, "b": "AAE=",
                "nested": [{"x": 1}], "keep": {"$other": 1}
            })
        );
    }

    #[test]
    fn bson_record_parses_like_the_reference_test() {
        let c = parse(br#"{"k1":{"$numberLong":"3"},"v1":{"$numberLong":"9"},"v2":"x"}"#).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                row: obj(json!({"k1":3,"v1":9,"v2":"x"})),
                key: None
            }
        );
    }

    #[test]
    fn integers_are_exact() {
        assert_eq!(integer_text(&json!(1.0), -10, 10).unwrap(), "1");
        assert_eq!(
            integer_text(
                &json!("9223372036854775807"),
                i64::MIN.into(),
                i64::MAX.into()
            )
            .unwrap(),
            "9223372036854775807"
        );
        assert!(integer_text(&json!(1.5), -10, 10).is_err());
        assert!(
            integer_text(&json!(11), -10, 10)
                .unwrap_err()
                .contains("-10..=10")
        );
        assert!(integer_text(&json!(1e17), i64::MIN.into(), i64::MAX.into()).is_err());
        assert!(integer_text(&json!(true), 0, 1).is_err());
    }

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(
            decimal_text(&json!("12345678901234567890.123456789")).unwrap(),
            "12345678901234567890.123456789"
        );
        assert_eq!(decimal_text(&json!(0.1)).unwrap(), "0.1");
        assert_eq!(decimal_text(&json!(2.0)).unwrap(), "2");
        assert_eq!(decimal_text(&json!("-1e3")).unwrap(), "-1e3");
        assert!(decimal_text(&json!("1.2.3")).is_err());
        assert!(decimal_text(&json!("")).is_err());
        assert!(decimal_text(&json!(".")).is_err());
        assert!(decimal_text(&json!("1e")).is_err());
    }

    #[test]
    fn iso_datetimes() {
        let t = parse_iso_datetime("2024-01-31T12:34:56.789+02:00").unwrap();
        assert_eq!(
            (
                t.year,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second,
                t.nanos,
                t.offset_secs
            ),
            (2024, 1, 31, 12, 34, 56, 789_000_000, Some(7200))
        );
        let t = parse_iso_datetime("2024-01-31 00:00:00").unwrap();
        assert_eq!((t.hour, t.offset_secs), (0, None));
        assert_eq!(parse_iso_datetime("2024-01-31").unwrap().day, 31);
        assert_eq!(
            parse_iso_datetime("2024-01-31T01:02Z").unwrap().offset_secs,
            Some(0)
        );
        assert_eq!(
            parse_iso_datetime("2024-01-31T01:02:03-0530")
                .unwrap()
                .offset_secs,
            Some(-19800)
        );
        assert_eq!(
            parse_iso_datetime("2024-01-31T01:02:03.123456789123")
                .unwrap()
                .nanos,
            123_456_789
        );
        for bad in [
            "2024-13-01",
            "2024-01-31X",
            "2024-01-31T25:00",
            "24-01-31",
            "2024-01-31T01:02:03.",
            "2024-01-31T01:02+5",
        ] {
            assert!(parse_iso_datetime(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn booleans_and_text() {
        assert!(bool_value(&json!("T")).unwrap());
        assert!(!bool_value(&json!(0)).unwrap());
        assert!(bool_value(&json!(2)).is_err());
        assert_eq!(text_value(&json!(3.0)), "3");
        assert_eq!(text_value(&json!({"a":1})), r#"{"a":1}"#);
        assert_eq!(json_text(&json!(r#"{"a":1}"#)), r#"{"a":1}"#);
        assert_eq!(json_text(&json!("plain")), r#""plain""#);
        assert_eq!(excerpt(&json!("abcdefghij"), 5), "\"abcd…");
    }
}
