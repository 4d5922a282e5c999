//! Parameter sets from generators. Pure: clusters and Git trees come in as [`Sources`]; a Git tree
//! not read yet is recorded in [`Generation::missing`] so the controller reads it and runs again.
//!
//! Parameters are Argo CD's, in its two shapes: flat (`path.basename`, `metadata.labels.env`) for
//! fasttemplate, nested (`.path.basename`, `.metadata.labels.env`) for Go templates.

use std::collections::{BTreeMap, BTreeSet};

use globset::{GlobBuilder, GlobMatcher};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Map, Value};
use thiserror::Error;

use super::template::{Dialect, TemplateError, fast_text, render_str, render_value, sanitize_name};
use crate::api::application::{IN_CLUSTER_NAME, IN_CLUSTER_SERVER};
use crate::api::applicationset::{
    ApplicationSetGenerator, ClusterGenerator, GitGenerator, ListGenerator, MatrixGenerator,
    MergeGenerator, NestedGenerator,
};

/// One parameter set.
pub type ParamSet = Map<String, Value>;

/// Most parameter sets one generator (or a matrix product) may make.
pub const MAX_PARAM_SETS: usize = 1000;
/// Deepest nesting of matrix and merge generators (Argo allows two levels).
pub const MAX_GENERATOR_DEPTH: usize = 3;

/// Why parameters could not be generated; the message names the generator's path.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GenerateError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path} is not supported by Sluice (an Argo generator it does not implement)")]
    Unsupported { path: String },
    #[error("{path}: {source}")]
    Template {
        path: String,
        #[source]
        source: TemplateError,
    },
    #[error("{path}: more than {MAX_PARAM_SETS} parameter sets")]
    TooMany { path: String },
    #[error("{path}: {message}")]
    Git { path: String, message: String },
}

/// A cluster the clusters generator may list (from a cluster Secret, or the implicit in-cluster).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub server: String,
    pub project: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A read of a Git tree: which revision, and which files (their globs) to read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GitQuery {
    pub repo_url: String,
    pub revision: String,
    /// `(glob, exclude)` of `files`; empty when only directories are listed.
    pub files: Vec<(String, bool)>,
}

/// What a [`GitQuery`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitData {
    pub sha: String,
    /// Every directory of the tree but the root and hidden ones, relative, `/`-separated, sorted.
    pub directories: Vec<String>,
    /// The files matching the query's globs, with their text, sorted by path.
    pub files: Vec<(String, String)>,
}

/// What generators read besides their own spec.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub clusters: Vec<Cluster>,
    pub git: BTreeMap<GitQuery, Result<GitData, String>>,
}

/// One run over an ApplicationSet's generators.
pub struct Generation<'a> {
    pub sources: &'a Sources,
    pub dialect: Dialect,
    /// Git trees asked for and not in `sources`.
    pub missing: BTreeSet<GitQuery>,
}

/// The parameter sets of one top-level generator and its template override.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub sets: Vec<ParamSet>,
    pub template: Option<Value>,
}

impl<'a> Generation<'a> {
    pub fn new(sources: &'a Sources, dialect: Dialect) -> Self {
        Self {
            sources,
            dialect,
            missing: BTreeSet::new(),
        }
    }

    fn go(&self) -> bool {
        matches!(self.dialect, Dialect::Go { .. })
    }

    /// The sets of every top-level generator, in order.
    pub fn all(
        &mut self,
        generators: &[ApplicationSetGenerator],
    ) -> Result<Vec<Generated>, GenerateError> {
        generators
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let path = format!("spec.generators[{i}]");
                Ok(Generated {
                    sets: self.generate(g, &path, 0)?,
                    template: template_of(g),
                })
            })
            .collect()
    }

    /// The sets of one generator at `path`, `depth` matrix/merge levels down.
    pub fn generate(
        &mut self,
        generator: &ApplicationSetGenerator,
        path: &str,
        depth: usize,
    ) -> Result<Vec<ParamSet>, GenerateError> {
        if depth > MAX_GENERATOR_DEPTH {
            return Err(GenerateError::Invalid {
                path: path.to_string(),
                message: format!(
                    "matrix and merge generators nest at most {MAX_GENERATOR_DEPTH} levels deep"
                ),
            });
        }
        refuse_unsupported(generator, path)?;
        let kinds = [
            generator.list.is_some(),
            generator.clusters.is_some(),
            generator.git.is_some(),
            generator.matrix.is_some(),
            generator.merge.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(GenerateError::Invalid {
                path: path.to_string(),
                message: "exactly one generator (list, clusters, git, matrix, merge) must be set"
                    .to_string(),
            });
        }
        let sets = if let Some(list) = &generator.list {
            self.list(list, &format!("{path}.list"))?
        } else if let Some(clusters) = &generator.clusters {
            self.clusters(clusters, &format!("{path}.clusters"))?
        } else if let Some(git) = &generator.git {
            self.git(git, &format!("{path}.git"))?
        } else if let Some(matrix) = &generator.matrix {
            self.matrix(matrix, &format!("{path}.matrix"), depth)?
        } else if let Some(merge) = &generator.merge {
            self.merge(merge, &format!("{path}.merge"), depth)?
        } else {
            Vec::new()
        };
        let sets = match &generator.selector {
            Some(selector) => sets
                .into_iter()
                .filter(|set| selector_matches(selector, &flat_strings(set)))
                .collect(),
            None => sets,
        };
        if sets.len() > MAX_PARAM_SETS {
            return Err(GenerateError::TooMany {
                path: path.to_string(),
            });
        }
        Ok(sets)
    }

    fn list(&self, list: &ListGenerator, path: &str) -> Result<Vec<ParamSet>, GenerateError> {
        let mut elements = list.elements.clone();
        if let Some(yaml) = list
            .elements_yaml
            .as_deref()
            .filter(|y| !y.trim().is_empty())
        {
            let parsed: Vec<Value> =
                serde_saphyr::from_str(yaml).map_err(|e| GenerateError::Invalid {
                    path: format!("{path}.elementsYaml"),
                    message: format!("not a YAML list: {e}"),
                })?;
            elements.extend(parsed);
        }
        elements
            .into_iter()
            .enumerate()
            .map(|(i, element)| match element {
                Value::Object(map) if self.go() => Ok(map),
                Value::Object(map) => {
                    let mut flat = ParamSet::new();
                    flatten(&Value::Object(map), "", &mut flat);
                    Ok(flat)
                }
                _ => Err(GenerateError::Invalid {
                    path: format!("{path}.elements[{i}]"),
                    message: "an element must be an object".to_string(),
                }),
            })
            .collect()
    }

    fn clusters(
        &self,
        generator: &ClusterGenerator,
        path: &str,
    ) -> Result<Vec<ParamSet>, GenerateError> {
        let with_implicit = implicit_clusters(&self.sources.clusters, generator.selector.as_ref());
        let mut sets = Vec::new();
        for cluster in with_implicit {
            if let Some(selector) = &generator.selector
                && !selector_matches(selector, &cluster.labels)
            {
                continue;
            }
            let mut set = self.cluster_params(&cluster);
            self.add_values(&mut set, &generator.values, path)?;
            sets.push(set);
        }
        Ok(sets)
    }

    fn cluster_params(&self, cluster: &Cluster) -> ParamSet {
        let mut set = ParamSet::new();
        set.insert("name".into(), Value::String(cluster.name.clone()));
        set.insert(
            "nameNormalized".into(),
            Value::String(sanitize_name(&cluster.name)),
        );
        set.insert("server".into(), Value::String(cluster.server.clone()));
        set.insert(
            "project".into(),
            Value::String(cluster.project.clone().unwrap_or_default()),
        );
        let strings = |m: &BTreeMap<String, String>| -> Map<String, Value> {
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        };
        if self.go() {
            let mut metadata = Map::new();
            metadata.insert("labels".into(), Value::Object(strings(&cluster.labels)));
            metadata.insert(
                "annotations".into(),
                Value::Object(strings(&cluster.annotations)),
            );
            set.insert("metadata".into(), Value::Object(metadata));
        } else {
            for (k, v) in &cluster.labels {
                set.insert(format!("metadata.labels.{k}"), Value::String(v.clone()));
            }
            for (k, v) in &cluster.annotations {
                set.insert(
                    format!("metadata.annotations.{k}"),
                    Value::String(v.clone()),
                );
            }
        }
        set
    }

    /// `values` rendered with the set's own parameters, added as `values.<key>`.
    fn add_values(
        &self,
        set: &mut ParamSet,
        values: &BTreeMap<String, String>,
        path: &str,
    ) -> Result<(), GenerateError> {
        if values.is_empty() {
            return Ok(());
        }
        let mut rendered = Map::new();
        for (key, template) in values {
            let value = render_str(template, set, self.dialect).map_err(|source| {
                GenerateError::Template {
                    path: format!("{path}.values.{key}"),
                    source,
                }
            })?;
            rendered.insert(key.clone(), Value::String(value));
        }
        if self.go() {
            set.insert("values".into(), Value::Object(rendered));
        } else {
            for (k, v) in rendered {
                set.insert(format!("values.{k}"), v);
            }
        }
        Ok(())
    }

    fn git(&mut self, git: &GitGenerator, path: &str) -> Result<Vec<ParamSet>, GenerateError> {
        let has_dirs = !git.directories.is_empty();
        let has_files = !git.files.is_empty();
        if has_dirs == has_files {
            return Err(GenerateError::Invalid {
                path: path.to_string(),
                message: "exactly one of directories and files must be set".to_string(),
            });
        }
        let query = GitQuery {
            repo_url: git.repo_url.clone(),
            revision: git
                .revision
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "HEAD".to_string()),
            files: git
                .files
                .iter()
                .map(|f| (f.path.clone(), f.exclude.unwrap_or(false)))
                .collect(),
        };
        let data = match self.sources.git.get(&query) {
            None => {
                self.missing.insert(query);
                return Ok(Vec::new());
            }
            Some(Err(message)) => {
                return Err(GenerateError::Git {
                    path: path.to_string(),
                    message: message.clone(),
                });
            }
            Some(Ok(data)) => data,
        };
        let prefix = git.path_param_prefix.as_deref().unwrap_or("");
        let mut sets = Vec::new();
        if has_dirs {
            let patterns: Vec<(String, bool)> = git
                .directories
                .iter()
                .map(|d| (d.path.clone(), d.exclude.unwrap_or(false)))
                .collect();
            let matcher =
                PathMatcher::new(&patterns).map_err(|message| GenerateError::Invalid {
                    path: format!("{path}.directories"),
                    message,
                })?;
            for dir in data.directories.iter().filter(|d| matcher.matches(d)) {
                let mut set = ParamSet::new();
                self.add_path_params(&mut set, prefix, dir, None);
                self.add_values(&mut set, &git.values, path)?;
                sets.push(set);
                if sets.len() > MAX_PARAM_SETS {
                    return Err(GenerateError::TooMany {
                        path: path.to_string(),
                    });
                }
            }
        } else {
            for (file, text) in &data.files {
                for content in parse_file(file, text).map_err(|message| GenerateError::Git {
                    path: format!("{path}.files"),
                    message,
                })? {
                    let mut set = ParamSet::new();
                    if self.go() {
                        set = content;
                    } else {
                        flatten(&Value::Object(content), "", &mut set);
                    }
                    let (dir, name) = match file.rsplit_once('/') {
                        Some((dir, name)) => (dir, name),
                        None => (".", file.as_str()),
                    };
                    self.add_path_params(&mut set, prefix, dir, Some(name));
                    self.add_values(&mut set, &git.values, path)?;
                    sets.push(set);
                    if sets.len() > MAX_PARAM_SETS {
                        return Err(GenerateError::TooMany {
                            path: path.to_string(),
                        });
                    }
                }
            }
        }
        Ok(sets)
    }

    /// Argo's `path` parameters of a directory (and file name, for the files generator).
    fn add_path_params(&self, set: &mut ParamSet, prefix: &str, dir: &str, file: Option<&str>) {
        let basename = dir.rsplit('/').next().unwrap_or(dir).to_string();
        let segments: Vec<&str> = dir.split('/').collect();
        let mut fields = Map::new();
        fields.insert("path".into(), Value::String(dir.to_string()));
        fields.insert("basename".into(), Value::String(basename.clone()));
        fields.insert(
            "basenameNormalized".into(),
            Value::String(sanitize_name(&basename)),
        );
        if let Some(file) = file {
            fields.insert("filename".into(), Value::String(file.to_string()));
            fields.insert(
                "filenameNormalized".into(),
                Value::String(sanitize_name(file)),
            );
        }
        if self.go() {
            fields.insert(
                "segments".into(),
                Value::Array(
                    segments
                        .iter()
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ),
            );
            let path_object = Value::Object(fields);
            if prefix.is_empty() {
                set.insert("path".into(), path_object);
            } else {
                let mut outer = Map::new();
                outer.insert("path".into(), path_object);
                set.insert(prefix.to_string(), Value::Object(outer));
            }
            return;
        }
        let key = if prefix.is_empty() {
            "path".to_string()
        } else {
            format!("{prefix}.path")
        };
        for (field, value) in fields {
            let name = if field == "path" {
                key.clone()
            } else {
                format!("{key}.{field}")
            };
            set.insert(name, value);
        }
        for (i, segment) in segments.iter().enumerate() {
            set.insert(format!("{key}[{i}]"), Value::String(segment.to_string()));
        }
    }

    fn matrix(
        &mut self,
        matrix: &MatrixGenerator,
        path: &str,
        depth: usize,
    ) -> Result<Vec<ParamSet>, GenerateError> {
        let [first, second] = matrix.generators.as_slice() else {
            return Err(GenerateError::Invalid {
                path: format!("{path}.generators"),
                message: format!(
                    "a matrix generator has exactly 2 child generators, not {}",
                    matrix.generators.len()
                ),
            });
        };
        let first_path = format!("{path}.generators[0]");
        let second_path = format!("{path}.generators[1]");
        let first_gen = nested(first, &first_path)?;
        let left = self.generate(&first_gen, &first_path, depth + 1)?;
        let mut out = Vec::new();
        for set in &left {
            // The second generator may use the first one's parameters (Argo's interpolation).
            let second_value = serde_json::to_value(second).unwrap_or(Value::Null);
            let rendered = render_value(&second_value, set, self.dialect).map_err(|source| {
                GenerateError::Template {
                    path: second_path.clone(),
                    source,
                }
            })?;
            let second_nested: NestedGenerator =
                serde_json::from_value(rendered).map_err(|e| GenerateError::Invalid {
                    path: second_path.clone(),
                    message: e.to_string(),
                })?;
            let second_gen = nested(&second_nested, &second_path)?;
            for right in self.generate(&second_gen, &second_path, depth + 1)? {
                out.push(self.combine(set, &right, path)?);
                if out.len() > MAX_PARAM_SETS {
                    return Err(GenerateError::TooMany {
                        path: path.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// A matrix combination: flat sets may not disagree on a key; nested ones merge deeply, the
    /// second overriding.
    fn combine(&self, a: &ParamSet, b: &ParamSet, path: &str) -> Result<ParamSet, GenerateError> {
        let mut out = a.clone();
        for (key, value) in b {
            if self.go() {
                deep_merge(out.entry(key.clone()).or_insert(Value::Null), value);
                continue;
            }
            match out.get(key) {
                Some(existing) if existing != value => {
                    return Err(GenerateError::Invalid {
                        path: path.to_string(),
                        message: format!(
                            "found duplicate key {key} with different value, a: {} ,b: {}",
                            fast_text(existing),
                            fast_text(value)
                        ),
                    });
                }
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(out)
    }

    fn merge(
        &mut self,
        merge: &MergeGenerator,
        path: &str,
        depth: usize,
    ) -> Result<Vec<ParamSet>, GenerateError> {
        if merge.generators.len() < 2 {
            return Err(GenerateError::Invalid {
                path: format!("{path}.generators"),
                message: "a merge generator needs at least 2 child generators".to_string(),
            });
        }
        if merge.merge_keys.is_empty() {
            return Err(GenerateError::Invalid {
                path: format!("{path}.mergeKeys"),
                message: "at least one merge key is required".to_string(),
            });
        }
        let mut all = Vec::new();
        for (i, child) in merge.generators.iter().enumerate() {
            let child_path = format!("{path}.generators[{i}]");
            let generator = nested(child, &child_path)?;
            all.push(self.generate(&generator, &child_path, depth + 1)?);
        }
        let mut base = all.remove(0);
        let base_keys = keyed(&base, &merge.merge_keys, &format!("{path}.generators[0]"))?;
        for (i, others) in all.iter().enumerate() {
            let by_key = keyed(
                others,
                &merge.merge_keys,
                &format!("{path}.generators[{}]", i + 1),
            )?;
            for (key, base_index) in &base_keys {
                let Some(other_index) = by_key.get(key) else {
                    continue;
                };
                let other = &others[*other_index];
                let target = &mut base[*base_index];
                for (k, v) in other {
                    if self.go() {
                        deep_merge(target.entry(k.clone()).or_insert(Value::Null), v);
                    } else {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        Ok(base)
    }
}

/// The index of each set by its merge-key values; two sets with the same values are an error.
fn keyed(
    sets: &[ParamSet],
    keys: &[String],
    path: &str,
) -> Result<BTreeMap<String, usize>, GenerateError> {
    let mut out = BTreeMap::new();
    for (i, set) in sets.iter().enumerate() {
        let flat = flat_strings(set);
        let key: Vec<String> = keys
            .iter()
            .map(|k| {
                set.get(k)
                    .map(fast_text)
                    .or_else(|| flat.get(k).cloned())
                    .unwrap_or_default()
            })
            .collect();
        let key = serde_json::to_string(&key).unwrap_or_default();
        if out.insert(key.clone(), i).is_some() {
            return Err(GenerateError::Invalid {
                path: path.to_string(),
                message: format!("duplicate merge key values {key}"),
            });
        }
    }
    Ok(out)
}

/// The generators Sluice refuses, by their field name.
fn refuse_unsupported(
    generator: &ApplicationSetGenerator,
    path: &str,
) -> Result<(), GenerateError> {
    let refused = [
        ("scmProvider", generator.scm_provider.is_some()),
        (
            "clusterDecisionResource",
            generator.cluster_decision_resource.is_some(),
        ),
        ("pullRequest", generator.pull_request.is_some()),
        ("plugin", generator.plugin.is_some()),
        (
            "clusters.flatList",
            generator
                .clusters
                .as_ref()
                .is_some_and(|c| c.flat_list.as_ref().is_some_and(|f| !f.is_null())),
        ),
    ];
    match refused.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(GenerateError::Unsupported {
            path: format!("{path}.{name}"),
        }),
        None => Ok(()),
    }
}

/// A nested generator as a full one: a nested `matrix` or `merge` is read from its JSON.
fn nested(child: &NestedGenerator, path: &str) -> Result<ApplicationSetGenerator, GenerateError> {
    let parse = |value: &Option<Value>| -> Option<Value> { value.clone().filter(|v| !v.is_null()) };
    let matrix = match parse(&child.matrix) {
        Some(v) => Some(serde_json::from_value::<MatrixGenerator>(v).map_err(|e| {
            GenerateError::Invalid {
                path: format!("{path}.matrix"),
                message: e.to_string(),
            }
        })?),
        None => None,
    };
    let merge = match parse(&child.merge) {
        Some(v) => Some(serde_json::from_value::<MergeGenerator>(v).map_err(|e| {
            GenerateError::Invalid {
                path: format!("{path}.merge"),
                message: e.to_string(),
            }
        })?),
        None => None,
    };
    Ok(ApplicationSetGenerator {
        list: child.list.clone(),
        clusters: child.clusters.clone(),
        git: child.git.clone(),
        matrix,
        merge,
        scm_provider: child.scm_provider.clone(),
        cluster_decision_resource: child.cluster_decision_resource.clone(),
        pull_request: child.pull_request.clone(),
        plugin: child.plugin.clone(),
        selector: child.selector.clone(),
    })
}

/// The template override of a top-level generator.
fn template_of(generator: &ApplicationSetGenerator) -> Option<Value> {
    let template = if let Some(g) = &generator.list {
        &g.template
    } else if let Some(g) = &generator.clusters {
        &g.template
    } else if let Some(g) = &generator.git {
        &g.template
    } else if let Some(g) = &generator.matrix {
        &g.template
    } else if let Some(g) = &generator.merge {
        &g.template
    } else {
        return None;
    };
    template.clone().filter(|t| !t.is_null())
}

/// The clusters listed: the Secrets', plus the implicit in-cluster one when no Secret names its
/// server and no selector is given (Argo's rule).
pub fn implicit_clusters(secrets: &[Cluster], selector: Option<&LabelSelector>) -> Vec<Cluster> {
    let mut all = secrets.to_vec();
    let selects = selector.is_some_and(|s| {
        s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
            || s.match_expressions.as_ref().is_some_and(|m| !m.is_empty())
    });
    if !selects && !secrets.iter().any(|c| c.server == IN_CLUSTER_SERVER) {
        all.insert(
            0,
            Cluster {
                name: IN_CLUSTER_NAME.to_string(),
                server: IN_CLUSTER_SERVER.to_string(),
                ..Cluster::default()
            },
        );
    }
    all
}

/// Whether `labels` match `selector` (Kubernetes' rules: `In`, `NotIn`, `Exists`, `DoesNotExist`).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// The set flattened to `a.b.c` → text (how selectors and merge keys read nested sets).
pub fn flat_strings(set: &ParamSet) -> BTreeMap<String, String> {
    let mut flat = ParamSet::new();
    flatten(&Value::Object(set.clone()), "", &mut flat);
    flat.iter()
        .map(|(k, v)| (k.clone(), fast_text(v)))
        .collect()
}

/// Nested objects and lists flattened to dotted keys (`a.b`, `list.0`).
pub fn flatten(value: &Value, prefix: &str, out: &mut ParamSet) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(v, &key(k), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, &key(&i.to_string()), out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// `over` merged into `base`: objects key by key, anything else replaced.
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// A JSON or YAML file's parameter sets: an object is one, a list of objects several.
fn parse_file(path: &str, text: &str) -> Result<Vec<ParamSet>, String> {
    // JSON is YAML: one parser for both, as Argo's.
    let value: Value = serde_saphyr::from_str(text).map_err(|e| format!("{path}: {e}"))?;
    match value {
        Value::Object(map) => Ok(vec![map]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(map) => Ok(map),
                _ => Err(format!("{path}: a list item is not an object")),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(format!("{path}: not an object or a list of objects")),
    }
}

/// Include and exclude globs over `/`-separated paths (`*` stays within a segment, `**` crosses
/// them): a path matches when an include glob matches it and no exclude glob does.
pub struct PathMatcher {
    include: Vec<GlobMatcher>,
    exclude: Vec<GlobMatcher>,
}

impl PathMatcher {
    pub fn new(patterns: &[(String, bool)]) -> Result<Self, String> {
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        for (pattern, excluded) in patterns {
            let glob = GlobBuilder::new(pattern.trim_start_matches("./"))
                .literal_separator(true)
                .build()
                .map_err(|e| format!("glob {pattern:?}: {e}"))?
                .compile_matcher();
            if *excluded {
                exclude.push(glob);
            } else {
                include.push(glob);
            }
        }
        Ok(Self { include, exclude })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.include.iter().any(|g| g.is_match(path))
            && !self.exclude.iter().any(|g| g.is_match(path))
    }
}

#[cfg(test)]
#[path = "generators_tests.rs"]
mod tests;
