//! Reading the JSON Schemas schemars 1.x produces: `$ref` resolution, `Option<T>` unwrapping,
//! enum extraction, type names, constraints and the display order (`ui:order`).

use serde_json::{Map, Value};

/// `$ref` chains longer than this are treated as cycles and left unresolved.
const MAX_REF_DEPTH: usize = 32;

/// A schema node with `$ref`, `allOf` and `Option<T>` wrappers folded into one object.
///
/// Keywords next to a `$ref` (schemars puts the field's `description` and `default` there)
/// override the referenced definition's.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub(crate) schema: Map<String, Value>,
    /// True when the node accepts `null` (`Option<T>`): such a property is never required.
    pub(crate) nullable: bool,
}

/// One allowed value of an enum, with the description of its `oneOf` variant if it has one.
#[derive(Debug)]
pub(crate) struct EnumValue {
    pub(crate) value: Value,
    pub(crate) description: Option<String>,
}

/// A run of properties shown together: before the first group marker `title` is `None`.
#[derive(Debug)]
pub(crate) struct Section<'a> {
    pub(crate) title: Option<String>,
    pub(crate) properties: Vec<(&'a str, &'a Value)>,
}

/// Resolves `node`, looking up `$ref`s in `root`.
pub(crate) fn resolve(root: &Value, node: &Value) -> Resolved {
    resolve_at(root, node, 0)
}

fn resolve_at(root: &Value, node: &Value, depth: usize) -> Resolved {
    let mut out = Resolved::default();
    let Some(obj) = node.as_object() else {
        // `true` (or a malformed node): accepts anything.
        return out;
    };
    let mut consumed: Vec<&str> = vec!["$ref"];
    if depth < MAX_REF_DEPTH {
        if let Some(target) = obj
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| lookup(root, r))
        {
            out.merge(resolve_at(root, target, depth + 1));
        }
        if let Some(Value::Array(all)) = obj.get("allOf") {
            for part in all {
                out.merge(resolve_at(root, part, depth + 1));
            }
            consumed.push("allOf");
        }
        for key in ["anyOf", "oneOf"] {
            let Some(Value::Array(variants)) = obj.get(key) else {
                continue;
            };
            let (nulls, others): (Vec<&Value>, Vec<&Value>) =
                variants.iter().partition(|v| is_null_schema(v));
            if nulls.is_empty() {
                continue;
            }
            out.nullable = true;
            consumed.push(key);
            if let [only] = others.as_slice() {
                out.merge(resolve_at(root, only, depth + 1));
            } else {
                let others = others.into_iter().cloned().collect();
                out.schema.insert(key.to_owned(), Value::Array(others));
            }
        }
    }
    let own = obj
        .iter()
        .filter(|(k, _)| !consumed.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.merge(Resolved {
        schema: own,
        nullable: false,
    });
    out.strip_null();
    out
}

fn lookup<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        Some(root)
    } else {
        root.pointer(pointer)
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
        || v.get("const") == Some(&Value::Null)
        || v.get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| e == &[Value::Null])
}

impl Resolved {
    fn merge(&mut self, other: Resolved) {
        self.nullable |= other.nullable;
        for (key, value) in other.schema {
            match (key.as_str(), self.schema.get_mut(&key), value) {
                ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                    mine.extend(theirs);
                }
                ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                    for name in theirs {
                        if !mine.contains(&name) {
                            mine.push(name);
                        }
                    }
                }
                (_, _, value) => {
                    self.schema.insert(key, value);
                }
            }
        }
    }

    /// Moves `null` out of `type: [..., "null"]` and `enum: [..., null]` into `nullable`.
    fn strip_null(&mut self) {
        if let Some(Value::Array(types)) = self.schema.get_mut("type") {
            let before = types.len();
            types.retain(|t| t.as_str() != Some("null"));
            if types.len() != before {
                self.nullable = true;
            }
            if let [only] = types.as_slice() {
                let only = only.clone();
                self.schema.insert("type".to_owned(), only);
            }
        }
        if let Some(Value::Array(values)) = self.schema.get_mut("enum") {
            let before = values.len();
            values.retain(|v| !v.is_null());
            if values.len() != before {
                self.nullable = true;
            }
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.schema.get(key)
    }

    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    /// `writeOnly: true`, `format: password`, `ui:type: secret` or `ui:options.sensitive`.
    pub(crate) fn is_secret(&self) -> bool {
        self.flag("writeOnly")
            || self.str("format") == Some("password")
            || self.str("ui:type") == Some("secret")
            || self
                .get("ui:options")
                .and_then(|o| o.get("sensitive"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
    }

    pub(crate) fn is_deprecated(&self) -> bool {
        self.flag("deprecated")
    }

    /// The `default`, treating `default: null` (schemars' default for `Option`) as no default.
    pub(crate) fn default_value(&self) -> Option<&Value> {
        self.get("default").filter(|v| !v.is_null())
    }

    /// `examples[0]` (or the older singular `example`), ignoring `null`.
    pub(crate) fn example(&self) -> Option<&Value> {
        self.get("examples")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
            .or_else(|| self.get("example"))
            .filter(|v| !v.is_null())
    }

    pub(crate) fn properties(&self) -> Option<&Map<String, Value>> {
        self.get("properties")
            .and_then(Value::as_object)
            .filter(|p| !p.is_empty())
    }

    pub(crate) fn is_required(&self, name: &str) -> bool {
        self.get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|n| n.as_str() == Some(name)))
    }

    /// The JSON types named by `type`, without `null`.
    fn types(&self) -> Vec<&str> {
        match self.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// The first declared JSON type, or the type of the first enum value.
    pub(crate) fn primary_type(&self, root: &Value) -> Option<String> {
        if let Some(t) = self.types().first() {
            return Some((*t).to_owned());
        }
        self.enum_values(root)
            .first()
            .map(|v| json_type(&v.value).to_owned())
    }

    /// A human-readable type: `string`, `integer | string`, `array of string`, `map of integer`.
    pub(crate) fn type_name(&self, root: &Value) -> String {
        let types = self.types();
        let names: Vec<String> = if types.is_empty() {
            let values = self.enum_values(root);
            if !values.is_empty() {
                values
                    .iter()
                    .map(|v| json_type(&v.value).to_owned())
                    .collect()
            } else {
                ["anyOf", "oneOf"]
                    .iter()
                    .filter_map(|k| self.get(k).and_then(Value::as_array))
                    .flatten()
                    .map(|v| resolve(root, v).type_name(root))
                    .collect()
            }
        } else {
            types
                .iter()
                .map(|t| match *t {
                    "array" => match self.get("items").filter(|i| i.is_object()) {
                        Some(items) => format!("array of {}", resolve(root, items).type_name(root)),
                        None => "array".to_owned(),
                    },
                    "object" => match self.get("additionalProperties").filter(|a| a.is_object()) {
                        Some(values) if self.properties().is_none() => {
                            format!("map of {}", resolve(root, values).type_name(root))
                        }
                        _ => "object".to_owned(),
                    },
                    other => other.to_owned(),
                })
                .collect()
        };
        let mut unique: Vec<String> = Vec::new();
        for name in names {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        if unique.is_empty() {
            "any".to_owned()
        } else {
            unique.join(" | ")
        }
    }

    /// The allowed values from `enum`, `const`, or a `oneOf`/`anyOf` whose variants are all consts.
    pub(crate) fn enum_values(&self, root: &Value) -> Vec<EnumValue> {
        if let Some(Value::Array(values)) = self.get("enum") {
            return values
                .iter()
                .map(|v| EnumValue {
                    value: v.clone(),
                    description: None,
                })
                .collect();
        }
        if let Some(value) = self.get("const") {
            return vec![EnumValue {
                value: value.clone(),
                description: None,
            }];
        }
        for key in ["oneOf", "anyOf"] {
            let Some(Value::Array(variants)) = self.get(key) else {
                continue;
            };
            let values: Option<Vec<EnumValue>> = variants
                .iter()
                .map(|v| {
                    let v = resolve(root, v);
                    let value = match (v.get("const"), v.get("enum")) {
                        (Some(c), _) => c.clone(),
                        (None, Some(Value::Array(e))) if e.len() == 1 => e[0].clone(),
                        _ => return None,
                    };
                    let description = v.str("description").or_else(|| v.str("title"));
                    Some(EnumValue {
                        value,
                        description: description.map(first_paragraph),
                    })
                })
                .collect();
            if let Some(values) = values.filter(|v| !v.is_empty()) {
                return values;
            }
        }
        Vec::new()
    }

    /// Constraints in plain words, in a fixed order.
    pub(crate) fn constraints(&self, root: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let num = |key: &str| {
            self.get(key)
                .filter(|v| v.is_number())
                .map(Value::to_string)
        };
        let labels = [
            ("minimum", ">= "),
            ("exclusiveMinimum", "> "),
            ("maximum", "<= "),
            ("exclusiveMaximum", "< "),
            ("multipleOf", "multiple of "),
            ("minLength", "length >= "),
            ("maxLength", "length <= "),
            ("minItems", "items >= "),
            ("maxItems", "items <= "),
            ("minProperties", "entries >= "),
            ("maxProperties", "entries <= "),
        ];
        for (key, label) in labels {
            if let Some(n) = num(key) {
                out.push(format!("{label}{n}"));
            }
        }
        if self.flag("uniqueItems") {
            out.push("unique items".to_owned());
        }
        if let Some(pattern) = self.str("pattern") {
            out.push(format!("pattern {}", code(pattern)));
        }
        if let Some(format) = self.str("format") {
            out.push(format!("format {}", code(format)));
        }
        let values = self.enum_values(root);
        if !values.is_empty() {
            let listed: Vec<String> = values
                .iter()
                .map(|v| {
                    let value = code(&v.value.to_string());
                    match &v.description {
                        Some(d) if !d.is_empty() => format!("{value} ({d})"),
                        _ => value,
                    }
                })
                .collect();
            out.push(format!("one of {}", listed.join(", ")));
        }
        if let Some(items) = self.get("items").filter(|i| i.is_object()) {
            let items = resolve(root, items).constraints(root);
            if !items.is_empty() {
                out.push(format!("each item: {}", items.join(", ")));
            }
        }
        let condition = self.get("ui:condition");
        let field = condition
            .and_then(|c| c.get("field"))
            .and_then(Value::as_str);
        if let (Some(field), Some(value)) = (field, condition.and_then(|c| c.get("value"))) {
            out.push(format!(
                "used only when {} = {}",
                code(field),
                code(&value.to_string())
            ));
        }
        out
    }
}

/// Splits `object`'s properties into display sections following its `ui:order`.
///
/// Strings name properties; `{"ui:type":"group","name":…}` markers start a new section; `"*"`
/// stands for every property not named in `ui:order`. Properties never placed are appended in
/// schema order, in a section titled "Other parameters" when the last section is a group.
/// Unknown or repeated names are ignored.
pub(crate) fn sections(object: &Resolved) -> Vec<Section<'_>> {
    let Some(properties) = object.properties() else {
        return Vec::new();
    };
    let order: &[Value] = object
        .get("ui:order")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let named: Vec<&str> = order.iter().filter_map(Value::as_str).collect();
    let mut placed: Vec<&str> = Vec::new();
    let mut sections = vec![Section {
        title: None,
        properties: Vec::new(),
    }];
    for item in order {
        match item {
            Value::String(name) if name == "*" => {
                for key in properties.keys().filter(|k| !named.contains(&k.as_str())) {
                    place(properties, key, &mut sections, &mut placed);
                }
            }
            Value::String(name) => place(properties, name, &mut sections, &mut placed),
            Value::Object(marker)
                if marker.get("ui:type").and_then(Value::as_str) == Some("group") =>
            {
                let title = marker
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("Group");
                sections.push(Section {
                    title: Some(title.to_owned()),
                    properties: Vec::new(),
                });
            }
            _ => {}
        }
    }
    let rest: Vec<&String> = properties
        .keys()
        .filter(|k| !placed.contains(&k.as_str()))
        .collect();
    if !rest.is_empty() && sections.last().is_some_and(|s| s.title.is_some()) {
        sections.push(Section {
            title: Some("Other parameters".to_owned()),
            properties: Vec::new(),
        });
    }
    for key in rest {
        place(properties, key, &mut sections, &mut placed);
    }
    sections.retain(|s| !s.properties.is_empty());
    sections
}

/// Appends property `name` to the last section unless it is unknown or already placed.
fn place<'a>(
    properties: &'a Map<String, Value>,
    name: &str,
    sections: &mut [Section<'a>],
    placed: &mut Vec<&'a str>,
) {
    let Some((key, value)) = properties.get_key_value(name) else {
        return;
    };
    if placed.contains(&key.as_str()) {
        return;
    }
    placed.push(key.as_str());
    if let Some(last) = sections.last_mut() {
        last.properties.push((key.as_str(), value));
    }
}

/// The JSON type name of a value.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The first paragraph of a Markdown text, with its line breaks turned into spaces.
pub(crate) fn first_paragraph(text: &str) -> String {
    let mut lines = Vec::new();
    for line in text.trim().lines() {
        if line.trim().is_empty() {
            break;
        }
        lines.push(line.trim());
    }
    lines.join(" ")
}

/// An inline code span that survives backticks in `text`.
pub(crate) fn code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}
