//! helm and kubectl, run as a user runs them: `HELM` / `KUBECTL`, else the copies
//! scripts/helm-env.sh installs; a private HOME for their caches.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use serde_json::Value;

use crate::files::{parse_yaml, root};

pub(crate) fn chart() -> PathBuf {
    root().join("charts/falco-responder")
}

pub(crate) fn tool(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/falco-responder/lambda-layer-kubectl-v30-2.0.4")
            .join(name)
    });
    assert!(
        path.is_file(),
        "{name} not found at {}: run scripts/helm-env.sh (scripts/test.sh does) or set {var}",
        path.display()
    );
    path
}

/// A private HOME for helm's and kubectl's caches, shared by the tests of this binary.
pub(crate) fn tool_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Runs helm (`"helm"`) or kubectl (`"kubectl"`) with `args`; `kubeconfig` `None` = offline.
/// Ok(stdout) on exit 0, Err(stdout + stderr) otherwise.
pub(crate) fn run(which: &str, kubeconfig: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let bin = match which {
        "helm" => tool("HELM", "helm"),
        _ => tool("KUBECTL", "kubectl"),
    };
    let home = tool_home();
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("helm/cache"))
        .env("HELM_CONFIG_HOME", home.join("helm/config"))
        .env("HELM_DATA_HOME", home.join("helm/data"))
        .env(
            "KUBECONFIG",
            kubeconfig.unwrap_or(&home.join("no-cluster.yaml")),
        )
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{which} {}: {}\n{stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub(crate) fn ok(r: Result<String, String>) -> String {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// `helm template` of the chart with `args` (e.g. `--set`, `-f`), parsed into documents.
pub(crate) fn template(args: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut all = vec!["template", "falco-responder", chart.to_str().unwrap()];
    all.extend_from_slice(args);
    parse_yaml(&ok(run("helm", None, &all)))
}
