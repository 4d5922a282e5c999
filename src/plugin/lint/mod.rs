//! `lint -f FILE`: offline checks of Rollout, AnalysisTemplate, ClusterAnalysisTemplate,
//! Experiment and ApplicationSet manifests. Each document is parsed with serde-saphyr into the
//! real API types and checked with their own validation, and every problem is reported at its
//! line (`FILE:LINE: ...`), like a compiler. Other kinds in the file are skipped.

mod analysis;
mod applicationset;
mod experiment;
mod lines;
mod rollout;
mod unknown;

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use lines::LineIndex;

/// The apiVersion of every Sluice kind.
const API_VERSION: &str = "sluice.dev/v1alpha1";
/// The apiVersion of the Argo kinds Sluice mirrors.
const ARGO_API_VERSION: &str = "argoproj.io/v1alpha1";

/// One problem, at a 1-based line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub line: u64,
    /// `Rollout "web"`, or `document 2` when the document has no kind or name yet.
    pub object: String,
    pub message: String,
}

/// What linting a file found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Sluice objects checked.
    pub checked: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    /// The lines printed: one per finding, then a summary.
    pub fn render(&self, file: &str) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!("{file}:{}: {}: {}\n", f.line, f.object, f.message));
        }
        let problems = match self.findings.len() {
            0 => "no problems".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        };
        let objects = if self.checked == 1 {
            "object"
        } else {
            "objects"
        };
        out.push_str(&format!(
            "{file}: {} {objects} checked, {problems}\n",
            self.checked
        ));
        out
    }
}

/// Lints every document of `text`.
pub fn lint(text: &str) -> Report {
    let mut report = Report::default();
    for (number, document) in documents(text).into_iter().enumerate() {
        let mut doc = Document {
            text: document.text,
            first_line: document.first_line,
            object: format!("document {}", number + 1),
            findings: &mut report.findings,
        };
        if doc.check() {
            report.checked += 1;
        }
    }
    report.findings.sort_by_key(|f| f.line);
    report
}

/// One document of a multi-document file, with the line it starts on.
struct Chunk<'a> {
    text: &'a str,
    first_line: u64,
}

/// Splits at `---` lines; a document holding only comments or blanks is dropped.
fn documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_number = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
        if is_separator(line) {
            chunks.push(Chunk {
                text: &text[start..offset],
                first_line,
            });
            start = offset + line.len();
            first_line = line_number + 1;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        first_line,
    });
    chunks.retain(|c| {
        c.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    chunks
}

fn is_separator(line: &str) -> bool {
    let line = line.trim_end();
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

/// The document being checked and where its findings go.
struct Document<'a> {
    text: &'a str,
    first_line: u64,
    object: String,
    findings: &'a mut Vec<Finding>,
}

impl Document<'_> {
    /// Checks the document; true when it is a Sluice object.
    fn check(&mut self) -> bool {
        let generic: Value = match serde_saphyr::from_str(self.text) {
            Ok(value) => value,
            Err(error) => {
                self.parse_error(&error);
                return false;
            }
        };
        let index = LineIndex::parse(self.text).unwrap_or_default();
        let kind = generic
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !matches!(
            kind,
            "Rollout"
                | "AnalysisTemplate"
                | "ClusterAnalysisTemplate"
                | "Experiment"
                | "ApplicationSet"
        ) {
            return false;
        }
        let name = generic
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<no name>");
        self.object = format!("{kind} {name:?}");
        self.check_api_version(&generic, &index);
        match kind {
            "Rollout" => rollout::check(self, &generic, &index),
            "AnalysisTemplate" => analysis::check_template(self, &generic, &index),
            "Experiment" => experiment::check(self, &generic, &index),
            "ApplicationSet" => applicationset::check(self, &generic, &index),
            _ => analysis::check_cluster_template(self, &generic, &index),
        }
        true
    }

    fn check_api_version(&mut self, generic: &Value, index: &LineIndex) {
        let version = generic
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let message = match version {
            API_VERSION => return,
            ARGO_API_VERSION => {
                format!("apiVersion is {ARGO_API_VERSION}: change it to {API_VERSION}")
            }
            "" => format!("apiVersion is missing: set it to {API_VERSION}"),
            other => format!("apiVersion is {other}, expected {API_VERSION}"),
        };
        self.at(index, "apiVersion", message);
    }

    /// Parses the document into `T`; a type error is reported at its line.
    fn typed<T: DeserializeOwned>(&mut self) -> Option<T> {
        match serde_saphyr::from_str(self.text) {
            Ok(value) => Some(value),
            Err(error) => {
                self.parse_error(&error);
                None
            }
        }
    }

    fn parse_error(&mut self, error: &serde_saphyr::Error) {
        let line = error.location().map_or(0, |l| l.line());
        let message = parse_message(&error.to_string());
        // Name the field when the document is valid YAML and the error is about a value's type.
        let field = LineIndex::parse(self.text)
            .ok()
            .and_then(|index| index.path_at(line).map(str::to_string));
        match field {
            Some(path) => self.report(line, format!("{path}: {message}")),
            None => self.report(line, message),
        }
    }

    /// Reports `message` at the line of `path` (or of its closest parent).
    fn at(&mut self, index: &LineIndex, path: &str, message: impl fmt::Display) {
        let line = index.line_of(path).unwrap_or(1);
        self.report(line, message.to_string());
    }

    /// Reports at a line of the document (1-based; 0 when unknown reads as its first line).
    fn report(&mut self, line_in_document: u64, message: String) {
        let line = self.first_line + line_in_document.max(1) - 1;
        self.findings.push(Finding {
            line,
            object: self.object.clone(),
            message: message.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
}

/// serde-saphyr's message without its `error: line L column C:` prefix (the line is reported in
/// the file's numbering instead) and without the source snippet that follows.
fn parse_message(text: &str) -> String {
    let first = text.lines().next().unwrap_or("invalid YAML");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((_, message)) => message.to_string(),
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_messages_lose_the_document_relative_position() {
        assert_eq!(
            parse_message("error: line 6 column 13: invalid i32\n  snippet"),
            "invalid i32"
        );
        assert_eq!(
            parse_message("mapping values are not allowed"),
            "mapping values are not allowed"
        );
    }

    #[test]
    fn documents_split_at_separators_and_keep_their_first_line() {
        let text = "# header\n---\na: 1\n--- # second\nb: 2\n---\n# only a comment\n";
        let chunks = documents(text);
        let got: Vec<(u64, &str)> = chunks.iter().map(|c| (c.first_line, c.text)).collect();
        assert_eq!(got, vec![(3, "a: 1\n"), (5, "b: 2\n")]);
    }

    #[test]
    fn the_summary_counts_objects_and_problems() {
        let report = Report {
            checked: 2,
            findings: vec![Finding {
                line: 7,
                object: "Rollout \"web\"".to_string(),
                message: "bad".to_string(),
            }],
        };
        assert_eq!(
            report.render("r.yaml"),
            "r.yaml:7: Rollout \"web\": bad\nr.yaml: 2 objects checked, 1 problem\n"
        );
        assert_eq!(
            Report::default().render("r.yaml"),
            "r.yaml: 0 objects checked, no problems\n"
        );
    }
}
