//! Property tests of the diff over hostile manifests (part of the hardening suite of issue 17):
//! any JSON a rendered manifest or a live object can hold is compared without a panic, an object
//! never drifts from itself, and a changed declared field is reported.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::diff::{diff, parse_quantity};
use super::unified::object_diff;

fn cases() -> ProptestConfig {
    crate::proptest_config()
}

/// JSON values a few levels deep, with the keys manifests use (so that the diff's special cases,
/// such as lists keyed by `name` and quantities, are reached) and arbitrary ones.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        proptest::num::f64::NORMAL.prop_map(|f| json!(f)),
        "(\\PC{0,8}|[0-9.]{1,6}(m|Ki|Mi|Gi|k|M|e3|E)?)".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("containers".to_string()),
                    Just("resources".to_string()),
                    Just("cpu".to_string()),
                    Just("port".to_string()),
                    Just("metadata".to_string()),
                    "\\PC{0,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn manifest(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "ns"}, "spec": spec})
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_manifests_compare_without_a_panic(desired in value(), live in value()) {
        let drifts = diff(&manifest(desired.clone()), &manifest(live));
        let _ = object_diff(&manifest(desired), &drifts);
    }

    #[test]
    fn an_object_never_drifts_from_itself(spec in value()) {
        let object = manifest(spec);
        prop_assert!(diff(&object, &object).is_empty(), "{:?}", diff(&object, &object));
    }

    #[test]
    fn a_changed_declared_field_is_drift(spec in value(), a in any::<i64>(), b in any::<i64>()) {
        prop_assume!(a != b);
        let desired = manifest(json!({"replicas": a, "extra": spec}));
        let mut live = desired.clone();
        live["spec"]["replicas"] = json!(b);
        prop_assert!(!diff(&desired, &live).is_empty());
    }

    /// Any text parses to a value or to nothing, never a panic. (`0E400` parses to NaN: zero
    /// times an infinite power of ten; such a quantity always shows as drift, which is harmless.)
    #[test]
    fn quantities_of_any_text_parse_or_not(text in "\\PC{0,12}|[+-]?[0-9.]{0,8}(e|E)?[+-]?[0-9]{0,4}(Ki|Mi|m|k|n|u|Ei|E|P)?") {
        let _ = parse_quantity(&text);
    }

    #[test]
    fn plain_integers_are_their_value(n in 0u32..10_000_000) {
        prop_assert_eq!(parse_quantity(&n.to_string()), Some(f64::from(n)));
    }
}
