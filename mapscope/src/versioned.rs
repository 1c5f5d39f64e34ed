//! The one way a family's snapshot becomes a JSON document: its fields with a leading `schema`,
//! so every consumer (CLI `--json`, the agent's API, sinks) sees the same versioned shape.

use serde::Serialize;

/// Serialises `value` flattened under a leading `"schema": schema` field.
pub fn versioned<T: Serialize>(schema: u32, value: &T) -> serde_json::Value {
    #[derive(Serialize)]
    struct Versioned<'a, T> {
        schema: u32,
        #[serde(flatten)]
        value: &'a T,
    }
    serde_json::to_value(Versioned { schema, value }).expect("a snapshot always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_comes_first_and_fields_follow() {
        #[derive(Serialize)]
        struct S {
            a: u32,
        }
        let v = versioned(3, &S { a: 7 });
        assert_eq!(v.to_string(), r#"{"schema":3,"a":7}"#);
    }
}
