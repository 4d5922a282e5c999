//! Writing a commit's tree to disk for the renderers, atomically: into a temporary directory beside
//! the destination, then renamed into place.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::SourceError;
use crate::gitops::credentials::{scrub_message, scrub_url};

const MODE_EXECUTABLE: i32 = 0o100_755;
const MODE_SYMLINK: i32 = 0o120_000;

/// Extracts commit `sha` of the cache repository `git_dir` to `dest` unless it is already there.
pub(super) fn extract(
    git_dir: &Path,
    url: &str,
    sha: &str,
    dest: &Path,
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
    write_tree(&repo, &tree, staging.path()).map_err(|(path, message)| SourceError::Tree {
        sha: sha.to_string(),
        path,
        message,
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

/// A failure while writing the tree: the path in the repository and why.
type TreeError = (String, String);

fn write_tree(repo: &Repository, tree: &git2::Tree<'_>, root: &Path) -> Result<(), TreeError> {
    let mut failure = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let name = OsStr::from_bytes(entry.name_bytes());
        let rel = Path::new(dir).join(name);
        match write_entry(repo, entry, root, &rel) {
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
}
