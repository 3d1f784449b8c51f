//! Offline checks of everything that deploys falco-responder: `func.yaml`, `knative/`,
//! `openfaas/`, `argo/`, the `Dockerfile` and `docs/deploy-*.md`.
//!
//! - Every Kubernetes document validates against the upstream schema for its apiVersion+kind
//!   (copies in `tests/schemas/`, provenance in `tests/schemas/SOURCES.md`); a document whose
//!   kind has no schema fails. `func.yaml` validates against knative/func's schema. OpenFaaS
//!   stack files and the Falcosidekick Helm values have no upstream schema and are checked
//!   field by field here.
//! - Each of those validators is shown to reject broken documents.
//! - Every env var a manifest sets is one the binary reads (`ENV_VARS`), and each manifest's
//!   whole set is accepted by `Config::from_vars`, exactly as at start-up.
//! - Names, namespaces, URLs, ServiceAccounts and RBAC agree across the manifests, the
//!   Helm values and the commands in the docs.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::OnceLock,
};

use falco_responder::config::{Config, ENV_VARS};
use serde_json::{Value, json};

/// The image placeholder every manifest and doc uses (replaced by a digest when deploying).
const IMAGE: &str = "ghcr.io/falco-responder/falco-responder:0.1.0";
/// GET paths the binary answers 200 on while healthy.
const HEALTH_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/health/liveness",
    "/health/readiness",
    "/_/health",
    "/_/ready",
];
const MANIFEST_DIRS: &[&str] = &["knative", "openfaas", "argo"];
const FALCO_CE_TYPE: &str = "falco.rule.output.v1";
const RESULT_CE_TYPE: &str = "org.falco-responder.result.v1";
const TEST_RULE: &str = "Terminal shell in container";
/// Namespaces the docs install platforms into (not defined by our manifests).
const PLATFORM_NAMESPACES: &[&str] = &[
    "falco",
    "knative-serving",
    "knative-eventing",
    "openfaas",
    "argo",
];
/// Falco priorities, most severe first (Falcosidekick spells them in lower case).
const PRIORITIES: &[&str] = &[
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
];

// ---- files ------------------------------------------------------------------------------

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    yaml_docs_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_docs_str(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("not valid YAML: {e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Kubernetes,
    HelmValues,
    OpenFaasStack,
}

fn classify(rel: &str) -> FileKind {
    if rel.ends_with("falcosidekick-values.yaml") {
        FileKind::HelmValues
    } else if rel.starts_with("openfaas/stack") {
        FileKind::OpenFaasStack
    } else {
        FileKind::Kubernetes
    }
}

/// Every YAML file under knative/, openfaas/ and argo/, repo-relative, sorted.
fn manifest_files() -> &'static [String] {
    static FILES: OnceLock<Vec<String>> = OnceLock::new();
    FILES.get_or_init(|| {
        let mut files = vec![];
        for dir in MANIFEST_DIRS {
            for entry in
                std::fs::read_dir(root().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"))
            {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name.ends_with(".yaml") || name.ends_with(".yml") {
                    files.push(format!("{dir}/{name}"));
                }
            }
        }
        files.sort();
        files
    })
}

fn files_of(kind: FileKind) -> Vec<&'static str> {
    manifest_files()
        .iter()
        .filter(|f| classify(f) == kind)
        .map(String::as_str)
        .collect()
}

// ---- Kubernetes objects ---------------------------------------------------------------

struct Obj {
    file: String,
    index: usize,
    v: Value,
}

impl Obj {
    fn api_version(&self) -> &str {
        self.v["apiVersion"].as_str().unwrap_or("")
    }
    fn kind(&self) -> &str {
        self.v["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.v["metadata"]["name"].as_str().unwrap_or("")
    }
    fn namespace(&self) -> Option<&str> {
        self.v["metadata"]["namespace"].as_str()
    }
    fn id(&self) -> String {
        format!(
            "{} (document {}) {}/{}",
            self.file,
            self.index + 1,
            self.kind(),
            self.name()
        )
    }
}

fn objects() -> &'static [Obj] {
    static OBJS: OnceLock<Vec<Obj>> = OnceLock::new();
    OBJS.get_or_init(|| {
        let mut objs = vec![];
        for file in files_of(FileKind::Kubernetes) {
            for (index, v) in yaml_docs(file).into_iter().enumerate() {
                objs.push(Obj {
                    file: file.to_string(),
                    index,
                    v,
                });
            }
        }
        objs
    })
}

fn objs(api_version: &str, kind: &str) -> Vec<&'static Obj> {
    objects()
        .iter()
        .filter(|o| o.api_version() == api_version && o.kind() == kind)
        .collect()
}

fn obj(api_version: &str, kind: &str, name: &str) -> Option<&'static Obj> {
    objs(api_version, kind)
        .into_iter()
        .find(|o| o.name() == name)
}

fn the(api_version: &str, kind: &str, name: &str) -> &'static Obj {
    obj(api_version, kind, name)
        .unwrap_or_else(|| panic!("no {kind} {name:?} ({api_version}) in {MANIFEST_DIRS:?}"))
}

fn exists_in(api_version: &str, kind: &str, name: &str, namespace: Option<&str>) -> bool {
    objs(api_version, kind)
        .iter()
        .any(|o| o.name() == name && o.namespace() == namespace)
}

const KSVC: &str = "serving.knative.dev/v1";
const EVENTING: &str = "eventing.knative.dev/v1";
const ARGO: &str = "argoproj.io/v1alpha1";
const RBAC: &str = "rbac.authorization.k8s.io/v1";

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {ptr} in {v}"))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

// ---- schemas ----------------------------------------------------------------------------

struct SchemaSpec {
    api_version: &'static str,
    kind: &'static str,
    /// Relative to tests/schemas/.
    file: &'static str,
    /// Validate against this entry of the file's `definitions` (argo-events' schema.json).
    definition: Option<&'static str>,
    namespaced: bool,
    /// A custom resource: the datree/argo schemas leave the top level and `metadata` open,
    /// so `generic_errors` checks those.
    custom: bool,
}

const fn spec(
    api_version: &'static str,
    kind: &'static str,
    file: &'static str,
    definition: Option<&'static str>,
    namespaced: bool,
    custom: bool,
) -> SchemaSpec {
    SchemaSpec {
        api_version,
        kind,
        file,
        definition,
        namespaced,
        custom,
    }
}

#[rustfmt::skip]
const SCHEMAS: &[SchemaSpec] = &[
    spec("v1", "Namespace", "kubernetes/v1.30.0-standalone-strict/namespace-v1.json", None, false, false),
    spec("v1", "ServiceAccount", "kubernetes/v1.30.0-standalone-strict/serviceaccount-v1.json", None, true, false),
    spec("v1", "Secret", "kubernetes/v1.30.0-standalone-strict/secret-v1.json", None, true, false),
    spec(RBAC, "ClusterRole", "kubernetes/v1.30.0-standalone-strict/clusterrole-rbac-v1.json", None, false, false),
    spec(RBAC, "ClusterRoleBinding", "kubernetes/v1.30.0-standalone-strict/clusterrolebinding-rbac-v1.json", None, false, false),
    spec(RBAC, "Role", "kubernetes/v1.30.0-standalone-strict/role-rbac-v1.json", None, true, false),
    spec(RBAC, "RoleBinding", "kubernetes/v1.30.0-standalone-strict/rolebinding-rbac-v1.json", None, true, false),
    spec(KSVC, "Service", "knative/datree/serving.knative.dev/service_v1.json", None, true, true),
    spec(EVENTING, "Broker", "knative/datree/eventing.knative.dev/broker_v1.json", None, true, true),
    spec(EVENTING, "Trigger", "knative/datree/eventing.knative.dev/trigger_v1.json", None, true, true),
    spec(ARGO, "EventBus", "argo/argo-events/schema.json", Some("io.argoproj.events.v1alpha1.EventBus"), true, true),
    spec(ARGO, "EventSource", "argo/argo-events/schema.json", Some("io.argoproj.events.v1alpha1.EventSource"), true, true),
    spec(ARGO, "Sensor", "argo/argo-events/schema.json", Some("io.argoproj.events.v1alpha1.Sensor"), true, true),
    spec(ARGO, "WorkflowTemplate", "argo/datree/argoproj.io/workflowtemplate_v1alpha1.json", None, true, true),
];

fn schema_spec(api_version: &str, kind: &str) -> Option<&'static SchemaSpec> {
    SCHEMAS
        .iter()
        .find(|s| s.api_version == api_version && s.kind == kind)
}

fn load_json(rel: &str) -> Value {
    serde_json::from_str(&read(&format!("tests/schemas/{rel}")))
        .unwrap_or_else(|e| panic!("tests/schemas/{rel}: {e}"))
}

/// argo-events' schema.json lists every field but never forbids unknown ones: make each
/// object schema that lists `properties` closed, so a misspelt field fails as it would in
/// the datree schemas.
fn close_objects(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    let mut has_properties = false;
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        has_properties = true;
        props.values_mut().for_each(close_objects);
    }
    if has_properties && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(items) = map.get_mut("items") {
        close_objects(items);
    }
    if let Some(extra @ Value::Object(_)) = map.get_mut("additionalProperties") {
        close_objects(extra);
    }
    if let Some(Value::Object(defs)) = map.get_mut("definitions") {
        defs.values_mut().for_each(close_objects);
    }
}

fn load_schema(spec: &SchemaSpec) -> Value {
    let mut schema = load_json(spec.file);
    if let Some(def) = spec.definition {
        let mut definitions = schema["definitions"].take();
        if let Some(defs) = definitions.as_object_mut() {
            defs.values_mut().for_each(close_objects);
        }
        // Go fields without omitempty come out as required; the webhook's `url` is not
        // needed by the controller and upstream examples omit it (see SOURCES.md).
        if let Some(required) = definitions
            .pointer_mut("/io.argoproj.events.v1alpha1.WebhookEventSource/required")
            .and_then(Value::as_array_mut)
        {
            required.retain(|r| r != "url");
        }
        schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$ref": format!("#/definitions/{def}"),
            "definitions": definitions,
        });
    }
    schema
}

fn validators() -> &'static BTreeMap<(&'static str, &'static str), jsonschema::Validator> {
    static V: OnceLock<BTreeMap<(&'static str, &'static str), jsonschema::Validator>> =
        OnceLock::new();
    V.get_or_init(|| {
        SCHEMAS
            .iter()
            .map(|s| {
                let v = jsonschema::validator_for(&load_schema(s))
                    .unwrap_or_else(|e| panic!("schema {} does not compile: {e}", s.file));
                ((s.api_version, s.kind), v)
            })
            .collect()
    })
}

fn func_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        jsonschema::validator_for(&load_json("func/func_yaml-schema.json"))
            .expect("func schema compiles")
    })
}

fn validation_errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// What the schemas leave open: top-level keys of custom resources, `metadata`, and the
/// namespace rule (namespaced objects carry an explicit namespace so `kubectl apply -f`
/// lands them where the other manifests expect them; cluster-scoped ones carry none).
fn generic_errors(doc: &Value, spec: &SchemaSpec) -> Vec<String> {
    let mut errors = vec![];
    let Some(top) = doc.as_object() else {
        return vec!["not a mapping".into()];
    };
    if spec.custom {
        for key in top.keys() {
            if !["apiVersion", "kind", "metadata", "spec"].contains(&key.as_str()) {
                errors.push(format!("unknown top-level field {key:?}"));
            }
        }
        if !top.contains_key("spec") {
            errors.push("no spec".into());
        }
    }
    if top.contains_key("status") {
        errors.push("status belongs to the cluster, not to a manifest".into());
    }
    let Some(meta) = top.get("metadata").and_then(Value::as_object) else {
        errors.push("no metadata".into());
        return errors;
    };
    for key in meta.keys() {
        if !["name", "namespace", "labels", "annotations"].contains(&key.as_str()) {
            errors.push(format!("unexpected metadata field {key:?}"));
        }
    }
    match meta.get("name").and_then(Value::as_str) {
        Some(name) if is_dns_subdomain(name) => {
            let label_only = matches!(spec.kind, "Namespace" | "Service" | "EventSource");
            if label_only && !is_dns_label(name) {
                errors.push(format!("name {name:?} must be a DNS-1123 label"));
            }
        }
        other => errors.push(format!("metadata.name {other:?} is not a DNS-1123 name")),
    }
    for map in ["labels", "annotations"] {
        if let Some(m) = meta.get(map) {
            match m.as_object() {
                Some(m) => {
                    for (k, v) in m {
                        if !v.is_string() {
                            errors.push(format!("{map}.{k} must be a string, is {v}"));
                        }
                    }
                }
                None => errors.push(format!("metadata.{map} must be a mapping")),
            }
        }
    }
    match (
        spec.namespaced,
        meta.get("namespace").and_then(Value::as_str),
    ) {
        (true, None) => errors.push(format!(
            "{} is namespaced: set metadata.namespace",
            spec.kind
        )),
        (true, Some(ns)) if !is_dns_label(ns) => {
            errors.push(format!("namespace {ns:?} is not a DNS-1123 label"))
        }
        (false, Some(ns)) => errors.push(format!(
            "{} is cluster-scoped: remove metadata.namespace {ns:?}",
            spec.kind
        )),
        _ => {}
    }
    errors
}

/// All problems of one Kubernetes document; `Err` when there is no schema for its kind.
fn kube_errors(doc: &Value) -> Result<Vec<String>, String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    let spec = schema_spec(api_version, kind).ok_or_else(|| {
        format!(
            "no schema for apiVersion {api_version:?} kind {kind:?} (add it to SCHEMAS and tests/schemas/)"
        )
    })?;
    let mut errors = validation_errors(&validators()[&(spec.api_version, spec.kind)], doc);
    errors.extend(generic_errors(doc, spec));
    Ok(errors)
}

// ---- OpenFaaS stack and Helm values (no upstream schema) --------------------------------

/// faas-cli's stack format (go-sdk `stack/schema.go`), restricted to what a prebuilt image
/// on OpenFaaS CE may use.
fn stack_errors(stack: &Value) -> Vec<String> {
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

fn stacks() -> Vec<(&'static str, Value)> {
    files_of(FileKind::OpenFaasStack)
        .into_iter()
        .map(|f| {
            let mut docs = yaml_docs(f);
            assert_eq!(docs.len(), 1, "{f}: one YAML document expected");
            (f, docs.remove(0))
        })
        .collect()
}

fn priority_rank(p: &str) -> Option<usize> {
    let p = p.to_ascii_lowercase();
    let p = if p == "info" {
        "informational".into()
    } else {
        p
    };
    PRIORITIES.iter().position(|x| *x == p)
}

fn broker_ingress_url() -> String {
    let brokers = objs(EVENTING, "Broker");
    assert_eq!(brokers.len(), 1, "one Broker expected");
    format!(
        "http://broker-ingress.knative-eventing.svc.cluster.local/{}/{}",
        brokers[0].namespace().unwrap_or("?"),
        brokers[0].name()
    )
}

/// The URL Falcosidekick's webhook output must post to, derived from argo/eventsource.yaml.
fn eventsource_url() -> String {
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
fn values_errors(rel: &str, values: &Value) -> Vec<String> {
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
            Some("openfaas") => {
                let (fn_name, fn_ns) = openfaas_function();
                (
                    "openfaas",
                    &[
                        "functionname",
                        "functionnamespace",
                        "gatewayservice",
                        "gatewayport",
                        "gatewaynamespace",
                        "minimumpriority",
                        "mutualtls",
                        "checkcert",
                    ],
                    vec![
                        ("functionname", json!(fn_name)),
                        ("functionnamespace", json!(fn_ns)),
                        ("gatewayservice", json!("gateway")),
                        ("gatewaynamespace", json!("openfaas")),
                        ("gatewayport", json!(8080)),
                    ],
                )
            }
            Some("argo") => (
                "webhook",
                &[
                    "address",
                    "method",
                    "customheaders",
                    "minimumpriority",
                    "checkcert",
                    "mutualtls",
                ],
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

fn platform_min_priority(rel: &str) -> Option<String> {
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

/// The function in openfaas/stack.yml: (name, namespace).
fn openfaas_function() -> (String, String) {
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

// ---- env vars ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum EnvValue {
    Literal(String),
    FieldRef(String),
}

struct EnvSource {
    origin: String,
    vars: Vec<(String, EnvValue)>,
}

fn container_env(c: &Value, origin: &str) -> Vec<(String, EnvValue)> {
    let mut vars = vec![];
    for e in c["env"].as_array().into_iter().flatten() {
        let name = str_at(e, "/name").to_string();
        let value = if let Some(v) = e.get("value") {
            EnvValue::Literal(
                v.as_str()
                    .unwrap_or_else(|| panic!("{origin}: env {name} must be a string"))
                    .to_string(),
            )
        } else if let Some(path) = e.pointer("/valueFrom/fieldRef/fieldPath") {
            EnvValue::FieldRef(path.as_str().unwrap().to_string())
        } else {
            panic!("{origin}: env {name}: only value and valueFrom.fieldRef are expected")
        };
        vars.push((name, value));
    }
    assert!(
        c.get("envFrom").is_none(),
        "{origin}: envFrom would set variables this test cannot see"
    );
    vars
}

fn is_our_image(image: &str) -> bool {
    image == IMAGE || image.starts_with("ghcr.io/falco-responder/falco-responder@")
}

/// The containers that run our image, wherever a manifest defines one.
fn function_containers() -> Vec<(String, &'static Value)> {
    let mut out = vec![];
    for o in objects() {
        let containers: Vec<&Value> = match (o.api_version(), o.kind()) {
            (KSVC, "Service") => o.v["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .collect(),
            (ARGO, "WorkflowTemplate") => o.v["spec"]["templates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.get("container"))
                .collect(),
            _ => vec![],
        };
        for c in containers {
            if c["image"].as_str().is_some_and(is_our_image) {
                out.push((o.id(), c));
            }
        }
    }
    out
}

/// Logical lines of a shell script: `\`-continued lines joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for line in text.lines() {
        if let Some(stripped) = line.trim_end().strip_suffix('\\') {
            cur.push_str(stripped);
            cur.push(' ');
        } else {
            cur.push_str(line);
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits a shell line into words: quotes, backslash escapes, `#` comments. Enough for the
/// commands in our scripts and docs (no expansions are performed).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        _ => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The words of the `kn service create ...` command in knative/kn-service-create.sh.
fn kn_create_words() -> Vec<String> {
    let script = read("knative/kn-service-create.sh");
    let line = logical_lines(&script)
        .into_iter()
        .find(|l| l.contains("kn service create"))
        .expect("knative/kn-service-create.sh runs `kn service create`");
    let words = shell_words(&line);
    let at = words.iter().position(|w| w == "kn").unwrap();
    words[at..].to_vec()
}

/// Values of a repeatable flag (`--flag value` or `--flag=value`).
fn flag_values(words: &[String], flag: &str) -> Vec<String> {
    let mut out = vec![];
    for (i, w) in words.iter().enumerate() {
        if w == flag {
            if let Some(v) = words.get(i + 1) {
                out.push(v.clone());
            }
        } else if let Some(v) = w.strip_prefix(&format!("{flag}=")) {
            out.push(v.to_string());
        }
    }
    out
}

fn flag_value(words: &[String], flag: &str) -> String {
    let values = flag_values(words, flag);
    assert_eq!(values.len(), 1, "{flag} once expected in {words:?}");
    values[0].clone()
}

/// Every place that sets env vars for the binary.
fn env_sources() -> Vec<EnvSource> {
    let mut sources: Vec<EnvSource> = function_containers()
        .into_iter()
        .map(|(origin, c)| EnvSource {
            vars: container_env(c, &origin),
            origin,
        })
        .collect();
    let func = yaml_docs("func.yaml").remove(0);
    sources.push(EnvSource {
        origin: "func.yaml run.envs".into(),
        vars: func["run"]["envs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    str_at(e, "/name").to_string(),
                    EnvValue::Literal(str_at(e, "/value").to_string()),
                )
            })
            .collect(),
    });
    sources.push(EnvSource {
        origin: "knative/kn-service-create.sh --env".into(),
        vars: flag_values(&kn_create_words(), "--env")
            .into_iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("--env NAME=value");
                (k.to_string(), EnvValue::Literal(v.to_string()))
            })
            .collect(),
    });
    for (file, stack) in stacks() {
        for (name, f) in stack["functions"].as_object().into_iter().flatten() {
            sources.push(EnvSource {
                origin: format!("{file} functions.{name}.environment"),
                vars: f["environment"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            EnvValue::Literal(v.as_str().unwrap_or("<not a string>").to_string()),
                        )
                    })
                    .collect(),
            });
        }
    }
    sources
}

fn resolve(vars: &[(String, EnvValue)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(name, value)| {
            let value = match value {
                EnvValue::Literal(s) => s.clone(),
                // What the downward API would put there.
                EnvValue::FieldRef(p) if p == "metadata.namespace" => "argo-events".into(),
                EnvValue::FieldRef(_) => "falco-responder-x7k2p".into(),
            };
            (name.clone(), value)
        })
        .collect()
}

fn env_map(vars: &[(String, EnvValue)]) -> BTreeMap<String, EnvValue> {
    vars.iter().cloned().collect()
}

// ---- docs -------------------------------------------------------------------------------

/// The shell commands in a Markdown document's ```sh / ```bash blocks, as word lists: one
/// per pipeline stage, `&&`/`;`/`&` part and `$(...)` substitution.
fn doc_commands(markdown: &str) -> Vec<Vec<String>> {
    let mut commands = vec![];
    // Inside a fence: Some(is a shell block, its text).
    let mut block: Option<(bool, String)> = None;
    for line in markdown.lines() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            match block.take() {
                Some((true, text)) => {
                    for l in logical_lines(&text) {
                        commands.extend(split_commands(shell_words(&l)));
                    }
                }
                Some((false, _)) => {}
                None => {
                    let shell = ["sh", "bash", "shell", "console"].contains(&lang.trim());
                    block = Some((shell, String::new()));
                }
            }
            continue;
        }
        if let Some((_, text)) = block.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    commands.retain(|c| !c.is_empty());
    commands
}

fn split_commands(words: Vec<String>) -> Vec<Vec<String>> {
    let mut out = vec![vec![]];
    for w in words {
        if ["|", "||", "&&", ";", "&"].contains(&w.as_str()) {
            out.push(vec![]);
            continue;
        }
        if let Some(at) = w.find("$(") {
            let (before, inner) = (&w[..at], &w[at + 2..]);
            if !before.is_empty() {
                out.last_mut().unwrap().push(before.to_string());
            }
            out.push(vec![]);
            if !inner.is_empty() {
                out.last_mut()
                    .unwrap()
                    .push(inner.trim_end_matches(')').to_string());
            }
            continue;
        }
        let w = w.strip_suffix(')').map(String::from).unwrap_or(w);
        out.last_mut().unwrap().push(w);
    }
    out
}

/// Flags in the docs' commands that take no value (so the next word is positional).
const BOOLEAN_FLAGS: &[&str] = &[
    "--all-namespaces",
    "-A",
    "--server-side",
    "--ignore-not-found",
    "--all",
    "--create-namespace",
    "--install",
    "-it",
    "-s",
    "--password-stdin",
];

const REPO_PATH_PREFIXES: &[&str] = &["knative/", "openfaas/", "argo/", "scripts/", "docs/"];

/// Problems in the commands of one doc, and the repo files they use.
fn doc_errors(markdown: &str) -> (Vec<String>, BTreeSet<String>) {
    let mut errors = vec![];
    let mut used = BTreeSet::new();
    let mut namespaces: BTreeSet<String> = objects()
        .iter()
        .filter_map(|o| o.namespace().map(String::from))
        .chain(objs("v1", "Namespace").iter().map(|o| o.name().to_string()))
        .collect();
    for (_, stack) in stacks() {
        for f in stack["functions"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, f)| f)
        {
            namespaces.insert(str_at(f, "/namespace").to_string());
        }
    }
    namespaces.extend(PLATFORM_NAMESPACES.iter().map(|s| s.to_string()));
    let stack_functions: BTreeSet<String> = stacks()
        .iter()
        .flat_map(|(_, s)| {
            s["functions"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    let stack_secrets: BTreeSet<String> = stacks()
        .iter()
        .flat_map(|(_, s)| {
            s["functions"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|f| strs(&f["secrets"]))
                .collect::<Vec<_>>()
        })
        .collect();
    let names = |api: &str, kind: &str| -> BTreeSet<String> {
        objs(api, kind)
            .iter()
            .map(|o| o.name().to_string())
            .collect()
    };
    let ksvcs = names(KSVC, "Service");

    for cmd in doc_commands(markdown) {
        let line = cmd.join(" ");
        let Some(prog_at) = cmd
            .iter()
            .position(|w| !w.contains('=') || w.starts_with('-'))
        else {
            continue;
        };
        let prog = cmd[prog_at].as_str();
        let args = &cmd[prog_at + 1..];
        for w in &cmd {
            // A repo file (knative/service.yaml), not a Helm chart (openfaas/openfaas).
            let is_path = (REPO_PATH_PREFIXES.iter().any(|p| w.starts_with(p))
                && w.rsplit('/').next().is_some_and(|f| f.contains('.')))
                || ["func.yaml", "Dockerfile"].contains(&w.as_str());
            if is_path {
                if root().join(w).exists() {
                    used.insert(w.clone());
                } else {
                    errors.push(format!("`{line}`: {w} does not exist"));
                }
            }
        }
        let file_flags: &[&str] = match prog {
            "kubectl" => &["-f", "--filename"],
            "helm" => &["-f", "--values"],
            "faas-cli" => &["-f", "--yaml"],
            _ => &[],
        };
        for flag in file_flags {
            for f in flag_values(args, flag) {
                if f.contains("://") || f == "-" {
                    continue;
                }
                let want = match prog {
                    "kubectl" => FileKind::Kubernetes,
                    "helm" => FileKind::HelmValues,
                    _ => FileKind::OpenFaasStack,
                };
                if !manifest_files().contains(&f) {
                    errors.push(format!("`{line}`: {f} is not one of the manifests"));
                } else if classify(&f) != want {
                    errors.push(format!(
                        "`{line}`: {f} is a {:?} file, not for {prog}",
                        classify(&f)
                    ));
                }
            }
        }
        let namespaced_tools = ["kubectl", "helm", "kn", "faas-cli", "func", "argo"];
        for flag in ["-n", "--namespace"]
            .into_iter()
            .filter(|_| namespaced_tools.contains(&prog))
        {
            for ns in flag_values(args, flag) {
                if !namespaces.contains(&ns) {
                    errors.push(format!("`{line}`: namespace {ns} is neither in the manifests nor a platform namespace"));
                }
            }
        }
        for sel in flag_values(args, "-l")
            .into_iter()
            .chain(flag_values(args, "--selector"))
        {
            let Some((key, value)) = sel.split_once('=') else {
                continue;
            };
            let known = match key {
                "serving.knative.dev/service" => ksvcs.clone(),
                "sensor-name" => names(ARGO, "Sensor"),
                "eventsource-name" => names(ARGO, "EventSource"),
                "faas_function" => stack_functions.clone(),
                _ => continue,
            };
            if !known.contains(value) {
                errors.push(format!(
                    "`{line}`: selector {sel} matches nothing we deploy"
                ));
            }
        }
        for sel in flag_values(args, "--field-selector") {
            match sel.split_once('=') {
                Some(("reason", r)) if ["FalcoPodDeleted", "FalcoDryRun"].contains(&r) => {}
                Some(("reportingComponent", "falco-responder")) => {}
                _ => errors.push(format!(
                    "`{line}`: field selector {sel} is not one the function's Events match"
                )),
            }
        }
        // Resources named in kubectl/kn/faas-cli commands exist in the manifests.
        let takes_value = |flag: &str| {
            flag.starts_with('-') && !flag.contains('=') && !BOOLEAN_FLAGS.contains(&flag)
        };
        let positional: Vec<&str> = args
            .iter()
            .enumerate()
            .filter(|(i, w)| !w.starts_with('-') && (*i == 0 || !takes_value(&args[i - 1])))
            .map(|(_, w)| w.as_str())
            .collect();
        let check = |errors: &mut Vec<String>, kind: &str, name: &str, known: &BTreeSet<String>| {
            if !known.contains(name) {
                errors.push(format!(
                    "`{line}`: {kind} {name} is not defined in the manifests"
                ));
            }
        };
        match (prog, positional.as_slice()) {
            ("kubectl", ["get" | "wait" | "describe", rest @ ..]) => {
                for r in rest {
                    if let Some((kind, name)) = r.split_once('/') {
                        match kind {
                            "ksvc" => check(&mut errors, "ksvc", name, &ksvcs),
                            "broker" => {
                                check(&mut errors, "Broker", name, &names(EVENTING, "Broker"))
                            }
                            "trigger" => {
                                check(&mut errors, "Trigger", name, &names(EVENTING, "Trigger"))
                            }
                            _ => {}
                        }
                    }
                }
                match rest {
                    ["ksvc", name] => check(&mut errors, "ksvc", name, &ksvcs),
                    ["broker", name] => {
                        check(&mut errors, "Broker", name, &names(EVENTING, "Broker"))
                    }
                    ["secret", name] if name.starts_with("falco-responder") => {
                        check(&mut errors, "Secret", name, &names("v1", "Secret"))
                    }
                    ["svc", name] if name.ends_with("-eventsource-svc") => {
                        let es = name.trim_end_matches("-eventsource-svc");
                        check(&mut errors, "EventSource", es, &names(ARGO, "EventSource"))
                    }
                    _ => {}
                }
            }
            ("kubectl", ["create", "token", sa, ..]) => check(
                &mut errors,
                "ServiceAccount",
                sa,
                &names("v1", "ServiceAccount"),
            ),
            ("kn", ["service", "update" | "describe" | "delete", name, ..]) => {
                check(&mut errors, "ksvc", name, &ksvcs)
            }
            ("faas-cli", ["describe" | "logs" | "remove" | "invoke", name, ..]) => {
                check(&mut errors, "function", name, &stack_functions)
            }
            ("faas-cli", ["secret", "create" | "update" | "remove", name, ..]) => {
                check(&mut errors, "OpenFaaS secret", name, &stack_secrets)
            }
            _ => {}
        }
    }
    (errors, used)
}

/// Sets (`Some`) or removes (`None`) the value at a JSON pointer whose parent exists.
fn edit(v: &mut Value, ptr: &str, value: Option<Value>) {
    let (parent, key) = ptr.rsplit_once('/').unwrap();
    let target = v
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match (target, value) {
        (Value::Object(m), Some(value)) => {
            m.insert(key.to_string(), value);
        }
        (Value::Object(m), None) => {
            m.remove(key).unwrap_or_else(|| panic!("no {ptr}"));
        }
        (Value::Array(a), Some(value)) => a[key.parse::<usize>().unwrap()] = value,
        _ => panic!("cannot edit {ptr}"),
    }
}

// =========================================================================================
// tests
// =========================================================================================

#[test]
fn every_kubernetes_manifest_matches_the_schema_for_its_kind() {
    assert!(
        objects().len() >= 20,
        "found only {} Kubernetes documents under {MANIFEST_DIRS:?}",
        objects().len()
    );
    let mut problems = vec![];
    let mut kinds = BTreeSet::new();
    for o in objects() {
        kinds.insert((o.api_version(), o.kind()));
        match kube_errors(&o.v) {
            Ok(errors) => problems.extend(errors.into_iter().map(|e| format!("{}: {e}", o.id()))),
            Err(e) => problems.push(format!("{}: {e}", o.id())),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every schema we ship is exercised by at least one manifest.
    for s in SCHEMAS {
        assert!(
            kinds.contains(&(s.api_version, s.kind)),
            "no manifest uses the {} {} schema",
            s.api_version,
            s.kind
        );
    }
    // Names are unique per kind and namespace (one `kubectl apply` would overwrite another),
    // except the ClusterRole the two OpenFaaS RBAC variants share on purpose.
    let mut seen: BTreeMap<(String, String, Option<String>), (String, Value)> = BTreeMap::new();
    for o in objects() {
        let key = (
            o.kind().to_string(),
            o.name().to_string(),
            o.namespace().map(String::from),
        );
        if let Some((first, v)) = seen.get(&key) {
            assert_eq!(
                v,
                &o.v,
                "{} and {first} define the same object differently",
                o.id()
            );
        } else {
            seen.insert(key, (o.id(), o.v.clone()));
        }
    }
}

#[test]
fn func_yaml_matches_the_func_schema() {
    let docs = yaml_docs("func.yaml");
    assert_eq!(docs.len(), 1);
    let errors = validation_errors(func_validator(), &docs[0]);
    assert!(errors.is_empty(), "func.yaml:\n{}", errors.join("\n"));
    assert_eq!(docs[0]["specVersion"], "0.36.0", "current func specVersion");
    assert_eq!(docs[0]["image"], IMAGE);
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
        ("containerConcurrency as a string", "Service", "falco-responder", "/spec/template/spec/containerConcurrency", Some(json!("fifty"))),
        ("misspelt probe field", "Service", "falco-responder", "/spec/template/spec/containers/0/readinessProbe/httpGet/pathx", Some(json!("/x"))),
        ("unknown top-level field", "Service", "falco-responder", "/specs", Some(json!({}))),
        ("no namespace", "Service", "falco-responder", "/metadata/namespace", None),
        ("unknown spec field", "Broker", "default", "/spec/deliveryy", Some(json!({}))),
        ("broker as a number", "Trigger", "falco-responder", "/spec/broker", Some(json!(5))),
        ("misspelt filter", "Trigger", "falco-responder", "/spec/filterz", Some(json!({}))),
        ("unknown field", "Namespace", "falco-responder", "/specc", Some(json!({}))),
        ("cluster-scoped with a namespace", "Namespace", "falco-responder", "/metadata/namespace", Some(json!("default"))),
        ("automount as a string", "ServiceAccount", "falco-responder", "/automountServiceAccountToken", Some(json!("yes"))),
        ("type as a number", "Secret", "falco-responder-sa-token", "/type", Some(json!(5))),
        ("verbs as a string", "ClusterRole", "falco-responder", "/rules/0/verbs", Some(json!("get"))),
        ("misspelt subject field", "ClusterRoleBinding", "falco-responder", "/subjects/0/namespacee", Some(json!("x"))),
        ("unknown rule field", "Role", "falco-responder-sensor", "/rules/0/resourcez", Some(json!([]))),
        ("roleRef without name", "RoleBinding", "falco-responder-sensor", "/roleRef/name", None),
        ("replicas as a string", "EventBus", "default", "/spec/jetstream/replicas", Some(json!("three"))),
        ("webhook port as a number", "EventSource", "falco", "/spec/webhook/falco/port", Some(json!(12000))),
        ("misspelt webhook field", "EventSource", "falco", "/spec/webhook/falco/endpointt", Some(json!("/x"))),
        ("misspelt http trigger field", "Sensor", "falco-responder-knative", "/spec/triggers/0/template/http/urll", Some(json!("http://x"))),
        ("retry steps as a string", "Sensor", "falco-responder-knative", "/spec/triggers/0/retryStrategy/steps", Some(json!("4"))),
        ("dependency without eventName", "Sensor", "falco-responder-workflow", "/spec/dependencies/0/eventName", None),
        ("misspelt container field", "WorkflowTemplate", "falco-responder", "/spec/templates/0/container/envv", Some(json!([]))),
        ("env value as a number", "WorkflowTemplate", "falco-responder", "/spec/templates/0/container/env/1/value", Some(json!(1))),
        ("status present", "WorkflowTemplate", "falco-responder", "/status", Some(json!({}))),
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
    for s in SCHEMAS {
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
            "/falcosidekick/config/openfaas/functionname",
            json!("falco-pod-killer"),
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

#[test]
fn every_env_var_a_manifest_sets_is_read_by_the_binary_with_a_value_it_accepts() {
    let sources = env_sources();
    let origins: Vec<&str> = sources.iter().map(|s| s.origin.as_str()).collect();
    for expected in [
        "knative/service.yaml",
        "func.yaml",
        "knative/kn-service-create.sh",
        "openfaas/stack.yml",
        "openfaas/stack-default-sa.yml",
        "argo/workflowtemplate.yaml",
    ] {
        assert!(
            origins.iter().any(|o| o.starts_with(expected)),
            "no env vars found in {expected}: {origins:?}"
        );
    }
    for src in &sources {
        let o = &src.origin;
        assert!(!src.vars.is_empty(), "{o}: no env vars");
        let mut seen = BTreeSet::new();
        for (name, value) in &src.vars {
            assert!(
                ENV_VARS.contains(&name.as_str()),
                "{o}: sets {name}, which the binary does not read (ENV_VARS: {ENV_VARS:?})"
            );
            assert!(seen.insert(name), "{o}: {name} set twice");
            if name == "BODY" {
                assert!(
                    o.starts_with("argo/workflowtemplate.yaml"),
                    "{o}: BODY (one-shot input) belongs only in the WorkflowTemplate"
                );
            }
            if let EnvValue::FieldRef(path) = value {
                let want = match name.as_str() {
                    "POD_NAMESPACE" => "metadata.namespace",
                    "POD_NAME" => "metadata.name",
                    _ => panic!("{o}: {name} from the downward API ({path})"),
                };
                assert_eq!(path, want, "{o}: {name}");
            }
        }
        let config = Config::from_vars(resolve(&src.vars))
            .unwrap_or_else(|e| panic!("{o}: the binary would refuse to start: {e}"));
        assert!(!config.dry_run, "{o}: manifests ship with DRY_RUN=false");
        assert!(config.rules.matches(TEST_RULE), "{o}: RULES");
    }
    // Knative reserves PORT and K_* and only allows fieldRef behind a feature flag.
    for (origin, c) in function_containers() {
        if !origin.contains("Service/") {
            continue;
        }
        for (name, value) in container_env(c, &origin) {
            assert!(
                !(name == "PORT" || name.starts_with("K_")),
                "{origin}: {name} is reserved by Knative"
            );
            assert!(
                matches!(value, EnvValue::Literal(_)),
                "{origin}: {name}: fieldRef needs kubernetes.podspec-fieldref"
            );
        }
    }
    // OpenFaaS: KUBE_TOKEN_FILE names the file faas-netes mounts for one of the secrets.
    for (file, stack) in stacks() {
        for (name, f) in stack["functions"].as_object().unwrap() {
            let secrets = strs(&f["secrets"]);
            match f["environment"]["KUBE_TOKEN_FILE"].as_str() {
                Some(path) => assert!(
                    secrets
                        .iter()
                        .any(|s| path == format!("/var/openfaas/secrets/{s}")),
                    "{file} {name}: KUBE_TOKEN_FILE {path} is not /var/openfaas/secrets/<one of {secrets:?}>"
                ),
                None => assert!(
                    secrets.is_empty(),
                    "{file} {name}: secrets without KUBE_TOKEN_FILE"
                ),
            }
        }
    }
}

#[test]
fn knative_service_func_yaml_and_kn_script_describe_the_same_service() {
    let ksvc = the(KSVC, "Service", "falco-responder");
    let ns = ksvc.namespace().unwrap();
    let tpl = &ksvc.v["spec"]["template"];
    let pod = &tpl["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let func = yaml_docs("func.yaml").remove(0);
    let kn = kn_create_words();

    // name, namespace, image
    assert_eq!(func["name"], ksvc.name());
    assert_eq!(kn[3], ksvc.name(), "kn service create NAME");
    assert_eq!(func["namespace"], ns);
    assert_eq!(func["deploy"]["namespace"], ns);
    assert_eq!(flag_value(&kn, "--namespace"), ns);
    assert_eq!(c["image"], IMAGE);
    assert!(
        read("knative/kn-service-create.sh").contains(&format!("IMAGE=${{IMAGE:-{IMAGE}}}")),
        "kn script's default image"
    );

    // env
    let ksvc_env = env_map(&container_env(c, &ksvc.id()));
    for src in env_sources() {
        if src.origin.starts_with("func.yaml") || src.origin.starts_with("knative/kn-service") {
            assert_eq!(
                env_map(&src.vars),
                ksvc_env,
                "{} differs from {}",
                src.origin,
                ksvc.id()
            );
        }
    }

    // identity
    let sa = str_at(pod, "/serviceAccountName");
    assert_eq!(func["deploy"]["serviceAccountName"], sa);
    assert_eq!(flag_value(&kn, "--service-account"), sa);
    assert!(
        exists_in("v1", "ServiceAccount", sa, Some(ns)),
        "ServiceAccount {sa} in {ns}"
    );

    // port and probes: on the port the binary listens on, paths it serves
    assert_eq!(
        c["ports"],
        json!([{"name": "http1", "containerPort": 8080}])
    );
    assert_eq!(flag_value(&kn, "--port"), "http1:8080");
    for (probe, func_key, kn_flag) in [
        ("readinessProbe", "readiness", "--probe-readiness"),
        ("livenessProbe", "liveness", "--probe-liveness"),
    ] {
        let path = str_at(&c[probe], "/httpGet/path");
        assert!(HEALTH_PATHS.contains(&path), "{probe} {path}");
        assert_eq!(func["deploy"]["healthEndpoints"][func_key], path);
        assert_eq!(flag_value(&kn, kn_flag), format!("http::8080:{path}"));
    }
    assert_eq!(
        flag_value(&kn, "--probe-readiness-opts"),
        format!("PeriodSeconds={}", c["readinessProbe"]["periodSeconds"])
    );
    assert_eq!(
        flag_value(&kn, "--probe-liveness-opts"),
        format!(
            "PeriodSeconds={},FailureThreshold={}",
            c["livenessProbe"]["periodSeconds"], c["livenessProbe"]["failureThreshold"]
        )
    );

    // scale and concurrency
    let ann = &tpl["metadata"]["annotations"];
    let scale = &func["deploy"]["options"]["scale"];
    for (key, func_key, kn_flag) in [
        ("min-scale", "min", "--scale-min"),
        ("max-scale", "max", "--scale-max"),
        ("target", "target", "--scale-target"),
    ] {
        let v = str_at(ann, &format!("/autoscaling.knative.dev~1{key}"));
        assert_eq!(scale[func_key].to_string(), v, "func {func_key}");
        assert_eq!(flag_value(&kn, kn_flag), v, "kn {kn_flag}");
    }
    let cc = pod["containerConcurrency"].to_string();
    assert_eq!(
        func["deploy"]["options"]["resources"]["limits"]["concurrency"].to_string(),
        cc
    );
    assert_eq!(flag_value(&kn, "--concurrency-limit"), cc);
    assert_eq!(
        flag_value(&kn, "--timeout"),
        pod["timeoutSeconds"].to_string()
    );

    // resources
    for (kind, kn_flag) in [("requests", "--request"), ("limits", "--limit")] {
        let r = &c["resources"][kind];
        let f = &func["deploy"]["options"]["resources"][kind];
        assert_eq!(f["cpu"], r["cpu"], "func {kind} cpu");
        assert_eq!(f["memory"], r["memory"], "func {kind} memory");
        assert_eq!(
            flag_value(&kn, kn_flag),
            format!("cpu={},memory={}", str_at(r, "/cpu"), str_at(r, "/memory"))
        );
    }

    // private to the cluster
    assert_eq!(
        ksvc.v["metadata"]["labels"]["networking.knative.dev/visibility"],
        "cluster-local"
    );
    assert!(
        func["deploy"]["labels"].as_array().unwrap().contains(
            &json!({"key": "networking.knative.dev/visibility", "value": "cluster-local"})
        )
    );
    assert!(kn.contains(&"--cluster-local".to_string()));

    // security: what Knative allows at container level; the image's numeric user
    assert_eq!(
        c["securityContext"],
        json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    assert!(
        pod.get("securityContext").is_none(),
        "pod securityContext needs kubernetes.podspec-securitycontext"
    );
    assert_eq!(flag_value(&kn, "--security-context"), "strict");
    assert_eq!(flag_value(&kn, "--user"), "65532");
}

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
    let (of_name, of_ns) = openfaas_function();
    let knative_url = format!(
        "http://{}.{}.svc.cluster.local",
        ksvc.name(),
        ksvc.namespace().unwrap()
    );
    let openfaas_url = format!("http://gateway.openfaas:8080/function/{of_name}.{of_ns}");
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
            // The Sensor passes only rules the function acts on, wherever it runs.
            for rule in strs(&d["filters"]["data"][0]["value"]) {
                for src in env_sources() {
                    let config = Config::from_vars(resolve(&src.vars)).unwrap();
                    assert!(
                        config.rules.matches(&rule),
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
            assert_eq!(
                http["payload"],
                json!([{"src": {"dependencyName": dep_names[0], "dataKey": "body", "useRawData": true}, "dest": "event"}]),
                "{}: the body the function unwraps",
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
            assert!(s.v["spec"]["template"]["serviceAccountName"].is_string());
        }
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

#[test]
fn the_function_gets_least_privilege_rbac() {
    let function_rules = json!([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    ]);
    let mut function_roles = 0;
    for kind in ["ClusterRole", "Role"] {
        for r in objs(RBAC, kind) {
            for rule in r.v["rules"].as_array().unwrap() {
                for field in ["apiGroups", "resources", "verbs"] {
                    assert!(
                        !strs(&rule[field]).contains(&"*".to_string()),
                        "{}: wildcard {field}",
                        r.id()
                    );
                }
                assert!(
                    !strs(&rule["resources"]).contains(&"secrets".to_string()),
                    "{}: secrets",
                    r.id()
                );
            }
            match r.name() {
                "falco-responder-workflow-executor" => assert_eq!(
                    r.v["rules"],
                    json!([{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]),
                    "{}",
                    r.id()
                ),
                "falco-responder-sensor" => {
                    for rule in r.v["rules"].as_array().unwrap() {
                        assert_eq!(strs(&rule["apiGroups"]), ["argoproj.io"], "{}", r.id());
                        assert!(
                            !strs(&rule["verbs"]).contains(&"delete".to_string()),
                            "{}",
                            r.id()
                        );
                    }
                }
                _ => {
                    function_roles += 1;
                    assert_eq!(kind, "ClusterRole", "{}", r.id());
                    assert_eq!(
                        r.v["rules"],
                        function_rules,
                        "{}: pods get/delete, events create only",
                        r.id()
                    );
                }
            }
        }
    }
    assert!(function_roles >= 3, "Knative, OpenFaaS and Workflow roles");

    // Each identity the function runs as is bound to such a role.
    let bound = |ns: &str, sa: &str| {
        objs(RBAC, "ClusterRoleBinding").iter().any(|b| {
            let role = the(RBAC, "ClusterRole", str_at(&b.v, "/roleRef/name"));
            role.v["rules"] == function_rules
                && b.v["subjects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["name"] == sa && s["namespace"] == ns)
        })
    };
    let ksvc = the(KSVC, "Service", "falco-responder");
    let wt = the(ARGO, "WorkflowTemplate", "falco-responder");
    for (ns, sa) in [
        (
            ksvc.namespace().unwrap(),
            str_at(&ksvc.v, "/spec/template/spec/serviceAccountName"),
        ),
        (
            wt.namespace().unwrap(),
            str_at(&wt.v, "/spec/serviceAccountName"),
        ),
        ("openfaas-fn", "falco-responder"),
        ("openfaas-fn", "default"),
    ] {
        assert!(
            bound(ns, sa),
            "{ns}/{sa} is not bound to the function's ClusterRole"
        );
    }
    // The OpenFaaS CE default-SA variant says in the file what it grants.
    let text = read("openfaas/rbac-default-sa.yaml");
    assert!(
        text.contains("EVERY pod in openfaas-fn"),
        "warning in openfaas/rbac-default-sa.yaml"
    );
}

#[test]
fn dockerfile_builds_a_static_binary_into_an_empty_nonroot_image() {
    let text = read("Dockerfile");
    let lines = logical_lines(&text);
    let instructions: Vec<String> = lines
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap();
    assert_eq!(instructions[last_from], "FROM scratch", "final stage");
    let final_stage = &instructions[last_from + 1..];
    for want in [
        "USER 65532:65532",
        "ENV PORT=8080",
        "EXPOSE 8080",
        r#"ENTRYPOINT ["/falco-responder"]"#,
    ] {
        assert!(
            final_stage.iter().any(|l| l == want),
            "final stage lacks {want}"
        );
    }
    let copies: Vec<&String> = final_stage
        .iter()
        .filter(|l| l.starts_with("COPY"))
        .collect();
    assert_eq!(copies.len(), 1, "one COPY in the final stage");
    assert!(
        copies[0].starts_with("COPY --from=builder ") && copies[0].ends_with(" /falco-responder"),
        "{}",
        copies[0]
    );
    for banned in ["RUN", "CMD", "VOLUME", "ADD"] {
        assert!(
            !final_stage
                .iter()
                .any(|l| l.split_whitespace().next() == Some(banned)),
            "{banned} in the final stage (scratch has no shell; nothing may be written)"
        );
    }
    let builder = instructions[..last_from].join("\n");
    for want in [
        "musl-tools",
        "rustup target add",
        "x86_64-unknown-linux-musl",
        "cargo build --release --locked --target",
    ] {
        assert!(builder.contains(want), "builder stage lacks {want}");
    }
    assert!(!text.contains("watchdog"), "no OpenFaaS watchdog");
    assert!(
        read(".dockerignore").lines().any(|l| l.trim() == "target/"),
        ".dockerignore: target/"
    );
    // scripts/image.sh assembles the image from this very final stage and checks the result.
    let script = read("scripts/image.sh");
    for want in [
        "FROM scratch",
        "Dockerfile",
        "want_user=65532:65532",
        r#"want_entrypoint='["/falco-responder"]'"#,
        "8080/tcp",
        "statically linked",
        "max_binary_bytes=$((10 * 1024 * 1024))",
    ] {
        assert!(script.contains(want), "scripts/image.sh lacks {want}");
    }
}

#[test]
fn docs_commands_match_the_manifests() {
    for (doc, dir) in [
        ("docs/deploy-knative.md", "knative"),
        ("docs/deploy-openfaas.md", "openfaas"),
        ("docs/deploy-argo.md", "argo"),
    ] {
        let text = read(doc);
        let commands = doc_commands(&text);
        assert!(
            commands.len() >= 15,
            "{doc}: only {} commands",
            commands.len()
        );
        let (errors, used) = doc_errors(&text);
        assert!(errors.is_empty(), "{doc}:\n{}", errors.join("\n"));
        for f in manifest_files()
            .iter()
            .filter(|f| f.starts_with(&format!("{dir}/")))
        {
            assert!(used.contains(f), "{doc} never uses {f}");
        }
        for want in [
            IMAGE,
            "kubectl run alpine --image=alpine -- sleep 3600",
            "kubectl exec -it alpine -- sh",
            "--field-selector reason=FalcoPodDeleted",
            "/metrics",
        ] {
            assert!(text.contains(want), "{doc} lacks {want:?}");
        }
    }
    let knative = read("docs/deploy-knative.md");
    assert!(knative.contains("--build=false --push=false"));
    assert!(knative.contains("knative/kn-service-create.sh"));
    let func_help = read("func.yaml");
    assert!(func_help.contains("--build=false --push=false"));
}

#[test]
fn vendored_schemas_are_listed_in_sources_md() {
    let sources = read("tests/schemas/SOURCES.md");
    let mut stack = vec![root().join("tests/schemas")];
    let mut count = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root().join("tests/schemas"))
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel == "SOURCES.md" {
                continue;
            }
            count += 1;
            let row = sources
                .lines()
                .find(|l| l.starts_with(&format!("| `{rel}` |")))
                .unwrap_or_else(|| panic!("tests/schemas/{rel} is not listed in SOURCES.md"));
            let bytes = std::fs::metadata(&path).unwrap().len();
            assert!(
                row.contains(&format!("| {bytes} |")),
                "SOURCES.md: size of {rel} is {bytes}"
            );
        }
    }
    assert_eq!(count, 17);
    for s in SCHEMAS {
        assert!(
            root().join("tests/schemas").join(s.file).exists(),
            "{}",
            s.file
        );
    }
}
