//! Running a rendering tool (`helm`, `kustomize`, `kubectl`): found on `PATH`, run in a private
//! [`Workspace`] with nothing of the controller's environment, bounded in time and in output, its
//! standard error kept for the message when it fails.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::RenderError;
use super::workspace::Workspace;

/// A render that takes longer is stuck (a template looping, a tool waiting on the network).
const TIMEOUT: Duration = Duration::from_secs(120);
/// How often a running tool is checked for completion.
const POLL: Duration = Duration::from_millis(20);
/// The end of a tool's standard error kept in a message (conditions have a size limit).
const MAX_STDERR: usize = 4000;
/// The most of a tool's standard error read into memory (only its end is shown).
const MAX_STDERR_READ: u64 = 1024 * 1024;
/// The most a tool may print: more is a template looping on output, not manifests to apply.
const MAX_OUTPUT: u64 = 64 * 1024 * 1024;

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

    /// Runs `program args` in the tree of `workspace`, with only the workspace's environment
    /// (proxies leading nowhere when `offline`), and returns its standard output. `tool` names it in
    /// errors, from which the workspace's location is removed.
    pub(super) fn run<I, S>(
        &self,
        tool: &str,
        program: &Path,
        args: I,
        workspace: &Workspace,
        offline: bool,
    ) -> Result<Vec<u8>, RenderError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let search_path = match &self.search_path {
            Some(path) => path.clone(),
            None => std::env::var_os("PATH").unwrap_or_default(),
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(workspace.tree())
            .env_clear()
            .envs(workspace.environment(&search_path, offline));
        run(tool, command, MAX_OUTPUT, &|text: &str| {
            workspace.shorten(text)
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `command`, returning its standard output unless it fails, runs longer than [`TIMEOUT`] or
/// prints more than `max_output` bytes. `shorten` cleans its message of local paths.
fn run(
    tool: &str,
    mut command: Command,
    max_output: u64,
    shorten: &dyn Fn(&str) -> String,
) -> Result<Vec<u8>, RenderError> {
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
    // Both pipes are drained while the tool runs, or a full pipe would block it forever. The output
    // keeps one byte more than it may hold, to tell a full output from an overflowing one.
    let stdout = drain(child.stdout.take(), max_output + 1);
    let stderr = drain(child.stderr.take(), MAX_STDERR_READ);
    let overflowing = || stdout.as_ref().is_some_and(|d| d.kept() > max_output);
    let too_large = || RenderError::OutputTooLarge {
        tool: tool.to_string(),
        limit: max_output,
    };
    // On a timeout or overflow the threads are not joined: a grandchild still holding the pipes
    // would keep them open; they end when it does.
    let status = match wait(&mut child, TIMEOUT, overflowing) {
        Waited::Exited(status) => status,
        Waited::TimedOut => {
            return Err(RenderError::ToolTimeout {
                tool: tool.to_string(),
                seconds: TIMEOUT.as_secs(),
            });
        }
        Waited::Stopped => return Err(too_large()),
    };
    let (stdout, stderr) = (join(stdout), join(stderr));
    if stdout.len() as u64 > max_output {
        return Err(too_large());
    }
    match status {
        Ok(status) if status.success() => Ok(stdout),
        Ok(status) => Err(RenderError::ToolFailed {
            tool: tool.to_string(),
            status: status.to_string(),
            stderr: tail(shorten(&String::from_utf8_lossy(&stderr)).trim()),
        }),
        Err(e) => Err(spawn_error(e)),
    }
}

/// A pipe read by a thread of its own, and how much of it was kept so far.
struct Drain {
    handle: JoinHandle<Vec<u8>>,
    kept: Arc<AtomicU64>,
}

impl Drain {
    fn kept(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }
}

/// Reads `pipe` to its end, keeping its first `limit` bytes (the rest is read and dropped, so that
/// the tool never blocks on a full pipe).
fn drain<R: Read + Send + 'static>(pipe: Option<R>, limit: u64) -> Option<Drain> {
    let mut pipe = pipe?;
    let kept = Arc::new(AtomicU64::new(0));
    let counter = kept.clone();
    let handle = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        // A read error ends the output early; the exit status tells whether the tool succeeded.
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let room = usize::try_from(limit.saturating_sub(buffer.len() as u64)).unwrap_or(n);
            buffer.extend_from_slice(&chunk[..n.min(room)]);
            counter.store(buffer.len() as u64, Ordering::Relaxed);
        }
        buffer
    });
    Some(Drain { handle, kept })
}

fn join(drain: Option<Drain>) -> Vec<u8> {
    drain.and_then(|d| d.handle.join().ok()).unwrap_or_default()
}

/// How waiting for a tool ended.
enum Waited {
    Exited(std::io::Result<ExitStatus>),
    /// Killed after running longer than allowed.
    TimedOut,
    /// Killed because `stop` said so.
    Stopped,
}

/// Waits for `child` up to `timeout`, killing it when it runs longer or when `stop` turns true.
fn wait(child: &mut Child, timeout: Duration, stop: impl Fn() -> bool) -> Waited {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Waited::Exited(Ok(status)),
            Ok(None) if stop() => {
                kill(child);
                return Waited::Stopped;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                kill(child);
                return Waited::TimedOut;
            }
            Err(e) => return Waited::Exited(Err(e)),
        }
    }
}

fn kill(child: &mut Child) {
    // Killing can only fail when it already exited; either way it is reaped here.
    let _ = child.kill();
    let _ = child.wait();
}

/// The end of a tool's message (conditions have a size limit).
fn tail(text: &str) -> String {
    if text.len() <= MAX_STDERR {
        return text.to_string();
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

    fn sh(script: &str) -> Command {
        let mut command = Command::new(Tools::default().find("sh").unwrap());
        command.args(["-c", script]);
        command
    }

    fn no_shortening(text: &str) -> String {
        text.to_string()
    }

    #[test]
    fn runs_a_tool_and_reports_its_failure() {
        let out = run("sh", sh("echo hello"), 100, &no_shortening).unwrap();
        assert_eq!(out, b"hello\n");
        let shorten = |text: &str| text.replace("/ws/tree/", "");
        let err = run(
            "sh",
            sh("echo 'Error: /ws/tree/chart/values.yaml: bad' >&2; exit 3"),
            100,
            &shorten,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "sh failed (exit status: 3): Error: chart/values.yaml: bad"
        );
    }

    #[test]
    fn a_stuck_tool_is_killed() {
        let mut child = sh("sleep 30").spawn().unwrap();
        let started = Instant::now();
        assert!(matches!(
            wait(&mut child, Duration::from_millis(100), || false),
            Waited::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_tool_printing_without_end_is_stopped() {
        let started = Instant::now();
        let err = run("yes", sh("yes manifest"), 1024 * 1024, &no_shortening).unwrap_err();
        assert_eq!(
            err,
            RenderError::OutputTooLarge {
                tool: "yes".into(),
                limit: 1024 * 1024
            }
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // Exactly the limit is fine.
        let out = run("sh", sh("printf 12345"), 5, &no_shortening).unwrap();
        assert_eq!(out, b"12345");
        let err = run("sh", sh("printf 123456"), 5, &no_shortening).unwrap_err();
        assert!(matches!(err, RenderError::OutputTooLarge { .. }), "{err}");
    }

    #[test]
    fn tools_run_with_the_search_path_and_nothing_else_of_the_environment() {
        assert_eq!(Tools::default().find("no-such-tool-sluice"), None);
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("mytool");
        std::fs::write(&tool, "#!/bin/sh\nenv\n").unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let search_path = format!("{}:/usr/bin:/bin", dir.path().display());
        let tools = Tools::with_search_path(&search_path);
        assert_eq!(tools.find("mytool"), Some(tool.clone()));
        let workspace = Workspace::with_copy_of(dir.path()).unwrap();
        let out = tools
            .run("mytool", &tool, [""; 0], &workspace, true)
            .unwrap();
        let env = String::from_utf8(out).unwrap();
        assert!(
            env.lines().any(|l| l == format!("PATH={search_path}")),
            "{env}"
        );
        let home = format!("HOME={}/home", workspace.path().display());
        assert!(env.lines().any(|l| l == home), "{env}");
        for absent in ["KUBECONFIG=", "KUBERNETES_SERVICE_HOST=", "CARGO"] {
            assert!(
                !env.lines().any(|l| l.starts_with(absent)),
                "{absent}: {env}"
            );
        }
        assert_eq!(Tools::with_search_path("/nonexistent").find("sh"), None);
    }

    #[test]
    fn long_messages_keep_their_end() {
        let long = format!("{}END", "x".repeat(10_000));
        let short = tail(&long);
        assert!(short.len() <= MAX_STDERR + 3 && short.ends_with("END"));
    }
}
