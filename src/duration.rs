//! Durations as users write them: `10s`, `2m`, `1h`, `1h30m`, `500ms` (Go's `time.ParseDuration` forms,
//! which Argo uses for `interval`, `initialDelay` and pause durations).

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 10s, 2m, 1h, 1h30m)")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

/// Parses a duration with a unit. A bare number is refused: `30` could mean seconds or minutes.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    let err = |reason: &str| DurationError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if trimmed.is_empty() {
        return Err(err("empty"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(err("missing unit"));
    }
    humantime::parse_duration(trimmed).map_err(|e| err(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let cases = [
            ("10s", 10),
            ("2m", 120),
            ("1h", 3600),
            ("1h30m", 5400),
            (" 45s ", 45),
        ];
        for (input, secs) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs(secs)),
                "{input}"
            );
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn refuses_garbage_with_the_input_in_the_message() {
        for input in ["", "30", "ten seconds", "5x", "-1s"] {
            let e = parse_duration(input).unwrap_err();
            assert_eq!(e.input, input);
            assert!(e.to_string().contains("invalid duration"), "{e}");
        }
    }
}
