//! What a deployment is without choosing anything: authenticated, with the platform's and
//! Falco's namespaces protected, and with the platforms' timing contracts kept. Knative, kn,
//! OpenFaaS and Argo cannot run here: those checks are static, against the upstream source
//! cited beside each.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{
    chart::env_of,
    files::{ARGO, KSVC, NETWORKING, objs, read, the, yaml_docs},
    shell::{flag_value, flag_values, kn_create_words},
    tools::{chart, run, template},
};

/// The Secrets' names a GitOps user sets instead of letting the chart generate tokens.
const SECRETS: &str =
    "auth.existingSecret=a,argo.eventSource.authSecret.name=b,argo.sensorAuthSecret.name=c";

fn render(set: &str) -> Vec<Value> {
    template(&["--set", &format!("{set},{SECRETS}")])
}

fn helm_template_err(set: &str) -> String {
    let chart = chart();
    run(
        "helm",
        None,
        &["template", "x", chart.to_str().unwrap(), "--set", set],
    )
    .expect_err(set)
}

/// The function's env of the one workload a render holds (Deployment, Knative Service or
/// OpenFaaS Function), as name -> value.
fn function_env(docs: &[Value]) -> std::collections::BTreeMap<String, String> {
    for d in docs {
        match d["kind"].as_str() {
            Some("Deployment") | Some("Service") if !d["spec"]["template"].is_null() => {
                return env_of(&d["spec"]["template"]["spec"]["containers"][0])
                    .into_iter()
                    .map(|(k, v)| (k, v["value"].as_str().unwrap_or("").to_string()))
                    .collect();
            }
            Some("Function") => {
                return d["spec"]["environment"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
            }
            _ => {}
        }
    }
    panic!("no function in the render")
}

#[test]
fn helm_template_refuses_to_invent_a_token_and_names_the_value_to_set() {
    // `lookup` answers nothing without a cluster (Helm pkg/engine/engine.go: "lookup" returns
    // an empty map when the engine has no client): a token made up here would change on every
    // render (Argo CD renders with `helm template`) and every sender would get 401.
    let err = helm_template_err("platform=kubernetes");
    assert!(err.contains("set auth.existingSecret"), "{err}");
    let err =
        helm_template_err("auth.existingSecret=a,argo.enabled=true,argo.sensorAuthSecret.name=c");
    assert!(
        err.contains("set argo.eventSource.authSecret.name"),
        "{err}"
    );
    // With the Secrets named, it renders, and authentication is on by default.
    for platform in ["kubernetes", "knative", "openfaas"] {
        let env = function_env(&render(&format!("platform={platform}")));
        assert!(env.contains_key("AUTH_TOKEN_FILE"), "{platform}: {env:?}");
    }
}

/// Falco's namespace and Knative's own: the activator, the Broker, the ingress gateway.
const KNATIVE_PROTECTED: &[&str] = &[
    "falco",
    "knative-serving",
    "knative-eventing",
    "kourier-system",
];

#[test]
fn protected_namespaces_include_falco_and_the_platforms_own_by_default() {
    let cases: &[(&str, &[&str])] = &[
        ("platform=kubernetes", &["falco"]),
        ("platform=knative", KNATIVE_PROTECTED),
        ("platform=openfaas", &["falco", "openfaas"]),
        (
            "platform=openfaas,argo.enabled=true",
            &["falco", "openfaas", "argo-events"],
        ),
        (
            "argo.enabled=true,argo.trigger=workflow",
            &["falco", "argo-events", "argo"],
        ),
    ];
    for (set, want) in cases {
        let env = function_env(&render(set));
        let got: BTreeSet<&str> = env["PROTECTED_NAMESPACES"].split(',').collect();
        for ns in ["kube-system", "kube-public", "kube-node-lease"]
            .iter()
            .chain(want.iter())
        {
            assert!(
                got.contains(ns),
                "{set}: PROTECTED_NAMESPACES {got:?} lacks {ns}"
            );
        }
    }
    // Opting out leaves exactly config.protectedNamespaces.
    let env = function_env(&render("platform=knative,protectPlatformNamespaces=false"));
    assert_eq!(
        env["PROTECTED_NAMESPACES"],
        "kube-system,kube-public,kube-node-lease"
    );
    // The plain manifests, as SECURITY.md says: Falco's and the platform's namespaces.
    for (file, want) in [
        ("kubernetes/falco-responder.yaml", &["falco"][..]),
        ("knative/service.yaml", KNATIVE_PROTECTED),
        ("openfaas/function.yaml", &["falco", "openfaas"]),
        (
            "argo/workflowtemplate.yaml",
            &["falco", "argo-events", "argo"],
        ),
    ] {
        let env = function_env(&yaml_docs(file).into_iter().map(|mut d| {
            // The WorkflowTemplate's container, as a Deployment-shaped document.
            if d["kind"] == "WorkflowTemplate" {
                let c = d["spec"]["templates"][0]["container"].clone();
                d = serde_json::json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [c]}}}});
            }
            d
        }).collect::<Vec<_>>());
        for ns in want {
            assert!(
                env["PROTECTED_NAMESPACES"].split(',').any(|n| n == *ns),
                "{file}: PROTECTED_NAMESPACES {} lacks {ns}",
                env["PROTECTED_NAMESPACES"]
            );
        }
    }
}

/// kn sets no labels of its own on the revision's pods; only `--label` (Service and Revision)
/// and `--label-revision` do (knative/client knative-v1.22.0
/// pkg/commands/service/configuration_edit_flags.go l.145-156, l.213-217). func copies
/// `deploy.labels` onto the revision template (knative/func knative-v1.22.0
/// pkg/knative/deployer.go l.456-465 with pkg/deployer/common.go GenerateCommonLabels).
#[test]
fn kn_and_func_revisions_carry_the_labels_the_network_policy_selects() {
    let np = objs(NETWORKING, "NetworkPolicy")
        .into_iter()
        .find(|np| np.file == "knative/networkpolicy.yaml")
        .expect("knative/networkpolicy.yaml");
    let selector = np.v["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap();
    assert!(!selector.is_empty());
    let kn = kn_create_words();
    let kn_labels: BTreeSet<String> = [
        flag_values(&kn, "--label"),
        flag_values(&kn, "--label-revision"),
        flag_values(&kn, "-l"),
    ]
    .concat()
    .into_iter()
    .collect();
    let func = yaml_docs("func.yaml").remove(0);
    let func_labels: BTreeSet<String> = func["deploy"]["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{}={}",
                l["key"].as_str().unwrap(),
                l["value"].as_str().unwrap()
            )
        })
        .collect();
    for (k, v) in selector {
        let want = format!("{k}={}", v.as_str().unwrap());
        assert!(
            kn_labels.contains(&want),
            "kn-service-create.sh: the revision lacks {want} (has {kn_labels:?})"
        );
        assert!(
            func_labels.contains(&want),
            "func.yaml: the revision lacks {want}"
        );
    }
}

/// Knative sets the pod's terminationGracePeriodSeconds to the revision's timeoutSeconds
/// (knative/serving knative-v1.22.0 pkg/reconciler/revision/resources/deploy.go l.309) and
/// gives the user container a preStop hook on queue-proxy's /wait-for-drain (l.102-113), which
/// returns only after drainSleepDuration, 30 s, without requests (pkg/queue/sharedmain/main.go
/// l.64-67, handlers.go l.81-83 and l.111-130). SIGTERM reaches the function after that.
const KNATIVE_DRAIN: u64 = 30;

fn after_sigterm(env: &dyn Fn(&str) -> Option<String>) -> u64 {
    [
        ("SHUTDOWN_DELAY_SECONDS", 5),
        ("REQUEST_TIMEOUT_SECONDS", 10),
        ("API_TIMEOUT_SECONDS", 10),
    ]
    .iter()
    .map(|(k, d)| env(k).map(|v| v.parse::<u64>().unwrap()).unwrap_or(*d))
    .sum()
}

#[test]
fn knative_grace_periods_leave_the_function_its_shutdown_after_the_drain() {
    // knative/service.yaml, argo/knative-service.yaml and the event display.
    for k in objs(KSVC, "Service") {
        let spec = &k.v["spec"]["template"]["spec"];
        let Some(c) = spec["containers"].as_array().and_then(|c| c.first()) else {
            continue;
        };
        if !c["image"]
            .as_str()
            .unwrap_or("")
            .contains("falco-responder")
        {
            continue;
        }
        let env = env_of(c);
        let need = KNATIVE_DRAIN
            + after_sigterm(&|n| env.get(n).map(|v| v["value"].as_str().unwrap().to_string()));
        let timeout = spec["timeoutSeconds"].as_u64().unwrap_or(300);
        assert!(
            timeout >= need,
            "{}: timeoutSeconds {timeout} < {need}",
            k.id()
        );
    }
    // kn: --timeout with its --env.
    let kn = kn_create_words();
    let envs = flag_values(&kn, "--env");
    let need = KNATIVE_DRAIN
        + after_sigterm(&|n| {
            envs.iter()
                .find_map(|e| e.strip_prefix(&format!("{n}=")).map(str::to_string))
        });
    let timeout: u64 = flag_value(&kn, "--timeout").parse().unwrap();
    assert!(timeout >= need, "kn --timeout {timeout} < {need}");
    // func.yaml sets no timeout: Knative's default revision timeout, 300 s (config-defaults).
    assert!(!read("func.yaml").contains("timeoutSeconds"));
    // The chart refuses less, on Knative and for the plain Deployment.
    let err = helm_template_err(&format!(
        "platform=knative,knative.timeoutSeconds=30,{SECRETS}"
    ));
    assert!(
        err.contains("knative.timeoutSeconds 30") && err.contains("= 55"),
        "{err}"
    );
    let err = helm_template_err(&format!("terminationGracePeriodSeconds=20,{SECRETS}"));
    assert!(
        err.contains("terminationGracePeriodSeconds 20") && err.contains("= 25"),
        "{err}"
    );
    let ksvc = render("platform=knative")
        .into_iter()
        .find(|d| d["apiVersion"] == KSVC)
        .unwrap();
    assert!(
        ksvc["spec"]["template"]["spec"]["timeoutSeconds"]
            .as_u64()
            .unwrap()
            >= KNATIVE_DRAIN + 25
    );
    // The README says the same.
    let readme = read("README.md");
    let shutdown = readme
        .split("## Shutdown")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    assert!(
        shutdown.contains("timeoutSeconds")
            && shutdown.contains("30 s")
            && !shutdown.contains("only makes scale-down"),
        "README Shutdown must state Knative's grace period = timeoutSeconds and the 30 s drain"
    );
}

/// OpenFaaS Standard/Enterprise run the pod as the ServiceAccount named by
/// com.openfaas.serviceaccount. kube-client 5.0.0 builds its in-cluster configuration by
/// reading the mounted ServiceAccount's `namespace` and `ca.crt`
/// (src/config/mod.rs l.288-290, incluster_config.rs l.8-10, l.96-104) before the function
/// swaps in KUBE_TOKEN_FILE (src/cluster/client.rs): with automountServiceAccountToken false
/// nothing is mounted and the function cannot start.
#[test]
fn openfaas_named_service_accounts_keep_the_files_kube_needs() {
    let mut docs = yaml_docs("openfaas/rbac-token.yaml");
    docs.extend(yaml_docs("openfaas/function.yaml"));
    for (what, docs) in [("openfaas/", docs), ("chart", render("platform=openfaas"))] {
        let mut named = 0;
        for f in docs.iter().filter(|d| d["kind"] == "Function") {
            let Some(sa) = f["spec"]["annotations"]["com.openfaas.serviceaccount"].as_str() else {
                continue;
            };
            named += 1;
            let account = docs
                .iter()
                .find(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == sa)
                .unwrap_or_else(|| panic!("{what}: no ServiceAccount {sa}"));
            assert_ne!(
                account["automountServiceAccountToken"], false,
                "{what}: ServiceAccount {sa} runs the Function on OpenFaaS Standard and must mount ca.crt and namespace"
            );
            // On CE the token Secret is mounted instead; it holds token, ca.crt, namespace.
            assert_eq!(
                f["spec"]["environment"]["KUBE_TOKEN_FILE"],
                "/var/openfaas/secrets/token"
            );
        }
        assert_eq!(named, 1, "{what}");
    }
}

/// The Workflow variant: the Sensor passes the whole event (context + base64 of headers and
/// body) as parameter falco_event, which the WorkflowTemplate puts in env BODY; Linux refuses
/// an environment string over MAX_ARG_STRLEN = 32 pages = 131072 bytes
/// (include/uapi/linux/binfmts.h) with E2BIG. Argo moves its own ARGO_TEMPLATE to a ConfigMap
/// above 131072 (argo-workflows v3.7.0 workflow/controller/workflowpod.go l.51, l.436-500),
/// but not the user's env. The webhook EventSource's maxPayloadSize bounds the body
/// (argo-events v1.9.11 pkg/eventsources/sources/webhook).
#[test]
fn the_workflow_routes_event_fits_in_one_environment_string() {
    const LIMIT: u64 = 65536;
    // 4/3 of the body and headers, plus the event's context, must stay below 131072.
    const { assert!(LIMIT * 4 / 3 + 8 * 1024 < 131072) };
    // Every EventSource whose events can reach a Workflow trigger, in argo/.
    let sources: BTreeSet<String> = objs(ARGO, "Sensor")
        .iter()
        .filter(|s| {
            s.v["spec"]["triggers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| !t["template"]["argoWorkflow"].is_null())
        })
        .flat_map(|s| {
            s.v["spec"]["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["eventSourceName"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!sources.is_empty());
    for name in &sources {
        let es = the(ARGO, "EventSource", name);
        for (hook, w) in es.v["spec"]["webhook"].as_object().unwrap() {
            let max = w["maxPayloadSize"].as_u64().unwrap_or(1048576);
            assert!(
                max <= LIMIT,
                "{}: webhook {hook} maxPayloadSize {max} > {LIMIT}",
                es.id()
            );
        }
    }
    let es = render("argo.enabled=true,argo.trigger=workflow")
        .into_iter()
        .find(|d| d["kind"] == "EventSource")
        .unwrap();
    assert_eq!(es["spec"]["webhook"]["falco"]["maxPayloadSize"], LIMIT);
    let err = helm_template_err(&format!(
        "argo.enabled=true,argo.trigger=workflow,argo.eventSource.maxPayloadSize=100000,{SECRETS}"
    ));
    assert!(err.contains("MAX_ARG_STRLEN"), "{err}");
}

/// queue-proxy probes a readiness probe without periodSeconds every 50 ms until the pod is
/// ready; a period turns that off (knative/serving knative-v1.22.0
/// pkg/queue/readiness/probe.go l.122-124 and l.184-186), and a new pod then waits up to the
/// period longer before the activator sends it events.
#[test]
fn knative_readiness_probes_keep_queue_proxys_aggressive_probing() {
    for k in objs(KSVC, "Service") {
        for c in k.v["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            assert!(
                c["readinessProbe"]["periodSeconds"].as_u64().unwrap_or(0) == 0,
                "{}: readinessProbe.periodSeconds",
                k.id()
            );
        }
    }
    let kn = kn_create_words();
    assert!(
        !flag_values(&kn, "--probe-readiness-opts")
            .iter()
            .any(|o| o.contains("PeriodSeconds")),
        "kn --probe-readiness-opts PeriodSeconds"
    );
}

/// Every image and chart version the chart, the manifests and the guides install is pinned:
/// no `latest`, no missing tag (a digest counts). Knative's event display is the exception the
/// chart README states: Knative publishes it untagged (only a digest pins it).
#[test]
fn every_image_and_chart_version_installed_is_pinned() {
    let pinned = |image: &str| {
        image.contains("@sha256:")
            || image
                .rsplit('/')
                .next()
                .and_then(|last| last.split_once(':'))
                .is_some_and(|(_, tag)| tag != "latest" && !tag.is_empty())
    };
    let mut docs: Vec<Value> = crate::files::objects()
        .iter()
        .map(|o| o.v.clone())
        .collect();
    docs.extend(yaml_docs("kubernetes/falco-responder.yaml"));
    docs.extend(render(
        "argo.enabled=true,argo.eventBus.create=true,argo.trigger=workflow",
    ));
    let mut seen = 0;
    for d in &docs {
        let text = serde_json::to_string(d).unwrap();
        for part in text.split("\"image\":\"").skip(1) {
            let image = part.split('"').next().unwrap();
            if image.ends_with("/eventing/cmd/event_display") {
                continue;
            }
            seen += 1;
            assert!(
                pinned(image),
                "{} {}: image {image} is not pinned",
                d["kind"],
                d["metadata"]["name"]
            );
        }
        if d["kind"] == "EventBus" {
            let v = d["spec"]["jetstream"]["version"].as_str().unwrap();
            assert!(
                v != "latest",
                "EventBus {}: jetstream version latest",
                d["metadata"]["name"]
            );
        }
    }
    assert!(seen >= 5, "{seen}");
    // The guides' helm installs of other charts name a --version; their manifests a release.
    // (The chart is the first word with a slash that is no flag: `repo/chart`.)
    for guide in [
        "docs/deploy-helm.md",
        "docs/deploy-knative.md",
        "docs/deploy-openfaas.md",
        "docs/deploy-argo.md",
    ] {
        for line in crate::shell::doc_shell_lines(&read(guide)) {
            let words = crate::shell::words(&line);
            if words.first().map(String::as_str) == Some("helm")
                && words.iter().any(|w| w == "install" || w == "--install")
                && let Some(chart) = words
                    .iter()
                    .find(|w| w.contains('/') && !w.starts_with('-'))
                && !chart.starts_with("charts/")
            {
                assert!(
                    words
                        .iter()
                        .any(|w| w == "--version" || w.starts_with("--version=")),
                    "{guide}: {line}"
                );
            }
            for url in crate::shell::words(&line)
                .iter()
                .filter(|w| w.starts_with("https://"))
            {
                assert!(
                    !url.contains("/master/")
                        && !url.contains("/main/")
                        && !url.contains("/latest/"),
                    "{guide}: {url} is not pinned to a release"
                );
            }
        }
    }
}

/// `helm test` (a Pod with the hook `test`) reaches the function the platform's way and
/// expects 401 without the token wherever the token is on; on the kubernetes platform the
/// NetworkPolicy admits that one pod, and nothing else new.
#[test]
fn helm_test_checks_the_function_and_its_token_on_every_platform() {
    for (set, url, token) in [
        (
            "platform=kubernetes",
            "http://x-falco-responder.default.svc.cluster.local:80",
            true,
        ),
        (
            "platform=knative",
            "http://x-falco-responder.default.svc.cluster.local",
            true,
        ),
        (
            "platform=knative,auth.enabled=false,knative.eventing.enabled=true",
            "http://x-falco-responder.default.svc.cluster.local",
            false,
        ),
        (
            "platform=openfaas",
            "http://gateway.openfaas:8080/function/x-falco-responder.default",
            true,
        ),
    ] {
        let chart = chart();
        let out = crate::tools::ok(run(
            "helm",
            None,
            &[
                "template",
                "x",
                chart.to_str().unwrap(),
                "-n",
                "default",
                "--set",
                &format!("{set},{SECRETS}"),
            ],
        ));
        let docs = crate::files::parse_yaml(&out);
        let pod = docs
            .iter()
            .find(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test")
            .unwrap_or_else(|| panic!("{set}: no helm test pod"));
        let script = pod["spec"]["containers"][0]["args"][0].as_str().unwrap();
        assert!(
            script.contains(&format!("url=\"{url}\"")),
            "{set}: {script}"
        );
        assert!(script.contains("/health/readiness"), "{set}: {script}");
        assert_eq!(script.contains("= 401"), token, "{set}: {script}");
        let np = docs.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap();
        let admits_test = np["spec"]["ingress"][0]["from"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "helm-test");
        assert_eq!(admits_test, set == "platform=kubernetes", "{set}: {np}");
    }
}
