//! The metric names a PromQL expression selects, for checking the dashboard: what remains once string
//! literals, label matchers, ranges, grouping clauses, keywords and function calls are left out.

/// Operators and aggregations (`sum by (le) (...)` puts the clause between the name and its
/// parenthesis, so they are not always followed by one).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Clauses whose parenthesised list holds label names, not expressions.
const LABEL_LIST_CLAUSES: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

pub fn metric_names(expr: &str) -> Vec<String> {
    let text = strip_enclosed(&strip_strings(expr), &[('{', '}'), ('[', ']')]);
    let chars: Vec<char> = text.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '(' && skip_label_list {
            // Skip the label names of `by (...)` and the like.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_label_list = false;
            i += 1;
            continue;
        }
        if is_ident_start(c) && (i == 0 || !is_ident_char(chars[i - 1])) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if LABEL_LIST_CLAUSES.contains(&word.as_str()) {
                skip_label_list = true;
            } else if next != Some(&'(') && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.push(word);
            }
            continue;
        }
        if !c.is_whitespace() {
            skip_label_list = false;
        }
        i += 1;
    }
    names
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Drops `"..."` and `'...'` literals (label values, label_replace arguments).
fn strip_strings(expr: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// Drops label matchers and range / subquery brackets, with what they enclose.
fn strip_enclosed(expr: &str, pairs: &[(char, char)]) -> String {
    let mut out = String::new();
    let mut closing: Option<char> = None;
    for c in expr.chars() {
        match closing {
            Some(close) if c == close => closing = None,
            Some(_) => {}
            None => match pairs.iter().find(|(open, _)| *open == c) {
                Some((_, close)) => closing = Some(*close),
                None => out.push(c),
            },
        }
    }
    out
}

#[test]
fn metric_names_of_typical_expressions() {
    let cases: &[(&str, &[&str])] = &[
        ("sluice_leader", &["sluice_leader"]),
        (
            r#"count by (phase) (sluice_rollout_info{namespace=~"$namespace", phase="Degraded"}) or vector(0)"#,
            &["sluice_rollout_info"],
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(sluice_git_request_duration_seconds_bucket[$__rate_interval])))",
            &["sluice_git_request_duration_seconds_bucket"],
        ),
        (
            "sum(rate(a_sum[5m])) / sum without (pod) (rate(b_count[5m])) > bool 0",
            &["a_sum", "b_count"],
        ),
        ("up offset 5m", &["up"]),
    ];
    for (expr, want) in cases {
        assert_eq!(metric_names(expr), *want, "{expr}");
    }
}
