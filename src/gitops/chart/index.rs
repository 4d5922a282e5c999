//! A Helm chart repository's `index.yaml`: the versions of one chart, with the archive URLs and
//! digests Helm wrote for them.

use std::collections::BTreeMap;

use reqwest::Url;
use serde::Deserialize;

/// One published version of a chart.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct IndexEntry {
    pub version: String,
    #[serde(default)]
    pub urls: Vec<String>,
    /// SHA-256 of the archive, hex (Helm writes it; older indexes may not).
    #[serde(default)]
    pub digest: Option<String>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    entries: BTreeMap<String, Vec<IndexEntry>>,
}

/// The entries of `chart` in `index_yaml`; a chart the index does not list is an error naming the
/// charts it does list (a few).
pub fn chart_entries(index_yaml: &[u8], chart: &str) -> Result<Vec<IndexEntry>, String> {
    let text =
        std::str::from_utf8(index_yaml).map_err(|_| "index.yaml is not UTF-8".to_string())?;
    let index: Index =
        serde_saphyr::from_str(text).map_err(|e| format!("index.yaml is not a Helm index: {e}"))?;
    let mut entries = index.entries;
    if let Some(found) = entries.remove(chart) {
        return Ok(found);
    }
    let listed: Vec<&str> = entries.keys().take(10).map(String::as_str).collect();
    Err(format!(
        "the repository has no chart {chart:?} (it lists {})",
        if listed.is_empty() {
            "none".to_string()
        } else {
            listed.join(", ")
        }
    ))
}

/// Where an entry's archive is: its first URL, resolved against the repository's URL when
/// relative (as Helm resolves it). Only http and https.
pub fn archive_url(repo_url: &str, entry: &IndexEntry) -> Result<String, String> {
    let first = entry
        .urls
        .first()
        .ok_or_else(|| format!("version {} lists no archive URL", entry.version))?;
    let base = Url::parse(&format!("{}/", repo_url.trim_end_matches('/')))
        .map_err(|e| format!("repoURL is not a URL: {e}"))?;
    let url = base
        .join(first)
        .map_err(|e| format!("archive URL {first:?} of version {}: {e}", entry.version))?;
    match url.scheme() {
        "http" | "https" => Ok(url.to_string()),
        other => Err(format!(
            "archive URL of version {} has scheme {other:?}: only http and https are fetched",
            entry.version
        )),
    }
}

/// Whether `url` has the same scheme, host and port as `repo_url` (credentials go there only).
pub fn same_origin(repo_url: &str, url: &str) -> bool {
    match (Url::parse(repo_url), Url::parse(url)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"
apiVersion: v1
entries:
  podinfo:
  - name: podinfo
    version: 1.2.3
    digest: abc123
    urls: [podinfo-1.2.3.tgz]
    created: "2026-01-01T00:00:00Z"
  - name: podinfo
    version: 1.3.0
    urls: ["https://cdn.example.com/podinfo-1.3.0.tgz"]
  other:
  - version: 0.1.0
    urls: [charts/other-0.1.0.tgz]
generated: "2026-01-01T00:00:00Z"
"#;

    #[test]
    fn a_charts_entries_are_read_with_their_urls_and_digests() {
        let entries = chart_entries(INDEX.as_bytes(), "podinfo").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].version, "1.2.3");
        assert_eq!(entries[0].digest.as_deref(), Some("abc123"));
        assert_eq!(entries[1].digest, None);
    }

    #[test]
    fn a_missing_chart_names_the_charts_listed() {
        let error = chart_entries(INDEX.as_bytes(), "nginx").unwrap_err();
        assert!(error.contains("no chart \"nginx\""), "{error}");
        assert!(error.contains("other, podinfo"), "{error}");
        let error = chart_entries(b"entries: [1, 2", "x").unwrap_err();
        assert!(error.contains("not a Helm index"), "{error}");
    }

    #[test]
    fn archive_urls_resolve_against_the_repository() {
        let entries = chart_entries(INDEX.as_bytes(), "podinfo").unwrap();
        assert_eq!(
            archive_url("http://127.0.0.1:8080/charts", &entries[0]).unwrap(),
            "http://127.0.0.1:8080/charts/podinfo-1.2.3.tgz"
        );
        assert_eq!(
            archive_url("http://127.0.0.1:8080/charts/", &entries[1]).unwrap(),
            "https://cdn.example.com/podinfo-1.3.0.tgz"
        );
        let file = IndexEntry {
            version: "1.0.0".into(),
            urls: vec!["file:///etc/passwd".into()],
            digest: None,
        };
        assert!(archive_url("http://127.0.0.1:1", &file).is_err());
        assert!(archive_url("http://127.0.0.1:1", &IndexEntry::default()).is_err());
    }

    #[test]
    fn credentials_follow_the_origin_only() {
        assert!(same_origin(
            "http://127.0.0.1:8080/charts",
            "http://127.0.0.1:8080/x.tgz"
        ));
        assert!(!same_origin(
            "http://127.0.0.1:8080/charts",
            "http://127.0.0.1:8081/x.tgz"
        ));
        assert!(!same_origin("https://a.example", "https://b.example/x.tgz"));
    }
}
