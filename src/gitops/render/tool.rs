//! Running a rendering tool (`helm`, `kustomize`, `kubectl`): found on `PATH`, bounded in time, its
//! standard error kept for the message when it fails.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::RenderError;

/// A render that takes longer is stuck (a template looping, a tool waiting on the network).
const TIMEOUT: Duration = Duration::from_secs(120);
/// How often a running tool is checked for completion.
const POLL: Duration = Duration::from_millis(20);
/// The end of a tool's standard error kept in a message (conditions have a size limit).
const MAX_STDERR: usize = 4000;

/// Where the rendering tools are looked up: the process's `PATH` (the default), or a search path of
/// its own (then also given to the tools as their `PATH`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tools {
    search_path: Option<OsString>,
}

impl Tools {
    /// Tools looked up in `search_path` (a `PATH`-style list of directories).
    pub fn with_search_path(search_path: impl Into<OsString>) -> Self {
        Self {
            search_path: Some(search_path.into()),
        }
    }

    /// The executable `name` in a directory of the search path.
    pub(super) fn find(&self, name: &str) -> Option<PathBuf> {
        let path = match &self.search_path {
            Some(path) => path.clone(),
            None => std::env::var_os("PATH")?,
        };
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    }

    /// Runs `program args` in `cwd` and returns its standard output. `tool` names it in errors;
    /// `root` (the tree the tool reads) is shortened away in its messages.
    pub(super) fn run<I, S>(
        &self,
        tool: &str,
        program: &Path,
        args: I,
        cwd: &Path,
        root: &Path,
    ) -> Result<Vec<u8>, RenderError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        command.args(args).current_dir(cwd);
        if let Some(path) = &self.search_path {
            command.env("PATH", path);
        }
        run(tool, command, root)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn run(tool: &str, mut command: Command, root: &Path) -> Result<Vec<u8>, RenderError> {
    let spawn_error = |e: std::io::Error| RenderError::ToolFailed {
        tool: tool.to_string(),
        status: "not started".into(),
        stderr: e.to_string(),
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // Both pipes are drained while the tool runs, or a full pipe would block it forever.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let Some(status) = wait(&mut child, TIMEOUT) else {
        // Not joined: a grandchild still holding the pipes would keep them open; the threads end
        // when it does.
        return Err(RenderError::ToolTimeout {
            tool: tool.to_string(),
            seconds: TIMEOUT.as_secs(),
        });
    };
    let (stdout, stderr) = (join(stdout), join(stderr));
    match status {
        Ok(status) if status.success() => Ok(stdout),
        Ok(status) => Err(RenderError::ToolFailed {
            tool: tool.to_string(),
            status: status.to_string(),
            stderr: shorten(&String::from_utf8_lossy(&stderr), root),
        }),
        Err(e) => Err(spawn_error(e)),
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    let mut pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut buffer = Vec::new();
        // A read error ends the output early; the exit status tells whether the tool succeeded.
        let _ = pipe.read_to_end(&mut buffer);
        buffer
    }))
}

fn join(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// Waits for `child` up to `timeout`; kills it and returns `None` when it runs longer.
fn wait(child: &mut Child, timeout: Duration) -> Option<std::io::Result<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(Ok(status)),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                // Killing can only fail when it already exited; either way it is reaped below.
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// The tool's message without the cache location of the tree, trimmed to its last lines.
fn shorten(stderr: &str, root: &Path) -> String {
    let root = format!("{}/", root.display());
    let text = stderr.replace(&root, "").trim().to_string();
    if text.len() <= MAX_STDERR {
        return text;
    }
    let mut start = text.len() - MAX_STDERR;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_tool_and_reports_its_failure() {
        let tools = Tools::default();
        let sh = tools.find("sh").unwrap();
        let root = Path::new("/cache/trees/abc");
        let out = tools
            .run("sh", &sh, ["-c", "echo hello"], Path::new("/"), root)
            .unwrap();
        assert_eq!(out, b"hello\n");
        let err = tools
            .run(
                "sh",
                &sh,
                [
                    "-c",
                    "echo 'Error: /cache/trees/abc/chart/values.yaml: bad' >&2; exit 3",
                ],
                Path::new("/"),
                root,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "sh failed (exit status: 3): Error: chart/values.yaml: bad"
        );
    }

    #[test]
    fn a_stuck_tool_is_killed() {
        let sh = Tools::default().find("sh").unwrap();
        let mut child = Command::new(sh).args(["-c", "sleep 30"]).spawn().unwrap();
        let started = Instant::now();
        assert!(wait(&mut child, Duration::from_millis(100)).is_none());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn tools_are_found_on_the_search_path() {
        assert_eq!(Tools::default().find("no-such-tool-sluice"), None);
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("mytool");
        std::fs::write(&tool, "#!/bin/sh\necho \"$PATH\"\n").unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let search_path = format!("{}:/usr/bin:/bin", dir.path().display());
        let tools = Tools::with_search_path(&search_path);
        assert_eq!(tools.find("mytool"), Some(tool.clone()));
        let out = tools
            .run("mytool", &tool, [""; 0], dir.path(), dir.path())
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), search_path);
        assert_eq!(Tools::with_search_path("/nonexistent").find("sh"), None);
    }

    #[test]
    fn long_messages_keep_their_end() {
        let long = format!("{}END", "x".repeat(10_000));
        let short = shorten(&long, Path::new("/r"));
        assert!(short.len() <= MAX_STDERR + 3 && short.ends_with("END"));
    }
}
