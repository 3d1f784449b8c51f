//! The chart installed with the real helm into the test kube-apiserver (the CRDs of Knative,
//! OpenFaaS and Argo created first from the vendored upstream schemas): install, upgrade and
//! uninstall on every platform, least privilege asked of the real authorizer, and the real
//! binary running with the token of the ServiceAccount the chart creates: it deletes a pod,
//! records the Event, and is forbidden wherever the chart grants nothing.

use std::{collections::BTreeMap, process::Command};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret},
};
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams},
    core::GroupVersionKind,
    discovery::{Scope, pinned_kind},
};
use serde_json::{Value, json};

use crate::{
    chart::{KUBERNETES_KINDS, PLATFORMS, assert_has, ci_values, find},
    files::{parse_yaml, root},
    testkit::{
        apiserver::{self, ApiServer},
        binary::Responder,
        sender::{Envelope, http, terminal_shell, wrap},
    },
    tools::{chart, ok, run, template, tool, tool_home},
};

pub(crate) const CID: &str = "6ac7d190134e0123456789abcdef0123456789abcdef0123456789abcdef0123";

pub(crate) fn helm_on(server: &ApiServer, args: &[&str]) -> Result<String, String> {
    run("helm", Some(&server.admin_kubeconfig()), args)
}

/// Every object of the chart's kinds labelled with this release, in any namespace.
pub(crate) async fn release_objects(admin: &Client, release: &str) -> Vec<String> {
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
pub(crate) async fn crds(admin: &Client) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let s = root().join("tests/schemas");
        let mut crds = vec![
            apiserver::crd_from_schema(
                "serving.knative.dev",
                "v1",
                "Service",
                "services",
                &s.join("knative/datree/serving.knative.dev/service_v1.json"),
            ),
            apiserver::crd_from_schema(
                "eventing.knative.dev",
                "v1",
                "Broker",
                "brokers",
                &s.join("knative/datree/eventing.knative.dev/broker_v1.json"),
            ),
            apiserver::crd_from_schema(
                "eventing.knative.dev",
                "v1",
                "Trigger",
                "triggers",
                &s.join("knative/datree/eventing.knative.dev/trigger_v1.json"),
            ),
            apiserver::crd_from_schema(
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
            crds.extend(parse_yaml(&std::fs::read_to_string(s.join(file)).unwrap()));
        }
        apiserver::ensure_crds(admin, &crds).await;
    })
    .await;
}

/// The real binary (the shared starter), configured exactly as the installed Deployment
/// configures its container (env from the API server, the downward API filled in), with
/// `token`'s identity: the API server's address in a kubeconfig, the credentials the token file
/// alone. The starter gives the binary a free loopback port of its own, so the Deployment's
/// `PORT` is left out (the starter's environment would lose to it), and the token lives in a
/// directory of ours beside it.
struct Deployed {
    responder: Responder,
    _token_dir: tempfile::TempDir,
    /// The chart's generated caller token (AUTH_TOKEN_FILE, on by default), read back from its
    /// Secret as the mounted volume would give it.
    bearer: Option<String>,
}

impl Deployed {
    async fn start(
        server: &ApiServer,
        admin: &Client,
        deployment: &Deployment,
        token: &str,
    ) -> Deployed {
        let token_dir = tempfile::tempdir().unwrap();
        let token_file = token_dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let ns = deployment.metadata.namespace.clone().unwrap();
        let spec = deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        let mut bearer = None;
        let mut env = vec![(
            "KUBE_TOKEN_FILE".to_string(),
            token_file.to_str().unwrap().to_string(),
        )];
        for e in spec.containers[0].env.iter().flatten() {
            let value = match (
                &e.value,
                e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()),
            ) {
                (Some(v), _) => v.clone(),
                (None, Some(f)) if f.field_path == "metadata.namespace" => ns.clone(),
                (None, Some(f)) if f.field_path == "metadata.name" => "falco-responder-0".into(),
                other => panic!("env {} of an unexpected form: {other:?}", e.name),
            };
            if e.name == "AUTH_TOKEN_FILE" {
                // The Secret volume the file comes from, its key the file's name.
                let key = value.rsplit('/').next().unwrap().to_string();
                let secret = spec
                    .volumes
                    .iter()
                    .flatten()
                    .find_map(|v| v.secret.as_ref()?.secret_name.clone())
                    .expect("AUTH_TOKEN_FILE without a Secret volume");
                let s = Api::<Secret>::namespaced(admin.clone(), &ns)
                    .get(&secret)
                    .await
                    .unwrap();
                let bytes = s.data.unwrap()[&key].0.clone();
                bearer = Some(String::from_utf8(bytes.clone()).unwrap());
                let file = token_dir.path().join(&key);
                std::fs::write(&file, bytes).unwrap();
                env.push((e.name.clone(), file.to_str().unwrap().to_string()));
            } else if e.name != "PORT" {
                env.push((e.name.clone(), value));
            }
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let kubeconfig = server.kubeconfig_for_token("unused");
        let mut env: Vec<(&str, &str)> = env;
        env.insert(0, ("KUBECONFIG", kubeconfig.to_str().unwrap()));
        let responder = Responder::start(&env).await;
        Deployed {
            responder,
            _token_dir: token_dir,
            bearer,
        }
    }

    fn logs(&self) -> String {
        self.responder.logs()
    }

    async fn shell_in(&self, ns: &str, pod: &str) -> (u16, Value) {
        let (mut headers, body) = wrap(Envelope::Plain, &terminal_shell(ns, pod, CID));
        if let Some(t) = &self.bearer {
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        let r = http(self.responder.addr, "POST", "/", &headers, &body).await;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }
}

pub(crate) async fn pod_state(admin: &Client, ns: &str, name: &str) -> &'static str {
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

#[tokio::test]
async fn kubernetes_platform_deletes_a_pod_with_only_the_charts_rbac() {
    let server = ApiServer::shared();
    let admin = server.admin_client().await;
    let release = apiserver::namespace(&admin, "falco-responder").await;
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
    let token = apiserver::service_account_token(&admin, &release, &release).await;
    let responder = Deployed::start(server, &admin, &deployment, &token).await;
    // Authentication is on by default: the chart generated the token, and a caller without
    // it is refused.
    assert!(responder.bearer.is_some(), "no AUTH_TOKEN_FILE by default");
    let (headers, body) = wrap(Envelope::Plain, &terminal_shell("x", "y", CID));
    let r = http(responder.responder.addr, "POST", "/", &headers, &body).await;
    assert_eq!(r.status, 401, "a caller without the token");
    let victims = apiserver::namespace(&admin, "victims").await;
    apiserver::create_pod(&admin, &victims, "alpine", CID, &[]).await;
    let (status, result) = responder.shell_in(&victims, "alpine").await;
    assert_eq!(
        (status, result["outcome"].as_str()),
        (200, Some("deleted")),
        "{result}\n{}",
        responder.logs()
    );
    assert_eq!(pod_state(&admin, &victims, "alpine").await, "terminating");
    let events = apiserver::wait_events(&admin, &victims, "alpine", 1).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.reason.as_deref())
            .collect::<Vec<_>>(),
        [Some("FalcoPodDeleted")]
    );
    // Its own namespace is never acted on (POD_NAMESPACE from the downward API).
    apiserver::create_pod(&admin, &release, "neighbour", CID, &[]).await;
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
    // only; a pod elsewhere is now forbidden (500 naming what to grant; the log line names the
    // ServiceAccount), not deleted.
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
    let elsewhere = apiserver::namespace(&admin, "elsewhere").await;
    apiserver::create_pod(&admin, &elsewhere, "alpine", CID, &[]).await;
    // The running responder still has NAMESPACES unset; only RBAC stands in the way.
    let (status, result) = responder.shell_in(&elsewhere, "alpine").await;
    assert_eq!(status, 500, "{result}");
    let err = result["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("forbidden") && err.contains("grant get on pods"),
        "{err}"
    );
    let account = format!("system:serviceaccount:{release}:{release}");
    assert!(
        responder
            .responder
            .logs_with(&account)
            .await
            .contains(&account),
        "{}",
        responder.logs()
    );
    assert_eq!(pod_state(&admin, &elsewhere, "alpine").await, "running");
    apiserver::create_pod(&admin, &victims, "busybox", CID, &[]).await;
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
    let release = apiserver::namespace(&admin, "falco-responder-auth").await;
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
pub(crate) async fn assert_least_privilege(
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
            // Containment's rights come only with containment (config.action=contain).
            ("patch", "pods", false),
            ("create", "networkpolicies.networking.k8s.io", false),
            ("create", "configmaps", false),
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
        let release = apiserver::namespace(&admin, "falco-responder").await;
        // The Argo objects go to a namespace of their own, not the shared argo-events, ...
        let argo_ns = apiserver::namespace(&admin, "argo").await;
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

/// `config.action=contain` installed, asked of the real authorizer: the function's
/// ServiceAccount may patch pods, create and get NetworkPolicies and get pods' logs anywhere,
/// and create, list and delete ConfigMaps in its own namespace only; upgraded back to
/// `delete`, all of it is gone again.
#[tokio::test]
async fn containment_rights_come_and_go_with_the_action() {
    let server = ApiServer::shared();
    let admin = server.admin_client().await;
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let release = apiserver::namespace(&admin, "falco-responder").await;
    let elsewhere = apiserver::namespace(&admin, "victims").await;
    let base = format!("rbac.name={release},auth.existingSecret=s");
    let mut args = vec!["install", &release, chart, "-n", &release, "--set", &base];
    args.extend(["--set", "config.action=contain,config.containSeconds=600"]);
    ok(helm_on(server, &args));
    let who = format!("system:serviceaccount:{release}:{release}");
    let kc = server.admin_kubeconfig();
    let can = |verb: &str, resource: &str, ns: &str, sub: Option<&str>| {
        let mut a = vec!["auth", "can-i", verb, resource, "-n", ns, "--as", &who];
        if let Some(sub) = sub {
            a.extend(["--subresource", sub]);
        }
        run("kubectl", Some(&kc), &a).is_ok()
    };
    let expect = |on: bool| {
        for (verb, resource, ns, sub, allowed) in [
            ("patch", "pods", elsewhere.as_str(), None, on),
            (
                "create",
                "networkpolicies.networking.k8s.io",
                &elsewhere,
                None,
                on,
            ),
            (
                "get",
                "networkpolicies.networking.k8s.io",
                &elsewhere,
                None,
                on,
            ),
            ("get", "pods", &elsewhere, Some("log"), on),
            ("create", "configmaps", &release, None, on),
            ("list", "configmaps", &release, None, on),
            ("delete", "configmaps", &release, None, on),
            // Never beyond: no ConfigMaps elsewhere, no policy edits, no pod updates.
            ("create", "configmaps", &elsewhere, None, false),
            ("delete", "configmaps", &elsewhere, None, false),
            ("get", "configmaps", &release, None, false),
            (
                "delete",
                "networkpolicies.networking.k8s.io",
                &elsewhere,
                None,
                false,
            ),
            (
                "update",
                "networkpolicies.networking.k8s.io",
                &elsewhere,
                None,
                false,
            ),
            ("update", "pods", &elsewhere, None, false),
            ("create", "pods", &elsewhere, Some("exec"), false),
        ] {
            assert_eq!(
                can(verb, resource, ns, sub),
                allowed,
                "contain {on}: {verb} {resource} {sub:?} in {ns}"
            );
        }
    };
    expect(true);
    args[0] = "upgrade";
    args.extend(["--set", "config.action=delete"]);
    ok(helm_on(server, &args));
    expect(false);
    ok(helm_on(
        server,
        &["uninstall", &release, "-n", &release, "--wait"],
    ));
}
