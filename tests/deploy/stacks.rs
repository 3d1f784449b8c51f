//! What has no upstream schema, checked field by field: the OpenFaaS stack files (faas-cli)
//! and the Falcosidekick Helm values of each platform.

use serde_json::{Value, json};

use crate::{
    env_contract::{EnvValue, env_sources},
    files::*,
    schemas::{is_dns_label, is_dns_subdomain},
};

// ---- OpenFaaS stack and Helm values (no upstream schema) --------------------------------

/// faas-cli's stack format (go-sdk `stack/schema.go`), restricted to what a prebuilt image
/// on OpenFaaS CE may use.
pub(crate) fn stack_errors(stack: &Value) -> Vec<String> {
    let mut errors = vec![];
    let Some(top) = stack.as_object() else {
        return vec!["not a mapping".into()];
    };
    for key in top.keys() {
        if !["version", "provider", "functions", "configuration"].contains(&key.as_str()) {
            errors.push(format!("unknown top-level field {key:?}"));
        }
    }
    // `version: 1.0` is a float to YAML; faas-cli reads the text "1.0", the only valid one.
    match top.get("version") {
        Some(Value::String(s)) if s == "1.0" => {}
        Some(Value::Number(n)) if n.as_f64() == Some(1.0) => {}
        other => errors.push(format!("version must be 1.0, is {other:?}")),
    }
    match top.get("provider").and_then(Value::as_object) {
        Some(provider) => {
            for key in provider.keys() {
                if !["name", "gateway"].contains(&key.as_str()) {
                    errors.push(format!("unknown provider field {key:?}"));
                }
            }
            if provider.get("name").and_then(Value::as_str) != Some("openfaas") {
                errors.push("provider.name must be openfaas".into());
            }
            match provider.get("gateway").and_then(Value::as_str) {
                Some(g) if g.starts_with("http://") || g.starts_with("https://") => {}
                other => errors.push(format!("provider.gateway must be a URL, is {other:?}")),
            }
        }
        None => errors.push("no provider".into()),
    }
    let known = [
        "lang",
        "handler",
        "image",
        "fprocess",
        "environment",
        "secrets",
        "skip_build",
        "constraints",
        "environment_file",
        "labels",
        "limits",
        "requests",
        "readonly_root_filesystem",
        "build_options",
        "annotations",
        "namespace",
        "build_args",
        "platforms",
        "build_secrets",
    ];
    let functions = top.get("functions").and_then(Value::as_object);
    if functions.is_none_or(|f| f.is_empty()) {
        errors.push("no functions".into());
    }
    for (name, f) in functions.into_iter().flatten() {
        let e = |msg: String| format!("functions.{name}: {msg}");
        if !is_dns_label(name) {
            errors.push(e("name must be a DNS-1123 label".into()));
        }
        let Some(f) = f.as_object() else {
            errors.push(e("not a mapping".into()));
            continue;
        };
        for key in f.keys() {
            if !known.contains(&key.as_str()) {
                errors.push(e(format!("unknown field {key:?}")));
            }
        }
        if f.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            errors.push(e("image is required".into()));
        }
        if f.get("skip_build") != Some(&Value::Bool(true)) {
            errors.push(e(
                "skip_build must be true: the image is built from the Dockerfile".into(),
            ));
        }
        if f.get("namespace").and_then(Value::as_str) != Some("openfaas-fn") {
            errors.push(e(
                "namespace must be openfaas-fn (the only one OpenFaaS CE allows)".into(),
            ));
        }
        if f.get("readonly_root_filesystem") != Some(&Value::Bool(true)) {
            errors.push(e("readonly_root_filesystem must be true".into()));
        }
        for map in ["environment", "labels", "annotations"] {
            if let Some(m) = f.get(map) {
                match m.as_object() {
                    Some(m) => {
                        for (k, v) in m {
                            if !v.is_string() {
                                errors
                                    .push(e(format!("{map}.{k} must be a quoted string, is {v}")));
                            }
                        }
                    }
                    None => errors.push(e(format!("{map} must be a mapping"))),
                }
            }
        }
        if let Some(max) = f
            .get("labels")
            .and_then(|l| l.get("com.openfaas.scale.max"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u32>().ok())
            && max > 5
        {
            errors.push(e(
                "com.openfaas.scale.max above 5 is rejected by OpenFaaS CE".into(),
            ));
        }
        if let Some(secrets) = f.get("secrets") {
            match secrets.as_array() {
                Some(list)
                    if list
                        .iter()
                        .all(|s| s.as_str().is_some_and(is_dns_subdomain)) => {}
                _ => errors.push(e("secrets must be a list of DNS-1123 names".into())),
            }
        }
        for res in ["limits", "requests"] {
            if let Some(r) = f.get(res) {
                let Some(r) = r.as_object() else {
                    errors.push(e(format!("{res} must be a mapping")));
                    continue;
                };
                for (k, v) in r {
                    match (k.as_str(), v.as_str()) {
                        ("memory", Some(m))
                            if m.ends_with("Mi") && m[..m.len() - 2].parse::<u32>().is_ok() => {}
                        ("cpu", Some(c)) if !c.is_empty() => {}
                        _ => errors.push(e(format!(
                            "{res}.{k}: {v} (memory must be NNNMi, cpu a string)"
                        ))),
                    }
                }
            }
        }
    }
    errors
}

pub(crate) fn stacks() -> Vec<(&'static str, Value)> {
    files_of(FileKind::OpenFaasStack)
        .into_iter()
        .map(|f| {
            let mut docs = yaml_docs(f);
            assert_eq!(docs.len(), 1, "{f}: one YAML document expected");
            (f, docs.remove(0))
        })
        .collect()
}

pub(crate) fn priority_rank(p: &str) -> Option<usize> {
    let p = p.to_ascii_lowercase();
    let p = if p == "info" {
        "informational".into()
    } else {
        p
    };
    PRIORITIES.iter().position(|x| *x == p)
}

pub(crate) fn broker_ingress_url() -> String {
    let brokers = objs(EVENTING, "Broker");
    assert_eq!(brokers.len(), 1, "one Broker expected");
    format!(
        "http://broker-ingress.knative-eventing.svc.cluster.local/{}/{}",
        brokers[0].namespace().unwrap_or("?"),
        brokers[0].name()
    )
}

/// The URL Falcosidekick's webhook output must post to, derived from argo/eventsource.yaml.
pub(crate) fn eventsource_url() -> String {
    let sources = objs(ARGO, "EventSource");
    assert_eq!(sources.len(), 1, "one EventSource expected");
    let es = sources[0];
    let port = &es.v["spec"]["service"]["ports"][0];
    let webhooks = es.v["spec"]["webhook"]
        .as_object()
        .expect("a webhook EventSource");
    assert_eq!(webhooks.len(), 1, "one webhook event expected");
    let hook = webhooks.values().next().unwrap();
    assert_eq!(
        hook["port"].as_str(),
        Some(port["targetPort"].to_string().as_str()),
        "{}: the webhook listens where the Service sends",
        es.id()
    );
    format!(
        "http://{}-eventsource-svc.{}.svc.cluster.local:{}{}",
        es.name(),
        es.namespace().unwrap_or("?"),
        port["port"],
        str_at(hook, "/endpoint")
    )
}

/// The Falcosidekick Helm values of one platform: Falcosidekick enabled, exactly the one
/// output that platform needs, pointing at what the manifests deploy.
pub(crate) fn values_errors(rel: &str, values: &Value) -> Vec<String> {
    let mut errors = vec![];
    let Some(top) = values.as_object() else {
        return vec!["not a mapping".into()];
    };
    for key in top.keys() {
        if !["tty", "falcosidekick"].contains(&key.as_str()) {
            errors.push(format!("unexpected top-level value {key:?}"));
        }
    }
    let sk = &values["falcosidekick"];
    if sk["enabled"] != json!(true) {
        errors.push("falcosidekick.enabled must be true".into());
    }
    let outputs: Vec<&String> = sk["config"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    let (output, allowed, expected): (&str, &[&str], Vec<(&str, Value)>) =
        match rel.split('/').next() {
            Some("knative") => (
                "cloudevents",
                &["address", "extension", "minimumpriority"],
                vec![("address", json!(broker_ingress_url()))],
            ),
            // Falcosidekick's openfaas output cannot send headers: the webhook output, with the
            // token in customHeaders (given on the helm command line), calls the gateway.
            Some("openfaas") => (
                "webhook",
                WEBHOOK_KEYS,
                vec![("address", json!(openfaas_function_url()))],
            ),
            Some("argo") => (
                "webhook",
                WEBHOOK_KEYS,
                vec![("address", json!(eventsource_url()))],
            ),
            _ => return vec![format!("{rel}: which platform?")],
        };
    if outputs != [output] {
        errors.push(format!(
            "falcosidekick.config must configure exactly the {output} output, has {outputs:?}"
        ));
    }
    let out = &sk["config"][output];
    for key in out.as_object().into_iter().flat_map(|m| m.keys()) {
        if !allowed.contains(&key.as_str()) {
            errors.push(format!("unknown {output} setting {key:?}"));
        }
    }
    for (key, want) in expected {
        if out[key] != want {
            errors.push(format!("{output}.{key} is {}, expected {want}", out[key]));
        }
    }
    if out.get("customHeaders").is_some() {
        errors.push(format!(
            "{output}.customHeaders carries the token: pass it with --set-string on the helm command line, not in a file"
        ));
    }
    match out["minimumpriority"].as_str().map(priority_rank) {
        None => {}
        Some(None) => errors.push(format!(
            "{output}.minimumpriority {} is not a Falco priority",
            out["minimumpriority"]
        )),
        Some(Some(rank)) => {
            // Falcosidekick must forward at least what the function acts on.
            let fn_min = platform_min_priority(rel);
            if let Some(fn_rank) = fn_min.as_deref().and_then(priority_rank)
                && rank < fn_rank
            {
                errors.push(format!(
                    "{output}.minimumpriority {} drops events the function acts on (MIN_PRIORITY {fn_min:?})",
                    out["minimumpriority"]
                ));
            }
        }
    }
    errors
}

pub(crate) fn platform_min_priority(rel: &str) -> Option<String> {
    let prefix = format!("{}/", rel.split('/').next().unwrap_or(""));
    env_sources()
        .into_iter()
        .filter(|s| s.origin.starts_with(&prefix))
        .flat_map(|s| s.vars)
        .find(|(n, _)| n == "MIN_PRIORITY")
        .and_then(|(_, v)| match v {
            EnvValue::Literal(s) => Some(s),
            EnvValue::FieldRef(_) => None,
        })
}

/// The keys of Falcosidekick's webhook output, spelt as the chart reads them (falcosecurity/charts
/// falcosidekick values.yaml; `customHeaders` is camel case, any other spelling is ignored).
pub(crate) const WEBHOOK_KEYS: &[&str] = &[
    "address",
    "method",
    "customHeaders",
    "minimumpriority",
    "checkcert",
    "mutualtls",
];

/// The gateway URL of the function in openfaas/stack.yml.
pub(crate) fn openfaas_function_url() -> String {
    let (name, ns) = openfaas_function();
    format!("http://gateway.openfaas:8080/function/{name}.{ns}")
}

/// The function in openfaas/stack.yml: (name, namespace).
pub(crate) fn openfaas_function() -> (String, String) {
    let stack = yaml_docs("openfaas/stack.yml").remove(0);
    let functions = stack["functions"].as_object().expect("functions");
    assert_eq!(
        functions.len(),
        1,
        "openfaas/stack.yml: one function expected"
    );
    let (name, f) = functions.iter().next().unwrap();
    (name.clone(), str_at(f, "/namespace").to_string())
}

#[test]
fn openfaas_stacks_use_only_known_fields() {
    let stacks = stacks();
    assert!(
        stacks.len() >= 2,
        "openfaas/stack.yml and stack-default-sa.yml"
    );
    for (file, stack) in &stacks {
        let errors = stack_errors(stack);
        assert!(errors.is_empty(), "{file}:\n{}", errors.join("\n"));
        for f in stack["functions"].as_object().unwrap().values() {
            assert_eq!(f["image"], IMAGE, "{file}");
        }
    }
}

#[test]
fn falcosidekick_values_point_at_what_the_manifests_deploy() {
    let files = files_of(FileKind::HelmValues);
    assert_eq!(files.len(), 3, "one values file per platform: {files:?}");
    for file in files {
        let docs = yaml_docs(file);
        assert_eq!(docs.len(), 1, "{file}");
        let errors = values_errors(file, &docs[0]);
        assert!(errors.is_empty(), "{file}:\n{}", errors.join("\n"));
    }
}

#[test]
fn no_lowercase_customheaders_anywhere() {
    // Falcosidekick's chart reads only `customHeaders`; the lowercase key is silently ignored.
    let mut files: Vec<String> = manifest_files().to_vec();
    files.extend(
        [
            "docs/deploy-knative.md",
            "docs/deploy-openfaas.md",
            "docs/deploy-argo.md",
            "README.md",
            "SECURITY.md",
        ]
        .map(String::from),
    );
    for f in &files {
        assert!(
            !read(f).contains("customheaders"),
            "{f}: `customheaders` is ignored by the falcosidekick chart; the key is customHeaders"
        );
    }
}
