//! Each validator of `schemas`, `stacks` and `docs_commands` refuses a broken document, so a
//! pass means something.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::{
    docs_commands::doc_errors,
    files::*,
    schemas::{SCHEMAS, func_validator, kube_errors, validation_errors},
    stacks::{stack_errors, values_errors},
};

#[test]
fn each_validator_rejects_a_broken_document() {
    /// A copy of one of our objects with the value at `ptr` replaced (`None`: removed).
    fn edited(kind: &str, name: &str, ptr: &str, value: Option<Value>) -> Value {
        let mut v = objects()
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .v
            .clone();
        edit(&mut v, ptr, value);
        v
    }
    // Kubernetes objects: (what is wrong, kind, name, JSON pointer, new value or removal).
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, &str, Option<Value>)> = vec![
        // What only this file checks (the API server accepts these):
        ("no namespace", "Service", "falco-responder", "/metadata/namespace", None),
        ("cluster-scoped with a namespace", "Namespace", "falco-responder", "/metadata/namespace", Some(json!("default"))),
        ("status present", "WorkflowTemplate", "falco-responder", "/status", Some(json!({}))),
        // The JSON Schemas kept here (misspellings and types in the other kinds are shown to
        // fail against the API server in `apply`).
        ("unknown spec field", "Broker", "default", "/spec/deliveryy", Some(json!({}))),
        ("broker as a number", "Trigger", "falco-responder", "/spec/broker", Some(json!(5))),
        ("misspelt filter", "Trigger", "falco-responder", "/spec/filterz", Some(json!({}))),
        ("retryAfterMax as a number", "Trigger", "falco-responder", "/spec/delivery/retryAfterMax", Some(json!(30))),
        ("misspelt delivery field", "Trigger", "falco-responder", "/spec/delivery/retryAfterMaxx", Some(json!("PT30S"))),
        ("replicas as a string", "EventBus", "default", "/spec/jetstream/replicas", Some(json!("three"))),
        ("webhook port as a number", "EventSource", "falco", "/spec/webhook/falco/port", Some(json!(12000))),
        ("misspelt webhook field", "EventSource", "falco", "/spec/webhook/falco/endpointt", Some(json!("/x"))),
        ("misspelt http trigger field", "Sensor", "falco-responder-knative", "/spec/triggers/0/template/http/urll", Some(json!("http://x"))),
        ("retry steps as a string", "Sensor", "falco-responder-knative", "/spec/triggers/0/retryStrategy/steps", Some(json!("4"))),
        ("dependency without eventName", "Sensor", "falco-responder-workflow", "/spec/dependencies/0/eventName", None),
    ];
    let mut covered = BTreeSet::new();
    for (what, kind, name, ptr, value) in cases {
        let doc = edited(kind, name, ptr, value);
        let errors = kube_errors(&doc).unwrap_or_else(|e| panic!("{kind} {what}: {e}"));
        assert!(!errors.is_empty(), "{kind} {name}: {what}: accepted");
        covered.insert((
            doc["apiVersion"].as_str().unwrap().to_string(),
            doc["kind"].as_str().unwrap().to_string(),
        ));
    }
    for s in SCHEMAS.iter().filter(|s| s.file.is_some()) {
        assert!(
            covered.contains(&(s.api_version.to_string(), s.kind.to_string())),
            "no broken-document case for {} {}",
            s.api_version,
            s.kind
        );
    }

    // A kind (or version) without a schema is an error, not a pass.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": "x"}, "spec": {}});
    assert!(kube_errors(&deployment).is_err());
    let old_rbac = edited(
        "ClusterRole",
        "falco-responder",
        "/apiVersion",
        Some(json!("rbac.authorization.k8s.io/v1beta1")),
    );
    assert!(kube_errors(&old_rbac).is_err());

    // func.yaml
    let func = yaml_docs("func.yaml").remove(0);
    let mut bad = func.clone();
    bad["build"] = json!({"builder": "docker"});
    assert!(
        !validation_errors(func_validator(), &bad).is_empty(),
        "func: builder docker"
    );
    let mut bad = func.clone();
    bad["deploy"]["serviceAccount"] = json!("x");
    assert!(
        !validation_errors(func_validator(), &bad).is_empty(),
        "func: unknown field"
    );
    let mut bad = func.clone();
    bad.as_object_mut().unwrap().remove("created");
    assert!(
        !validation_errors(func_validator(), &bad).is_empty(),
        "func: no created"
    );
    let mut bad = func.clone();
    bad["run"]["envs"][0]["value"] = json!(5);
    assert!(
        !validation_errors(func_validator(), &bad).is_empty(),
        "func: env value not a string"
    );

    // OpenFaaS stack
    let stack = yaml_docs("openfaas/stack.yml").remove(0);
    let f = "/functions/falco-responder";
    #[rustfmt::skip]
    let breakers: Vec<(&str, String, Option<Value>)> = vec![
        ("provider faas", "/provider/name".into(), Some(json!("faas"))),
        ("version 2.0", "/version".into(), Some(json!("2.0"))),
        ("no gateway", "/provider/gateway".into(), None),
        ("unknown function field", format!("{f}/imagee"), Some(json!("x"))),
        ("skip_build false", format!("{f}/skip_build"), Some(json!(false))),
        ("unquoted env value", format!("{f}/environment/DRY_RUN"), Some(json!(false))),
        ("memory in MB", format!("{f}/limits/memory"), Some(json!("64M"))),
        ("scale max 10", format!("{f}/labels/com.openfaas.scale.max"), Some(json!("10"))),
        ("other namespace", format!("{f}/namespace"), Some(json!("default"))),
        ("no image", format!("{f}/image"), None),
    ];
    assert!(stack_errors(&stack).is_empty());
    for (what, ptr, value) in breakers {
        let mut bad = stack.clone();
        edit(&mut bad, &ptr, value);
        assert!(!stack_errors(&bad).is_empty(), "stack: {what}: accepted");
    }

    // Falcosidekick values
    for (file, ptr, value) in [
        (
            "knative/falcosidekick-values.yaml",
            "/falcosidekick/config/cloudevents/address",
            json!("http://broker-ingress.knative-eventing.svc.cluster.local/default/default"),
        ),
        (
            "openfaas/falcosidekick-values.yaml",
            "/falcosidekick/config/webhook/address",
            json!("http://gateway.openfaas:8080/function/falco-pod-killer.openfaas-fn"),
        ),
        (
            "argo/falcosidekick-values.yaml",
            "/falcosidekick/config/webhook/address",
            json!("http://webhook-eventsource-svc.argo-events.svc.cluster.local:12000/example"),
        ),
        (
            "argo/falcosidekick-values.yaml",
            "/falcosidekick/config/webhook/minimumpriority",
            json!("critical"),
        ),
        (
            "argo/falcosidekick-values.yaml",
            "/falcosidekick/enabled",
            json!(false),
        ),
    ] {
        let mut bad = yaml_docs(file).remove(0);
        *bad.pointer_mut(ptr).unwrap() = value;
        assert!(
            !values_errors(file, &bad).is_empty(),
            "{file}: {ptr}: accepted"
        );
    }
    let mut bad = yaml_docs("knative/falcosidekick-values.yaml").remove(0);
    bad["falcosidekick"]["config"]["webhook"] = json!({"address": "http://x"});
    assert!(
        !values_errors("knative/falcosidekick-values.yaml", &bad).is_empty(),
        "two outputs"
    );
    for (file, key) in [
        ("argo/falcosidekick-values.yaml", "customheaders"),
        ("argo/falcosidekick-values.yaml", "customHeaders"),
        ("openfaas/falcosidekick-values.yaml", "customHeaders"),
    ] {
        let mut bad = yaml_docs(file).remove(0);
        bad["falcosidekick"]["config"]["webhook"][key] = json!("Authorization:Bearer x");
        assert!(
            !values_errors(file, &bad).is_empty(),
            "{file}: {key} accepted"
        );
    }
    let mut bad = yaml_docs("openfaas/falcosidekick-values.yaml").remove(0);
    bad["falcosidekick"]["config"] = json!({"openfaas": {"functionname": "falco-responder"}});
    assert!(
        !values_errors("openfaas/falcosidekick-values.yaml", &bad).is_empty(),
        "the openfaas output, which cannot carry the token"
    );

    // Docs
    let (errors, _) = doc_errors(
        "```sh\n\
         kubectl apply -f knative/nope.yaml\n\
         kubectl apply -f knative/falcosidekick-values.yaml\n\
         kubectl logs --namespace falco-respondr -l serving.knative.dev/service=falco-respond\n\
         kubectl get events -A --field-selector reason=PodDeleted\n\
         faas-cli deploy -f openfaas/rbac-token.yaml\n\
         faas-cli secret create falco-token\n\
         kubectl get ksvc falco\n\
         ```\n",
    );
    for want in [
        "knative/nope.yaml does not exist",
        "knative/falcosidekick-values.yaml is a HelmValues file",
        "namespace falco-respondr",
        "selector serving.knative.dev/service=falco-respond",
        "field selector reason=PodDeleted",
        "openfaas/rbac-token.yaml is a Kubernetes file",
        "OpenFaaS secret falco-token",
        "ksvc falco is not defined",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "docs check missed {want:?}: {errors:#?}"
        );
    }
}
