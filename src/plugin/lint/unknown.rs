//! Fields the API types do not know. The types ignore them, and the API server prunes (or, with
//! strict field validation, refuses) them, so a typo like `setWieght` would silently do nothing.

use serde_json::Value;

/// Paths present in `written` (the document as written) but absent from `understood` (the typed
/// object serialized back). Empty values (`{}`, `[]`, `null`) are not reported: the types drop
/// those on purpose.
pub fn unknown_fields(written: &Value, understood: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(written, understood, "", &mut out);
    out
}

fn walk(written: &Value, understood: &Value, path: &str, out: &mut Vec<String>) {
    match (written, understood) {
        (Value::Object(w), Value::Object(u)) => {
            for (key, value) in w {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match u.get(key) {
                    Some(known) => walk(value, known, &child, out),
                    None if is_empty(value) => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(w), Value::Array(u)) => {
            for (i, (value, known)) in w.iter().zip(u).enumerate() {
                walk(value, known, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_typos_at_any_depth_but_not_empty_values() {
        let written = json!({"spec": {"steps": [{"setWieght": 20}, {"pause": {}}], "paused": null,
                                      "labels": {}, "replicas": 3}});
        let understood = json!({"spec": {"steps": [{}, {"pause": {}}], "replicas": 3}});
        assert_eq!(
            unknown_fields(&written, &understood),
            vec!["spec.steps[0].setWieght".to_string()]
        );
    }
}
