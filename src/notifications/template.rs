//! Message templates (PURE): text with Go-template-style placeholders `{{ .path.to.field }}`, as
//! Argo's notification templates write them (`{{.app.metadata.name}}`, `{{.rollout.status.phase}}`).
//!
//! Only field lookups are supported, on purpose: a template is written by whoever may edit the
//! ConfigMap and is rendered inside the controller, so nothing in it can run code, loop or grow
//! without bound. Anything else between `{{` and `}}` (`range`, `if`, pipelines, functions) is
//! refused when the ConfigMap is read, with a message naming the placeholder.

use serde_json::Value;
use thiserror::Error;

/// The longest template accepted (a message, a body, Slack attachments).
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// The most placeholders in one template.
const MAX_PLACEHOLDERS: usize = 512;
/// The longest rendered text: a large field substituted many times stops here.
pub const MAX_RENDERED_BYTES: usize = 256 * 1024;
/// The deepest field path (`.a.b.c...`).
const MAX_PATH_SEGMENTS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    #[error("{len} bytes, more than the {MAX_TEMPLATE_BYTES} allowed")]
    TooLong { len: usize },
    #[error("more than {MAX_PLACEHOLDERS} placeholders")]
    TooManyPlaceholders,
    #[error("`{{{{` at byte {at} is never closed by `}}}}`")]
    Unclosed { at: usize },
    #[error(
        "unsupported placeholder `{{{{{placeholder}}}}}`: only field lookups such as `{{{{ .rollout.metadata.name }}}}` are supported"
    )]
    Unsupported { placeholder: String },
}

/// A template, checked once when the ConfigMap is read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A field path; `.` alone (no segments) is the whole context.
    Field(Vec<String>),
}

impl Template {
    /// Parses `source`, refusing what is not text and field placeholders.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLong { len: source.len() });
        }
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        let mut placeholders = 0;
        while let Some(open) = rest.find("{{") {
            placeholders += 1;
            if placeholders > MAX_PLACEHOLDERS {
                return Err(TemplateError::TooManyPlaceholders);
            }
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(TemplateError::Unclosed { at: offset + open })?;
            parts.push(Part::Field(parse_field(&after[..close])?));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// The text with each placeholder replaced by the field's value in `context`: strings as they
    /// are, numbers and bools in their JSON form, objects and lists as compact JSON, a missing
    /// field as nothing. Stops at [`MAX_RENDERED_BYTES`].
    pub fn render(&self, context: &Value) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(path) => out.push_str(&field_text(lookup(context, path))),
            }
            if out.len() > MAX_RENDERED_BYTES {
                out.truncate(floor_char_boundary(&out, MAX_RENDERED_BYTES));
                break;
            }
        }
        out
    }

    /// Whether the template has neither text nor placeholders.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// `.a.b.0.c` (Go template trim markers `{{-` and `-}}` are accepted and ignored).
fn parse_field(inner: &str) -> Result<Vec<String>, TemplateError> {
    let unsupported = || TemplateError::Unsupported {
        placeholder: crate::reconcile_guard::truncate(inner, 80),
    };
    let trimmed = inner.trim();
    let trimmed = trimmed.strip_prefix('-').unwrap_or(trimmed);
    let trimmed = trimmed.strip_suffix('-').unwrap_or(trimmed).trim();
    let path = trimmed.strip_prefix('.').ok_or_else(unsupported)?;
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let segments: Vec<String> = path.split('.').map(str::to_string).collect();
    let valid = |s: &String| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if segments.len() > MAX_PATH_SEGMENTS || !segments.iter().all(valid) {
        return Err(unsupported());
    }
    Ok(segments)
}

/// The value at `path`: map keys, or list indexes for lists.
fn lookup<'a>(context: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(context, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn field_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    (0..=max.min(s.len()))
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str, context: &Value) -> String {
        Template::parse(source).unwrap().render(context)
    }

    #[test]
    fn fields_are_substituted_as_argo_writes_them() {
        let ctx = json!({"rollout": {"metadata": {"name": "web"}, "status": {"phase": "Degraded",
            "currentStepIndex": 2, "paused": false, "steps": [{"setWeight": 20}]}}});
        assert_eq!(
            render(
                "Rollout {{.rollout.metadata.name}} is {{ .rollout.status.phase }}",
                &ctx
            ),
            "Rollout web is Degraded"
        );
        assert_eq!(render("{{.rollout.status.currentStepIndex}}", &ctx), "2");
        assert_eq!(render("{{.rollout.status.paused}}", &ctx), "false");
        assert_eq!(render("{{.rollout.status.steps.0.setWeight}}", &ctx), "20");
        assert_eq!(
            render("{{.rollout.status.steps}}", &ctx),
            r#"[{"setWeight":20}]"#
        );
        assert_eq!(render("{{- .rollout.metadata.name -}}", &ctx), "web");
    }

    #[test]
    fn missing_fields_render_as_nothing() {
        let ctx = json!({"app": {"metadata": {"name": "demo"}}});
        assert_eq!(render("[{{.app.status.sync.revision}}]", &ctx), "[]");
        assert_eq!(render("[{{.app.metadata.name.x}}]", &ctx), "[]");
        assert_eq!(render("[{{.nothing.0}}]", &ctx), "[]");
        assert_eq!(render("plain text", &ctx), "plain text");
        assert_eq!(render("", &ctx), "");
    }

    #[test]
    fn code_and_control_structures_are_refused() {
        for bad in [
            "{{range .items}}x{{end}}",
            "{{ if .a }}",
            "{{ .a | upper }}",
            "{{ call .f }}",
            "{{ printf \"%s\" .a }}",
            "{{ .a..b }}",
            "{{ .a[0] }}",
            "{{}}",
        ] {
            let err = Template::parse(bad).unwrap_err();
            assert!(
                matches!(err, TemplateError::Unsupported { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains("only field lookups"), "{err}");
        }
        assert_eq!(
            Template::parse("text {{ .a").unwrap_err(),
            TemplateError::Unclosed { at: 5 }
        );
    }

    #[test]
    fn sizes_are_bounded() {
        let long = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(matches!(
            Template::parse(&long),
            Err(TemplateError::TooLong { .. })
        ));
        let many = "{{.a}}".repeat(MAX_PLACEHOLDERS + 1);
        assert_eq!(
            Template::parse(&many).unwrap_err(),
            TemplateError::TooManyPlaceholders
        );
        // A large field repeated many times stops at the rendered bound, on a char boundary.
        let ctx = json!({"a": "é".repeat(40_000)});
        let out = render(&"{{.a}}".repeat(100), &ctx);
        assert!(out.len() <= MAX_RENDERED_BYTES);
        assert!(out.len() > MAX_RENDERED_BYTES - 4);
    }
}
