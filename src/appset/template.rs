//! Rendering ApplicationSet templates. Pure.
//!
//! Two dialects, as Argo CD's ApplicationSet controller:
//! - `goTemplate: false`: fasttemplate. `{{ key }}` is replaced by the parameter `key` of the flat
//!   parameter set (`path.basename`, `metadata.labels.env`); an unknown key is left as written.
//! - `goTemplate: true`: the part of Go's `text/template` (with sprig) that ApplicationSets use:
//!   field chains (`.path.basename`, `$.name`), string, number and boolean literals, pipelines
//!   (`.x | default "y" | lower`), parentheses, `{{-`/`-}}` trimming, comments, and the functions
//!   of [`call`]. Actions (`if`, `range`, `with`, variables, `define`, ...) and other functions are
//!   refused with an error naming them, never rendered half-way.
//!
//! Every string of the template (map keys too) is rendered on its own; other JSON values are kept.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use thiserror::Error;

/// Deepest JSON nesting of a template rendered (a bound on hostile input).
pub const MAX_TEMPLATE_DEPTH: usize = 64;
/// Longest rendered string (a bound on `printf "%0999999d"`-like growth).
const MAX_OUTPUT_CHARS: usize = 256 * 1024;
/// Deepest parenthesised pipeline.
const MAX_EXPRESSION_DEPTH: usize = 16;

/// Why a template could not be rendered.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template {template:?}: {message}")]
    Go { template: String, message: String },
    #[error("the template is nested deeper than {MAX_TEMPLATE_DEPTH} levels")]
    TooDeep,
    #[error(
        "goTemplateOptions {0:?} is not supported by Sluice (supported: missingkey=default|zero|invalid|error)"
    )]
    UnknownOption(String),
}

/// How templates are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Argo's fasttemplate (`goTemplate: false`).
    Fast,
    /// Go templates; `missing_key_error` is `goTemplateOptions: ["missingkey=error"]`.
    Go { missing_key_error: bool },
}

impl Dialect {
    /// The dialect of an ApplicationSet's `goTemplate` and `goTemplateOptions`.
    pub fn new(go_template: bool, options: &[String]) -> Result<Self, TemplateError> {
        if !go_template {
            return Ok(Self::Fast);
        }
        let mut missing_key_error = false;
        for option in options {
            match option.trim() {
                "missingkey=error" => missing_key_error = true,
                "missingkey=default" | "missingkey=zero" | "missingkey=invalid" => {
                    missing_key_error = false;
                }
                other => return Err(TemplateError::UnknownOption(other.to_string())),
            }
        }
        Ok(Self::Go { missing_key_error })
    }
}

/// Renders every string of `value` (keys included) with `params`.
pub fn render_value(
    value: &Value,
    params: &Map<String, Value>,
    dialect: Dialect,
) -> Result<Value, TemplateError> {
    render_at(value, params, dialect, 0)
}

fn render_at(
    value: &Value,
    params: &Map<String, Value>,
    dialect: Dialect,
    depth: usize,
) -> Result<Value, TemplateError> {
    if depth > MAX_TEMPLATE_DEPTH {
        return Err(TemplateError::TooDeep);
    }
    Ok(match value {
        Value::String(s) => Value::String(render_str(s, params, dialect)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render_at(item, params, dialect, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, item) in map {
                out.insert(
                    render_str(key, params, dialect)?,
                    render_at(item, params, dialect, depth + 1)?,
                );
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Renders one string.
pub fn render_str(
    text: &str,
    params: &Map<String, Value>,
    dialect: Dialect,
) -> Result<String, TemplateError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    match dialect {
        Dialect::Fast => Ok(render_fast(text, params)),
        Dialect::Go { missing_key_error } => {
            render_go(text, params, missing_key_error).map_err(|message| TemplateError::Go {
                template: text.to_string(),
                message,
            })
        }
    }
}

/// fasttemplate: `{{ key }}` → the parameter's text; unknown keys stay as written.
fn render_fast(text: &str, params: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let tag = &after[..end];
        match params.get(tag.trim()) {
            Some(value) => out.push_str(&fast_text(value)),
            None => {
                out.push_str("{{");
                out.push_str(tag);
                out.push_str("}}");
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The text of a flat parameter value.
pub fn fast_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

// ------------------------------------------------------------------------------------------------
// Go templates
// ------------------------------------------------------------------------------------------------

fn render_go(
    text: &str,
    params: &Map<String, Value>,
    missing_key_error: bool,
) -> Result<String, String> {
    let root = Value::Object(params.clone());
    let eval = Eval {
        root: &root,
        missing_key_error,
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let mut literal = &rest[..start];
        let mut action = &rest[start + 2..];
        if let Some(trimmed) = action.strip_prefix("- ").or(action.strip_prefix("-\t")) {
            literal = literal.trim_end();
            action = trimmed;
        }
        out.push_str(literal);
        let end = find_action_end(action).ok_or("unclosed action (missing \"}}\")")?;
        let mut body = &action[..end];
        let mut after = &action[end + 2..];
        if let Some(trimmed) = body.strip_suffix(" -").or(body.strip_suffix("\t-")) {
            body = trimmed;
            after = after.trim_start();
        }
        let body = body.trim();
        if !(body.starts_with("/*") && body.ends_with("*/")) {
            let tokens = lex(body)?;
            let mut parser = Parser { tokens, at: 0 };
            let pipeline = parser.pipeline(0)?;
            if parser.at != parser.tokens.len() {
                return Err(format!(
                    "unexpected {:?} in {{{{{body}}}}}",
                    parser.tokens[parser.at]
                ));
            }
            let value = eval.pipeline(&pipeline)?;
            out.push_str(&go_print(value.as_ref()));
            if out.len() > MAX_OUTPUT_CHARS {
                return Err(format!("output longer than {MAX_OUTPUT_CHARS} characters"));
            }
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// The offset of the `}}` closing an action, skipping string literals.
fn find_action_end(action: &str) -> Option<usize> {
    let bytes = action.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None if b == b'"' || b == b'`' => quote = Some(b),
            None if b == b'}' && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// `.a.b` (empty list: `.`), rooted at `$` when `dollar`.
    Field {
        dollar: bool,
        path: Vec<String>,
    },
    Ident(String),
    Str(String),
    Number(f64, String),
    Pipe,
    Open,
    Close,
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

fn lex(body: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = body.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                tokens.push(Token::Pipe);
                i += 1;
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '"' => {
                let (text, next) = lex_quoted(&chars, i + 1)?;
                tokens.push(Token::Str(text));
                i = next;
            }
            '`' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or("unterminated raw string")?;
                tokens.push(Token::Str(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '.' | '$' => {
                let dollar = c == '$';
                let mut j = i + 1;
                let mut path = Vec::new();
                if dollar
                    && chars
                        .get(j)
                        .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                {
                    return Err("template variables ($name) are not supported by Sluice".into());
                }
                if dollar && chars.get(j) == Some(&'.') {
                    j += 1;
                }
                loop {
                    let start = j;
                    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                        j += 1;
                    }
                    if j > start {
                        path.push(chars[start..j].iter().collect());
                    }
                    if chars.get(j) == Some(&'.') && j > start {
                        j += 1;
                        continue;
                    }
                    break;
                }
                tokens.push(Token::Field { dollar, path });
                i = j;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let number = text
                    .parse::<f64>()
                    .map_err(|_| format!("bad number {text:?}"))?;
                tokens.push(Token::Number(number, text));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if KEYWORDS.contains(&word.as_str()) {
                    return Err(format!(
                        "the Go template action {word:?} is not supported by Sluice (only expressions: fields, literals, pipelines and functions)"
                    ));
                }
                tokens.push(Token::Ident(word));
            }
            ':' | '=' => {
                return Err("template variables (:=, =) are not supported by Sluice".into());
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(tokens)
}

fn lex_quoted(chars: &[char], mut i: usize) -> Result<(String, usize), String> {
    let mut text = String::new();
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((text, i + 1)),
            '\\' => {
                let escaped = chars.get(i + 1).ok_or("unterminated string")?;
                text.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => *other,
                });
                i += 2;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    Err("unterminated string".into())
}

#[derive(Clone, Debug)]
enum Operand {
    /// `$` and `.` are the same root: there is no `with` or `range` to move `.`.
    Field {
        path: Vec<String>,
    },
    Literal(Value),
    Pipeline(Vec<Command>),
    Function(String),
}

#[derive(Clone, Debug)]
struct Command {
    operands: Vec<Operand>,
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn pipeline(&mut self, depth: usize) -> Result<Vec<Command>, String> {
        if depth > MAX_EXPRESSION_DEPTH {
            return Err("expression nested too deep".into());
        }
        let mut commands = vec![self.command(depth)?];
        while self.tokens.get(self.at) == Some(&Token::Pipe) {
            self.at += 1;
            commands.push(self.command(depth)?);
        }
        Ok(commands)
    }

    fn command(&mut self, depth: usize) -> Result<Command, String> {
        let mut operands = Vec::new();
        while let Some(token) = self.tokens.get(self.at).cloned() {
            let operand = match token {
                Token::Pipe | Token::Close => break,
                Token::Field { path, .. } => Operand::Field { path },
                Token::Ident(name) => match name.as_str() {
                    "true" => Operand::Literal(Value::Bool(true)),
                    "false" => Operand::Literal(Value::Bool(false)),
                    "nil" => Operand::Literal(Value::Null),
                    _ => Operand::Function(name),
                },
                Token::Str(s) => Operand::Literal(Value::String(s)),
                Token::Number(n, text) => Operand::Literal(number_value(n, &text)),
                Token::Open => {
                    self.at += 1;
                    let inner = self.pipeline(depth + 1)?;
                    if self.tokens.get(self.at) != Some(&Token::Close) {
                        return Err("unclosed parenthesis".into());
                    }
                    Operand::Pipeline(inner)
                }
            };
            self.at += 1;
            operands.push(operand);
        }
        if operands.is_empty() {
            return Err("missing value for command".into());
        }
        Ok(Command { operands })
    }
}

fn number_value(n: f64, text: &str) -> Value {
    match text.parse::<i64>() {
        Ok(i) => Value::from(i),
        Err(_) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
    }
}

struct Eval<'a> {
    root: &'a Value,
    missing_key_error: bool,
}

/// A value during evaluation; `None` is Go's missing map entry (`<no value>`).
type Val = Option<Value>;

impl Eval<'_> {
    fn pipeline(&self, commands: &[Command]) -> Result<Val, String> {
        let mut piped: Option<Val> = None;
        for command in commands {
            piped = Some(self.command(command, piped)?);
        }
        Ok(piped.unwrap_or(None))
    }

    fn command(&self, command: &Command, piped: Option<Val>) -> Result<Val, String> {
        let (first, rest) = command
            .operands
            .split_first()
            .ok_or("missing value for command")?;
        if let Operand::Function(name) = first {
            let mut args = rest
                .iter()
                .map(|o| self.operand(o))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(value) = piped {
                args.push(value);
            }
            return call(name, args);
        }
        if !rest.is_empty() || piped.is_some() {
            return Err("only a function can take arguments".into());
        }
        self.operand(first)
    }

    fn operand(&self, operand: &Operand) -> Result<Val, String> {
        match operand {
            Operand::Literal(v) => Ok(Some(v.clone())),
            Operand::Pipeline(p) => self.pipeline(p),
            Operand::Function(name) => call(name, Vec::new()),
            Operand::Field { path } => {
                let mut current = self.root;
                for (i, key) in path.iter().enumerate() {
                    match current {
                        Value::Object(map) => match map.get(key) {
                            Some(next) => current = next,
                            None if self.missing_key_error => {
                                return Err(format!("map has no entry for key {key:?}"));
                            }
                            None if i + 1 == path.len() => return Ok(None),
                            None => {
                                return Err(format!(
                                    "nil pointer evaluating interface {{}}.{}",
                                    path[i + 1]
                                ));
                            }
                        },
                        other => {
                            return Err(format!(
                                "can't evaluate field {key} in type {}",
                                go_type(other)
                            ));
                        }
                    }
                }
                Ok(Some(current.clone()))
            }
        }
    }
}

fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `fmt.Sprint` of a value.
fn go_print(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "<no value>".to_string();
    };
    match value {
        Value::Null => "<nil>".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(|v| go_print(Some(v))).collect();
            format!("[{}]", inner.join(" "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_print(Some(v))))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// sprig's notion of empty (for `default`).
fn is_empty(value: &Val) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
    }
}

fn text(value: &Val) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(v) => go_print(Some(v)),
    }
}

/// The functions Sluice implements, with sprig's (and Argo's `normalize`) argument order: a piped
/// value is the last argument.
pub const FUNCTIONS: &[&str] = &[
    "default",
    "lower",
    "upper",
    "title",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "trimAll",
    "replace",
    "quote",
    "squote",
    "trunc",
    "printf",
    "print",
    "index",
    "normalize",
    "join",
    "splitList",
    "toJson",
    "toRawJson",
    "toString",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "len",
    "b64enc",
    "sha256sum",
    "empty",
    "not",
    "eq",
    "ne",
];

fn call(name: &str, args: Vec<Val>) -> Result<Val, String> {
    let arity = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    let s = |v: &Val| text(v);
    let string = |t: String| Ok(Some(Value::String(t)));
    match name {
        "default" => {
            arity(2)?;
            let mut args = args;
            let given = args.pop().unwrap_or(None);
            let fallback = args.pop().unwrap_or(None);
            Ok(if is_empty(&given) { fallback } else { given })
        }
        "lower" => {
            arity(1)?;
            string(s(&args[0]).to_lowercase())
        }
        "upper" => {
            arity(1)?;
            string(s(&args[0]).to_uppercase())
        }
        "title" => {
            arity(1)?;
            string(title(&s(&args[0])))
        }
        "trim" => {
            arity(1)?;
            string(s(&args[0]).trim().to_string())
        }
        "trimPrefix" => {
            arity(2)?;
            let (prefix, value) = (s(&args[0]), s(&args[1]));
            string(value.strip_prefix(&prefix).unwrap_or(&value).to_string())
        }
        "trimSuffix" => {
            arity(2)?;
            let (suffix, value) = (s(&args[0]), s(&args[1]));
            string(value.strip_suffix(&suffix).unwrap_or(&value).to_string())
        }
        "trimAll" => {
            arity(2)?;
            let (cut, value) = (s(&args[0]), s(&args[1]));
            string(value.trim_matches(|c| cut.contains(c)).to_string())
        }
        "replace" => {
            arity(3)?;
            string(s(&args[2]).replace(&s(&args[0]), &s(&args[1])))
        }
        "quote" | "squote" => {
            let q = if name == "quote" { '"' } else { '\'' };
            let parts: Vec<String> = args
                .iter()
                .filter(|a| a.is_some())
                .map(|a| {
                    let t = s(a);
                    if q == '"' {
                        format!("{:?}", t)
                    } else {
                        format!("'{t}'")
                    }
                })
                .collect();
            string(parts.join(" "))
        }
        "trunc" => {
            arity(2)?;
            let n = as_int(&args[0]).ok_or("trunc: the length is not a number")?;
            let value: Vec<char> = s(&args[1]).chars().collect();
            let len = value.len() as i64;
            let out: String = if n >= 0 {
                value.iter().take(n as usize).collect()
            } else {
                value.iter().skip((len + n).max(0) as usize).collect()
            };
            string(out)
        }
        "printf" => {
            let (format, rest) = args.split_first().ok_or("printf needs a format")?;
            string(printf(&s(format), rest)?)
        }
        "print" => string(args.iter().map(text).collect::<Vec<_>>().concat()),
        "index" => {
            let (collection, keys) = args.split_first().ok_or("index needs a collection")?;
            let mut current = collection.clone();
            for key in keys {
                current = match (current, key) {
                    (Some(Value::Object(map)), Some(Value::String(k))) => map.get(k).cloned(),
                    (Some(Value::Array(items)), k) => {
                        let i = as_int(k).ok_or("index of a list must be a number")?;
                        let item = usize::try_from(i).ok().and_then(|i| items.get(i).cloned());
                        Some(item.ok_or_else(|| format!("index out of range: {i}"))?)
                    }
                    (other, _) => {
                        return Err(format!(
                            "can't index item of type {}",
                            other.as_ref().map_or("<nil>", go_type)
                        ));
                    }
                };
            }
            Ok(current)
        }
        "normalize" => {
            arity(1)?;
            string(sanitize_name(&s(&args[0])))
        }
        "join" => {
            arity(2)?;
            let items = match &args[1] {
                Some(Value::Array(items)) => items.iter().map(|v| text(&Some(v.clone()))).collect(),
                other => vec![text(other)],
            };
            string(items.join(&s(&args[0])))
        }
        "splitList" => {
            arity(2)?;
            let (sep, value) = (s(&args[0]), s(&args[1]));
            Ok(Some(Value::Array(
                value
                    .split(sep.as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )))
        }
        "toJson" | "toRawJson" => {
            arity(1)?;
            string(
                args[0]
                    .as_ref()
                    .map_or("null".to_string(), Value::to_string),
            )
        }
        "toString" => {
            arity(1)?;
            string(s(&args[0]))
        }
        "contains" => {
            arity(2)?;
            Ok(Some(Value::Bool(s(&args[1]).contains(&s(&args[0])))))
        }
        "hasPrefix" => {
            arity(2)?;
            Ok(Some(Value::Bool(s(&args[1]).starts_with(&s(&args[0])))))
        }
        "hasSuffix" => {
            arity(2)?;
            Ok(Some(Value::Bool(s(&args[1]).ends_with(&s(&args[0])))))
        }
        "len" => {
            arity(1)?;
            let n = match &args[0] {
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(o)) => o.len(),
                Some(Value::String(t)) => t.len(),
                other => {
                    return Err(format!(
                        "len of {}",
                        other.as_ref().map_or("<nil>", go_type)
                    ));
                }
            };
            Ok(Some(Value::from(n)))
        }
        "b64enc" => {
            arity(1)?;
            use base64::Engine as _;
            string(base64::engine::general_purpose::STANDARD.encode(s(&args[0])))
        }
        "sha256sum" => {
            arity(1)?;
            let digest = ring::digest::digest(&ring::digest::SHA256, s(&args[0]).as_bytes());
            string(digest.as_ref().iter().fold(String::new(), |mut out, b| {
                let _ = write!(out, "{b:02x}");
                out
            }))
        }
        "empty" => {
            arity(1)?;
            Ok(Some(Value::Bool(is_empty(&args[0]))))
        }
        "not" => {
            arity(1)?;
            Ok(Some(Value::Bool(is_empty(&args[0]))))
        }
        "eq" | "ne" => {
            arity(2)?;
            let equal = args[0] == args[1];
            Ok(Some(Value::Bool(if name == "eq" { equal } else { !equal })))
        }
        other => Err(format!(
            "function {other:?} is not supported by Sluice (supported: {})",
            FUNCTIONS.join(", ")
        )),
    }
}

fn as_int(value: &Val) -> Option<i64> {
    match value {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

fn title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut start = true;
    for c in text.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s`, `%v`, `%d`, `%q`, `%%`.
fn printf(format: &str, args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'd' | 'q')) => {
                let arg = args.next();
                match (verb, arg) {
                    (_, None) => {
                        let _ = write!(out, "%!{verb}(MISSING)");
                    }
                    ('q', Some(a)) => out.push_str(&format!("{:?}", text(a))),
                    (_, Some(a)) => out.push_str(&go_print(a.as_ref())),
                }
            }
            Some(other) => {
                return Err(format!(
                    "printf verb %{other} is not supported by Sluice (supported: %s %v %d %q %%)"
                ));
            }
            None => out.push_str("%!(NOVERB)"),
        }
        if out.len() > MAX_OUTPUT_CHARS {
            return Err(format!("output longer than {MAX_OUTPUT_CHARS} characters"));
        }
    }
    Ok(out)
}

/// Argo's `SanitizeName` (`nameNormalized`, `normalize`): lowercase, every character but
/// `[-a-z0-9.]` replaced by `-`, at most 253 characters, `-` and `.` trimmed at both ends.
pub fn sanitize_name(name: &str) -> String {
    let lowered: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    lowered.trim_matches(['-', '.']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn go(text: &str, p: Value) -> Result<String, TemplateError> {
        render_str(
            text,
            &params(p),
            Dialect::Go {
                missing_key_error: false,
            },
        )
    }

    #[test]
    fn fasttemplate_replaces_known_keys_and_keeps_unknown_ones() {
        let p = params(json!({"path": "apps/a", "path.basename": "a", "n": 3}));
        let cases = [
            ("{{path.basename}}-app", "a-app"),
            ("{{ path }}", "apps/a"),
            ("{{nope}}/{{path}}", "{{nope}}/apps/a"),
            ("n={{n}}", "n=3"),
            ("no template", "no template"),
            ("{{unclosed", "{{unclosed"),
        ];
        for (input, want) in cases {
            assert_eq!(
                render_str(input, &p, Dialect::Fast).unwrap(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn go_templates_table() {
        let p = json!({"path": {"path": "apps/My App", "basename": "My App", "segments": ["apps", "My App"]},
                       "name": "in-cluster", "values": {"env": "prod"}, "n": 2, "empty": ""});
        let cases = [
            ("{{.path.basename}}", "My App"),
            ("{{ .path.path }}", "apps/My App"),
            ("{{ normalize .path.basename }}", "my-app"),
            (
                "{{ .path.basename | lower | replace \" \" \"-\" }}",
                "my-app",
            ),
            ("{{ .values.missing | default \"dev\" }}", "dev"),
            ("{{ .empty | default \"x\" }}", "x"),
            ("{{ .values.env | default \"dev\" }}", "prod"),
            ("{{ index .path.segments 0 }}", "apps"),
            (
                "{{ printf \"%s-%s\" .name .values.env }}",
                "in-cluster-prod",
            ),
            ("{{ trunc 2 .name }}", "in"),
            ("{{ .n }}", "2"),
            ("a {{- \" b \" -}} c", "a b c"),
            ("{{/* comment */}}x", "x"),
            ("{{ .missing }}", "<no value>"),
            ("{{ (printf \"%s\" .name) | upper }}", "IN-CLUSTER"),
            ("{{ $.name }}", "in-cluster"),
            ("{{ .path.segments }}", "[apps My App]"),
            ("{{ `raw` }}", "raw"),
            ("{{ \"}}\" }}", "}}"),
        ];
        for (input, want) in cases {
            assert_eq!(go(input, p.clone()).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn go_template_refusals_name_what_is_unsupported() {
        let p = json!({"a": "x"});
        let cases = [
            ("{{ if .a }}y{{ end }}", "\"if\" is not supported"),
            ("{{ range .a }}{{ end }}", "\"range\" is not supported"),
            ("{{ $x := .a }}", "variables"),
            (
                "{{ semverCompare \">1\" .a }}",
                "function \"semverCompare\" is not supported",
            ),
            ("{{ .a.b }}", "can't evaluate field b in type string"),
            ("{{ .a ", "unclosed action"),
            ("{{ printf \"%x\" .a }}", "%x is not supported"),
        ];
        for (input, want) in cases {
            let err = go(input, p.clone()).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn missingkey_error_refuses_missing_keys_even_with_default() {
        let dialect = Dialect::new(true, &["missingkey=error".to_string()]).unwrap();
        let err = render_str("{{ .x | default \"y\" }}", &params(json!({})), dialect).unwrap_err();
        assert!(err.to_string().contains("no entry for key \"x\""), "{err}");
        assert!(matches!(
            Dialect::new(true, &["missingkey=nope".to_string()]),
            Err(TemplateError::UnknownOption(_))
        ));
        assert_eq!(Dialect::new(false, &["x".to_string()]), Ok(Dialect::Fast));
    }

    #[test]
    fn values_render_keys_and_strings_only() {
        let template = json!({"metadata": {"name": "{{name}}", "labels": {"{{name}}": "on"}},
                              "spec": {"n": 1, "list": ["{{name}}", true]}});
        let out = render_value(&template, &params(json!({"name": "a"})), Dialect::Fast).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"name": "a", "labels": {"a": "on"}}, "spec": {"n": 1, "list": ["a", true]}})
        );
        let mut deep = json!("x");
        for _ in 0..70 {
            deep = json!([deep]);
        }
        assert_eq!(
            render_value(&deep, &Map::new(), Dialect::Fast),
            Err(TemplateError::TooDeep)
        );
    }

    #[test]
    fn sanitize_name_is_argos() {
        assert_eq!(sanitize_name("My_Cluster.Prod-"), "my-cluster.prod");
        assert_eq!(sanitize_name("--a--"), "a");
    }
}
