//! Where each field of a YAML document is: a map from field path (`spec.strategy.canary.steps[1]`)
//! to its line, read with serde-saphyr's spans so a validation error names the line to fix.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Field paths of one document and their 1-based lines (the line of the key, or of the `-` of a
/// list item).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineIndex {
    lines: BTreeMap<String, u64>,
}

impl LineIndex {
    /// Indexes `document` (one YAML document).
    pub fn parse(document: &str) -> Result<Self, serde_saphyr::Error> {
        let tree: Spanned<Tree> = serde_saphyr::from_str(document)?;
        let mut lines = BTreeMap::new();
        collect(&tree.value, "", &mut lines);
        Ok(Self { lines })
    }

    /// The line of `path`, else of its closest parent that is in the document (a field the error
    /// is about may be unset, e.g. a missing `selector` is reported at `spec`).
    pub fn line_of(&self, path: &str) -> Option<u64> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

impl LineIndex {
    /// The deepest field path that starts on `line`, to name the field a parse error is about.
    pub fn path_at(&self, line: u64) -> Option<&str> {
        self.lines
            .iter()
            .filter(|(_, l)| **l == line)
            .map(|(path, _)| path.as_str())
            .max_by_key(|path| path.len())
    }
}

/// A YAML node with the spans of its keys and items.
enum Tree {
    Map(Vec<(Spanned<Key>, Spanned<Tree>)>),
    Seq(Vec<Spanned<Tree>>),
    Scalar,
}

fn collect(tree: &Tree, prefix: &str, out: &mut BTreeMap<String, u64>) {
    match tree {
        Tree::Map(entries) => {
            for (key, value) in entries {
                let path = if prefix.is_empty() {
                    key.value.0.clone()
                } else {
                    format!("{prefix}.{}", key.value.0)
                };
                out.entry(path.clone()).or_insert(key.referenced.line());
                collect(&value.value, &path, out);
            }
        }
        Tree::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{prefix}[{i}]");
                out.entry(path.clone()).or_insert(item.referenced.line());
                collect(&item.value, &path, out);
            }
        }
        Tree::Scalar => {}
    }
}

/// A mapping key of any scalar type, as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".to_string()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let value = map.next_value::<Spanned<Tree>>()?;
            entries.push((key, value));
        }
        Ok(Tree::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Tree, E> {
        Ok(Tree::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Tree, E> {
        Ok(Tree::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Tree, E> {
        Ok(Tree::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Tree, E> {
        Ok(Tree::Scalar)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Tree, E> {
        Ok(Tree::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Scalar)
    }
    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree, D::Error> {
        Tree::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  strategy:
    canary:
      steps:
        - setWeight: 20
        - pause: {}
        - setWeight: 150
";

    #[test]
    fn paths_map_to_the_lines_of_their_keys_and_items() {
        let index = LineIndex::parse(DOC).unwrap();
        assert_eq!(index.line_of("kind"), Some(2));
        assert_eq!(index.line_of("metadata.name"), Some(4));
        assert_eq!(index.line_of("spec.strategy.canary.steps"), Some(8));
        assert_eq!(index.line_of("spec.strategy.canary.steps[0]"), Some(9));
        assert_eq!(
            index.line_of("spec.strategy.canary.steps[2].setWeight"),
            Some(11)
        );
    }

    #[test]
    fn a_missing_field_is_located_at_its_closest_parent() {
        let index = LineIndex::parse(DOC).unwrap();
        assert_eq!(index.line_of("spec.selector"), Some(5));
        assert_eq!(index.line_of("spec.strategy.canary.maxSurge"), Some(7));
        assert_eq!(index.line_of("status"), None);
    }

    #[test]
    fn the_deepest_path_on_a_line_names_its_field() {
        let index = LineIndex::parse(DOC).unwrap();
        assert_eq!(
            index.path_at(11),
            Some("spec.strategy.canary.steps[2].setWeight")
        );
        assert_eq!(index.path_at(4), Some("metadata.name"));
        assert_eq!(index.path_at(99), None);
    }
}
