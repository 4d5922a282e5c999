//! Manifest text → objects: multi-document YAML and JSON, `List`s flattened, non-manifests skipped.

use serde_json::Value;

use super::RenderError;

/// Every object of a (multi-document) YAML text; `file` names it in errors.
pub(super) fn parse_yaml(file: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    into_objects(file, parse_documents(file, text)?)
}

/// The documents of a (multi-document) YAML text, whatever they hold.
pub(super) fn parse_documents(file: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    serde_saphyr::from_multiple(text).map_err(|e| yaml_error(file, &e))
}

/// Every object of a JSON text (one object, or a `List`).
pub(super) fn parse_json(file: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    let document: Value = serde_json::from_str(text).map_err(|e| RenderError::Json {
        file: file.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    into_objects(file, vec![document])
}

fn yaml_error(file: &str, error: &serde_saphyr::Error) -> RenderError {
    let plain = error.without_snippet();
    match plain.location() {
        Some(location) => RenderError::Yaml {
            file: file.to_string(),
            line: location.line(),
            column: location.column(),
            message: without_location_suffix(&plain.to_string()),
        },
        None => RenderError::YamlNoLocation {
            file: file.to_string(),
            message: plain.to_string(),
        },
    }
}

/// serde-saphyr ends plain messages with ` at line L, column C`; the error already leads with it.
fn without_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(pos) => message[..pos].to_string(),
        None => message.to_string(),
    }
}

/// Kubernetes objects of the documents, in order. A document with neither `apiVersion` nor `kind` is
/// not a manifest (a values file, a config) and is skipped, as Argo CD skips such files; one with only
/// one of them is a broken manifest, which is an error.
fn into_objects(file: &str, documents: Vec<Value>) -> Result<Vec<Value>, RenderError> {
    let mut objects = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        let error = |message: String| RenderError::NotAnObject {
            file: file.to_string(),
            document: index + 1,
            message,
        };
        push_object(document, &mut objects).map_err(error)?;
    }
    Ok(objects)
}

fn push_object(document: Value, objects: &mut Vec<Value>) -> Result<(), String> {
    let Value::Object(map) = &document else {
        return Ok(());
    };
    let api_version = map.get("apiVersion");
    let kind = map.get("kind");
    match (api_version, kind) {
        (None, None) => Ok(()),
        (Some(Value::String(_)), Some(Value::String(kind))) if is_list(kind, map.get("items")) => {
            push_list_items(document, objects)
        }
        (Some(Value::String(a)), Some(Value::String(k))) if !a.is_empty() && !k.is_empty() => {
            objects.push(document);
            Ok(())
        }
        (None, Some(_)) => Err("apiVersion is missing".into()),
        (Some(_), None) => Err("kind is missing".into()),
        _ => Err("apiVersion and kind must be non-empty strings".into()),
    }
}

/// `kind: List` (or `FooList`) with an `items` array.
fn is_list(kind: &str, items: Option<&Value>) -> bool {
    kind.ends_with("List") && matches!(items, Some(Value::Array(_)))
}

fn push_list_items(list: Value, objects: &mut Vec<Value>) -> Result<(), String> {
    let Value::Object(mut map) = list else {
        return Ok(());
    };
    let Some(Value::Array(items)) = map.remove("items") else {
        return Ok(());
    };
    for (index, item) in items.into_iter().enumerate() {
        if !item.is_object() {
            return Err(format!("List item {index} is not an object"));
        }
        push_object(item, objects).map_err(|e| format!("List item {index}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn multi_document_yaml_in_order_without_empty_documents() {
        let text = "\
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
# only a comment
---
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: b
...
";
        let objects = parse_yaml("app/all.yaml", text).unwrap();
        let names: Vec<_> = objects
            .iter()
            .map(|o| o["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, [json!("a"), json!("b")]);
    }

    #[test]
    fn lists_are_flattened() {
        let text = "\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}
- apiVersion: v1
  kind: ConfigMapList
  items:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}
---
{apiVersion: v1, kind: Service, metadata: {name: c}}
";
        let objects = parse_yaml("list.yaml", text).unwrap();
        let names: Vec<_> = objects
            .iter()
            .map(|o| o["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, [json!("a"), json!("b"), json!("c")]);
        let json_list = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}]}"#;
        assert_eq!(
            parse_json("list.json", json_list).unwrap()[0]["kind"],
            "Secret"
        );
    }

    #[test]
    fn invalid_yaml_names_file_and_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: [unclosed\n";
        let err = parse_yaml("app/bad.yaml", text).unwrap_err();
        let RenderError::Yaml { file, line, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(file, "app/bad.yaml");
        assert!(*line >= 5, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("app/bad.yaml:{line}:")),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'), "{err}");

        let second_doc = "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: : :\n";
        let err = parse_yaml("two.yaml", second_doc).unwrap_err();
        assert!(matches!(err, RenderError::Yaml { line: 5, .. }), "{err}");
    }

    #[test]
    fn invalid_json_names_file_and_line() {
        let err = parse_json("x.json", "{\n  \"kind\": \"A\",\n  oops\n}").unwrap_err();
        assert!(matches!(err, RenderError::Json { line: 3, .. }), "{err}");
        assert!(err.to_string().starts_with("x.json:3:"), "{err}");
    }

    #[test]
    fn non_manifests_are_skipped_and_half_manifests_refused() {
        assert!(
            parse_yaml("values.yaml", "replicas: 3\nimage: {tag: x}\n")
                .unwrap()
                .is_empty()
        );
        assert!(parse_yaml("list.yaml", "- a\n- b\n").unwrap().is_empty());
        let err = parse_yaml("m.yaml", "kind: ConfigMap\nmetadata: {name: a}\n").unwrap_err();
        assert_eq!(err.to_string(), "m.yaml: document 1: apiVersion is missing");
        let err = parse_yaml(
            "m.yaml",
            "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\n",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "m.yaml: document 2: kind is missing");
        let err = parse_yaml("m.yaml", "apiVersion: v1\nkind: 3\n").unwrap_err();
        assert!(
            err.to_string().contains("must be non-empty strings"),
            "{err}"
        );
        let err = parse_yaml("m.yaml", "apiVersion: v1\nkind: List\nitems: [3]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.yaml: document 1: List item 0 is not an object"
        );
    }
}

/// Property tests (the hardening suite's render part): any text a repository holds is read without a
/// panic, and manifests come back exactly as written, Lists flattened in order.
#[cfg(test)]
mod property_tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::{parse_json, parse_yaml};

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,12}".prop_map(Value::String),
        ]
    }

    fn data() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("\\PC{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// A Kubernetes object: apiVersion, kind (never a `…List` with `items`), a name, any data.
    fn manifest() -> impl Strategy<Value = Value> {
        ("[a-z]{1,6}/v[0-9]", "[A-Z][a-z]{1,8}", "[a-z][a-z0-9-]{0,10}", data()).prop_map(
            |(api_version, kind, name, data)| {
                json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "data": data})
            },
        )
    }

    /// Each object as a JSON document (JSON is YAML), `---` between, with a List around some.
    fn as_yaml_stream(objects: &[Value], list_from: usize) -> String {
        let (plain, listed) = objects.split_at(list_from.min(objects.len()));
        let mut documents: Vec<String> = plain.iter().map(Value::to_string).collect();
        if !listed.is_empty() {
            documents
                .push(json!({"apiVersion": "v1", "kind": "List", "items": listed}).to_string());
        }
        documents.join("\n---\n")
    }

    proptest! {
        #![proptest_config(crate::proptest_config())]

        #[test]
        fn any_text_is_read_without_a_panic(text in "\\PC{0,200}|[-:{}\\[\\]&*!|>'\"%@`#, \n\t]{0,80}") {
            let _ = parse_yaml("f.yaml", &text);
            let _ = parse_json("f.json", &text);
        }

        #[test]
        fn manifests_come_back_as_written_lists_flattened_in_order(
            objects in proptest::collection::vec(manifest(), 0..6),
            list_from in 0usize..7,
        ) {
            let text = as_yaml_stream(&objects, list_from);
            let read = parse_yaml("f.yaml", &text);
            prop_assert_eq!(read.as_ref().ok(), Some(&objects), "{:?} from {}", read, text);
        }
    }
}

#[cfg(test)]
mod depth_tests {
    use super::{parse_json, parse_yaml};

    /// `kind: List` inside `kind: List`, `depth` times, as YAML flow style.
    fn nested_lists(depth: usize) -> String {
        let open = r#"{"apiVersion": "v1", "kind": "List", "items": ["#;
        format!("{}{}", open.repeat(depth), "]}".repeat(depth))
    }

    /// A repository can nest documents as deep as it likes: reading them is an error past the
    /// parsers' depth limits, never a stack overflow (which would abort the whole controller).
    #[test]
    fn deeply_nested_lists_are_refused_or_read_never_overflow_the_stack() {
        for depth in [10, 1_000, 100_000] {
            let text = nested_lists(depth);
            let yaml = parse_yaml("deep.yaml", &text);
            let json = parse_json("deep.json", &text);
            if depth == 10 {
                assert_eq!(yaml.ok(), Some(vec![]), "empty nested Lists hold no object");
            } else {
                assert!(yaml.is_err() && json.is_err(), "depth {depth} is refused");
            }
        }
    }
}
