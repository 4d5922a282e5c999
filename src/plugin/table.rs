//! Text layout shared by the commands: kubectl's ages and aligned columns.

use jiff::{SignedDuration, Timestamp};

/// An age as kubectl prints it (`duration.HumanDuration`): `45s`, `3m20s`, `15m`, `5h3m`, `2d4h`,
/// `300d`, `2y10d`. Future times (clock skew) read as `0s`.
pub fn human_age(since: Timestamp, now: Timestamp) -> String {
    let elapsed = now.duration_since(since).max(SignedDuration::ZERO);
    let seconds = elapsed.as_secs();
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if years < 8 {
        match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    } else {
        format!("{years}y")
    }
}

/// The age of an object from its creation timestamp, `<unknown>` without one.
pub fn age_of(
    created: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    now: Timestamp,
) -> String {
    created.map_or_else(|| "<unknown>".to_string(), |t| human_age(t.0, now))
}

/// Lays rows out in columns two spaces apart, like kubectl's tables. Widths ignore ANSI colour
/// codes; trailing spaces are trimmed.
pub fn align(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| visible_width(cell))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c].saturating_sub(visible_width(cell)) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// Appends `label` padded to `width`, then `value`, as one line of a `Name:  value` block
/// (trailing spaces trimmed).
pub fn field(out: &mut String, width: usize, label: &str, value: &str) {
    let line = format!("{label:<width$}{value}");
    out.push_str(line.trim_end());
    out.push('\n');
}

/// A field with one value per line, the label on the first line only; `empty` when there are none.
pub fn field_lines<I>(out: &mut String, width: usize, label: &str, values: I, empty: &str)
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut label = label;
    let mut any = false;
    for value in values {
        field(out, width, label, value.as_ref());
        label = "";
        any = true;
    }
    if !any {
        field(out, width, label, empty);
    }
}

/// Characters shown on a terminal, without colour escape sequences.
pub fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

/// The first 7 characters of a commit sha, as `git log --oneline` shows it.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(seconds: i64) -> String {
        let now: Timestamp = "2025-03-10T00:00:00Z".parse().unwrap();
        human_age(now - SignedDuration::from_secs(seconds), now)
    }

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (15 * 60, "15m"),
            (179 * 60, "179m"),
            (5 * 3600 + 3 * 60, "5h3m"),
            (30 * 3600, "30h"),
            (2 * 86400 + 4 * 3600, "2d4h"),
            (300 * 86400, "300d"),
            (2 * 365 * 86400 + 10 * 86400, "2y10d"),
            (9 * 365 * 86400, "9y"),
            (-30, "0s"),
        ];
        for (seconds, want) in cases {
            assert_eq!(ago(seconds), want, "{seconds}s");
        }
    }

    #[test]
    fn columns_align_ignoring_colour_codes() {
        let rows = vec![
            vec!["NAME".to_string(), "STATUS".to_string(), "AGE".to_string()],
            vec![
                "web".to_string(),
                "\x1b[32m✔\x1b[0m Healthy".to_string(),
                "5m".to_string(),
            ],
            vec!["a-long-name".to_string(), "x".to_string(), String::new()],
        ];
        assert_eq!(
            align(&rows),
            vec![
                "NAME         STATUS     AGE",
                "web          \x1b[32m✔\x1b[0m Healthy  5m",
                "a-long-name  x",
            ]
        );
    }

    #[test]
    fn fields_pad_labels_and_continue_lists_under_the_first_value() {
        let mut out = String::new();
        field(&mut out, 8, "Name:", "web");
        field(&mut out, 8, "Empty:", "");
        field_lines(&mut out, 8, "Repos:", ["a", "b"], "none");
        field_lines(&mut out, 8, "Kinds:", Vec::<String>::new(), "none");
        assert_eq!(
            out,
            "Name:   web\nEmpty:\nRepos:  a\n        b\nKinds:  none\n"
        );
    }

    #[test]
    fn short_shas_are_seven_characters() {
        assert_eq!(
            short_sha("0123456789abcdef0123456789abcdef01234567"),
            "0123456"
        );
        assert_eq!(short_sha("abc"), "abc");
    }
}
