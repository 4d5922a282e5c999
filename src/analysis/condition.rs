//! Evaluation of `successCondition` / `failureCondition` (PURE).
//!
//! Argo Rollouts evaluates conditions with the expr language (antonmedv/expr, now expr-lang); the
//! `expr-lang` crate implements the same language in Rust, so the forms users write work unchanged:
//! `result[0] >= 0.95`, `len(result) == 0 || result[0] < 0.05`, `all(result, {# < 0.1})`, ...
//! Argo adds a few functions of its own to the environment, registered here the same way:
//! `isNaN`, `isInf`, `isNil`, `default`, `asInt`, `asFloat`.

use std::fmt;
use std::sync::LazyLock;

use expr::{Context, Environment, Value};

use crate::api::analysis::AnalysisPhase;

/// What a provider measured: a number (Prometheus scalar), a list of numbers (vector, matrix,
/// scrape) or any JSON value (web). Conditions see it as `result`.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    Scalar(f64),
    List(Vec<f64>),
    Json(serde_json::Value),
    /// A text answer that is not JSON (a web metric's plain-text body), as it came.
    Text(String),
}

/// The longest `Measurement.value` written for a JSON or text result (a web answer may be a large
/// document); conditions still see all of it.
pub const MAX_JSON_VALUE_CHARS: usize = 1024;

impl fmt::Display for MetricValue {
    /// The form stored in `Measurement.value`: `0.97` or `[0.97,0.5]` (Argo's).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricValue::Scalar(v) => write!(f, "{v}"),
            MetricValue::List(values) => {
                f.write_str("[")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            // Argo's form: the value marshalled as JSON (`true`, `0.95`, `"ok"`, `{"a":1}`).
            MetricValue::Json(value) => f.write_str(&crate::reconcile_guard::truncate(
                &value.to_string(),
                MAX_JSON_VALUE_CHARS,
            )),
            MetricValue::Text(text) => f.write_str(&crate::reconcile_guard::truncate(
                text,
                MAX_JSON_VALUE_CHARS,
            )),
        }
    }
}

impl MetricValue {
    fn to_expr(&self) -> Value {
        match self {
            MetricValue::Scalar(v) => Value::Float(*v),
            MetricValue::List(values) => {
                Value::Array(values.iter().copied().map(Value::Float).collect())
            }
            MetricValue::Json(value) => json_to_expr(value),
            MetricValue::Text(text) => Value::String(text.clone()),
        }
    }
}

/// A JSON value as the expression language sees it. Whole numbers become integers, so that both
/// `result == 1` and `result.count > 5` read as users write them; other numbers are floats.
fn json_to_expr(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(json_to_expr).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_expr(v)))
                .collect::<indexmap::IndexMap<_, _>>(),
        ),
    }
}

/// The longest `successCondition` / `failureCondition` (also the CRDs' `maxLength`).
pub const MAX_CONDITION_LENGTH: usize = 4096;
/// Deepest nesting of brackets in a condition: the parser and evaluator recurse per level.
const MAX_NESTING: usize = 32;
/// Stack of the thread a condition is evaluated on: ample for [`MAX_CONDITION_LENGTH`] characters
/// of the deepest expression (a chain of operators recurses once per operator), where a tokio
/// worker's 2 MiB stack is not, and a stack overflow aborts the process.
const EVAL_STACK_BYTES: usize = 32 << 20;

/// A condition that could not be evaluated: the measurement is an Error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("condition {condition:?}: {message}")]
    Eval { condition: String, message: String },
    #[error("condition {condition:?} refused: {reason}")]
    Refused { condition: String, reason: String },
    #[error("condition {condition:?} returned {got}, expected a bool")]
    NotABool { condition: String, got: String },
}

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_function("isNaN", |c| {
        Ok(number_arg("isNaN", &c.args)?.is_nan().into())
    });
    env.add_function("isInf", |c| {
        Ok(number_arg("isInf", &c.args)?.is_infinite().into())
    });
    env.add_function("isNil", |c| match c.args.as_slice() {
        [v] => Ok(v.is_nil().into()),
        _ => Err(arity("isNil", 1, c.args.len())),
    });
    // `default(value, fallback)`: the fallback when the value is nil or NaN (a 0/0 rate).
    env.add_function("default", |c| match c.args.as_slice() {
        [Value::Nil, fallback] => Ok(fallback.clone()),
        [Value::Float(v), fallback] if v.is_nan() => Ok(fallback.clone()),
        [value, _] => Ok(value.clone()),
        _ => Err(arity("default", 2, c.args.len())),
    });
    env.add_function("asInt", |c| match c.args.as_slice() {
        [Value::Integer(i)] => Ok(Value::Integer(*i)),
        [Value::Float(f)] if f.is_finite() => Ok(Value::Integer(*f as i64)),
        [Value::String(s)] => s
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| expr::Error::ExprError(format!("asInt: {s:?} is not an integer"))),
        [other] => Err(expr::Error::ExprError(format!(
            "asInt: cannot convert {other}"
        ))),
        _ => Err(arity("asInt", 1, c.args.len())),
    });
    env.add_function("asFloat", |c| match c.args.as_slice() {
        [Value::String(s)] => s
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| expr::Error::ExprError(format!("asFloat: {s:?} is not a number"))),
        [_] => Ok(Value::Float(number_arg("asFloat", &c.args)?)),
        _ => Err(arity("asFloat", 1, c.args.len())),
    });
    env
});

fn arity(name: &str, want: usize, got: usize) -> expr::Error {
    expr::Error::ExprError(format!("{name}() takes {want} argument(s), got {got}"))
}

fn number_arg(name: &str, args: &[Value]) -> Result<f64, expr::Error> {
    match args {
        [Value::Float(f)] => Ok(*f),
        [Value::Integer(i)] => Ok(*i as f64),
        [other] => Err(expr::Error::ExprError(format!(
            "{name}: {other} is not a number"
        ))),
        _ => Err(arity(name, 1, args.len())),
    }
}

/// Evaluates one condition against `result`; it must return a bool. The condition is written by
/// whoever may create a template: it is bounded first ([`check_bounds`]), then evaluated on a
/// thread of its own with a large stack, where a panic of the evaluator is an error of this
/// condition only.
pub fn eval_condition(condition: &str, result: &MetricValue) -> Result<bool, ConditionError> {
    let value = eval_bounded(condition, &|| {
        vec![("result".to_string(), result.to_expr())]
    })?;
    as_bool(condition, value)
}

/// Evaluates `expression` with each JSON value of `variables` bound to its name (e.g. a
/// notification trigger's `rollout.status.phase == 'Healthy'`), under the same bounds as
/// [`eval_condition`]; the result comes back as JSON (objects and arrays included).
pub fn eval_json(
    expression: &str,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Value, ConditionError> {
    let bind = || {
        variables
            .iter()
            .map(|(name, value)| (name.clone(), json_to_expr(value)))
            .collect()
    };
    eval_bounded(expression, &bind).map(|value| expr_to_json(&value))
}

/// [`eval_json`] for an expression that must give a bool.
pub fn eval_bool(
    expression: &str,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Result<bool, ConditionError> {
    match eval_json(expression, variables)? {
        serde_json::Value::Bool(b) => Ok(b),
        other => Err(ConditionError::NotABool {
            condition: crate::reconcile_guard::truncate(expression, 200),
            got: crate::reconcile_guard::truncate(&other.to_string(), 200),
        }),
    }
}

/// The reverse of [`json_to_expr`], for results handed back to callers.
fn expr_to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(expr_to_json).collect()),
        Value::Map(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expr_to_json(v)))
                .collect(),
        ),
        other => serde_json::Value::String(other.to_string()),
    }
}

fn as_bool(condition: &str, value: Value) -> Result<bool, ConditionError> {
    match value {
        Value::Bool(b) => Ok(b),
        other => Err(ConditionError::NotABool {
            condition: condition.to_string(),
            got: other.to_string(),
        }),
    }
}

/// Bounds `condition` ([`check_bounds`]), then evaluates it on a thread of its own with a large
/// stack, where a panic of the evaluator is an error of this expression only. `bind` gives the
/// variables.
fn eval_bounded(
    condition: &str,
    bind: &(dyn Fn() -> Vec<(String, Value)> + Sync),
) -> Result<Value, ConditionError> {
    check_bounds(condition)?;
    on_large_stack(condition, || eval_here(condition, bind()))
}

/// Whether `expression` parses (without evaluating it), under the same bounds as
/// [`eval_condition`]: lets a configuration be refused when it is read rather than when used.
pub fn check_syntax(expression: &str) -> Result<(), ConditionError> {
    check_bounds(expression)?;
    on_large_stack(expression, || {
        expr::compile(expression)
            .map(|_| ())
            .map_err(|e| ConditionError::Eval {
                condition: crate::reconcile_guard::truncate(expression, 200),
                message: one_line(&e.to_string()),
            })
    })
}

/// Runs `work` on a thread with [`EVAL_STACK_BYTES`] of stack; a panic in it is an error of
/// `condition`.
fn on_large_stack<T: Send>(
    condition: &str,
    work: impl FnOnce() -> Result<T, ConditionError> + Send,
) -> Result<T, ConditionError> {
    let evaluated = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sluice-condition".to_string())
            .stack_size(EVAL_STACK_BYTES)
            .spawn_scoped(scope, work)
            .map(|thread| thread.join())
    });
    let eval_err = |message: String| ConditionError::Eval {
        condition: crate::reconcile_guard::truncate(condition, 200),
        message,
    };
    match evaluated {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(eval_err(
            "the expression evaluator failed on it".to_string(),
        )),
        Err(e) => Err(eval_err(format!("cannot start its evaluation: {e}"))),
    }
}

/// Refuses what could exhaust the process rather than fail: overlong conditions, deep nesting,
/// and the range operator `a..b` (it builds the whole list: `0..9999999999` would take all
/// memory; Argo's expr stops such lists at a memory budget, expr-lang has none).
fn check_bounds(condition: &str) -> Result<(), ConditionError> {
    let refused = |reason: String| ConditionError::Refused {
        condition: crate::reconcile_guard::truncate(condition, 200),
        reason,
    };
    if condition.len() > MAX_CONDITION_LENGTH {
        return Err(refused(format!(
            "{} bytes, more than the {MAX_CONDITION_LENGTH} allowed",
            condition.len()
        )));
    }
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut previous = '\0';
    for c in condition.chars() {
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
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(refused(format!(
                            "brackets nested more than {MAX_NESTING} deep"
                        )));
                    }
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                '.' if previous == '.' => {
                    return Err(refused(
                        "the range operator `..` is not supported in conditions".to_string(),
                    ));
                }
                _ => {}
            },
        }
        // A dot inside a string, or the one closing it, never starts a range.
        previous = if quote.is_some() { '\0' } else { c };
    }
    Ok(())
}

fn eval_here(condition: &str, variables: Vec<(String, Value)>) -> Result<Value, ConditionError> {
    let mut ctx = Context::default();
    for (name, value) in variables {
        ctx.insert(name, value);
    }
    ENVIRONMENT
        .eval(condition, &ctx)
        .map_err(|e| ConditionError::Eval {
            condition: condition.to_string(),
            message: one_line(&e.to_string()),
        })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The verdict of one measurement (A1), exactly Argo's `EvaluateResult`:
/// - neither condition → Successful;
/// - only a success condition → Failed when it is false;
/// - only a failure condition → Successful when it is false;
/// - failure true → Failed (also when success is true); both false → Inconclusive;
/// - an expression that cannot be evaluated → `Err` (an Error measurement).
pub fn evaluate(
    success_condition: Option<&str>,
    failure_condition: Option<&str>,
    result: &MetricValue,
) -> Result<AnalysisPhase, ConditionError> {
    let success_condition = success_condition.filter(|c| !c.trim().is_empty());
    let failure_condition = failure_condition.filter(|c| !c.trim().is_empty());
    let success = success_condition
        .map(|c| eval_condition(c, result))
        .transpose()?;
    let failure = failure_condition
        .map(|c| eval_condition(c, result))
        .transpose()?;
    let (success, failure) = match (success, failure) {
        (None, None) => return Ok(AnalysisPhase::Successful),
        (Some(s), None) => (s, !s),
        (None, Some(f)) => (!f, f),
        (Some(s), Some(f)) => (s, f),
    };
    Ok(if failure {
        AnalysisPhase::Failed
    } else if success {
        AnalysisPhase::Successful
    } else {
        AnalysisPhase::Inconclusive
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnalysisPhase::*;

    /// Variables other than `result` (notification triggers read an object's fields), missing
    /// fields as nil through `?.`, and results of any type back as JSON.
    #[test]
    fn expressions_over_named_json_objects() {
        let mut vars = serde_json::Map::new();
        vars.insert(
            "app".to_string(),
            serde_json::json!({"status": {"operationState": {"phase": "Failed"}, "count": 3}}),
        );
        assert_eq!(
            eval_bool(
                "app.status.operationState.phase in ['Error', 'Failed']",
                &vars
            ),
            Ok(true)
        );
        assert_eq!(
            eval_bool("app.status?.health?.status == 'Degraded'", &vars),
            Ok(false)
        );
        assert!(eval_bool("app.status.health.status == 'Degraded'", &vars).is_err());
        assert_eq!(
            eval_json("app.status.operationState", &vars),
            Ok(serde_json::json!({"phase": "Failed"}))
        );
        assert_eq!(
            eval_json("app.status.count + 1", &vars),
            Ok(serde_json::json!(4))
        );
        assert!(matches!(
            eval_bool("app.status.count", &vars),
            Err(ConditionError::NotABool { .. })
        ));
        assert_eq!(check_syntax("a.b == 'c' && d?.e != nil"), Ok(()));
        assert!(check_syntax("a.b ==").is_err());
        assert!(matches!(
            check_syntax("0..99999999999"),
            Err(ConditionError::Refused { .. })
        ));
    }

    fn list(v: &[f64]) -> MetricValue {
        MetricValue::List(v.to_vec())
    }

    /// A9: every form users write, with the value it must give.
    #[test]
    fn a9_expression_forms_users_write() {
        let cases: Vec<(&str, MetricValue, bool)> = vec![
            ("result[0] >= 0.95", list(&[0.97]), true),
            ("result[0] >= 0.95", list(&[0.9]), false),
            ("result[0] >= 1", list(&[1.0]), true),
            ("result >= 0.95", MetricValue::Scalar(0.99), true),
            ("result >= 0.95", MetricValue::Scalar(0.5), false),
            ("len(result) == 0 || result[0] < 0.05", list(&[]), true),
            ("len(result) == 0 || result[0] < 0.05", list(&[0.01]), true),
            ("len(result) == 0 || result[0] < 0.05", list(&[0.3]), false),
            ("isNaN(result[0])", list(&[f64::NAN]), true),
            ("isNaN(result[0])", list(&[1.0]), false),
            ("isNaN(result)", MetricValue::Scalar(f64::NAN), true),
            ("isInf(result[0])", list(&[f64::INFINITY]), true),
            ("isInf(result[0])", list(&[f64::NEG_INFINITY]), true),
            ("isInf(result[0])", list(&[3.0]), false),
            ("default(result[0], 0) < 5", list(&[f64::NAN]), true),
            ("default(result[0], 0) < 5", list(&[7.0]), false),
            ("default(result[0], 0) < 5", list(&[2.0]), true),
            ("all(result, {# < 0.1})", list(&[0.01, 0.05]), true),
            ("all(result, {# < 0.1})", list(&[0.01, 0.5]), false),
            ("all(result, # < 0.1)", list(&[0.01]), true),
            ("any(result, {# > 10})", list(&[1.0, 11.0]), true),
            ("any(result, {# > 10})", list(&[1.0, 2.0]), false),
            ("asInt(result[0]) == 3", list(&[3.7]), true),
            ("asInt(\"42\") == 42", list(&[]), true),
            ("asFloat(result[0]) > 0.5", list(&[0.75]), true),
            ("asFloat(\"0.25\") < 0.5", list(&[]), true),
            ("isNil(nil)", list(&[]), true),
            (
                "result[0] * 100 > 90 && result[1] < 2",
                list(&[0.95, 1.0]),
                true,
            ),
        ];
        for (condition, result, expected) in cases {
            assert_eq!(
                eval_condition(condition, &result),
                Ok(expected),
                "{condition} with result {result}"
            );
        }
    }

    #[test]
    fn a8_index_into_empty_result_is_an_error() {
        let err = eval_condition("result[0] >= 0.95", &list(&[])).unwrap_err();
        assert!(matches!(err, ConditionError::Eval { .. }), "{err}");
        assert_eq!(
            evaluate(Some("result[0] >= 0.95"), None, &list(&[])).map_err(|_| ()),
            Err(())
        );
    }

    #[test]
    fn non_bool_and_syntax_errors_are_errors() {
        assert!(matches!(
            eval_condition("result[0] + 1", &list(&[1.0])),
            Err(ConditionError::NotABool { .. })
        ));
        let err = eval_condition("result[0] >=", &list(&[1.0])).unwrap_err();
        assert!(err.to_string().contains("result[0] >="), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
        assert!(eval_condition("nosuchfn(result)", &list(&[1.0])).is_err());
        assert!(eval_condition("isNaN(\"x\")", &list(&[])).is_err());
    }

    /// A1: the verdict table.
    #[test]
    fn a1_measurement_verdicts() {
        let r = list(&[0.5]);
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Result<AnalysisPhase, ()>);
        let cases: Vec<Case> = vec![
            (None, None, Ok(Successful)),
            (Some(""), Some("  "), Ok(Successful)),
            (Some("result[0] > 0.1"), None, Ok(Successful)),
            (Some("result[0] > 0.9"), None, Ok(Failed)),
            (None, Some("result[0] > 0.9"), Ok(Successful)),
            (None, Some("result[0] > 0.1"), Ok(Failed)),
            (
                Some("result[0] > 0.9"),
                Some("result[0] < 0.1"),
                Ok(Inconclusive),
            ),
            (
                Some("result[0] > 0.1"),
                Some("result[0] > 0.9"),
                Ok(Successful),
            ),
            (Some("result[0] > 0.9"), Some("result[0] > 0.1"), Ok(Failed)),
            // Both true: failure wins, as in Argo.
            (Some("result[0] > 0.1"), Some("result[0] > 0.2"), Ok(Failed)),
            (Some("result[0] >"), None, Err(())),
            (None, Some("result[5] > 1"), Err(())),
            (Some("result[0] > 0.1"), Some("result[0] +"), Err(())),
        ];
        for (success, failure, expected) in cases {
            assert_eq!(
                evaluate(success, failure, &r).map_err(|_| ()),
                expected,
                "success={success:?} failure={failure:?}"
            );
        }
    }

    /// expr-lang 2.1 itself: integer `%` by zero is an error, `/` is float division (Inf, NaN),
    /// integer overflow wraps; none of them panics.
    #[test]
    fn expr_lang_arithmetic_edges_are_values_or_errors() {
        let none = list(&[]);
        assert!(matches!(
            eval_condition("1 % 0 == 0", &none),
            Err(ConditionError::Eval { .. })
        ));
        assert_eq!(eval_condition("isInf(1 / 0)", &none), Ok(true));
        assert_eq!(eval_condition("isNaN(0 / 0)", &none), Ok(true));
        assert_eq!(
            eval_condition("9223372036854775807 + 1 < 0", &none),
            Ok(true)
        );
        assert_eq!(
            eval_condition(
                "-9223372036854775807 - 1 == -(-9223372036854775807 - 1)",
                &none
            ),
            Ok(true)
        );
        assert!(eval_condition("99999999999999999999 > 1", &none).is_err());
    }

    #[test]
    fn conditions_that_could_exhaust_the_process_are_refused() {
        let none = list(&[]);
        let refused = |c: &str| {
            matches!(
                eval_condition(c, &none),
                Err(ConditionError::Refused { .. })
            )
        };
        assert!(refused("len(0..9999999999) > 0"));
        assert!(refused("len(0 .. 9) > 0"));
        assert!(refused(&format!(
            "{}1{} > 0",
            "(".repeat(40),
            ")".repeat(40)
        )));
        assert!(refused(&format!(
            "result > {}",
            "1".repeat(MAX_CONDITION_LENGTH)
        )));
        // Dots in strings and numbers are fine.
        assert_eq!(
            eval_condition("\"a..b\" != \"\" && 0.5 < 1.5", &none),
            Ok(true)
        );
        assert_eq!(
            eval_condition(&format!("{}1{} > 0", "(".repeat(30), ")".repeat(30)), &none),
            Ok(true)
        );
    }

    /// The deepest expression within the bounds: a chain of operators as long as allowed.
    #[test]
    fn the_longest_operator_chain_evaluates() {
        let chain = format!("{} > 0", vec!["1"; MAX_CONDITION_LENGTH / 2 - 4].join("+"));
        assert!(chain.len() <= MAX_CONDITION_LENGTH);
        assert_eq!(eval_condition(&chain, &list(&[])), Ok(true));
        let negations = format!("{}true", "!".repeat(MAX_CONDITION_LENGTH - 4));
        let outcome = eval_condition(&negations, &list(&[]));
        assert!(
            matches!(outcome, Ok(true) | Err(ConditionError::Eval { .. })),
            "{outcome:?}"
        );
    }

    fn cases() -> proptest::prelude::ProptestConfig {
        crate::proptest_config()
    }

    proptest::proptest! {
        #![proptest_config(cases())]

        #[test]
        fn any_text_is_a_verdict_or_an_error(
            condition in "\\PC{0,60}",
            values in proptest::collection::vec(proptest::num::f64::ANY, 0..4),
        ) {
            let _ = eval_condition(&condition, &MetricValue::List(values));
        }

        #[test]
        fn expression_like_text_is_a_verdict_or_an_error(
            condition in "(result|len\\(result\\)|result\\[[0-9-]{1,3}\\]|[0-9]{1,25}|[0-9]\\.[0-9]e[0-9]{1,3}|isNaN\\(result\\[0\\]\\)|all\\(result, \\{# < 1\\}\\)|nil|\"x\")( ?(\\+|-|\\*|/|%|\\*\\*|\\^|<|>=|==|!=|&&|\\|\\||\\?|:|in) ?(result|[0-9]{1,20}|-[0-9]{1,20}|0|result\\[[0-9]\\]|\\[\\]|true|nil)){0,6}",
            values in proptest::collection::vec(proptest::num::f64::ANY, 0..4),
        ) {
            let result = MetricValue::List(values);
            let phase = evaluate(Some(&condition), None, &result);
            if let Ok(phase) = phase {
                proptest::prop_assert!(matches!(phase, Successful | Failed));
            }
        }
    }

    #[test]
    fn values_display_as_argo_stores_them() {
        assert_eq!(list(&[0.97, 1.0]).to_string(), "[0.97,1]");
        assert_eq!(list(&[]).to_string(), "[]");
        assert_eq!(MetricValue::Scalar(0.5).to_string(), "0.5");
        assert_eq!(list(&[f64::NAN]).to_string(), "[NaN]");
    }
}
