//! References between the manifests: ServiceAccounts, roles, Brokers, Triggers, EventSources,
//! Sensors and the WorkflowTemplate point at what the other files define.

use falco_responder::config::Config;
use serde_json::json;

use crate::{
    env_contract::{EnvValue, container_env, env_map, env_sources, resolve},
    files::*,
    stacks::openfaas_function_url,
};

#[test]
fn manifests_reference_each_other_consistently() {
    // Every ServiceAccount a workload names exists next to it.
    let ksvc = the(KSVC, "Service", "falco-responder");
    let wt = the(ARGO, "WorkflowTemplate", "falco-responder");
    for (o, sa) in [
        (
            ksvc,
            str_at(&ksvc.v, "/spec/template/spec/serviceAccountName"),
        ),
        (wt, str_at(&wt.v, "/spec/serviceAccountName")),
    ] {
        assert!(
            exists_in("v1", "ServiceAccount", sa, o.namespace()),
            "{}: ServiceAccount {sa}",
            o.id()
        );
    }
    for s in objs(ARGO, "Sensor") {
        if let Some(sa) = s.v["spec"]["template"]["serviceAccountName"].as_str() {
            assert!(
                exists_in("v1", "ServiceAccount", sa, s.namespace()),
                "{}: {sa}",
                s.id()
            );
        }
    }

    // Bindings point at roles and subjects that exist (or at OpenFaaS CE's default SA).
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for b in objs(RBAC, kind) {
            let role_kind = str_at(&b.v, "/roleRef/kind");
            let role = str_at(&b.v, "/roleRef/name");
            let role_ns = if role_kind == "Role" {
                b.namespace()
            } else {
                None
            };
            assert!(
                exists_in(RBAC, role_kind, role, role_ns),
                "{}: {role_kind} {role}",
                b.id()
            );
            for s in b.v["subjects"].as_array().unwrap() {
                assert_eq!(s["kind"], "ServiceAccount", "{}", b.id());
                let (name, ns) = (str_at(s, "/name"), str_at(s, "/namespace"));
                assert!(
                    exists_in("v1", "ServiceAccount", name, Some(ns))
                        || (name == "default" && ns == "openfaas-fn"),
                    "{}: subject {ns}/{name}",
                    b.id()
                );
            }
        }
    }
    for s in objs("v1", "Secret") {
        if s.v["type"] == "kubernetes.io/service-account-token" {
            let sa = str_at(
                &s.v,
                "/metadata/annotations/kubernetes.io~1service-account.name",
            );
            assert!(
                exists_in("v1", "ServiceAccount", sa, s.namespace()),
                "{}",
                s.id()
            );
        }
    }

    // Knative Eventing: Broker -> Trigger -> ksvc, dead letters, no reply loop.
    for t in objs(EVENTING, "Trigger") {
        let ns = t.namespace();
        assert!(
            exists_in(EVENTING, "Broker", str_at(&t.v, "/spec/broker"), ns),
            "{}",
            t.id()
        );
        for ptr in ["/spec/subscriber/ref", "/spec/delivery/deadLetterSink/ref"] {
            if let Some(r) = t.v.pointer(ptr) {
                assert_eq!(r["kind"], "Service", "{} {ptr}", t.id());
                assert!(
                    exists_in(KSVC, "Service", str_at(r, "/name"), ns),
                    "{} {ptr}",
                    t.id()
                );
            }
        }
        let ty = str_at(&t.v, "/spec/filter/attributes/type");
        if t.v["spec"]["subscriber"]["ref"]["name"] == ksvc.name() {
            assert_eq!(ty, FALCO_CE_TYPE, "{}: the function's Trigger", t.id());
        } else {
            assert_ne!(
                ty,
                FALCO_CE_TYPE,
                "{}: would take the function's events",
                t.id()
            );
        }
        assert_ne!(
            (ty, t.v["spec"]["subscriber"]["ref"]["name"].as_str()),
            (RESULT_CE_TYPE, Some(ksvc.name())),
            "{}: result events must not loop back into the function",
            t.id()
        );
    }
    let trigger = the(EVENTING, "Trigger", "falco-responder");
    let d = &trigger.v["spec"]["delivery"];
    assert!(d["retry"].as_u64().unwrap() >= 3, "Trigger retries");
    assert!(d["deadLetterSink"].is_object(), "Trigger dead-letter sink");

    // Argo Events: the Sensors listen to the EventSource's event, post where the function is.
    let es = &objs(ARGO, "EventSource")[0];
    let events: Vec<&String> = es.v["spec"]["webhook"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    // The Sensor calls the Knative Service that checks a token (not the Broker's).
    let argo_ksvc = the(KSVC, "Service", ARGO_KSVC);
    let knative_url = format!(
        "http://{}.{}.svc.cluster.local",
        argo_ksvc.name(),
        argo_ksvc.namespace().unwrap()
    );
    let openfaas_url = openfaas_function_url();
    let sensors = objs(ARGO, "Sensor");
    assert_eq!(sensors.len(), 3);
    for s in &sensors {
        assert_eq!(s.namespace(), es.namespace(), "{}", s.id());
        let deps = s.v["spec"]["dependencies"].as_array().unwrap();
        for d in deps {
            assert_eq!(d["eventSourceName"], es.name(), "{}", s.id());
            assert!(
                events.contains(&&str_at(d, "/eventName").to_string()),
                "{}",
                s.id()
            );
            assert_eq!(d["filters"]["data"][0]["path"], "body.rule", "{}", s.id());
            // The Sensor passes only rules the function acts on, wherever it runs, and
            // Falcosidekick's test event, which the function skips by design.
            let rules = strs(&d["filters"]["data"][0]["value"]);
            assert!(
                rules.iter().any(|r| r == SIDEKICK_TEST_RULE),
                "{}: lets Falcosidekick's test event through",
                s.id()
            );
            for rule in rules.into_iter().filter(|r| r != SIDEKICK_TEST_RULE) {
                for src in env_sources() {
                    let config = Config::from_vars(resolve(&src.vars)).unwrap();
                    assert!(
                        config.policy.rules.matches(&rule),
                        "{}: rule {rule} is not in RULES of {}",
                        s.id(),
                        src.origin
                    );
                }
            }
        }
        let dep_names: Vec<&str> = deps.iter().map(|d| str_at(d, "/name")).collect();
        let trigger = &s.v["spec"]["triggers"][0];
        let template = &trigger["template"];
        if let Some(http) = template.get("http") {
            let url = str_at(http, "/url");
            let want = match s.name() {
                "falco-responder-knative" => &knative_url,
                "falco-responder-openfaas" => &openfaas_url,
                other => panic!("unexpected HTTP Sensor {other}"),
            };
            assert_eq!(url, want, "{}", s.id());
            assert_eq!(http["method"], "POST");
            // The Falco JSON itself as the body (empty dest: Argo Events >= v1.9.8).
            assert_eq!(
                http["payload"],
                json!([{"src": {"dependencyName": dep_names[0], "dataKey": "body"}, "dest": ""}]),
                "{}: the body the function reads",
                s.id()
            );
            assert_eq!(
                trigger["policy"]["status"]["allow"],
                json!([200]),
                "{}",
                s.id()
            );
            assert!(
                trigger["retryStrategy"]["steps"].as_u64().unwrap() >= 2,
                "{}",
                s.id()
            );
        } else {
            let wf = &template["argoWorkflow"];
            assert_eq!(wf["operation"], "submit");
            let resource = &wf["source"]["resource"];
            assert_eq!(resource["kind"], "Workflow");
            assert_eq!(resource["metadata"]["namespace"], wt.namespace().unwrap());
            assert_eq!(resource["spec"]["workflowTemplateRef"]["name"], wt.name());
            let args: Vec<&str> = resource["spec"]["arguments"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| str_at(p, "/name"))
                .collect();
            let wt_params: Vec<&str> = wt.v["spec"]["arguments"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| str_at(p, "/name"))
                .collect();
            assert_eq!(args, wt_params, "{}: Workflow arguments", s.id());
            // No dataKey: the whole event, which the one-shot mode unwraps.
            assert_eq!(
                wf["parameters"],
                json!([{"src": {"dependencyName": dep_names[0]}, "dest": "spec.arguments.parameters.0.value"}]),
                "{}",
                s.id()
            );
        }
        assert!(
            s.v["spec"]["template"]["serviceAccountName"].is_string(),
            "{}: the dead letters need the Sensor's own ServiceAccount",
            s.id()
        );
    }

    // WorkflowTemplate: entrypoint exists, one-shot mode, BODY from the input parameter.
    let entry = str_at(&wt.v, "/spec/entrypoint");
    let t = wt.v["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == entry)
        .expect("entrypoint template");
    let input = str_at(t, "/inputs/parameters/0/name");
    assert_eq!(t["container"]["command"], json!(["/falco-responder"]));
    assert_eq!(t["container"]["args"], json!(["once"]));
    let env = env_map(&container_env(&t["container"], &wt.id()));
    assert_eq!(
        env["BODY"],
        EnvValue::Literal(format!("{{{{inputs.parameters.{input}}}}}"))
    );
    assert_eq!(wt.v["spec"]["arguments"]["parameters"][0]["name"], input);
}
