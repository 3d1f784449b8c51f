//! The Helm chart (`charts/falco-responder`) with the real tools against the real API server:
//! `helm lint --strict` and `helm template` for every platform, `helm install` / `upgrade` /
//! `uninstall` into the test kube-apiserver (CRDs of Knative, OpenFaaS and Argo created first from
//! the vendored upstream schemas), and the real binary running with the token of the
//! ServiceAccount the chart creates: it deletes a pod, records the Event, and is forbidden
//! wherever the chart grants nothing.
//!
//! Helm and kubectl: `HELM` / `KUBECTL`, else the copies scripts/helm-env.sh installs.

mod common;
mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use common::{Envelope, http, terminal_shell, wrap};
use falco_responder::config::ENV_VARS;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret},
    events::v1::Event as KubeEvent,
};
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams},
    core::GroupVersionKind,
    discovery::{Scope, pinned_kind},
};
use serde_json::{Value, json};
use support::ApiServer;

const CID: &str = "6ac7d190134e0123456789abcdef0123456789abcdef0123456789abcdef0123";
const PLATFORMS: &[&str] = &["kubernetes", "knative", "openfaas"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("charts/falco-responder")
}

// ---- the tools -------------------------------------------------------------------------------

fn tool(var: &str, name: &str) -> PathBuf {
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
fn tool_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Runs helm (`"helm"`) or kubectl (`"kubectl"`) with `args`; `kubeconfig` `None` = offline.
/// Ok(stdout) on exit 0, Err(stdout + stderr) otherwise.
fn run(which: &str, kubeconfig: Option<&Path>, args: &[&str]) -> Result<String, String> {
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

fn ok(r: Result<String, String>) -> String {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// `helm template` of the chart with `args` (e.g. `--set`, `-f`), parsed into documents.
fn template(args: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut all = vec!["template", "falco-responder", chart.to_str().unwrap()];
    all.extend_from_slice(args);
    docs(&ok(run("helm", None, &all)))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .into_iter()
        .filter(Value::is_object)
        .collect()
}

fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"]))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(docs)))
}

/// The env entries of the function's container in a rendered object, by name.
fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

// ---- offline: lint, template, schema, defaults -------------------------------------------------

/// The values files under the chart's ci/: the documented setups the plain YAML directories
/// are rendered from (scripts/render-manifests.sh), each installed by the tests below.
fn ci_values() -> Vec<PathBuf> {
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
fn assert_namespaces(what: &str, rendered: &[Value]) {
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
                "platform={platform},auth.enabled=true,argo.enabled=true,argo.trigger={trigger}"
            );
            ok(run(
                "helm",
                None,
                &["lint", "--strict", chart, "--set", &set],
            ));
            assert_namespaces(&set, &template(&["--set", &set]));
        }
    }
    let kinds_default = kinds(&template(&[]));
    for absent in ["ServiceMonitor/", "HorizontalPodAutoscaler/", "Secret/"] {
        assert!(
            !kinds_default.iter().any(|k| k.starts_with(absent)),
            "{absent} rendered by default: {kinds_default:?}"
        );
    }
    let all = kinds(&template(&[
        "--set",
        "serviceMonitor.enabled=true,autoscaling.enabled=true,auth.enabled=true",
    ]));
    assert_has(
        &all,
        &["ServiceMonitor/", "HorizontalPodAutoscaler/", "Secret/"],
    );
    assert_has(&all, KUBERNETES_KINDS);
}

/// What the kubernetes platform installs by default.
const KUBERNETES_KINDS: &[&str] = &[
    "Deployment/",
    "Service/",
    "ServiceAccount/",
    "ClusterRole/",
    "ClusterRoleBinding/",
    "PodDisruptionBudget/",
    "NetworkPolicy/",
];

/// Each of `kinds` ("Kind/") starts one of `objects`.
fn assert_has(objects: &[String], kinds: &[&str]) {
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
        // A Broker cannot send the token: refused with the reason, not installed to 401.
        (
            "platform=knative,knative.eventing.enabled=true,auth.enabled=true",
            "a Broker cannot send the token",
        ),
    ] {
        let err = run(
            "helm",
            None,
            &["template", "x", chart.to_str().unwrap(), "--set", set],
        )
        .expect_err(set);
        assert!(err.contains(expect), "{set}: {err}");
    }
}

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
            let key = camel(var);
            let value = config
                .get(&key)
                .unwrap_or_else(|| panic!("README's {var} has no chart value config.{key}"));
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let expected = if default == "unset" { "" } else { default };
            assert_eq!(value, expected, "default of config.{key} ({var})");
        }
    }
    assert!(seen >= 15, "README configuration table not found ({seen})");
    for (k, _) in config {
        assert!(
            table.contains(&format!("`{}`", snake(k))),
            "config.{k} is not in the README table"
        );
    }
    // What the chart sets is what the binary reads, on every platform and with every option.
    for platform in PLATFORMS {
        for d in template(&[
            "--set",
            &format!(
                "platform={platform},auth.enabled=true,argo.enabled=true,config.gracePeriodSeconds=5,config.minPriority=Notice,config.namespaces=a"
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

fn camel(var: &str) -> String {
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

fn snake(key: &str) -> String {
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
fn containers(d: &Value) -> Vec<&Value> {
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

// ---- against the real API server ---------------------------------------------------------------

/// A release name that is also its namespace (both unique per test).
async fn release_namespace(admin: &Client, prefix: &str) -> String {
    support::namespace(admin, prefix).await
}

fn helm_on(server: &ApiServer, args: &[&str]) -> Result<String, String> {
    run("helm", Some(&server.admin_kubeconfig()), args)
}

/// Every object of the chart's kinds labelled with this release, in any namespace.
async fn release_objects(admin: &Client, release: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (group, version, kind) in [
        ("apps", "v1", "Deployment"),
        ("", "v1", "Service"),
        ("", "v1", "ServiceAccount"),
        ("", "v1", "Secret"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        ("rbac.authorization.k8s.io", "v1", "Role"),
        ("policy", "v1beta1", "PodDisruptionBudget"),
        ("networking.k8s.io", "v1", "NetworkPolicy"),
        ("autoscaling", "v2beta2", "HorizontalPodAutoscaler"),
        ("serving.knative.dev", "v1", "Service"),
        ("eventing.knative.dev", "v1", "Broker"),
        ("eventing.knative.dev", "v1", "Trigger"),
        ("openfaas.com", "v1", "Function"),
        ("argoproj.io", "v1alpha1", "EventSource"),
        ("argoproj.io", "v1alpha1", "Sensor"),
        ("argoproj.io", "v1alpha1", "WorkflowTemplate"),
    ] {
        let Ok((ar, caps)) = pinned_kind(admin, &GroupVersionKind::gvk(group, version, kind)).await
        else {
            continue; // a CRD this test binary did not create
        };
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(admin.clone(), &ar),
            Scope::Namespaced => Api::all_with(admin.clone(), &ar),
        };
        let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
        for o in api.list(&lp).await.unwrap() {
            found.push(format!(
                "{kind}/{}/{}",
                o.metadata.namespace.unwrap_or_default(),
                o.metadata.name.unwrap_or_default()
            ));
        }
    }
    found
}

/// The Knative, OpenFaaS and Argo CRDs, once per test binary (from tests/schemas).
async fn crds(admin: &Client) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let s = root().join("tests/schemas");
        let mut crds = vec![
            support::crd_from_schema(
                "serving.knative.dev",
                "v1",
                "Service",
                "services",
                &s.join("knative/datree/serving.knative.dev/service_v1.json"),
            ),
            support::crd_from_schema(
                "eventing.knative.dev",
                "v1",
                "Broker",
                "brokers",
                &s.join("knative/datree/eventing.knative.dev/broker_v1.json"),
            ),
            support::crd_from_schema(
                "eventing.knative.dev",
                "v1",
                "Trigger",
                "triggers",
                &s.join("knative/datree/eventing.knative.dev/trigger_v1.json"),
            ),
            support::crd_from_schema(
                "argoproj.io",
                "v1alpha1",
                "WorkflowTemplate",
                "workflowtemplates",
                &s.join("argo/datree/argoproj.io/workflowtemplate_v1alpha1.json"),
            ),
        ];
        for file in [
            "openfaas/openfaas.com_functions.yaml",
            "argo/argo-events/argoproj.io_sensors.yaml",
            "argo/argo-events/argoproj.io_eventsources.yaml",
            "argo/argo-events/argoproj.io_eventbus.yaml",
        ] {
            crds.extend(docs(&std::fs::read_to_string(s.join(file)).unwrap()));
        }
        support::ensure_crds(admin, &crds).await;
    })
    .await;
}

/// The real binary, configured exactly as the installed Deployment configures its container
/// (env from the API server, the downward API filled in), with `token`'s identity.
struct Responder {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Responder {
    async fn start(server: &ApiServer, deployment: &Deployment, token: &str) -> Responder {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ns = deployment.metadata.namespace.clone().unwrap();
        let spec = deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        let c = &spec.containers[0];
        let log = dir.path().join("responder.log");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_falco-responder"));
        cmd.env_clear()
            .env("HOME", dir.path())
            // Where the API server is; the credentials are the ServiceAccount's token alone.
            .env("KUBECONFIG", server.kubeconfig_for_token("unused"))
            .env("KUBE_TOKEN_FILE", &token_file);
        for e in c.env.iter().flatten() {
            let value = match (
                &e.value,
                e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()),
            ) {
                (Some(v), _) => v.clone(),
                (None, Some(f)) if f.field_path == "metadata.namespace" => ns.clone(),
                (None, Some(f)) if f.field_path == "metadata.name" => "falco-responder-0".into(),
                other => panic!("env {} of an unexpected form: {other:?}", e.name),
            };
            cmd.env(&e.name, value);
        }
        // The container port as the Deployment says, moved to a free loopback port.
        cmd.env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let r = Responder {
            child: cmd.spawn().expect("spawn falco-responder"),
            addr: ([127, 0, 0, 1], port).into(),
            log,
            _dir: dir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(r.addr).await.is_ok()
                && http(r.addr, "GET", "/readyz", &Default::default(), b"")
                    .await
                    .status
                    == 200
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("falco-responder did not become ready:\n{}", r.logs());
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn shell_in(&self, ns: &str, pod: &str) -> (u16, Value) {
        let (headers, body) = wrap(Envelope::Plain, &terminal_shell(ns, pod, CID));
        let r = http(self.addr, "POST", "/", &headers, &body).await;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }
}

async fn pod_state(admin: &Client, ns: &str, name: &str) -> &'static str {
    match Api::<Pod>::namespaced(admin.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
    {
        None => "gone",
        Some(p) if p.metadata.deletion_timestamp.is_some() => "terminating",
        Some(_) => "running",
    }
}

async fn events_on(admin: &Client, ns: &str, pod: &str) -> Vec<KubeEvent> {
    for _ in 0..100 {
        let events: Vec<KubeEvent> = Api::<KubeEvent>::namespaced(admin.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
            .collect();
        if !events.is_empty() {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

#[tokio::test]
async fn kubernetes_platform_deletes_a_pod_with_only_the_charts_rbac() {
    let server = ApiServer::shared();
    let admin = server.admin_client().await;
    let release = release_namespace(&admin, "falco-responder").await;
    let chart = chart();
    let notes = ok(helm_on(
        server,
        &["install", &release, chart.to_str().unwrap(), "-n", &release],
    ));
    assert!(
        notes.contains(&format!(
            "address: \"http://{release}.{release}.svc.cluster.local:80\""
        )),
        "NOTES give Falcosidekick's webhook address:\n{notes}"
    );
    assert_has(&release_objects(&admin, &release).await, KUBERNETES_KINDS);

    // The chart's ServiceAccount, its token, the chart's Deployment env: a pod is deleted and
    // its Event recorded.
    let deployment = Api::<Deployment>::namespaced(admin.clone(), &release)
        .get(&release)
        .await
        .unwrap();
    let token = support::service_account_token(&admin, &release, &release).await;
    let responder = Responder::start(server, &deployment, &token).await;
    let victims = support::namespace(&admin, "victims").await;
    support::create_pod(&admin, &victims, "alpine", CID, &[]).await;
    let (status, result) = responder.shell_in(&victims, "alpine").await;
    assert_eq!(
        (status, result["outcome"].as_str()),
        (200, Some("deleted")),
        "{result}\n{}",
        responder.logs()
    );
    assert_eq!(pod_state(&admin, &victims, "alpine").await, "terminating");
    let events = events_on(&admin, &victims, "alpine").await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.reason.as_deref())
            .collect::<Vec<_>>(),
        [Some("FalcoPodDeleted")]
    );
    // Its own namespace is never acted on (POD_NAMESPACE from the downward API).
    support::create_pod(&admin, &release, "neighbour", CID, &[]).await;
    let (status, result) = responder.shell_in(&release, "neighbour").await;
    assert_eq!((status, result["outcome"].as_str()), (200, Some("skipped")));
    assert_eq!(pod_state(&admin, &release, "neighbour").await, "running");

    // Least privilege: nothing but get/delete pods and create Events.
    let as_sa = server.client_for_token(&token).await;
    let forbidden =
        |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    assert!(forbidden(
        Api::<Pod>::namespaced(as_sa.clone(), &victims)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<Secret>::namespaced(as_sa.clone(), &release)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        Api::<Deployment>::namespaced(as_sa.clone(), &release)
            .delete(&release, &Default::default())
            .await
            .map(|_| ())
    ));

    // Upgrade to namespace-scoped RBAC: the ClusterRoleBinding goes, a RoleBinding in `victims`
    // only; a pod elsewhere is now forbidden (500 naming the ServiceAccount), not deleted.
    ok(helm_on(
        server,
        &[
            "upgrade",
            &release,
            chart.to_str().unwrap(),
            "-n",
            &release,
            "--reuse-values",
            "--set",
            &format!("rbac.namespaces={{{victims}}},config.namespaces={victims}"),
        ],
    ));
    let upgraded = release_objects(&admin, &release).await;
    assert!(
        !upgraded
            .iter()
            .any(|o| o.starts_with("ClusterRoleBinding/"))
            && upgraded.contains(&format!("RoleBinding/{victims}/{release}")),
        "{upgraded:?}"
    );
    let elsewhere = support::namespace(&admin, "elsewhere").await;
    support::create_pod(&admin, &elsewhere, "alpine", CID, &[]).await;
    // The running responder still has NAMESPACES unset; only RBAC stands in the way.
    let (status, result) = responder.shell_in(&elsewhere, "alpine").await;
    assert_eq!(status, 500, "{result}");
    let err = result["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!("system:serviceaccount:{release}:{release}"))
            && err.contains("forbidden"),
        "{err}"
    );
    assert_eq!(pod_state(&admin, &elsewhere, "alpine").await, "running");
    support::create_pod(&admin, &victims, "busybox", CID, &[]).await;
    let (status, result) = responder.shell_in(&victims, "busybox").await;
    assert_eq!(
        (status, result["outcome"].as_str()),
        (200, Some("deleted")),
        "{result}"
    );
    // The upgraded Deployment carries the new NAMESPACES.
    let env = Api::<Deployment>::namespaced(admin.clone(), &release)
        .get(&release)
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "NAMESPACES" && e.value.as_deref() == Some(victims.as_str()))
    );

    ok(helm_on(
        server,
        &["uninstall", &release, "-n", &release, "--wait"],
    ));
    let left = release_objects(&admin, &release).await;
    assert!(left.is_empty(), "left behind by helm uninstall: {left:?}");
}

#[tokio::test]
async fn auth_token_is_generated_once_kept_across_upgrades_and_printed_for_falcosidekick() {
    let server = ApiServer::shared();
    let admin = server.admin_client().await;
    let release = release_namespace(&admin, "falco-responder-auth").await;
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let notes = ok(helm_on(
        server,
        &[
            "install",
            &release,
            chart,
            "-n",
            &release,
            "--set",
            "auth.enabled=true",
        ],
    ));
    assert!(
        notes.contains("customHeaders: \"Authorization:Bearer <token>\"")
            && notes.contains(&format!("get secret {release}-auth")),
        "{notes}"
    );
    let secret = || async {
        let s = Api::<Secret>::namespaced(admin.clone(), &release)
            .get(&format!("{release}-auth"))
            .await
            .unwrap();
        String::from_utf8(s.data.unwrap()["auth-token"].0.clone()).unwrap()
    };
    let first = secret().await;
    assert!(first.len() >= 32, "{first}");
    // The token command the notes print gives that token (bash runs it, kubectl is real).
    let command = notes
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("kubectl ") && l.contains("get secret"))
        .unwrap_or_else(|| panic!("no token command in:\n{notes}"));
    let kc = server.admin_kubeconfig();
    let out = Command::new("bash")
        .args([
            "-c",
            &format!("kubectl() {{ \"$KUBECTL_BIN\" \"$@\"; }}; {command}"),
        ])
        .env("KUBECTL_BIN", tool("KUBECTL", "kubectl"))
        .env("KUBECONFIG", &kc)
        .env("HOME", tool_home())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        first,
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for set in ["config.dryRun=true", "config.logFormat=json"] {
        ok(helm_on(
            server,
            &[
                "upgrade",
                &release,
                chart,
                "-n",
                &release,
                "--reuse-values",
                "--set",
                set,
            ],
        ));
        assert_eq!(
            secret().await,
            first,
            "the token changed on upgrade ({set})"
        );
    }
    // The function reads it from the mounted Secret, and the Deployment says so.
    let d = Api::<Deployment>::namespaced(admin.clone(), &release)
        .get(&release)
        .await
        .unwrap();
    let spec = d.spec.unwrap().template.spec.unwrap();
    let c = &spec.containers[0];
    let env: BTreeMap<_, _> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(env["DRY_RUN"], "true");
    let file = &env["AUTH_TOKEN_FILE"];
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert!(
        file.starts_with(&mount.mount_path),
        "{file} not under {mount:?}"
    );
    let vol = &spec.volumes.as_ref().unwrap()[0];
    assert_eq!(
        vol.secret.as_ref().unwrap().secret_name.as_deref(),
        Some(format!("{release}-auth").as_str())
    );

    ok(helm_on(
        server,
        &["uninstall", &release, "-n", &release, "--wait"],
    ));
    assert!(release_objects(&admin, &release).await.is_empty());

    // An existing Secret: the chart creates none and mounts that one.
    let rendered = template(&["--set", "auth.enabled=true,auth.existingSecret=mine"]);
    assert!(!rendered.iter().any(|d| d["kind"] == "Secret"));
    let d = find(&rendered, "Deployment");
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        json!("mine")
    );
}

/// Every ServiceAccount a release's ClusterRoleBindings name may get and delete pods and create
/// Events anywhere, and nothing else we try: `kubectl auth can-i` asks the real authorizer.
async fn assert_least_privilege(
    server: &ApiServer,
    admin: &Client,
    release: &str,
    what: &str,
) -> usize {
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let bindings = Api::<ClusterRoleBinding>::all(admin.clone())
        .list(&lp)
        .await
        .unwrap();
    let kc = server.admin_kubeconfig();
    let mut checked = 0;
    for s in bindings.iter().flat_map(|b| b.subjects.iter().flatten()) {
        let who = format!(
            "system:serviceaccount:{}:{}",
            s.namespace.as_deref().unwrap(),
            s.name
        );
        for (verb, resource, allowed) in [
            ("get", "pods", true),
            ("delete", "pods", true),
            ("create", "events.events.k8s.io", true),
            ("list", "pods", false),
            ("watch", "pods", false),
            ("update", "pods", false),
            ("create", "pods/exec", false),
            ("get", "secrets", false),
            ("patch", "events.events.k8s.io", false),
            ("delete", "deployments.apps", false),
        ] {
            // can-i exits 0 for yes, 1 for no.
            let yes = run(
                "kubectl",
                Some(&kc),
                &[
                    "auth",
                    "can-i",
                    verb,
                    resource,
                    "--all-namespaces",
                    "--as",
                    &who,
                ],
            )
            .is_ok();
            assert_eq!(yes, allowed, "{what}: {who} {verb} {resource}");
        }
        checked += 1;
    }
    checked
}

#[tokio::test]
async fn every_platform_installs_upgrades_and_uninstalls_cleanly() {
    let server = ApiServer::shared();
    let admin = server.admin_client().await;
    crds(&admin).await;
    let chart = chart();
    let chart = chart.to_str().unwrap();
    // Each documented setup, and each platform with the Argo add-on in both trigger modes.
    let mut cases: Vec<Vec<String>> = ci_values()
        .into_iter()
        .map(|f| vec!["-f".to_string(), f.to_string_lossy().into_owned()])
        .collect();
    for platform in PLATFORMS {
        for trigger in ["http", "workflow"] {
            cases.push(vec![
                "--set".into(),
                format!(
                    "platform={platform},auth.enabled=true,argo.enabled=true,argo.trigger={trigger}"
                ),
            ]);
        }
    }
    for case in cases {
        let release = release_namespace(&admin, "falco-responder").await;
        // The Argo objects go to a namespace of their own, not the shared argo-events, ...
        let argo_ns = support::namespace(&admin, "argo").await;
        let mut args: Vec<&str> = vec!["install", &release, chart, "-n", &release];
        args.extend(case.iter().map(String::as_str));
        // ... and cluster-scoped names of their own (kubectl applies the plain YAML meanwhile).
        let argo_set = format!("argo.namespace={argo_ns},rbac.name={release}");
        args.extend(["--set", &argo_set]);
        let notes = ok(helm_on(server, &args));
        assert!(notes.contains("falcosidekick:"), "{case:?}: {notes}");
        let installed = release_objects(&admin, &release).await;
        assert!(!installed.is_empty(), "{case:?}: nothing installed");
        // (argo-knative-service-values.yaml reuses knative/'s account and grants nothing.)
        let grants = !case
            .iter()
            .any(|c| c.ends_with("argo-knative-service-values.yaml"));
        let subjects = assert_least_privilege(server, &admin, &release, &format!("{case:?}")).await;
        assert_eq!(
            subjects > 0,
            grants,
            "{case:?}: {subjects} ClusterRoleBinding subjects"
        );
        if case.iter().any(|c| c.contains("argo.enabled=true")) {
            assert!(
                installed
                    .iter()
                    .any(|o| o.starts_with(&format!("Sensor/{argo_ns}/"))),
                "{case:?}: {installed:?}"
            );
        }
        args[0] = "upgrade";
        args.extend([
            "--set",
            "config.dryRun=true,config.rules=Terminal shell in container\\,Netcat Remote Code Execution in Container",
        ]);
        ok(helm_on(server, &args));
        ok(helm_on(
            server,
            &["uninstall", &release, "-n", &release, "--wait"],
        ));
        let left = release_objects(&admin, &release).await;
        assert!(left.is_empty(), "{case:?}: left behind: {left:?}");
    }
}

// ---- the rendered plain YAML -----------------------------------------------------------------

const RENDERED_DIRS: &[&str] = &["kubernetes", "knative", "openfaas", "argo"];

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

/// The Kubernetes manifests of a directory: YAML files whose documents all have apiVersion and
/// kind (not the Falcosidekick values, the faas-cli stacks, nor the kustomization itself).
fn manifest_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name.ends_with(".yaml") || name.ends_with(".yml")) && name != "kustomization.yaml"
        })
        .filter(|p| {
            let d = docs(&std::fs::read_to_string(p).unwrap());
            !d.is_empty()
                && d.iter()
                    .all(|d| d["apiVersion"].is_string() && d["kind"].is_string())
        })
        .collect();
    files.sort();
    files
}

/// kube-apiserver 1.20 serves PodDisruptionBudget only as policy/v1beta1; the rendered YAML is
/// for current clusters (policy/v1, Kubernetes 1.21+), so it is left out here.
fn served_by_1_20(doc: &Value) -> bool {
    !(doc["kind"] == "PodDisruptionBudget" && doc["apiVersion"] == "policy/v1")
}

/// Documents as one `v1` List, which kubectl applies item by item.
fn as_list(docs: &[&Value]) -> String {
    json!({ "apiVersion": "v1", "kind": "List", "items": docs }).to_string()
}

#[tokio::test]
async fn kubectl_applies_every_rendered_directory_and_document() {
    let server = ApiServer::shared();
    let admin = server.admin_client().await;
    crds(&admin).await;
    let kc = server.admin_kubeconfig();
    // The namespaces the platforms' own installs create.
    for ns in ["argo-events", "openfaas-fn"] {
        let _ = run("kubectl", Some(&kc), &["create", "namespace", ns]);
    }
    for dir in RENDERED_DIRS {
        let path = root().join(dir);
        if !path.join("kustomization.yaml").exists() {
            panic!("{dir}/kustomization.yaml missing: run scripts/render-manifests.sh");
        }
        let path = path.to_str().unwrap();
        // `kubectl apply -k` as a user runs it (through a filtered copy where 1.20 lacks an API).
        let built = docs(&ok(run("kubectl", None, &["kustomize", path])));
        assert!(!built.is_empty(), "{dir}: kustomize built nothing");
        if built.iter().all(served_by_1_20) {
            ok(run("kubectl", Some(&kc), &["apply", "-k", path]));
        } else {
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("built.json");
            let kept: Vec<&Value> = built.iter().filter(|d| served_by_1_20(d)).collect();
            std::fs::write(&file, as_list(&kept)).unwrap();
            ok(run(
                "kubectl",
                Some(&kc),
                &["apply", "-f", file.to_str().unwrap()],
            ));
        }
        // Every document of every manifest, including the alternatives kustomize does not
        // apply, is accepted by the API server; unknown fields fail (strict validation).
        let files = manifest_files(dir);
        assert!(!files.is_empty(), "{dir}: no manifests");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let all = docs(&text);
            let kept: Vec<&Value> = all.iter().filter(|d| served_by_1_20(d)).collect();
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("docs.json");
            std::fs::write(&file, as_list(&kept)).unwrap();
            let out = run(
                "kubectl",
                Some(&kc),
                &[
                    "apply",
                    "--dry-run=server",
                    "--validate=strict",
                    "-f",
                    file.to_str().unwrap(),
                ],
            )
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert_eq!(
                out.lines().count(),
                kept.len(),
                "{}: one line per document expected:\n{out}",
                f.display()
            );
        }
    }
    // (The namespaces exist now, so nothing fails for want of one.) The check can fail: broken copies of the rendered objects are refused. (This replaces
    // the JSON Schema checks tests/manifests.rs made by hand for these kinds.)
    let rendered: Vec<Value> = RENDERED_DIRS
        .iter()
        .flat_map(|d| manifest_files(d))
        .flat_map(|f| docs(&std::fs::read_to_string(f).unwrap()))
        .collect();
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, &str, Option<Value>)> = vec![
        ("misspelt container field", "Deployment", "falco-responder", "/spec/template/spec/containers/0/imagePullPolicyy", Some(json!("Always"))),
        ("containerConcurrency as a string", "serving.knative.dev/v1 Service", "falco-responder", "/spec/template/spec/containerConcurrency", Some(json!("fifty"))),
        ("misspelt probe field", "serving.knative.dev/v1 Service", "falco-responder-argo", "/spec/template/spec/containers/0/readinessProbe/httpGet/pathx", Some(json!("/x"))),
        ("unknown top-level field", "serving.knative.dev/v1 Service", "falco-responder", "/specs", Some(json!({}))),
        ("unknown field", "Namespace", "falco-responder", "/specc", Some(json!({}))),
        ("automount as a string", "ServiceAccount", "falco-responder", "/automountServiceAccountToken", Some(json!("yes"))),
        ("type as a number", "Secret", "falco-responder-sa-token", "/type", Some(json!(5))),
        ("verbs as a string", "ClusterRole", "falco-responder", "/rules/0/verbs", Some(json!("get"))),
        ("misspelt subject field", "ClusterRoleBinding", "falco-responder", "/subjects/0/namespacee", Some(json!("x"))),
        ("unknown rule field", "Role", "falco-responder-sensor", "/rules/0/resourcez", Some(json!([]))),
        ("roleRef without name", "RoleBinding", "falco-responder-sensor", "/roleRef/name", None),
        ("misspelt container field", "WorkflowTemplate", "falco-responder", "/spec/templates/0/container/envv", Some(json!([]))),
        ("env value as a number", "WorkflowTemplate", "falco-responder", "/spec/templates/0/container/env/1/value", Some(json!(1))),
        ("port as a boolean", "NetworkPolicy", "falco-responder", "/spec/ingress/0/ports/0/port", Some(json!(true))),
        ("misspelt peer field", "NetworkPolicy", "falco-responder", "/spec/ingress/0/from/0/podSelektor", Some(json!({}))),
        ("policyTypes as a string", "NetworkPolicy", "falco-eventsource", "/spec/policyTypes", Some(json!("Ingress"))),
        ("misspelt Function field", "Function", "falco-responder", "/spec/imagee", Some(json!("x"))),
        ("Function without image", "Function", "falco-responder", "/spec/image", None),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (what, kind, name, ptr, value) in cases {
        let mut doc = rendered
            .iter()
            .find(|d| {
                // "apiVersion Kind" where the kind alone is ambiguous.
                let (api, k) = kind.rsplit_once(' ').unwrap_or(("", kind));
                d["kind"] == k
                    && (api.is_empty() || d["apiVersion"] == api)
                    && d["metadata"]["name"] == name
            })
            .unwrap_or_else(|| panic!("no {kind} {name} in {RENDERED_DIRS:?}"))
            .clone();
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        let parent = doc
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap();
        match value {
            Some(v) => parent.insert(key.to_string(), v),
            None => parent.remove(key),
        };
        let file = tmp.path().join("broken.json");
        std::fs::write(&file, as_list(&[&doc])).unwrap();
        let args = [
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            file.to_str().unwrap(),
        ];
        assert!(
            run("kubectl", Some(&kc), &args).is_err(),
            "{kind} {name}: {what}: accepted by the API server"
        );
    }
}

/// Every `helm install` / `helm upgrade` of the chart in docs/deploy-helm.md renders with the
/// values it sets (schema included). bash splits the commands into words, as when a user runs
/// them; `helm` is a shell function there that prints its words instead of running.
#[test]
fn the_helm_guides_commands_render() {
    let guide = std::fs::read_to_string(root().join("docs/deploy-helm.md")).unwrap();
    let mut blocks = String::new();
    let mut in_sh = false;
    for line in guide.lines() {
        match (line.trim_start().strip_prefix("```"), in_sh) {
            (Some("sh"), false) => in_sh = true,
            (Some(_), true) => in_sh = false,
            (None, true) => {
                blocks.push_str(line);
                blocks.push('\n');
            }
            _ => {}
        }
    }
    // Only the helm commands run (as the recorder); everything else is left out, whole lines.
    let script = format!(
        "helm() {{ printf '%s\\0' \"$@\"; printf '\\n\\0'; }}\n{}",
        blocks
            .replace("\\\n", " ")
            .lines()
            .filter(|l| l.trim_start().starts_with("helm "))
            .collect::<Vec<_>>()
            .join("\n")
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
        // The same release and values, rendered: `template` takes install's flags.
        let args: Vec<String> = std::iter::once("template".to_string())
            .chain(
                words[1..]
                    .iter()
                    .filter(|w| **w != "--reuse-values")
                    .map(|w| w.replace("charts/falco-responder", chart().to_str().unwrap())),
            )
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
