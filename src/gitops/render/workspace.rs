//! The private directory a `helm` or `kustomize` render runs in: created fresh (mode 0700), holding a
//! copy of the one repository tree being rendered and the tool's home, deleted when the render ends.
//!
//! The shared Git cache keeps every extracted tree at a predictable `<cache>/trees/<sha>`; a tool run
//! on the cache's copy could reach another repository's tree through `../<sha>`. Run on this copy,
//! nothing but the repository's own files is near it, and the tool gets no environment of the
//! controller's (no `KUBECONFIG`, no service-account variables, no proxies, no credentials).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::RenderError;

/// Where Go's HTTP clients (helm, kustomize) and git are sent when the render may not reach the
/// network: port 0 is never listening, so every proxied request fails at once instead of fetching.
/// Loopback addresses bypass Go's proxy settings; those are refused before the tool runs.
const UNREACHABLE_PROXY: &str = "http://127.0.0.1:0";

pub(super) struct Workspace {
    dir: TempDir,
    tree: PathBuf,
}

impl Workspace {
    /// A fresh private directory holding a copy of the tree at `root` (symlinks copied as they are:
    /// checked by the caller to stay inside the tree).
    pub(super) fn with_copy_of(root: &Path) -> Result<Self, RenderError> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-render-")
            .tempdir()
            .map_err(io_error("render workspace"))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(io_error("render workspace"))?;
        for sub in ["home", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(io_error("render workspace"))?;
        }
        let tree = dir.path().join("tree");
        copy_tree(root, &tree)?;
        Ok(Self { dir, tree })
    }

    /// The copy of the repository's tree.
    pub(super) fn tree(&self) -> &Path {
        &self.tree
    }

    /// The workspace itself (for files of the render's own, beside the tree).
    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The whole environment of a tool run here: `path` as `PATH`, home, XDG and Helm directories
    /// inside the workspace, and, when `offline`, proxies that lead nowhere.
    pub(super) fn environment(&self, path: &OsStr, offline: bool) -> Vec<(&'static str, OsString)> {
        let home = self.dir.path().join("home");
        let at = |sub: &str| home.join(sub).into_os_string();
        let mut env = vec![
            ("PATH", path.to_os_string()),
            ("HOME", home.clone().into_os_string()),
            ("TMPDIR", self.dir.path().join("tmp").into_os_string()),
            ("XDG_CACHE_HOME", at(".cache")),
            ("XDG_CONFIG_HOME", at(".config")),
            ("XDG_DATA_HOME", at(".local/share")),
            ("HELM_CACHE_HOME", at(".cache/helm")),
            ("HELM_CONFIG_HOME", at(".config/helm")),
            ("HELM_DATA_HOME", at(".local/share/helm")),
            ("HELM_PLUGINS", at(".local/share/helm/plugins")),
            // A git clone by kustomize must never wait for a password on a terminal.
            ("GIT_TERMINAL_PROMPT", "0".into()),
        ];
        if offline {
            for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                env.push((key, UNREACHABLE_PROXY.into()));
            }
            env.push(("ALL_PROXY", UNREACHABLE_PROXY.into()));
        }
        env
    }

    /// `text` (a tool's message) without the workspace's location: paths of the tree become
    /// repository paths, other paths of the workspace lose their temporary prefix.
    pub(super) fn shorten(&self, text: &str) -> String {
        let tree = format!("{}/", self.tree.display());
        let dir = format!("{}/", self.dir.path().display());
        text.replace(&tree, "").replace(&dir, "")
    }
}

fn io_error(path: &str) -> impl Fn(io::Error) -> RenderError + '_ {
    move |e| RenderError::Io {
        path: path.to_string(),
        message: e.to_string(),
    }
}

/// Copies the tree at `from` to the new directory `to`: directories, regular files (with their
/// permissions) and symlinks (as symlinks, same target). Nothing else exists in an extracted tree.
fn copy_tree(from: &Path, to: &Path) -> Result<(), RenderError> {
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let shown = if relative.as_os_str().is_empty() {
            ".".to_string()
        } else {
            relative.display().to_string()
        };
        let io = io_error(&shown);
        std::fs::create_dir(to.join(&relative)).map_err(&io)?;
        for entry in std::fs::read_dir(from.join(&relative)).map_err(&io)? {
            let entry = entry.map_err(&io)?;
            let child = relative.join(entry.file_name());
            let file_type = entry.file_type().map_err(&io)?;
            if file_type.is_dir() {
                pending.push(child);
            } else if file_type.is_symlink() {
                let target = std::fs::read_link(entry.path()).map_err(&io)?;
                std::os::unix::fs::symlink(target, to.join(&child)).map_err(&io)?;
            } else if file_type.is_file() {
                std::fs::copy(entry.path(), to.join(&child)).map_err(&io)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn a_workspace_is_private_holds_a_copy_and_goes_away() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("chart/templates")).unwrap();
        std::fs::write(root.path().join("chart/Chart.yaml"), "name: x").unwrap();
        symlink("../Chart.yaml", root.path().join("chart/templates/link")).unwrap();
        let ws = Workspace::with_copy_of(root.path()).unwrap();
        let mode = std::fs::metadata(ws.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            std::fs::read_to_string(ws.tree().join("chart/templates/link")).unwrap(),
            "name: x"
        );
        assert_eq!(
            std::fs::read_link(ws.tree().join("chart/templates/link")).unwrap(),
            PathBuf::from("../Chart.yaml")
        );
        // Its neighbours are its own files, not other repositories' trees.
        let mut beside: Vec<_> = std::fs::read_dir(ws.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        beside.sort();
        assert_eq!(beside, ["home", "tmp", "tree"]);
        let path = ws.path().to_path_buf();
        drop(ws);
        assert!(!path.exists());
    }

    #[test]
    fn the_environment_is_only_the_tools_own() {
        let root = tempfile::tempdir().unwrap();
        let ws = Workspace::with_copy_of(root.path()).unwrap();
        let env = ws.environment(OsStr::new("/bin"), true);
        let keys: Vec<_> = env.iter().map(|(k, _)| *k).collect();
        assert!(!keys.contains(&"KUBECONFIG"), "{keys:?}");
        assert!(keys.contains(&"HTTPS_PROXY"));
        for (key, value) in &env {
            if key.starts_with("HELM_") || key.starts_with("XDG_") || *key == "HOME" {
                assert!(Path::new(value).starts_with(ws.path()), "{key}");
            }
        }
        let online = ws.environment(OsStr::new("/bin"), false);
        assert!(!online.iter().any(|(k, _)| k.ends_with("_PROXY")));
        let message = format!(
            "Error: {}/chart/values.yaml and {}/values.yaml",
            ws.tree().display(),
            ws.path().display()
        );
        assert_eq!(
            ws.shorten(&message),
            "Error: chart/values.yaml and values.yaml"
        );
    }
}
