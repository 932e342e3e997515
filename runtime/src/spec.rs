//! The spec a connector prints: its config type's JSON Schema (draft 2020-12)
//! plus the keys HServer's front ends use.

use serde_json::{Map, Value, json};

use crate::connector::{Connector, Kind};

/// The spec of connector `C`.
///
/// Adds to the schemars output: `title`, `additionalProperties: false` (unknown
/// keys are errors), and `ui:order` — the connector's own properties first, then,
/// for sinks, each group of shared sink options behind a group marker
/// `{"ui:type":"group","expand":false,"name":…}` as the reference's front ends expect.
pub fn spec<C: Connector>() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(C::Config))
        .expect("a schemars schema always serialises");
    let obj = schema
        .as_object_mut()
        .expect("a config schema is an object");
    obj.insert("title".into(), Value::String(C::NAME.into()));
    obj.insert("additionalProperties".into(), Value::Bool(false));
    let names: Vec<String> = obj
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    obj.insert("ui:order".into(), Value::Array(ui_order(&names, C::KIND)));
    schema
}

fn ui_order(names: &[String], kind: Kind) -> Vec<Value> {
    let groups: &[(&str, &[&str])] = match kind {
        Kind::Sink => crate::sink::OPTION_GROUPS,
        Kind::Source => &[],
    };
    let grouped = |n: &str| groups.iter().any(|(_, members)| members.contains(&n));
    let mut order: Vec<Value> = names
        .iter()
        .filter(|n| !grouped(n))
        .map(|n| Value::String(n.clone()))
        .collect();
    for (group, members) in groups {
        let present: Vec<&&str> = members
            .iter()
            .filter(|m| names.iter().any(|n| n == *m))
            .collect();
        if present.is_empty() {
            continue;
        }
        order.push(json!({"ui:type": "group", "expand": false, "name": group}));
        order.extend(present.into_iter().map(|m| Value::String(m.to_string())));
    }
    order
}

/// The property schemas of a spec, by name (for tools that walk a spec).
pub fn properties(spec: &Value) -> Map<String, Value> {
    spec.get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}
