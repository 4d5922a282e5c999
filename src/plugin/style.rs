//! Colours and status icons. Colours only on a terminal, never with `--no-color` or `NO_COLOR`, so
//! output piped to a file or a CI log stays plain text.

use std::io::IsTerminal;

/// Whether to colour, decided once per run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

/// The colours used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    Green,
    Yellow,
    Red,
    Blue,
    Cyan,
    Gray,
}

impl Color {
    fn code(self) -> &'static str {
        match self {
            Color::Green => "32",
            Color::Yellow => "33",
            Color::Red => "31",
            Color::Blue => "34",
            Color::Cyan => "36",
            Color::Gray => "90",
        }
    }
}

impl Style {
    /// Plain text.
    pub const PLAIN: Style = Style { color: false };

    /// Colours when stdout is a terminal, `--no-color` is not given and `NO_COLOR` is unset or empty
    /// (<https://no-color.org>).
    pub fn detect(no_color_flag: bool) -> Self {
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: !no_color_flag && !no_color_env && std::io::stdout().is_terminal(),
        }
    }

    /// `text` in `color`, or as is.
    pub fn paint(self, color: Color, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{}m{text}\x1b[0m", color.code())
        } else {
            text.to_string()
        }
    }
}

/// How a status reads: its icon and colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Good,
    Busy,
    Waiting,
    Warning,
    Bad,
    Neutral,
    Unknown,
}

impl Tone {
    /// The status of a Rollout, ReplicaSet, pod, run or Application, by its name.
    pub fn of(status: &str) -> Self {
        match status {
            "Healthy" | "Running" | "Successful" | "Synced" | "Succeeded" | "Completed" => {
                Tone::Good
            }
            "Progressing" | "Pending" | "ContainerCreating" | "Terminating" => Tone::Busy,
            "Paused" | "Suspended" => Tone::Waiting,
            "OutOfSync" | "Inconclusive" | "Missing" => Tone::Warning,
            "Degraded" | "Failed" | "Error" | "InvalidSpec" | "CrashLoopBackOff" => Tone::Bad,
            "ScaledDown" => Tone::Neutral,
            _ => Tone::Unknown,
        }
    }

    /// Argo's status icons.
    pub fn icon(self) -> &'static str {
        match self {
            Tone::Good => "✔",
            Tone::Busy => "◌",
            Tone::Waiting => "॥",
            Tone::Warning => "⚠",
            Tone::Bad => "✖",
            Tone::Neutral => "•",
            Tone::Unknown => "?",
        }
    }

    pub fn color(self) -> Color {
        match self {
            Tone::Good => Color::Green,
            Tone::Busy => Color::Blue,
            Tone::Waiting | Tone::Warning => Color::Yellow,
            Tone::Bad => Color::Red,
            Tone::Neutral | Tone::Unknown => Color::Gray,
        }
    }
}

impl Style {
    /// `✔ Healthy`, coloured by its tone.
    pub fn status(self, status: &str) -> String {
        let tone = Tone::of(status);
        format!("{} {status}", self.paint(tone.color(), tone.icon()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_style_writes_no_escape_codes() {
        assert_eq!(Style::PLAIN.paint(Color::Red, "x"), "x");
        assert_eq!(Style::PLAIN.status("Degraded"), "✖ Degraded");
    }

    #[test]
    fn colour_wraps_the_icon_only() {
        let style = Style { color: true };
        assert_eq!(style.status("Healthy"), "\x1b[32m✔\x1b[0m Healthy");
        assert_eq!(style.paint(Color::Red, ""), "");
    }

    #[test]
    fn statuses_have_argos_icons() {
        for (status, icon) in [
            ("Healthy", "✔"),
            ("Progressing", "◌"),
            ("Paused", "॥"),
            ("Degraded", "✖"),
            ("OutOfSync", "⚠"),
            ("ScaledDown", "•"),
            ("Whatever", "?"),
        ] {
            assert_eq!(Tone::of(status).icon(), icon, "{status}");
        }
    }
}
