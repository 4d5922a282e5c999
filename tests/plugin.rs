//! The plugin runs as `kubectl sluice ...` through the real kubectl of the local cluster.

mod common;

use std::path::Path;
use std::process::Command;

use common::E2eEnv;

/// `kubectl` from the cluster's PATH, with the plugin's directory first so kubectl finds `kubectl-sluice`.
pub fn kubectl(env: &E2eEnv) -> Command {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-sluice"))
        .parent()
        .expect("plugin dir");
    let path = format!("{}:{}", plugin_dir.display(), env.get("PATH"));
    let mut cmd = Command::new("kubectl");
    cmd.env("PATH", path)
        .env("KUBECONFIG", env.get("KUBECONFIG"));
    cmd
}

#[test]
fn kubectl_finds_the_plugin_and_runs_it() {
    let env = E2eEnv::load();
    let out = kubectl(&env)
        .args(["sluice", "version"])
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("kubectl-sluice {}\n", sluice::VERSION)
    );
}

#[test]
fn an_unknown_command_is_one_clear_error_with_a_failing_exit_code() {
    let env = E2eEnv::load();
    let out = kubectl(&env)
        .args(["sluice", "frobnicate"])
        .output()
        .expect("run kubectl");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
