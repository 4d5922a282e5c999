//! `targetRevision` as a semantic-version range, as Argo CD reads it for Helm charts and Git tags:
//! Helm's constraint syntax (Masterminds/semver): comparators `=`, `!=`, `>`, `>=`, `<`, `<=` (also
//! written `=>`, `=<`), `~`/`~>` and `^`, wildcards (`1.2.x`, `1.*`, `*`), hyphen ranges
//! (`1.2 - 1.4.5`), comparators joined by spaces or commas (all must hold) and alternatives joined
//! by `||` (one must hold). Versions may start with `v`, and may leave out minor and patch (`v1.2`
//! is `1.2.0`), as Helm's index and Git tags write them.
//!
//! Pre-releases match only a range that names a pre-release of the same version (the rule of both
//! Helm and the `semver` crate), so `^1.2` never picks `1.3.0-rc.1`.

use semver::{Comparator, Version, VersionReq};
use thiserror::Error;

/// A range longer than this is refused: it is a field of a hostile spec.
const MAX_RANGE_LEN: usize = 256;
/// Alternatives (`||`) and comparators per alternative.
const MAX_PARTS: usize = 16;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("targetRevision {range:?} is not a semver range: {reason}")]
pub struct RangeError {
    pub range: String,
    pub reason: String,
}

/// A parsed range: any alternative matching is a match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemverRange {
    alternatives: Vec<Alternative>,
}

/// Comparators that must all hold; `!=` is kept apart (the `semver` crate has no such operator).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Alternative {
    required: VersionReq,
    excluded: Vec<Version>,
}

impl SemverRange {
    /// Parses a Helm-style range.
    pub fn parse(range: &str) -> Result<Self, RangeError> {
        let error = |reason: String| RangeError {
            range: range.to_string(),
            reason,
        };
        if range.len() > MAX_RANGE_LEN {
            return Err(error(format!("longer than {MAX_RANGE_LEN} bytes")));
        }
        let parts: Vec<&str> = range.split("||").map(str::trim).collect();
        if parts.len() > MAX_PARTS {
            return Err(error(format!("more than {MAX_PARTS} alternatives")));
        }
        let alternatives = parts
            .into_iter()
            .map(|part| parse_alternative(part).map_err(&error))
            .collect::<Result<_, _>>()?;
        Ok(Self { alternatives })
    }

    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives
            .iter()
            .any(|alt| alt.required.matches(version) && !alt.excluded.contains(version))
    }

    /// The highest of `candidates` in the range, with the text it was written as.
    pub fn best<'a>(&self, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        candidates
            .into_iter()
            .filter_map(|text| parse_version(text).map(|v| (v, text)))
            .filter(|(version, _)| self.matches(version))
            .max_by(|(a, _), (b, _)| a.cmp(b))
            .map(|(_, text)| text)
    }
}

/// Whether `revision` reads as a range rather than one exact version (or a branch name): Argo CD
/// only searches versions when the revision is a constraint.
pub fn is_range(revision: &str) -> bool {
    let revision = revision.trim();
    if revision.is_empty() || parse_version(revision).is_some() {
        return false;
    }
    let has_operator = revision.contains(['<', '>', '=', '~', '^', '*', '|', ' ', ','])
        || revision
            .split('.')
            .any(|part| part.eq_ignore_ascii_case("x"));
    has_operator && SemverRange::parse(revision).is_ok()
}

/// A version as Helm reads it: an optional `v`, and minor/patch optional (`1.2` is `1.2.0`).
pub fn parse_version(text: &str) -> Option<Version> {
    let text = text.trim();
    let bare = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text);
    if let Ok(version) = Version::parse(bare) {
        return Some(version);
    }
    // Pad the release part only: `1.2-rc.1` is `1.2.0-rc.1`.
    let split_at = bare.find(['-', '+']).unwrap_or(bare.len());
    let (release, rest) = bare.split_at(split_at);
    let padded = match release.split('.').count() {
        1 => format!("{release}.0.0{rest}"),
        2 => format!("{release}.0{rest}"),
        _ => return None,
    };
    Version::parse(&padded).ok()
}

fn parse_alternative(text: &str) -> Result<Alternative, String> {
    let tokens = comparator_tokens(text)?;
    if tokens.len() > MAX_PARTS {
        return Err(format!("more than {MAX_PARTS} comparators"));
    }
    let mut required = Vec::new();
    let mut excluded = Vec::new();
    for token in tokens {
        if let Some(version) = token.strip_prefix("!=") {
            excluded.push(
                parse_version(version).ok_or_else(|| format!("{version:?} is not a version"))?,
            );
        } else {
            required.extend(parse_comparators(&token)?);
        }
    }
    Ok(Alternative {
        required: VersionReq {
            comparators: required,
        },
        excluded,
    })
}

/// Splits one alternative into comparator strings (operator glued to its version), expanding
/// hyphen ranges `a - b` into `>=a`, `<=b`.
fn comparator_tokens(text: &str) -> Result<Vec<String>, String> {
    let words: Vec<&str> = text
        .split([' ', ',', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        if words.get(i + 1) == Some(&"-") {
            let upper = words
                .get(i + 2)
                .ok_or_else(|| format!("hyphen range {word:?} - has no upper bound"))?;
            tokens.push(format!(">={word}"));
            tokens.push(format!("<={upper}"));
            i += 3;
        } else if word.chars().all(|c| "<>=!~^".contains(c)) {
            let version = words
                .get(i + 1)
                .ok_or_else(|| format!("operator {word:?} has no version"))?;
            tokens.push(format!("{word}{version}"));
            i += 2;
        } else {
            tokens.push(word.to_string());
            i += 1;
        }
    }
    if tokens.is_empty() {
        return Err("it is empty".to_string());
    }
    Ok(tokens)
}

/// One comparator string in the `semver` crate's terms (a `<=` on a wildcard such as `<=1.x` is
/// `<2.0.0`, as Helm reads it).
fn parse_comparators(token: &str) -> Result<Vec<Comparator>, String> {
    let op_len = token
        .find(|c: char| !"<>=~^".contains(c))
        .unwrap_or(token.len());
    let (op, version) = token.split_at(op_len);
    let version = version
        .strip_prefix('v')
        .or_else(|| version.strip_prefix('V'))
        .unwrap_or(version);
    let op = match op {
        "=>" => ">=",
        "=<" => "<=",
        "~>" => "~",
        "" | "=" | ">" | ">=" | "<" | "<=" | "~" | "^" => op,
        other => return Err(format!("unknown operator {other:?}")),
    };
    if version.is_empty() {
        return Err(format!("comparator {token:?} has no version"));
    }
    let wildcard = version
        .split('.')
        .any(|p| p == "*" || p.eq_ignore_ascii_case("x"));
    if version == "*" || version.eq_ignore_ascii_case("x") {
        // Any version; the `semver` crate reads a bare `*` only without an operator.
        return Ok(Vec::new());
    }
    let text = match (op, wildcard) {
        ("<=", true) => format!("<{}", bump_wildcard(version)?),
        (">", true) => format!(">={}", bump_wildcard(version)?),
        _ => format!("{op}{version}"),
    };
    let parsed = Comparator::parse(&text).map_err(|e| format!("{token:?}: {e}"))?;
    Ok(vec![parsed])
}

/// The first version past a wildcard: `1.x` → `2.0.0`, `1.2.*` → `1.3.0`.
fn bump_wildcard(version: &str) -> Result<String, String> {
    let fixed: Vec<u64> = version
        .split('.')
        .take_while(|p| *p != "*" && !p.eq_ignore_ascii_case("x"))
        .map(|p| {
            p.parse::<u64>()
                .map_err(|_| format!("{version:?} is not a version"))
        })
        .collect::<Result<_, _>>()?;
    Ok(match fixed.as_slice() {
        [major] => format!("{}.0.0", major + 1),
        [major, minor] => format!("{major}.{}.0", minor + 1),
        _ => return Err(format!("{version:?} is not a wildcard version")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use semver::Op;

    fn best<'a>(range: &str, versions: &[&'a str]) -> Option<&'a str> {
        SemverRange::parse(range)
            .unwrap()
            .best(versions.iter().copied())
    }

    const VERSIONS: &[&str] = &[
        "0.9.0",
        "1.0.0",
        "1.2.0",
        "1.2.3",
        "1.3.0-rc.1",
        "1.4.5",
        "1.10.0",
        "2.0.0",
        "v2.1.0",
    ];

    #[test]
    fn caret_and_tilde_ranges_pick_the_highest_compatible_release() {
        assert_eq!(best("^1.2", VERSIONS), Some("1.10.0"));
        assert_eq!(best("~1.2", VERSIONS), Some("1.2.3"));
        assert_eq!(best("~> 1.2.0", VERSIONS), Some("1.2.3"));
        assert_eq!(best("^0.9", VERSIONS), Some("0.9.0"));
        assert_eq!(best("^2", VERSIONS), Some("v2.1.0"));
    }

    #[test]
    fn comparators_joined_by_spaces_or_commas_must_all_hold() {
        assert_eq!(best(">=1.2.0 <1.5.0", VERSIONS), Some("1.4.5"));
        assert_eq!(best(">= 1.2.0, < 1.5.0", VERSIONS), Some("1.4.5"));
        assert_eq!(best("=> 1.0, =< 1.2.3", VERSIONS), Some("1.2.3"));
        assert_eq!(best(">3", VERSIONS), None);
    }

    #[test]
    fn alternatives_and_exclusions() {
        assert_eq!(best("~0.9 || ~1.2", VERSIONS), Some("1.2.3"));
        assert_eq!(best("^1.2, != 1.10.0", VERSIONS), Some("1.4.5"));
    }

    #[test]
    fn wildcards_and_hyphen_ranges() {
        assert_eq!(best("1.2.x", VERSIONS), Some("1.2.3"));
        assert_eq!(best("1.*", VERSIONS), Some("1.10.0"));
        assert_eq!(best("*", VERSIONS), Some("v2.1.0"));
        assert_eq!(best("<=1.x", VERSIONS), Some("1.10.0"));
        assert_eq!(best(">1.x", VERSIONS), Some("v2.1.0"));
        assert_eq!(best("1.2 - 1.4.5", VERSIONS), Some("1.4.5"));
        // A partial upper bound is a wildcard: `<= 1.2` is any 1.2.x.
        assert_eq!(best("1.0 - 1.2", VERSIONS), Some("1.2.3"));
    }

    #[test]
    fn pre_releases_only_match_a_range_naming_one() {
        assert_eq!(best(">=1.3.0-rc.0 <1.4.0", VERSIONS), Some("1.3.0-rc.1"));
        assert_eq!(best(">1.2.3 <1.4.0", VERSIONS), None);
    }

    #[test]
    fn versions_may_be_partial_or_start_with_v() {
        assert_eq!(parse_version("v1.2"), Version::parse("1.2.0").ok());
        assert_eq!(parse_version("2"), Version::parse("2.0.0").ok());
        assert_eq!(parse_version("1.2-rc.1"), Version::parse("1.2.0-rc.1").ok());
        assert_eq!(parse_version("main"), None);
        assert_eq!(parse_version("1.2.3.4"), None);
    }

    #[test]
    fn ranges_are_told_from_exact_versions_and_branch_names() {
        for range in [
            "^1.2",
            "~1.2.0",
            ">=1.0 <2.0",
            "1.2.x",
            "*",
            "1.0 - 2.0",
            "1.x || 2.x",
        ] {
            assert!(is_range(range), "{range}");
        }
        for not_range in [
            "1.2.3",
            "v1.2.3",
            "main",
            "HEAD",
            "release-1.2",
            "",
            "feature/x",
        ] {
            assert!(!is_range(not_range), "{not_range}");
        }
    }

    #[test]
    fn malformed_ranges_say_why() {
        for bad in [">=", "1.2 -", "^foo", "<>1.0", ""] {
            let error = SemverRange::parse(bad).unwrap_err();
            assert!(
                error.to_string().contains("is not a semver range"),
                "{bad}: {error}"
            );
        }
        let long = "1".repeat(MAX_RANGE_LEN + 1);
        assert!(SemverRange::parse(&long).is_err());
        let many = vec!["1.0.0"; MAX_PARTS + 1].join(" || ");
        assert!(SemverRange::parse(&many).is_err());
    }

    #[test]
    fn operators_map_to_the_semver_crate() {
        let parsed = parse_comparators("=>1.2.0").unwrap();
        assert_eq!(parsed[0].op, Op::GreaterEq);
        let parsed = parse_comparators("~>1.2").unwrap();
        assert_eq!(parsed[0].op, Op::Tilde);
    }
}
