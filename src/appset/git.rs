//! The git generator's reads, through the Application controller's Git cache ([`RepoCache`]): the
//! revision resolved with a fetch at most once per poll interval (shared with the Applications of
//! the same repository), the commit's tree extracted once (bounded by `--git-*`), then walked off
//! the async runtime for its directories and the files the generator's globs match, within
//! [`MAX_FILES`], [`MAX_FILE_BYTES`] and [`MAX_TOTAL_BYTES`].

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::generators::{GitData, GitQuery, PathMatcher};
use crate::gitops::credentials::Credentials;
use crate::gitops::source::RepoCache;

/// Most directories listed in one tree.
pub const MAX_DIRECTORIES: usize = 10_000;
/// Most files one `files` generator reads.
pub const MAX_FILES: usize = 1000;
/// Largest file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most bytes read from one tree.
pub const MAX_TOTAL_BYTES: u64 = 16 * 1024 * 1024;

/// Reads `query` with `creds`, fetching when the cache is older than `fresh_since`.
pub async fn read(
    repos: &RepoCache,
    query: &GitQuery,
    creds: Option<&Credentials>,
    fresh_since: Timestamp,
) -> Result<GitData, String> {
    let sha = repos
        .resolve(&query.repo_url, &query.revision, creds, fresh_since)
        .await
        .map_err(|e| e.to_string())?;
    let root = repos
        .checkout(&query.repo_url, creds, &sha)
        .await
        .map_err(|e| e.to_string())?;
    let files = query.files.clone();
    let walked = tokio::task::spawn_blocking(move || walk(&root, &files))
        .await
        .map_err(|e| format!("git tree walk failed: {e}"))??;
    Ok(GitData { sha, ..walked })
}

/// The directories (not hidden, not the root) and the files matching `files` of the tree at
/// `root` (`sha` left empty). Symbolic links are not followed.
pub fn walk(root: &Path, files: &[(String, bool)]) -> Result<GitData, String> {
    let matcher = (!files.is_empty())
        .then(|| PathMatcher::new(files))
        .transpose()?;
    let mut directories = Vec::new();
    let mut matched = Vec::new();
    let mut total: u64 = 0;
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, relative)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{relative}: {e}"))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{relative}: {e}"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if relative.is_empty() {
                name.clone()
            } else {
                format!("{relative}/{name}")
            };
            let kind = entry.file_type().map_err(|e| format!("{path}: {e}"))?;
            if kind.is_dir() {
                if name.starts_with('.') {
                    continue;
                }
                directories.push(path.clone());
                if directories.len() > MAX_DIRECTORIES {
                    return Err(format!("more than {MAX_DIRECTORIES} directories"));
                }
                stack.push((entry.path(), path));
                continue;
            }
            let Some(matcher) = &matcher else { continue };
            if !kind.is_file() || !matcher.matches(&path) {
                continue;
            }
            let size = entry.metadata().map_err(|e| format!("{path}: {e}"))?.len();
            if size > MAX_FILE_BYTES {
                return Err(format!("{path}: larger than {MAX_FILE_BYTES} bytes"));
            }
            total += size;
            if total > MAX_TOTAL_BYTES || matched.len() >= MAX_FILES {
                return Err(format!(
                    "the files matched are more than {MAX_FILES} or {MAX_TOTAL_BYTES} bytes"
                ));
            }
            let text = std::fs::read_to_string(entry.path()).map_err(|e| format!("{path}: {e}"))?;
            matched.push((path, text));
        }
    }
    directories.sort();
    matched.sort();
    Ok(GitData {
        sha: String::new(),
        directories,
        files: matched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_and_matching_files_skipping_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["apps/a", "apps/b/deep", ".github/workflows", "other"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("apps/a/config.json"), r#"{"x": 1}"#).unwrap();
        std::fs::write(root.join("apps/b/config.json"), r#"{"x": 2}"#).unwrap();
        std::fs::write(root.join("apps/b/deep/config.json"), "{}").unwrap();
        let GitData {
            directories: dirs,
            files,
            ..
        } = walk(root, &[("apps/*/config.json".into(), false)]).unwrap();
        assert_eq!(
            dirs,
            vec!["apps", "apps/a", "apps/b", "apps/b/deep", "other"]
        );
        assert_eq!(
            files,
            vec![
                ("apps/a/config.json".to_string(), r#"{"x": 1}"#.to_string()),
                ("apps/b/config.json".to_string(), r#"{"x": 2}"#.to_string()),
            ]
        );
        let deep = walk(root, &[("apps/**/config.json".into(), false)]).unwrap();
        assert_eq!(deep.files.len(), 3);
    }
}
