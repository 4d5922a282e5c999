//! Where a path of a checked-out tree really leads. Extraction keeps only symlinks whose target stays
//! inside the tree *lexically*, which a chain defeats: `a/b/up -> ../..` is lexically fine, and so is
//! `a/b/k -> up/../../x`, yet following `up` first lands two levels above the tree (the
//! CVE-2022-24348 class). Here every symlink is followed, one component at a time and from the tree's
//! root, the way the kernel (and so `helm` and `kustomize`) would.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::RenderError;

/// Symlinks followed while resolving one path before it counts as a loop (Linux's `MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

/// Where a relative path of the tree leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resolved {
    /// To this path of the tree (relative to its root, no symlink and no `..` left in it). It may not
    /// exist.
    Inside(PathBuf),
    /// Above the tree's root, or to an absolute symlink target.
    Outside,
}

enum Step {
    Up,
    Down(OsString),
}

/// Resolves `relative` (a path of the tree rooted at `root`) the way the kernel would, symlinks
/// included. An absolute `relative` is [`Resolved::Outside`].
pub(super) fn resolve(root: &Path, relative: &Path) -> Result<Resolved, ResolveError> {
    let mut pending = VecDeque::new();
    if !push_steps(&mut pending, relative, false) {
        return Ok(Resolved::Outside);
    }
    let mut at = PathBuf::new();
    let mut hops = 0;
    while let Some(step) = pending.pop_front() {
        match step {
            Step::Up => {
                if !at.pop() {
                    return Ok(Resolved::Outside);
                }
            }
            Step::Down(name) => {
                at.push(name);
                let Some(target) = symlink_target(&root.join(&at))? else {
                    continue;
                };
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(ResolveError::Loop);
                }
                at.pop();
                if !push_steps(&mut pending, &target, true) {
                    return Ok(Resolved::Outside);
                }
            }
        }
    }
    Ok(Resolved::Inside(at))
}

/// Why a path could not be resolved.
#[derive(Debug)]
pub(super) enum ResolveError {
    Loop,
    Io(io::Error),
}

impl From<io::Error> for ResolveError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Queues the components of `path` (at the front when `first`); false when it is absolute.
fn push_steps(pending: &mut VecDeque<Step>, path: &Path, first: bool) -> bool {
    let mut steps = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => steps.push(Step::Down(name.to_os_string())),
            Component::ParentDir => steps.push(Step::Up),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    if first {
        for step in steps.into_iter().rev() {
            pending.push_front(step);
        }
    } else {
        pending.extend(steps);
    }
    true
}

/// The target of `path` when it is a symlink; `None` when it is anything else or does not exist
/// (nothing below a missing path exists either, so the rest resolves lexically).
fn symlink_target(path: &Path) -> io::Result<Option<PathBuf>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::read_link(path).map(Some),
        Ok(_) => Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// [`resolve`] as a render sees it: the tree path `relative`, named `shown` in errors, resolved
/// inside the tree, else a [`RenderError`] naming it.
pub(super) fn resolve_inside(
    root: &Path,
    relative: &Path,
    shown: &str,
) -> Result<PathBuf, RenderError> {
    match resolve(root, relative) {
        Ok(Resolved::Inside(path)) => Ok(path),
        Ok(Resolved::Outside) => Err(RenderError::PathEscape {
            path: shown.to_string(),
        }),
        Err(e) => Err(resolve_error(shown, e)),
    }
}

fn resolve_error(shown: &str, error: ResolveError) -> RenderError {
    match error {
        ResolveError::Loop => RenderError::SymlinkLoop {
            path: shown.to_string(),
        },
        ResolveError::Io(e) => RenderError::Io {
            path: shown.to_string(),
            message: e.to_string(),
        },
    }
}

/// Refuses the tree at `root` when any of its symlinks, chains followed, leads outside it (or loops):
/// the error names the first such symlink in path order.
pub(super) fn check_tree(root: &Path) -> Result<(), RenderError> {
    // Entries still to visit, the next one last.
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let path = root.join(&relative);
        let io = |e: io::Error| RenderError::Io {
            path: display_or_root(&relative),
            message: e.to_string(),
        };
        let file_type = std::fs::symlink_metadata(&path).map_err(io)?.file_type();
        if file_type.is_symlink() {
            check_symlink(root, &relative)?;
        } else if file_type.is_dir() {
            let mut names = std::fs::read_dir(&path)
                .map_err(io)?
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(io)?;
            names.sort_by(|a, b| b.cmp(a));
            pending.extend(names.into_iter().map(|name| relative.join(name)));
        }
    }
    Ok(())
}

fn check_symlink(root: &Path, relative: &Path) -> Result<(), RenderError> {
    let shown = relative.display().to_string();
    match resolve(root, relative) {
        Ok(Resolved::Inside(_)) => Ok(()),
        Ok(Resolved::Outside) => Err(RenderError::SymlinkEscape {
            target: std::fs::read_link(root.join(relative))
                .map(|t| t.display().to_string())
                .unwrap_or_default(),
            path: shown,
        }),
        Err(e) => Err(resolve_error(&shown, e)),
    }
}

fn display_or_root(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".into()
    } else {
        dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        std::fs::write(dir.path().join("a/file.yaml"), "x: 1").unwrap();
        dir
    }

    fn inside(path: &str) -> Resolved {
        Resolved::Inside(PathBuf::from(path))
    }

    #[test]
    fn plain_paths_resolve_lexically() {
        let root = tree();
        let r = |p: &str| resolve(root.path(), Path::new(p)).unwrap();
        assert_eq!(r("a/b/../file.yaml"), inside("a/file.yaml"));
        assert_eq!(r("./a/missing/../b"), inside("a/b"));
        assert_eq!(r("a/.."), inside(""));
        assert_eq!(r(".."), Resolved::Outside);
        assert_eq!(r("a/../../x"), Resolved::Outside);
        assert_eq!(r("/etc/passwd"), Resolved::Outside);
    }

    #[test]
    fn symlinks_are_followed_from_where_they_are() {
        let root = tree();
        symlink("../file.yaml", root.path().join("a/b/f")).unwrap();
        symlink("b/c", root.path().join("a/deep")).unwrap();
        symlink("../../../..", root.path().join("a/b/c/up")).unwrap();
        let r = |p: &str| resolve(root.path(), Path::new(p)).unwrap();
        assert_eq!(r("a/b/f"), inside("a/file.yaml"));
        assert_eq!(r("a/deep/../f"), inside("a/file.yaml"));
        assert_eq!(r("a/b/c/up"), Resolved::Outside);
    }

    #[test]
    fn a_chain_that_is_lexically_inside_escapes() {
        // The attack: `d20/up` climbs to the root (lexically fine), `k` climbs further
        // through it while looking, lexically, like it stays in `a/b`.
        let root = tree();
        symlink("../..", root.path().join("a/b/up")).unwrap();
        symlink(
            "up/../../var/run/secrets/kubernetes.io/serviceaccount/token",
            root.path().join("a/b/k"),
        )
        .unwrap();
        assert_eq!(
            resolve(root.path(), Path::new("a/b/up")).unwrap(),
            inside("")
        );
        assert_eq!(
            resolve(root.path(), Path::new("a/b/k")).unwrap(),
            Resolved::Outside
        );
        let err = check_tree(root.path()).unwrap_err();
        assert_eq!(
            err,
            RenderError::SymlinkEscape {
                path: "a/b/k".into(),
                target: "up/../../var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            }
        );
        assert!(err.to_string().contains("a/b/k"), "{err}");
    }

    #[test]
    fn absolute_targets_and_loops_are_refused() {
        let root = tree();
        symlink("/etc", root.path().join("a/etc")).unwrap();
        assert_eq!(
            resolve(root.path(), Path::new("a/etc/passwd")).unwrap(),
            Resolved::Outside
        );
        std::fs::remove_file(root.path().join("a/etc")).unwrap();
        symlink("loop2", root.path().join("a/loop1")).unwrap();
        symlink("loop1", root.path().join("a/loop2")).unwrap();
        assert!(matches!(
            resolve(root.path(), Path::new("a/loop1")),
            Err(ResolveError::Loop)
        ));
        assert_eq!(
            check_tree(root.path()).unwrap_err(),
            RenderError::SymlinkLoop {
                path: "a/loop1".into()
            }
        );
    }

    #[test]
    fn a_tree_whose_symlinks_stay_inside_passes() {
        let root = tree();
        symlink("../file.yaml", root.path().join("a/b/f")).unwrap();
        symlink("a/b", root.path().join("top")).unwrap();
        symlink("missing/../../a", root.path().join("a/dangling-but-inside")).unwrap();
        check_tree(root.path()).unwrap();
        assert_eq!(
            resolve_inside(root.path(), Path::new("top/f"), "top/f").unwrap(),
            PathBuf::from("a/file.yaml")
        );
        assert_eq!(
            resolve_inside(root.path(), Path::new("top/../../.."), "x").unwrap_err(),
            RenderError::PathEscape { path: "x".into() }
        );
    }
}
