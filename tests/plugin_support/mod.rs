//! Runs `kubectl sluice ...` through the real kubectl of the local cluster, the way a user does.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::Stdio;

use crate::common::E2eEnv;

/// `kubectl` from the cluster's PATH, with the plugin's directory first so kubectl finds
/// `kubectl-sluice`.
pub fn kubectl(env: &E2eEnv) -> std::process::Command {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-sluice"))
        .parent()
        .expect("plugin dir");
    let path = format!("{}:{}", plugin_dir.display(), env.get("PATH"));
    let mut cmd = std::process::Command::new("kubectl");
    cmd.env("PATH", path)
        .env("KUBECONFIG", env.get("KUBECONFIG"))
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    cmd
}

/// What one `kubectl sluice` run printed and returned.
#[derive(Debug)]
pub struct Run {
    /// The command line, for failure messages.
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test with everything printed unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code of {}\nstdout:\n{}\nstderr:\n{}",
            self.command, self.stdout, self.stderr
        );
        self
    }

    /// The error must be exactly one `error: ...` line (no backtrace, no panic).
    pub fn expect_one_line_error(self, contains: &str) -> Self {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected:\n{}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", self.stderr);
        assert!(
            lines[0].contains(contains),
            "{contains:?} not in {}",
            self.stderr
        );
        self
    }
}

/// `kubectl sluice <args>` in `namespace` (when given), run without blocking the test's runtime.
pub async fn kubectl_sluice(env: &E2eEnv, namespace: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = kubectl(env);
    cmd.arg("sluice").args(args);
    if let Some(ns) = namespace {
        cmd.args(["-n", ns]);
    }
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("run kubectl");
    Run {
        command: format!("kubectl sluice {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kubectl sluice <args>` in `namespace`, its output a terminal (a pseudo-terminal from
/// `script`), to see what a user at a terminal sees: colours, and `\r\n` line ends.
pub async fn kubectl_sluice_on_tty(env: &E2eEnv, namespace: &str, args: &[&str]) -> Run {
    let kubectl = kubectl(env);
    let words: Vec<&str> = ["kubectl", "sluice"]
        .into_iter()
        .chain(args.iter().copied())
        .chain(["-n", namespace])
        .collect();
    let mut cmd = std::process::Command::new("script");
    // -e: the command's exit code; -q: no "Script started" lines; the log goes nowhere.
    cmd.args(["-qec", &words.join(" "), "/dev/null"])
        .envs(kubectl.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("run script");
    Run {
        command: format!("(on a terminal) {}", words.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
