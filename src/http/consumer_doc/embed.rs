//! A trigger's own schemas (`body:`, `response_schema:`) as components of the
//! consumer document. Both are JSON Schema 2020-12, which is what an OpenAPI 3.1
//! Schema Object is, so they go in as written, with two changes: `$schema` is
//! dropped (flowgate reads every schema as 2020-12, whatever it says), and a
//! `$ref` into the schema itself (`#/$defs/item`) is pointed at where the
//! schema now sits in the document. A schema with its own `$id` is its own
//! resource: its references resolve against that, and are left alone.

use serde_json::{Map, Value};

/// Keywords whose values are data, not schemas: a `$ref` in them is not one.
const DATA: [&str; 5] = ["const", "default", "enum", "example", "examples"];

/// Deepest nesting walked; deeper parts are left as they are (a schema's
/// nesting is bounded by the YAML reader long before this).
const MAX_DEPTH: usize = 256;

/// `schema` as the component named `name`.
pub fn component(name: &str, schema: &Value) -> Value {
    let mut schema = schema.clone();
    let Value::Object(map) = &mut schema else {
        // `true` or `false`: nothing to point anywhere.
        return schema;
    };
    map.remove("$schema");
    if !map.contains_key("$id") {
        let base = format!("#/components/schemas/{name}");
        repoint(map, &base, 0);
    }
    schema
}

fn repoint(map: &mut Map<String, Value>, base: &str, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for (key, value) in map.iter_mut() {
        if DATA.contains(&key.as_str()) {
            continue;
        }
        match value {
            Value::String(r) if key == "$ref" => {
                if let Some(inner) = r.strip_prefix('#') {
                    *r = format!("{base}{inner}");
                }
            }
            Value::Object(inner) => repoint(inner, base, depth + 1),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        repoint(inner, base, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_into_the_schema_follow_it() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "array",
            "items": {"$ref": "#/$defs/line"},
            "$defs": {"line": {"type": "object", "properties": {
                "sub": {"$ref": "#"},
                "kind": {"enum": [{"$ref": "#/not/a/ref"}]},
            }}},
        });
        let c = component("Order.body", &schema);
        assert!(c.get("$schema").is_none());
        assert_eq!(
            c["items"]["$ref"],
            "#/components/schemas/Order.body/$defs/line"
        );
        let line = &c["$defs"]["line"]["properties"];
        assert_eq!(line["sub"]["$ref"], "#/components/schemas/Order.body");
        assert_eq!(line["kind"]["enum"][0]["$ref"], "#/not/a/ref");
    }

    #[test]
    fn a_schema_with_its_own_id_keeps_its_references() {
        let schema = json!({"$id": "urn:example:order", "items": {"$ref": "#/$defs/x"}});
        assert_eq!(component("O.body", &schema)["items"]["$ref"], "#/$defs/x");
        assert_eq!(component("O.body", &json!(true)), json!(true));
    }
}
