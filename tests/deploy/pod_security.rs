//! Pod Security `restricted`, checked statically: the test API server (1.20) has no PodSecurity
//! admission. The rules are those of the Pod Security Standards (kubernetes/website
//! content/en/docs/concepts/security/pod-security-standards.md, "Restricted", as implemented
//! by k8s.io/pod-security-admission policy/check_*.go at v0.30), for every pod the chart or the
//! plain manifests make, as the platform builds it. The exceptions a platform forces are
//! listed with their source.

use serde_json::{Value, json};

use crate::{
    files::{ARGO, KSVC, objects},
    tools::template,
};

/// Volume types `restricted` allows (check_restrictedVolumes.go).
const VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// What `restricted` refuses in a pod spec: `(pod securityContext, containers, volumes)`.
pub(crate) fn restricted_violations(
    pod_sc: &Value,
    containers: &[Value],
    volumes: &[Value],
) -> Vec<String> {
    let mut v = Vec::new();
    // baseline: host namespaces, hostPath, hostPort, privileged, added capabilities.
    for (name, vol) in volumes.iter().map(|x| (x["name"].clone(), x)) {
        let kind = vol
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .find(|k| *k != "name");
        if let Some(kind) = kind
            && !VOLUMES.contains(&kind)
        {
            v.push(format!(
                "volume {name}: type {kind} (check_restrictedVolumes)"
            ));
        }
    }
    let pod_nonroot = pod_sc["runAsNonRoot"] == true;
    let pod_seccomp = matches!(
        pod_sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault" | "Localhost")
    );
    if pod_sc["runAsUser"] == 0 {
        v.push("pod runAsUser 0 (check_runAsUser)".into());
    }
    if !pod_sc["seccompProfile"]["type"].is_null() && !pod_seccomp {
        v.push(
            "pod seccompProfile not RuntimeDefault/Localhost (check_seccompProfile_restricted)"
                .into(),
        );
    }
    for c in containers {
        let name = c["name"].as_str().unwrap_or("(unnamed)");
        let sc = &c["securityContext"];
        if sc["privileged"] == true {
            v.push(format!("{name}: privileged (check_privileged)"));
        }
        if c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| !p["hostPort"].is_null())
        {
            v.push(format!("{name}: hostPort (check_hostPorts)"));
        }
        if sc["allowPrivilegeEscalation"] != false {
            v.push(format!(
                "{name}: allowPrivilegeEscalation must be false (check_allowPrivilegeEscalation)"
            ));
        }
        let nonroot = match sc["runAsNonRoot"].as_bool() {
            Some(b) => b,
            None => pod_nonroot,
        };
        if !nonroot {
            v.push(format!("{name}: runAsNonRoot must be true, in the pod or the container (check_runAsNonRoot)"));
        }
        if sc["runAsUser"] == 0 {
            v.push(format!("{name}: runAsUser 0 (check_runAsUser)"));
        }
        let seccomp = match sc["seccompProfile"]["type"].as_str() {
            Some(t) => matches!(t, "RuntimeDefault" | "Localhost"),
            None => pod_seccomp,
        };
        if !seccomp {
            v.push(format!("{name}: seccompProfile RuntimeDefault or Localhost, in the pod or the container (check_seccompProfile_restricted)"));
        }
        let drops_all = sc["capabilities"]["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d == "ALL");
        if !drops_all {
            v.push(format!(
                "{name}: capabilities.drop must contain ALL (check_capabilities_restricted)"
            ));
        }
        for add in sc["capabilities"]["add"].as_array().into_iter().flatten() {
            if add != "NET_BIND_SERVICE" {
                v.push(format!(
                    "{name}: capability {add} added (check_capabilities_restricted)"
                ));
            }
        }
    }
    v
}

fn arr(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// The pods one object makes, as its platform builds them: `(what, violations)`. `None` for a
/// kind that makes no pod. An OpenFaaS Function is the one exception (see the test).
fn pods_of(d: &Value) -> Option<Vec<(String, Vec<String>)>> {
    let kind = d["kind"].as_str()?;
    let api = d["apiVersion"].as_str()?;
    let id = format!("{kind} {}", d["metadata"]["name"]);
    let spec = &d["spec"];
    let out = match (api, kind) {
        ("apps/v1", "Deployment") | ("batch/v1", "Job") => {
            let p = &spec["template"]["spec"];
            vec![(
                id,
                restricted_violations(
                    &p["securityContext"],
                    &[arr(&p["initContainers"]), arr(&p["containers"])].concat(),
                    &arr(&p["volumes"]),
                ),
            )]
        }
        ("v1", "Pod") => vec![(
            id,
            restricted_violations(
                &spec["securityContext"],
                &[arr(&spec["initContainers"]), arr(&spec["containers"])].concat(),
                &arr(&spec["volumes"]),
            ),
        )],
        (KSVC, "Service") => {
            // Knative adds queue-proxy with a restricted securityContext of its own (serving
            // pkg/reconciler/revision/resources/queue.go queueSecurityContext, v1.22 l.80-90).
            let p = &spec["template"]["spec"];
            vec![(
                id,
                restricted_violations(
                    &p["securityContext"],
                    &arr(&p["containers"]),
                    &arr(&p["volumes"]),
                ),
            )]
        }
        (ARGO, "Sensor") | (ARGO, "EventSource") => {
            // argo-events v1.9.11 pkg/reconciler/sensor/resource.go buildDeploymentSpec (and
            // eventsource/resource.go): one container `main`, template.container's
            // securityContext, template.securityContext as the pod's.
            let t = &spec["template"];
            let main =
                json!({"name": "main", "securityContext": t["container"]["securityContext"]});
            vec![(
                id,
                restricted_violations(&t["securityContext"], &[main], &arr(&t["volumes"])),
            )]
        }
        (ARGO, "EventBus") => {
            // argo-events v1.9.11 pkg/reconciler/eventbus/installer/jetstream.go l.246-430:
            // a StatefulSet whose pod gets jetstream.securityContext and whose containers
            // main, reloader and metrics get their container templates' securityContext.
            let js = &spec["jetstream"];
            let containers: Vec<Value> = [
                ("main", "containerTemplate"),
                ("reloader", "reloaderContainerTemplate"),
                ("metrics", "metricsContainerTemplate"),
            ]
            .iter()
            .map(|(n, t)| json!({"name": n, "securityContext": js[t]["securityContext"]}))
            .collect();
            vec![(
                id,
                restricted_violations(&js["securityContext"], &containers, &[]),
            )]
        }
        (ARGO, "WorkflowTemplate") => {
            // argo-workflows v3.7.0 workflow/controller/workflowpod.go: the pod gets the
            // template's or the workflow's securityContext (l.829-832), the containers `init`
            // and `wait` get the controller's executor securityContext (newExecContainer,
            // l.695-713: none by default), then podSpecPatch is merged by container name
            // (l.390-400, util.ApplyPodSpecPatch: a strategic merge patch).
            let mut pods = Vec::new();
            for t in arr(&spec["templates"]) {
                let Some(main) = t.get("container") else {
                    continue;
                };
                let patch: Value = t["podSpecPatch"]
                    .as_str()
                    .map(|p| serde_saphyr::from_str(p).unwrap())
                    .unwrap_or(Value::Null);
                let patched = |list: &str, name: &str| -> Value {
                    let sc = arr(&patch[list])
                        .into_iter()
                        .find(|c| c["name"] == name)
                        .map(|c| c["securityContext"].clone())
                        .unwrap_or(Value::Null);
                    json!({"name": name, "securityContext": sc})
                };
                let mut main = main.clone();
                main["name"] = json!("main");
                let pod_sc = if t["securityContext"].is_null() {
                    &spec["securityContext"]
                } else {
                    &t["securityContext"]
                };
                let containers = [
                    patched("initContainers", "init"),
                    main,
                    patched("containers", "wait"),
                ];
                pods.push((
                    format!("{id} template {}", t["name"]),
                    restricted_violations(pod_sc, &containers, &arr(&spec["volumes"])),
                ));
            }
            pods
        }
        _ => return None,
    };
    Some(out)
}

/// Every pod of these documents passes `restricted`; returns how many were checked.
fn assert_restricted(what: &str, docs: &[Value]) -> usize {
    let mut n = 0;
    let mut bad = Vec::new();
    for d in docs {
        for (id, v) in pods_of(d).into_iter().flatten() {
            n += 1;
            if !v.is_empty() {
                bad.push(format!("{what}: {id}:\n  {}", v.join("\n  ")));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "Pod Security restricted:\n{}",
        bad.join("\n")
    );
    n
}

#[test]
fn every_pod_of_the_plain_manifests_is_pod_security_restricted() {
    let docs: Vec<Value> = objects().iter().map(|o| o.v.clone()).collect();
    let mut docs = docs;
    docs.extend(crate::files::yaml_docs("kubernetes/falco-responder.yaml"));
    // Deployment (kubernetes/), 2 Knative Services + event_display, EventBus, EventSource,
    // 3 Sensors, WorkflowTemplate.
    let n = assert_restricted("plain manifests", &docs);
    assert!(n >= 10, "only {n} pods found");
}

#[test]
fn every_pod_the_chart_makes_is_pod_security_restricted() {
    let secrets =
        "auth.existingSecret=a,argo.eventSource.authSecret.name=b,argo.sensorAuthSecret.name=c";
    let mut n = 0;
    for set in [
        "platform=kubernetes".to_string(),
        "platform=knative,auth.enabled=false,knative.eventing.enabled=true,knative.eventing.eventDisplay=true".into(),
        "platform=knative,argo.enabled=true".into(),
        "platform=openfaas,argo.enabled=true,argo.eventBus.create=true".into(),
        "argo.enabled=true,argo.trigger=workflow".into(),
    ] {
        let set = format!("{set},{secrets}");
        n += assert_restricted(&set, &template(&["--set", &set]));
    }
    assert!(n >= 10, "only {n} pods found");
}

/// OpenFaaS is the exception: the Function (and faas-cli's stack) has no securityContext field,
/// and faas-netes sets only runAsUser (with `setNonRootUser`) and readOnlyRootFilesystem on the
/// function's container (faas-netes 0.18.17 pkg/k8s/securityContext.go l.18-60). The pod is
/// refused by `restricted`: SECURITY.md and the OpenFaaS guide say so; this test keeps that
/// statement true (it fails once an OpenFaaS pod passes, and the exception can go).
#[test]
fn openfaas_ce_pods_are_the_documented_exception() {
    let faas_netes_pod = json!({"name": "falco-responder", "securityContext": {"runAsUser": 12000, "readOnlyRootFilesystem": true}});
    let v = restricted_violations(&Value::Null, &[faas_netes_pod], &[]);
    assert_eq!(v.len(), 4, "{v:?}");
    let security = crate::files::read("SECURITY.md");
    let guide = crate::files::read("docs/deploy-openfaas.md");
    for (file, text) in [
        ("SECURITY.md", &security),
        ("docs/deploy-openfaas.md", &guide),
    ] {
        assert!(
            text.contains("Pod Security `restricted`")
                && text.contains("pkg/k8s/securityContext.go"),
            "{file} must state that OpenFaaS function pods cannot pass Pod Security `restricted`, citing faas-netes"
        );
    }
}

/// The checker itself: each rule refuses its own violation, and a compliant pod passes.
#[test]
fn the_restricted_checker_refuses_each_violation() {
    let good_sc = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    let good = json!({"name": "c", "securityContext": good_sc});
    assert!(
        restricted_violations(
            &Value::Null,
            std::slice::from_ref(&good),
            &[json!({"name": "s", "secret": {}})]
        )
        .is_empty()
    );
    // Pod-level runAsNonRoot and seccomp count for every container.
    let mut bare = good.clone();
    bare["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("runAsNonRoot");
    bare["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("seccompProfile");
    assert!(
        restricted_violations(
            &json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}),
            std::slice::from_ref(&bare),
            &[]
        )
        .is_empty()
    );
    for (ptr, value, rule) in [
        (
            "/securityContext/allowPrivilegeEscalation",
            Value::Null,
            "check_allowPrivilegeEscalation",
        ),
        (
            "/securityContext/runAsNonRoot",
            json!(false),
            "check_runAsNonRoot",
        ),
        ("/securityContext/runAsUser", json!(0), "check_runAsUser"),
        (
            "/securityContext/seccompProfile/type",
            json!("Unconfined"),
            "check_seccompProfile_restricted",
        ),
        (
            "/securityContext/capabilities/drop",
            json!(["NET_RAW"]),
            "check_capabilities_restricted",
        ),
        (
            "/securityContext/capabilities/add",
            json!(["SYS_ADMIN"]),
            "check_capabilities_restricted",
        ),
        (
            "/securityContext/privileged",
            json!(true),
            "check_privileged",
        ),
        (
            "/ports",
            json!([{"containerPort": 80, "hostPort": 80}]),
            "check_hostPorts",
        ),
    ] {
        let mut c = good.clone();
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        c.pointer_mut(parent)
            .map(|p| p[key] = value.clone())
            .unwrap_or_else(|| c[key] = value.clone());
        let v = restricted_violations(&Value::Null, &[c], &[]);
        assert!(v.iter().any(|m| m.contains(rule)), "{ptr}: {v:?}");
    }
    let v = restricted_violations(
        &Value::Null,
        &[good],
        &[json!({"name": "h", "hostPath": {"path": "/"}})],
    );
    assert!(
        v.iter().any(|m| m.contains("check_restrictedVolumes")),
        "{v:?}"
    );
}
