//! Writing a commit's tree to disk for the renderers, atomically: into a temporary directory beside
//! the destination, then renamed into place.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::SourceError;
use super::limits::human_bytes;
use crate::gitops::credentials::{scrub_message, scrub_url};

const MODE_EXECUTABLE: i32 = 0o100_755;
const MODE_SYMLINK: i32 = 0o120_000;

/// How much one extracted tree may hold. A "git bomb" (trees whose entries all point at the same
/// subtree, a few KiB in Git and billions of files on disk) stops at the first entry over the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TreeLimits {
    /// Files, directories and links.
    pub max_entries: u64,
    /// Bytes of file content.
    pub max_bytes: u64,
}

/// Extracts commit `sha` of the cache repository `git_dir` to `dest` unless it is already there.
pub(super) fn extract(
    git_dir: &Path,
    url: &str,
    sha: &str,
    dest: &Path,
    limits: TreeLimits,
) -> Result<(), SourceError> {
    if dest.is_dir() {
        return Ok(());
    }
    let unknown_commit = |e: git2::Error| SourceError::UnknownCommit {
        url: scrub_url(url),
        sha: sha.to_string(),
        message: scrub_message(e.message(), &[]),
    };
    let repo = Repository::open_bare(git_dir).map_err(unknown_commit)?;
    let oid = Oid::from_str(sha).map_err(unknown_commit)?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(unknown_commit)?;

    let parent = dest.parent().unwrap_or(Path::new("."));
    let cache_error = |e: std::io::Error| SourceError::Cache {
        path: parent.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(parent).map_err(cache_error)?;
    // Dropped (and so deleted) on every early return; kept only once renamed into place.
    let staging = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(parent)
        .map_err(cache_error)?;
    write_tree(&repo, &tree, staging.path(), limits).map_err(|(path, message)| {
        SourceError::Tree {
            sha: sha.to_string(),
            path,
            message,
        }
    })?;
    match std::fs::rename(staging.path(), dest) {
        Ok(()) => {
            // The directory now lives at `dest`; the guard must not delete it.
            let _ = staging.keep();
            Ok(())
        }
        // Another caller extracted the same commit first: theirs is as good as ours.
        Err(_) if dest.is_dir() => Ok(()),
        Err(e) => Err(cache_error(e)),
    }
}

/// Records that the extracted tree `dir` is in use (its modification time is the last use), so that
/// [`remove_unused`] keeps it.
pub(crate) fn mark_used(dir: &Path, now: SystemTime) -> std::io::Result<()> {
    std::fs::File::open(dir)?.set_modified(now)
}

/// Removes the extracted trees (and staging directories a crash left behind) under `trees_dir`
/// not used for `ttl` before `now`; returns how many were removed. A tree still needed is
/// extracted again, so removing too much costs time, never correctness.
pub(crate) fn remove_unused(trees_dir: &Path, now: SystemTime, ttl: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(trees_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let unused_since = entry.metadata().and_then(|m| m.modified());
        let stale = unused_since.is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > ttl));
        if stale && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A failure while writing the tree: the path in the repository and why.
type TreeError = (String, String);

fn write_tree(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    root: &Path,
    limits: TreeLimits,
) -> Result<(), TreeError> {
    let odb = repo
        .odb()
        .map_err(|e| (String::new(), e.message().to_string()))?;
    let mut usage = TreeUsage::default();
    let mut failure = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let name = OsStr::from_bytes(entry.name_bytes());
        let rel = Path::new(dir).join(name);
        let counted = usage.count(&odb, entry, limits);
        match counted.and_then(|()| write_entry(repo, entry, root, &rel)) {
            Ok(()) => TreeWalkResult::Ok,
            Err(message) => {
                failure = Some((rel.display().to_string(), message));
                TreeWalkResult::Abort
            }
        }
    });
    match (failure, walked) {
        (Some(failure), _) => Err(failure),
        (None, Err(e)) => Err((String::new(), e.message().to_string())),
        (None, Ok(())) => Ok(()),
    }
}

/// What the tree written so far holds.
#[derive(Default)]
struct TreeUsage {
    entries: u64,
    bytes: u64,
}

impl TreeUsage {
    /// Counts `entry` (a blob by the size in its object header, before its content is read) and
    /// fails once a limit is passed.
    fn count(
        &mut self,
        odb: &git2::Odb<'_>,
        entry: &git2::TreeEntry<'_>,
        limits: TreeLimits,
    ) -> Result<(), String> {
        self.entries += 1;
        if self.entries > limits.max_entries {
            return Err(format!(
                "the tree holds more than {} files and directories (--git-max-tree-files)",
                limits.max_entries
            ));
        }
        if entry.kind() == Some(ObjectType::Blob) {
            let (size, _) = odb
                .read_header(entry.id())
                .map_err(|e| e.message().to_string())?;
            self.bytes = self.bytes.saturating_add(size as u64);
            if self.bytes > limits.max_bytes {
                return Err(format!(
                    "the tree holds more than {} of files (--git-max-tree-bytes)",
                    human_bytes(limits.max_bytes)
                ));
            }
        }
        Ok(())
    }
}

fn write_entry(
    repo: &Repository,
    entry: &git2::TreeEntry<'_>,
    root: &Path,
    rel: &Path,
) -> Result<(), String> {
    if !is_plain_relative(rel) {
        return Err("refusing a path that leaves the tree".into());
    }
    let path = root.join(rel);
    match entry.kind() {
        // A submodule is a commit of another repository: leave its directory empty, as a clone does.
        Some(ObjectType::Tree) | Some(ObjectType::Commit) => {
            std::fs::create_dir_all(&path).map_err(|e| e.to_string())
        }
        Some(ObjectType::Blob) => {
            let blob = repo
                .find_blob(entry.id())
                .map_err(|e| e.message().to_string())?;
            if entry.filemode() == MODE_SYMLINK {
                write_symlink(&path, rel, blob.content())
            } else {
                write_file(&path, blob.content(), entry.filemode() == MODE_EXECUTABLE)
            }
        }
        _ => Ok(()),
    }
}

fn write_file(path: &Path, content: &[u8], executable: bool) -> Result<(), String> {
    std::fs::write(path, content).map_err(|e| e.to_string())?;
    if executable {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Symlinks are kept when they stay inside the tree; one pointing outside could make a renderer read
/// any file of the controller's host (Argo CD refuses these "out-of-bounds symlinks" too).
fn write_symlink(path: &Path, rel: &Path, target: &[u8]) -> Result<(), String> {
    let target = PathBuf::from(OsStr::from_bytes(target));
    let base = rel.parent().unwrap_or(Path::new(""));
    if target.is_absolute() || !stays_inside(&base.join(&target)) {
        return Err(format!(
            "symlink to {} points outside the repository",
            target.display()
        ));
    }
    std::os::unix::fs::symlink(&target, path).map_err(|e| e.to_string())
}

fn is_plain_relative(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(n) if n != ".git"))
}

/// Whether a relative path, with `..` applied lexically, never climbs above its start.
pub(crate) fn stays_inside(path: &Path) -> bool {
    let mut depth: usize = 0;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_containment() {
        assert!(stays_inside(Path::new("a/b/../c")));
        assert!(stays_inside(Path::new("./a")));
        assert!(stays_inside(Path::new("a/..")));
        assert!(!stays_inside(Path::new("a/../../etc/passwd")));
        assert!(!stays_inside(Path::new("/etc/passwd")));
        assert!(is_plain_relative(Path::new("a/b.yaml")));
        assert!(!is_plain_relative(Path::new("a/../b.yaml")));
        assert!(!is_plain_relative(Path::new(".git/config")));
    }

    #[test]
    fn trees_unused_for_the_ttl_are_removed_and_used_ones_kept() {
        let trees = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        for (name, last_use) in [
            ("old", now - 2 * hour),
            (".partial-crashed", now - 2 * hour),
            ("recent", now - hour / 2),
            ("in-use", now - 5 * hour),
        ] {
            let dir = trees.path().join(name);
            std::fs::create_dir_all(dir.join("app")).unwrap();
            std::fs::write(dir.join("app/cm.yaml"), "kind: ConfigMap\n").unwrap();
            mark_used(&dir, last_use).unwrap();
        }
        // Checked out again just now: kept whatever its age.
        mark_used(&trees.path().join("in-use"), now).unwrap();

        assert_eq!(remove_unused(trees.path(), now, hour), 2);
        let mut left: Vec<_> = std::fs::read_dir(trees.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["in-use", "recent"]);
        assert_eq!(remove_unused(&trees.path().join("missing"), now, hour), 0);
    }
}
