//! The Helm chart offline, with the real helm: `helm lint --strict` and `helm template` on
//! every platform, the values schema, the READMEs in step with values.yaml, the plain YAML
//! directories rendered from it, and the helm commands of docs/deploy-helm.md.

use std::{collections::BTreeMap, path::PathBuf, process::Command};

use falco_responder::config::ENV_VARS;
use serde_json::Value;

use crate::{
    files::{read, root},
    shell::doc_shell_lines,
    tools::{chart, ok, run, template},
};

pub(crate) const PLATFORMS: &[&str] = &["kubernetes", "knative", "openfaas"];

/// `helm template` has no cluster to keep a generated token in and refuses to invent one: the
/// offline renders name the Secrets, as a GitOps user does.
pub(crate) const NAMED_SECRETS: &str =
    "auth.existingSecret=s,argo.eventSource.authSecret.name=e,argo.sensorAuthSecret.name=t";

pub(crate) fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"]))
        .collect()
}

pub(crate) fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(docs)))
}

/// The env entries of the function's container in a rendered object, by name.
pub(crate) fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

/// The values files under the chart's ci/: the documented setups the plain YAML directories
/// are rendered from (scripts/render-manifests.sh), each installed by the tests below.
pub(crate) fn ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    files
}

/// Every object carries the namespace it belongs in, cluster-scoped ones none.
pub(crate) fn assert_namespaces(what: &str, rendered: &[Value]) {
    for d in rendered {
        let cluster = ["ClusterRole", "ClusterRoleBinding"].contains(&d["kind"].as_str().unwrap());
        assert_eq!(
            d["metadata"]["namespace"].is_null(),
            cluster,
            "{what}: {}",
            d["metadata"]
        );
    }
}

#[test]
fn chart_lints_strict_and_renders_on_every_platform() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    ok(run("helm", None, &["lint", "--strict", chart]));
    for values in ci_values() {
        let values = values.to_str().unwrap();
        ok(run(
            "helm",
            None,
            &["lint", "--strict", chart, "-f", values],
        ));
        assert_namespaces(values, &template(&["-f", values]));
    }
    for platform in PLATFORMS {
        for trigger in ["http", "workflow"] {
            let set = format!(
                "platform={platform},auth.enabled=true,argo.enabled=true,argo.trigger={trigger},{NAMED_SECRETS}"
            );
            ok(run(
                "helm",
                None,
                &["lint", "--strict", chart, "--set", &set],
            ));
            assert_namespaces(&set, &template(&["--set", &set]));
        }
    }
    let kinds_default = kinds(&template(&["--set", "auth.existingSecret=s"]));
    for absent in ["ServiceMonitor/", "HorizontalPodAutoscaler/", "Secret/"] {
        assert!(
            !kinds_default.iter().any(|k| k.starts_with(absent)),
            "{absent} rendered by default: {kinds_default:?}"
        );
    }
    let all = kinds(&template(&[
        "--set",
        &format!(
            "serviceMonitor.enabled=true,autoscaling.enabled=true,argo.enabled=true,{NAMED_SECRETS}"
        ),
    ]));
    assert_has(&all, &["ServiceMonitor/", "HorizontalPodAutoscaler/"]);
    assert_has(&all, KUBERNETES_KINDS);
}

/// What the kubernetes platform installs by default.
pub(crate) const KUBERNETES_KINDS: &[&str] = &[
    "Deployment/",
    "Service/",
    "ServiceAccount/",
    "ClusterRole/",
    "ClusterRoleBinding/",
    "PodDisruptionBudget/",
    "NetworkPolicy/",
];

/// Each of `kinds` ("Kind/") starts one of `objects`.
pub(crate) fn assert_has(objects: &[String], kinds: &[&str]) {
    for kind in kinds {
        assert!(
            objects.iter().any(|o| o.starts_with(kind)),
            "no {kind} in {objects:?}"
        );
    }
}

#[test]
fn values_schema_rejects_wrong_values_at_install() {
    let chart = chart();
    for (set, expect) in [
        ("platform=lambda", "platform"),
        ("config.rulez=x", "rulez"),
        ("config.logFormat=xml", "logFormat"),
        ("config.minPriority=Loud", "minPriority"),
        ("config.apiTimeoutSeconds=0", "apiTimeoutSeconds"),
        (
            "config.protectedNamespaces=Kube_System",
            "protectedNamespaces",
        ),
        ("image.digest=latest", "digest"),
        ("config.gracePeriodSeconds=0", "allowForceDelete"),
        ("config.maxBodyBytes=100", "maxBodyBytes"),
        // Containment fails closed: an unknown action, a deadline beyond 30 days, a bound
        // beyond the binary's, a rule given both actions or one the function never acts on.
        ("config.action=kill", "action"),
        ("config.containSeconds=2592001", "containSeconds"),
        ("config.containSeconds=-1", "containSeconds"),
        ("config.containSeconds=soon", "containSeconds"),
        ("config.evidence.logBytes=262145", "logBytes"),
        ("config.evidence.maxConfigMaps=1001", "maxConfigMaps"),
        (
            "config.containRules=Terminal shell in container,config.deleteRules=Terminal shell in container",
            "both name",
        ),
        ("config.containRules=Other rule", "not in config.rules"),
        (
            "config.action=contain,config.deleteRules=Other rule",
            "not in config.rules",
        ),
        // A Broker cannot send the token: refused with the reason, not installed to 401.
        (
            "platform=knative,knative.eventing.enabled=true,auth.enabled=true",
            "a Broker cannot send the token",
        ),
    ] {
        // The Secret named: only the value under test can be refused.
        let named = format!("{set},auth.existingSecret=s");
        let err = run(
            "helm",
            None,
            &["template", "x", chart.to_str().unwrap(), "--set", &named],
        )
        .expect_err(set);
        assert!(err.contains(expect), "{set}: {err}");
    }
}

/// Variables whose chart value sits one level down in `config` (a group of settings).
const NESTED: &[(&str, &str, &str)] = &[
    ("EVIDENCE_LOG_BYTES", "evidence", "logBytes"),
    ("EVIDENCE_MAX_CONFIGMAPS", "evidence", "maxConfigMaps"),
];

/// Every variable of the README's configuration table is a chart value with the same default;
/// every variable the chart renders is one the binary reads.
#[test]
fn every_readme_env_var_is_a_value_with_the_same_default() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let config = values["config"].as_object().unwrap();
    // Set by the chart from other values, not from `config`.
    let by_chart = [
        "AUTH_TOKEN",
        "AUTH_TOKEN_FILE",
        "POD_NAMESPACE",
        "POD_NAME",
        "KUBE_TOKEN_FILE",
    ];
    let table = readme
        .split("## Configuration")
        .nth(1)
        .expect("README has a Configuration section");
    let mut seen = 0;
    for line in table.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let default = cells[2].trim_matches('`');
        for var in cells[1].split(',').map(|v| v.trim().trim_matches('`')) {
            seen += 1;
            if by_chart.contains(&var) {
                continue;
            }
            let (key, value) = match NESTED.iter().find(|(v, _, _)| *v == var) {
                Some((_, group, leaf)) => (
                    format!("{group}.{leaf}"),
                    config.get(*group).and_then(|g| g.get(*leaf)),
                ),
                None => (camel(var), config.get(&camel(var))),
            };
            let value =
                value.unwrap_or_else(|| panic!("README's {var} has no chart value config.{key}"));
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let expected = if default == "unset" { "" } else { default };
            assert_eq!(value, expected, "default of config.{key} ({var})");
        }
    }
    assert!(seen >= 15, "README configuration table not found ({seen})");
    for (k, v) in config {
        let vars: Vec<String> = match v.as_object() {
            Some(group) => group
                .keys()
                .map(|leaf| {
                    let (var, _, _) = NESTED
                        .iter()
                        .find(|(_, g, l)| g == k && l == leaf)
                        .unwrap_or_else(|| panic!("config.{k}.{leaf} names no variable"));
                    var.to_string()
                })
                .collect(),
            None => vec![snake(k)],
        };
        for var in vars {
            assert!(
                table.contains(&format!("`{var}`")),
                "config.{k} ({var}) is not in the README table"
            );
        }
    }
    // What the chart sets is what the binary reads, on every platform and with every option.
    for platform in PLATFORMS {
        for d in template(&[
            "--set",
            &format!(
                "platform={platform},auth.enabled=true,argo.enabled=true,config.gracePeriodSeconds=5,config.minPriority=Notice,config.namespaces=a,config.action=contain,config.containSeconds=60,config.deleteRules=Terminal shell in container,{NAMED_SECRETS}"
            ),
        ]) {
            let env: Vec<String> = match d["kind"].as_str().unwrap() {
                "Function" => d["spec"]["environment"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect(),
                _ => containers(&d)
                    .iter()
                    .flat_map(|c| env_of(c).into_keys())
                    .collect(),
            };
            for name in env {
                assert!(
                    ENV_VARS.contains(&name.as_str()),
                    "{platform}: {} sets {name}, which the binary does not read",
                    d["kind"]
                );
            }
        }
    }
}

pub(crate) fn camel(var: &str) -> String {
    let mut out = String::new();
    for (i, part) in var.split('_').enumerate() {
        let lower = part.to_ascii_lowercase();
        if i == 0 {
            out.push_str(&lower);
        } else {
            out.push_str(&lower[..1].to_ascii_uppercase());
            out.push_str(&lower[1..]);
        }
    }
    out
}

pub(crate) fn snake(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The containers of a rendered workload (Deployment, Knative Service, WorkflowTemplate).
pub(crate) fn containers(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for ptr in ["/spec/template/spec/containers", "/spec/templates"] {
        if let Some(items) = d.pointer(ptr).and_then(Value::as_array) {
            for i in items {
                if i.get("container").is_some() {
                    out.push(&i["container"]);
                } else {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// The chart's README keeps in step with values.yaml: every value (or an object above it) is
/// in its table.
#[test]
fn chart_readme_lists_every_value() {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, v) in m {
                    walk(&format!("{prefix}{k}."), v, out);
                }
            }
            _ => out.push(prefix.trim_end_matches('.').to_string()),
        }
    }
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    let mut leaves = vec![];
    walk("", &values, &mut leaves);
    assert!(leaves.len() > 60, "{leaves:?}");
    for leaf in leaves {
        let parts: Vec<&str> = leaf.split('.').collect();
        let listed = (1..=parts.len()).any(|n| {
            let p = parts[..n].join(".");
            readme.contains(&format!("`{p}`"))
        }) || readme.contains(&format!("`.{}`", parts[parts.len() - 1])); // `a.b.name`, `.port`
        assert!(
            listed,
            "charts/falco-responder/README.md does not list {leaf}"
        );
    }
}

#[test]
fn chart_version_follows_cargo_toml() {
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn rendered_manifest_dirs_match_the_chart() {
    let out = Command::new(root().join("scripts/render-manifests.sh"))
        .arg("--check")
        .output()
        .expect("running scripts/render-manifests.sh");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `helm install` / `helm upgrade` of the chart in docs/deploy-helm.md renders with the
/// values it sets (schema included). bash splits the commands into words, as when a user runs
/// them; `helm` is a shell function there that prints its words instead of running.
#[test]
fn the_helm_guides_commands_render() {
    // Only the helm commands run (as the recorder); everything else is left out, whole lines.
    let helm_lines: Vec<String> = doc_shell_lines(&read("docs/deploy-helm.md"))
        .into_iter()
        .filter(|l| l.trim_start().starts_with("helm "))
        .collect();
    let script = format!(
        "helm() {{ printf '%s\\0' \"$@\"; printf '\\n\\0'; }}\n{}",
        helm_lines.join("\n")
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rendered = 0;
    for cmd in text.split("\n\0").filter(|c| !c.is_empty()) {
        let words: Vec<&str> = cmd.split('\0').filter(|w| !w.is_empty()).collect();
        if !words.contains(&"charts/falco-responder") || !["install", "upgrade"].contains(&words[0])
        {
            continue;
        }
        // The same release and values, rendered: `template` takes install's flags. Offline,
        // the Secrets the chart would generate on install are named instead.
        let args: Vec<String> = std::iter::once("template".to_string())
            .chain(
                words[1..]
                    .iter()
                    .filter(|w| **w != "--reuse-values")
                    .map(|w| w.replace("charts/falco-responder", chart().to_str().unwrap())),
            )
            .chain(["--set".to_string(), NAMED_SECRETS.to_string()])
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(run("helm", None, &args));
        rendered += 1;
    }
    assert!(
        rendered >= 5,
        "only {rendered} helm commands of the chart in the guide"
    );
}

/// Helm's standard labels (helm.sh docs, "Labels and Annotations": name, instance, version,
/// managed-by, helm.sh/chart) on every object the chart renders, in every setup.
#[test]
fn every_object_carries_the_standard_labels() {
    const STANDARD: &[&str] = &[
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "helm.sh/chart",
    ];
    let mut seen = 0;
    for set in [
        "platform=kubernetes,serviceMonitor.enabled=true,autoscaling.enabled=true",
        "platform=knative,auth.enabled=false,knative.eventing.enabled=true,knative.eventing.eventDisplay=true",
        "platform=openfaas,argo.enabled=true,argo.eventBus.create=true",
        "argo.enabled=true,argo.trigger=workflow",
    ] {
        for d in template(&["--set", &format!("{set},{NAMED_SECRETS}")]) {
            seen += 1;
            for label in STANDARD {
                assert!(
                    d["metadata"]["labels"][label].is_string(),
                    "{set}: {} {} lacks {label}",
                    d["kind"],
                    d["metadata"]["name"]
                );
            }
        }
    }
    assert!(seen >= 30, "{seen}");
}
