//! Durations as users write them: `10s`, `2m`, `1h`, `1h30m`, `500ms`, `1.5h`: Go's
//! `time.ParseDuration` grammar, which Argo uses for `interval`, `initialDelay` and pause durations,
//! with the same limit (a duration fits in an i64 of nanoseconds, about 292 years). Negative
//! durations and bare numbers other than `0` are refused.

use std::time::Duration;

use thiserror::Error;

/// The longest duration Go (and so Argo) can represent: `2562047h47m16.854775807s`.
pub const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// The CRD pattern of a duration string, the same grammar as [`parse_duration`] without the
/// surrounding whitespace it tolerates (an `{{args.x}}` placeholder is allowed separately).
pub const DURATION_PATTERN: &str =
    r"^\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";

/// [`DURATION_PATTERN`], empty (unset), or any string with an `{{args.NAME}}` placeholder (resolved,
/// and then checked, when the run starts).
pub const DURATION_OR_ARG_PATTERN: &str =
    r"^(|\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)|.*\{\{.*\}\}.*)$";

/// Longest duration string the CRDs accept (the longest valid Go duration is 24 characters).
pub const MAX_DURATION_LENGTH: u32 = 64;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 10s, 2m, 1h, 1h30m)")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

const NANOS_PER: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a duration with a unit. A bare number is refused: `30` could mean seconds or minutes.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(err("empty"));
    }
    if trimmed.starts_with('-') {
        return Err(err("negative"));
    }
    let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.chars().all(|c| c.is_ascii_digit()) {
        return Err(err("missing unit"));
    }
    let too_large = || err("too large (at most 2562047h47m16.854775807s)");
    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        // `find` returns character boundaries, so the splits below never cut a character.
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(err("expected a number before each unit"));
        }
        let scale = match NANOS_PER.iter().find(|(name, _)| *name == unit) {
            Some((_, scale)) => *scale,
            None if unit.is_empty() => return Err(err("missing unit")),
            None => return Err(err(&format!("unknown unit {unit:?}"))),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        total = whole
            .checked_mul(scale)
            .and_then(|n| n.checked_add(total))
            .ok_or_else(too_large)?;
        total = total
            .checked_add(fraction_nanos(fraction, scale))
            .ok_or_else(too_large)?;
        if total > MAX_DURATION.as_nanos() {
            return Err(too_large());
        }
        rest = next;
    }
    u64::try_from(total)
        .map(Duration::from_nanos)
        .map_err(|_| too_large())
}

/// `0.<fraction>` of `scale` nanoseconds, truncated (as Go does); digits past nanosecond precision
/// of an hour cannot matter and are ignored.
fn fraction_nanos(fraction: &str, scale: u128) -> u128 {
    let digits = &fraction[..fraction.len().min(18)];
    let Ok(value) = digits.parse::<u128>() else {
        return 0;
    };
    let denominator = 10u128.pow(u32::try_from(digits.len()).unwrap_or(0));
    value * scale / denominator
}

/// Prints a duration the way Go's `Duration.String` does for whole units (`1h30m0s`, `45s`,
/// `500ms`, `1.5s`); [`parse_duration`] reads it back to the same value.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let nanos = d.as_nanos();
    if nanos < 1_000_000_000 {
        return match nanos {
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}µs", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let secs = d.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let fraction = match d.subsec_nanos() {
        0 => String::new(),
        n => format!(".{n:09}").trim_end_matches('0').to_string(),
    };
    let seconds = format!("{seconds}{fraction}s");
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_forms_users_write() {
        let cases = [
            ("10s", 10),
            ("2m", 120),
            ("1h", 3600),
            ("1h30m", 5400),
            (" 45s ", 45),
            ("+5s", 5),
            ("0", 0),
        ];
        for (input, secs) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs(secs)),
                "{input}"
            );
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1µs2ns"), Ok(Duration::from_nanos(1002)));
        assert_eq!(parse_duration("2562047h47m16.854775807s"), Ok(MAX_DURATION));
    }

    #[test]
    fn refuses_garbage_with_the_input_in_the_message() {
        for input in [
            "",
            "30",
            "ten seconds",
            "5x",
            "-1s",
            "1d",
            "s",
            ".s",
            "1..5s",
            "1s é",
            "é",
            "2562047h47m16.854775808s",
            "99999999999999999999999999999999999999999h",
        ] {
            let e = parse_duration(input).unwrap_err();
            assert_eq!(e.input, input);
            assert!(e.to_string().contains("invalid duration"), "{e}");
        }
    }

    #[test]
    fn prints_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_secs(5400), "1h30m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(120), "2m0s"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(d), text);
        }
    }

    fn cases() -> ProptestConfig {
        crate::proptest_config()
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn parse_never_panics(input in "\\PC{0,40}") {
            let _ = parse_duration(&input);
        }

        #[test]
        fn parse_never_panics_on_near_misses(input in "[0-9.+µé ]{0,6}(ns|us|µs|ms|s|m|h|d|é)?[0-9.]{0,4}(s|m|h)?") {
            if let Ok(d) = parse_duration(&input) {
                prop_assert!(d <= MAX_DURATION);
            }
        }

        #[test]
        fn print_then_parse_round_trips(nanos in 0..=MAX_DURATION.as_nanos() as u64) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn sums_of_units_parse_to_their_value(h in 0u64..100_000, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let want = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&text), Ok(want));
        }

        #[test]
        fn valid_durations_match_the_crd_pattern(nanos in 0..=MAX_DURATION.as_nanos() as u64) {
            let text = format_duration(Duration::from_nanos(nanos));
            prop_assert!(pattern().is_match(&text), "{}", text);
        }
    }

    /// The CRD pattern as the API server's RE2 engine would read it (the `regex` crate has RE2's
    /// syntax), used to check that every duration Sluice prints passes admission.
    fn pattern() -> regex::Regex {
        regex::Regex::new(DURATION_PATTERN).unwrap()
    }
}
