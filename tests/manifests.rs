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
/// The rule of Falcosidekick's `POST /test` event, which the function skips by design.
const SIDEKICK_TEST_RULE: &str = "Test rule";
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
    /// `kubectl apply -k` input, written by scripts/render-manifests.sh (tests/helm_e2e.rs).
    Kustomization,
}

fn classify(rel: &str) -> FileKind {
    if rel.ends_with("falcosidekick-values.yaml") {
        FileKind::HelmValues
    } else if rel.ends_with("/kustomization.yaml") {
        FileKind::Kustomization
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
/// The Knative Service an Argo Sensor calls (argo/knative-service.yaml): it checks a token.
const ARGO_KSVC: &str = "falco-responder-argo";
const EVENTING: &str = "eventing.knative.dev/v1";
const ARGO: &str = "argoproj.io/v1alpha1";
const RBAC: &str = "rbac.authorization.k8s.io/v1";
const NETWORKING: &str = "networking.k8s.io/v1";

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
    /// Relative to tests/schemas/. `None`: the real API server validates this kind
    /// (tests/helm_e2e.rs applies every document with `kubectl apply --dry-run=server
    /// --validate=strict`, the CRDs made from the upstream schemas), so no JSON Schema here.
    file: Option<&'static str>,
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
    file: Option<&'static str>,
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

/// The API server does it: see [`SchemaSpec::file`].
const SERVER: Option<&str> = None;

#[rustfmt::skip]
const SCHEMAS: &[SchemaSpec] = &[
    spec("v1", "Namespace", SERVER, None, false, false),
    spec("v1", "ServiceAccount", SERVER, None, true, false),
    spec("v1", "Secret", SERVER, None, true, false),
    spec(RBAC, "ClusterRole", SERVER, None, false, false),
    spec(RBAC, "ClusterRoleBinding", SERVER, None, false, false),
    spec(RBAC, "Role", SERVER, None, true, false),
    spec(RBAC, "RoleBinding", SERVER, None, true, false),
    spec(NETWORKING, "NetworkPolicy", SERVER, None, true, false),
    spec(KSVC, "Service", SERVER, None, true, true),
    spec("openfaas.com/v1", "Function", SERVER, None, true, true),
    spec(ARGO, "WorkflowTemplate", SERVER, None, true, true),
    // The server cannot check these: Knative's delivery is open in its CRD schema and the
    // Argo Events CRDs preserve unknown fields, so their JSON Schemas stay here.
    spec(EVENTING, "Broker", Some("knative/datree/eventing.knative.dev/broker_v1.json"), None, true, true),
    spec(EVENTING, "Trigger", Some("knative/datree/eventing.knative.dev/trigger_v1.json"), None, true, true),
    spec(ARGO, "EventBus", Some("argo/argo-events/schema.json"), Some("io.argoproj.events.v1alpha1.EventBus"), true, true),
    spec(ARGO, "EventSource", Some("argo/argo-events/schema.json"), Some("io.argoproj.events.v1alpha1.EventSource"), true, true),
    spec(ARGO, "Sensor", Some("argo/argo-events/schema.json"), Some("io.argoproj.events.v1alpha1.Sensor"), true, true),
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

/// Knative's CRDs keep `delivery` open (`x-kubernetes-preserve-unknown-fields`, "necessary to
/// enable the experimental feature delivery-timeout": eventing config/core/resources/
/// trigger.yaml) for the alpha/beta DeliverySpec fields, which the datree copies then close:
/// list those two (eventing pkg/apis/duck/v1/delivery_types.go) so they validate, typed.
fn add_experimental_delivery_fields(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let is_delivery = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))
                && map
                    .get("properties")
                    .is_some_and(|p| p.get("backoffDelay").is_some());
            if is_delivery && let Some(Value::Object(props)) = map.get_mut("properties") {
                for field in ["retryAfterMax", "timeout"] {
                    props
                        .entry(field)
                        .or_insert_with(|| json!({"type": "string"}));
                }
            }
            map.values_mut().for_each(add_experimental_delivery_fields);
        }
        Value::Array(a) => a.iter_mut().for_each(add_experimental_delivery_fields),
        _ => {}
    }
}

fn load_schema(spec: &SchemaSpec, file: &str) -> Value {
    let mut schema = load_json(file);
    if spec.api_version == EVENTING {
        add_experimental_delivery_fields(&mut schema);
    }
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
            .filter_map(|s| {
                let file = s.file?;
                let v = jsonschema::validator_for(&load_schema(s, file))
                    .unwrap_or_else(|e| panic!("schema {file} does not compile: {e}"));
                Some(((s.api_version, s.kind), v))
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
    let mut errors = match validators().get(&(spec.api_version, spec.kind)) {
        Some(v) => validation_errors(v, doc),
        None => vec![],
    };
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

/// The keys of Falcosidekick's webhook output, spelt as the chart reads them (falcosecurity/charts
/// falcosidekick values.yaml; `customHeaders` is camel case, any other spelling is ignored).
const WEBHOOK_KEYS: &[&str] = &[
    "address",
    "method",
    "customHeaders",
    "minimumpriority",
    "checkcert",
    "mutualtls",
];

/// The gateway URL of the function in openfaas/stack.yml.
fn openfaas_function_url() -> String {
    let (name, ns) = openfaas_function();
    format!("http://gateway.openfaas:8080/function/{name}.{ns}")
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
    // Every kind listed is exercised by at least one manifest.
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
        // What only this file checks (the API server accepts these):
        ("no namespace", "Service", "falco-responder", "/metadata/namespace", None),
        ("cluster-scoped with a namespace", "Namespace", "falco-responder", "/metadata/namespace", Some(json!("default"))),
        ("status present", "WorkflowTemplate", "falco-responder", "/status", Some(json!({}))),
        // The JSON Schemas kept here (misspellings and types in the other kinds are shown to
        // fail against the API server in tests/helm_e2e.rs).
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
        assert!(config.policy.rules.matches(TEST_RULE), "{o}: RULES");
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
    // OpenFaaS: each *_FILE names the file faas-netes mounts for one of the function's
    // secrets (/var/openfaas/secrets/<name>), and each secret is read by one of them.
    for (file, stack) in stacks() {
        for (name, f) in stack["functions"].as_object().unwrap() {
            let secrets = strs(&f["secrets"]);
            let files: Vec<&str> = ["KUBE_TOKEN_FILE", "AUTH_TOKEN_FILE"]
                .iter()
                .filter_map(|v| f["environment"][v].as_str())
                .collect();
            for path in &files {
                assert!(
                    secrets
                        .iter()
                        .any(|s| *path == format!("/var/openfaas/secrets/{s}")),
                    "{file} {name}: {path} is not /var/openfaas/secrets/<one of {secrets:?}>"
                );
            }
            for s in &secrets {
                assert!(
                    files.contains(&format!("/var/openfaas/secrets/{s}").as_str()),
                    "{file} {name}: secret {s} is read by no *_FILE variable"
                );
            }
        }
    }
    // Knative: AUTH_TOKEN_FILE lies in a mounted Secret volume, at the path of one of its keys.
    for (origin, c) in function_containers() {
        let Some(EnvValue::Literal(path)) = env_map(&container_env(c, &origin))
            .get("AUTH_TOKEN_FILE")
            .cloned()
        else {
            continue;
        };
        let o = objects().iter().find(|o| o.id() == origin).unwrap();
        let volumes = o.v["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap_or_else(|| panic!("{origin}: AUTH_TOKEN_FILE without volumes"));
        let found = c["volumeMounts"].as_array().into_iter().flatten().any(|m| {
            let dir = str_at(m, "/mountPath");
            volumes
                .iter()
                .filter(|v| v["name"] == m["name"])
                .filter_map(|v| v["secret"]["items"].as_array())
                .flatten()
                .any(|item| path == format!("{dir}/{}", str_at(item, "/path")))
        });
        assert!(
            found,
            "{origin}: AUTH_TOKEN_FILE {path} is no key of a mounted Secret volume"
        );
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

#[test]
fn the_function_gets_least_privilege_rbac() {
    let function_rules = json!([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]},
    ]);
    // The optional guards (MIN_AVAILABLE, USE_EVICTION), in their own role.
    let guard_rules = json!([
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    ]);
    let mut function_roles = 0;
    let mut breaker_roles = 0;
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
                "falco-responder-guards" => {
                    assert_eq!(r.v["rules"], guard_rules, "{}", r.id())
                }
                // The deletion breaker's records: Events in the function's own namespace only
                // (a Role, never a ClusterRole: Events elsewhere can be forged).
                name if name.ends_with("-breaker") => {
                    breaker_roles += 1;
                    assert_eq!(kind, "Role", "{}", r.id());
                    assert_eq!(
                        r.v["rules"],
                        json!([{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "list", "watch"]}]),
                        "{}",
                        r.id()
                    );
                }
                "falco-responder-sensor-dead-letters" => assert_eq!(
                    r.v["rules"],
                    json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]),
                    "{}: the dead letters, create only",
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
                        "{}: pods get/delete, events create, replicasets/jobs get only",
                        r.id()
                    );
                }
            }
        }
    }
    assert!(function_roles >= 3, "Knative, OpenFaaS and Workflow roles");
    assert_eq!(
        breaker_roles, function_roles,
        "each function identity has its breaker Role beside its ClusterRole"
    );

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
        // ... and, in its own namespace, to the breaker's Role (where its records live).
        let breaker_bound = objs(RBAC, "RoleBinding").iter().any(|b| {
            b.namespace() == Some(ns)
                && str_at(&b.v, "/roleRef/kind") == "Role"
                && str_at(&b.v, "/roleRef/name").ends_with("-breaker")
                && b.v["subjects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["name"] == sa && s["namespace"] == ns)
        });
        assert!(breaker_bound, "{ns}/{sa} has no breaker Role in {ns}");
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
            .filter(|f| f.starts_with(&format!("{dir}/")) && classify(f) != FileKind::Kustomization)
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
    assert_eq!(count, 11);
    for file in SCHEMAS.iter().filter_map(|s| s.file) {
        assert!(root().join("tests/schemas").join(file).exists(), "{file}");
    }
}

// =========================================================================================
// deploy guides work as written (issue 12) and who may call the function (issue 9, item 10)
// =========================================================================================

/// The ConfigMap schema, for the resources a Sensor's k8s trigger creates (not a manifest of
/// its own, so not in SCHEMAS).
fn configmap_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        jsonschema::validator_for(&load_json(
            "kubernetes/v1.30.0-standalone-strict/configmap-v1.json",
        ))
        .expect("ConfigMap schema compiles")
    })
}

/// Whether ServiceAccount `ns/sa` may `verb` `resource` of API group `group` in namespace
/// `ns`, by the Roles, ClusterRoles and bindings in the manifests.
fn may(ns: &str, sa: &str, group: &str, resource: &str, verb: &str) -> bool {
    let grants = |role: &Obj| {
        role.v["rules"].as_array().into_iter().flatten().any(|r| {
            strs(&r["apiGroups"]).iter().any(|g| g == group)
                && strs(&r["resources"]).iter().any(|x| x == resource)
                && strs(&r["verbs"]).iter().any(|v| v == verb)
        })
    };
    let binds = |b: &Obj| {
        b.v["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == ns)
    };
    objs(RBAC, "RoleBinding")
        .into_iter()
        .chain(objs(RBAC, "ClusterRoleBinding"))
        .filter(|b| binds(b) && (b.kind() == "ClusterRoleBinding" || b.namespace() == Some(ns)))
        .any(|b| {
            let role_kind = str_at(&b.v, "/roleRef/kind");
            let role_ns = if role_kind == "Role" {
                b.namespace()
            } else {
                None
            };
            objs(RBAC, role_kind)
                .into_iter()
                .find(|r| r.name() == str_at(&b.v, "/roleRef/name") && r.namespace() == role_ns)
                .is_some_and(grants)
        })
}

/// Every Sensor trigger with a retryStrategy can actually retry (atLeastOnce) and ends in a
/// dead letter (dlqTrigger, itself atLeastOnce) that the Sensor may create.
fn sensor_retry_errors(sensor: &Value) -> Vec<String> {
    let mut errors = vec![];
    let ns = sensor["metadata"]["namespace"].as_str().unwrap_or("?");
    let sa = sensor["spec"]["template"]["serviceAccountName"].as_str();
    let deps: Vec<&str> = sensor["spec"]["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for (i, t) in sensor["spec"]["triggers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let e = |m: &str| format!("trigger {i}: {m}");
        if t.get("retryStrategy").is_none() {
            errors.push(e("no retryStrategy: a failed delivery is dropped"));
            continue;
        }
        // argo-events pkg/sensors/listener.go: without it, triggerActions returns at once.
        if t["atLeastOnce"] != json!(true) {
            errors.push(e(
                "retryStrategy without atLeastOnce: true never sees a failure",
            ));
        }
        let dlq = &t["dlqTrigger"];
        if !dlq.is_object() {
            errors.push(e(
                "retryStrategy without a dlqTrigger: the last failure drops the event",
            ));
            continue;
        }
        if dlq["atLeastOnce"] != json!(true) {
            errors.push(e(
                "dlqTrigger without atLeastOnce: true (rejected by argo-events validation)",
            ));
        }
        if dlq.get("dlqTrigger").is_some() {
            errors.push(e("dlqTrigger inside a dlqTrigger is ignored"));
        }
        let k8s = &dlq["template"]["k8s"];
        let resource = &k8s["source"]["resource"];
        if k8s["operation"] != "create" || resource["kind"] != "ConfigMap" {
            errors.push(e("the dead letter is a ConfigMap the Sensor creates"));
            continue;
        }
        for err in validation_errors(configmap_validator(), resource) {
            errors.push(e(&format!("dead-letter ConfigMap: {err}")));
        }
        if resource["metadata"]["namespace"] != ns {
            errors.push(e("dead-letter ConfigMap outside the Sensor's namespace"));
        }
        if !resource["metadata"]["generateName"]
            .as_str()
            .is_some_and(|g| g.ends_with('-'))
            || resource["metadata"].get("name").is_some()
        {
            errors.push(e(
                "dead-letter ConfigMap needs generateName (one per event), no name",
            ));
        }
        if resource["metadata"]["labels"]["falco-responder/dead-letter"] != "true" {
            errors.push(e(
                "dead-letter ConfigMap without label falco-responder/dead-letter=true",
            ));
        }
        let params = k8s["parameters"].as_array().cloned().unwrap_or_default();
        if params.is_empty() {
            errors.push(e("the dead letter does not keep the event"));
        }
        for p in &params {
            if !p["src"]["dependencyName"]
                .as_str()
                .is_some_and(|d| deps.contains(&d))
            {
                errors.push(e(&format!(
                    "dead-letter parameter from an unknown dependency: {p}"
                )));
            }
            match p["dest"].as_str().and_then(|d| d.strip_prefix("data.")) {
                Some(key) if resource["data"].get(key).is_some() => {}
                _ => errors.push(e(&format!(
                    "dead-letter parameter dest {} is not a data key",
                    p["dest"]
                ))),
            }
            if p["src"]["useRawData"] == json!(true) {
                errors.push(e(
                    "useRawData would put an object where a ConfigMap wants a string",
                ));
            }
        }
        match sa {
            Some(sa) if may(ns, sa, "", "configmaps", "create") => {}
            _ => errors.push(e(&format!(
                "the Sensor's ServiceAccount {sa:?} may not create ConfigMaps in {ns}"
            ))),
        }
    }
    errors
}

/// Waits as the comments spell them: "2 s, 4 s and 8 s".
fn spelled_waits(first: f64, factor: f64, n: usize) -> String {
    let waits: Vec<String> = (0..n)
        .map(|k| {
            let w = first * factor.powi(k as i32);
            if w.fract() == 0.0 {
                format!("{} s", w as u64)
            } else {
                format!("{w} s")
            }
        })
        .collect();
    match waits.len() {
        0 => String::new(),
        1 => waits[0].clone(),
        n => format!("{} and {}", waits[..n - 1].join(", "), waits[n - 1]),
    }
}

/// Each `retryStrategy:` block in a YAML text is preceded by a comment that states how many
/// attempts it makes and when the retries happen. Argo Events' `steps` counts attempts
/// (pkg/shared/util/retry.go -> wait.ExponentialBackoff); Argo Workflows' `limit` counts
/// retries.
fn retry_comment_errors(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut errors = vec![];
    let mut blocks = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "retryStrategy:" {
            continue;
        }
        blocks += 1;
        let indent = line.len() - line.trim_start().len();
        let mut fields = BTreeMap::new();
        for l in &lines[i + 1..] {
            let l_indent = l.len() - l.trim_start().len();
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            if l_indent <= indent {
                break;
            }
            if let Some((k, v)) = l.trim().split_once(':') {
                fields
                    .entry(k.trim().to_string())
                    .or_insert_with(|| v.trim().trim_matches('"').to_string());
            }
        }
        let mut comment = vec![];
        for l in lines[..i].iter().rev() {
            match l.trim().strip_prefix('#') {
                Some(c) => comment.push(c.trim()),
                None => break,
            }
        }
        comment.reverse();
        let comment = comment.join(" ");
        let num = |k: &str| -> Option<f64> {
            fields
                .get(k)
                .and_then(|v| v.trim_end_matches('s').parse::<f64>().ok())
        };
        let attempts = match (num("steps"), num("limit")) {
            (Some(steps), None) => steps as usize,
            (None, Some(limit)) => limit as usize + 1,
            _ => {
                errors.push(format!(
                    "line {}: retryStrategy without steps or limit",
                    i + 1
                ));
                continue;
            }
        };
        let waits = spelled_waits(
            num("duration").unwrap_or(1.0),
            num("factor").unwrap_or(1.0),
            attempts.saturating_sub(1),
        );
        let want = format!("{attempts} attempts");
        if !comment.contains(&want) || !comment.contains(&waits) {
            errors.push(format!(
                "line {}: the comment above retryStrategy must say {want:?} and the waits {waits:?}: {comment:?}",
                i + 1
            ));
        }
    }
    if blocks == 0 {
        errors.push("no retryStrategy".into());
    }
    errors
}

/// The logical lines of a Markdown document's shell blocks (for pipelines and variables).
fn doc_shell_lines(markdown: &str) -> Vec<String> {
    let mut out = vec![];
    let mut block: Option<(bool, String)> = None;
    for line in markdown.lines() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            match block.take() {
                Some((true, text)) => out.extend(logical_lines(&text)),
                Some((false, _)) => {}
                None => block = Some((["sh", "bash"].contains(&lang.trim()), String::new())),
            }
            continue;
        }
        if let Some((_, text)) = block.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// The container a `-l` selector's pods log from: Knative names an unnamed container
/// `user-container` (serving pkg/apis/config/defaults.go); Argo Workflows' step container is
/// `main`.
fn logs_container_errors(markdown: &str) -> Vec<String> {
    let mut errors = vec![];
    for cmd in doc_commands(markdown) {
        if cmd.first().map(String::as_str) != Some("kubectl")
            || cmd.get(1).map(String::as_str) != Some("logs")
        {
            continue;
        }
        let line = cmd.join(" ");
        let Some(container) = flag_values(&cmd, "-c").into_iter().next() else {
            continue;
        };
        let selector = flag_values(&cmd, "-l")
            .into_iter()
            .next()
            .unwrap_or_default();
        let want = if let Some(name) = selector.strip_prefix("serving.knative.dev/service=") {
            match obj(KSVC, "Service", name) {
                Some(k) => k.v["spec"]["template"]["spec"]["containers"][0]["name"]
                    .as_str()
                    .unwrap_or("user-container")
                    .to_string(),
                None => {
                    errors.push(format!("`{line}`: no Knative Service {name}"));
                    continue;
                }
            }
        } else if selector.starts_with("workflows.argoproj.io/workflow") {
            "main".to_string()
        } else {
            errors.push(format!(
                "`{line}`: -c {container} for pods this check does not know"
            ));
            continue;
        };
        if container != want {
            errors.push(format!(
                "`{line}`: the container is {want}, not {container}"
            ));
        }
    }
    errors
}

#[test]
fn argo_sensors_retry_until_success_or_a_dead_letter() {
    let sensors = objs(ARGO, "Sensor");
    assert_eq!(sensors.len(), 3);
    for s in &sensors {
        let errors = sensor_retry_errors(&s.v);
        assert!(errors.is_empty(), "{}:\n{}", s.id(), errors.join("\n"));
    }
    // The check fails without each piece.
    let base = the(ARGO, "Sensor", "falco-responder-knative").v.clone();
    for (what, ptr, value) in [
        ("no atLeastOnce", "/spec/triggers/0/atLeastOnce", None),
        (
            "atLeastOnce false",
            "/spec/triggers/0/atLeastOnce",
            Some(json!(false)),
        ),
        ("no dlqTrigger", "/spec/triggers/0/dlqTrigger", None),
        (
            "dlq without atLeastOnce",
            "/spec/triggers/0/dlqTrigger/atLeastOnce",
            None,
        ),
        ("no retryStrategy", "/spec/triggers/0/retryStrategy", None),
        (
            "named dead letter",
            "/spec/triggers/0/dlqTrigger/template/k8s/source/resource/metadata/name",
            Some(json!("x")),
        ),
        (
            "dead letter data as a number",
            "/spec/triggers/0/dlqTrigger/template/k8s/source/resource/data/event",
            Some(json!(1)),
        ),
        (
            "dead letter elsewhere",
            "/spec/triggers/0/dlqTrigger/template/k8s/source/resource/metadata/namespace",
            Some(json!("default")),
        ),
        (
            "raw data",
            "/spec/triggers/0/dlqTrigger/template/k8s/parameters/0/src/useRawData",
            Some(json!(true)),
        ),
        (
            "no ServiceAccount",
            "/spec/template/serviceAccountName",
            None,
        ),
    ] {
        let mut bad = base.clone();
        edit(&mut bad, ptr, value);
        assert!(!sensor_retry_errors(&bad).is_empty(), "{what}: accepted");
    }
}

#[test]
fn retry_comments_state_the_attempts() {
    for f in [
        "argo/sensor-knative.yaml",
        "argo/sensor-openfaas.yaml",
        "argo/sensor-workflow.yaml",
        "argo/workflowtemplate.yaml",
    ] {
        let errors = retry_comment_errors(&read(f));
        assert!(errors.is_empty(), "{f}:\n{}", errors.join("\n"));
    }
    // The guide says the same about the HTTP Sensors.
    let steps = the(ARGO, "Sensor", "falco-responder-knative").v["spec"]["triggers"][0]
        ["retryStrategy"]["steps"]
        .as_u64()
        .unwrap();
    let argo = read("docs/deploy-argo.md");
    let want = format!(
        "`steps: {steps}` is the first attempt and {} retries",
        steps - 1
    );
    assert!(argo.contains(&want), "docs/deploy-argo.md lacks {want:?}");
    // Wrong comments are caught: "steps: 4" read as 4 retries, and the wrong waits.
    for bad in [
        "      # Retry 4 times: 2 s, 4 s, 8 s, 16 s.\n      retryStrategy:\n        steps: 4\n        duration: 2s\n        factor: 2\n",
        "      # 4 attempts, after 2 s, 4 s and 8 s.\n      retryStrategy:\n        steps: 4\n        duration: 1s\n        factor: 2\n",
        "      # 3 attempts in all, the retries after 5 s and 10 s.\n      retryStrategy:\n        limit: \"3\"\n        backoff:\n          duration: \"5s\"\n          factor: \"2\"\n",
        "      retryStrategy:\n        steps: 2\n",
    ] {
        assert!(!retry_comment_errors(bad).is_empty(), "accepted:\n{bad}");
    }
    assert!(retry_comment_errors(
        "      # 4 attempts, the retries after about 2 s, 4 s and 8 s.\n      retryStrategy:\n        steps: 4\n        duration: 2s\n        factor: 2\n"
    )
    .is_empty());
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

#[test]
fn every_guides_kubectl_logs_names_the_container_its_variant_creates() {
    // kn and func create an unnamed container; so does knative/service.yaml, so one command
    // fits all three ways the Knative guide offers.
    let ksvc = the(KSVC, "Service", "falco-responder");
    assert!(
        ksvc.v["spec"]["template"]["spec"]["containers"][0]
            .get("name")
            .is_none(),
        "{}: a named container differs from what kn and func deploy",
        ksvc.id()
    );
    assert!(
        !kn_create_words()
            .iter()
            .any(|w| w.starts_with("--container"))
    );
    let mut logs = 0;
    for doc in [
        "docs/deploy-knative.md",
        "docs/deploy-openfaas.md",
        "docs/deploy-argo.md",
    ] {
        let text = read(doc);
        logs += doc_commands(&text)
            .iter()
            .filter(|c| c.join(" ").starts_with("kubectl logs") && c.contains(&"-c".to_string()))
            .count();
        let errors = logs_container_errors(&text);
        assert!(errors.is_empty(), "{doc}:\n{}", errors.join("\n"));
    }
    assert!(logs >= 4, "only {logs} `kubectl logs -c` commands");
    let errors = logs_container_errors(
        "```sh\nkubectl logs --namespace falco-responder -l serving.knative.dev/service=falco-responder -c falco-responder\n\
         kubectl logs --namespace argo-events -l workflows.argoproj.io/workflow -c wait\n```\n",
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn openfaas_guide_never_leaves_the_gateway_exposed_with_an_unauthenticated_function() {
    // Every OpenFaaS install in any guide turns off the NodePort / LoadBalancer Service.
    let mut installs = 0;
    for doc in [
        "docs/deploy-knative.md",
        "docs/deploy-openfaas.md",
        "docs/deploy-argo.md",
    ] {
        for cmd in doc_commands(&read(doc)) {
            if cmd.first().map(String::as_str) == Some("helm")
                && cmd.iter().any(|w| w == "openfaas/openfaas")
            {
                installs += 1;
                assert!(
                    flag_values(&cmd, "--set").contains(&"exposeServices=false".to_string()),
                    "{doc}: `{}` exposes the gateway on every node (faas-netes values.yaml: exposeServices: true, NodePort 31112)",
                    cmd.join(" ")
                );
            }
        }
    }
    assert!(installs >= 1, "the OpenFaaS guide installs OpenFaaS");
    // Every way to deploy the function demands the caller's token.
    for (file, stack) in stacks() {
        for (name, f) in stack["functions"].as_object().unwrap() {
            let path = f["environment"]["AUTH_TOKEN_FILE"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!("{file} {name}: no AUTH_TOKEN_FILE: the gateway forwards anyone's POST")
                });
            assert!(
                strs(&f["secrets"])
                    .iter()
                    .any(|s| path == format!("/var/openfaas/secrets/{s}")),
                "{file} {name}: AUTH_TOKEN_FILE is not one of its secrets"
            );
        }
    }
    // Falcosidekick reaches it with a header it can set (webhook), never the openfaas output.
    for f in files_of(FileKind::HelmValues) {
        let v = yaml_docs(f).remove(0);
        assert!(
            v["falcosidekick"]["config"].get("openfaas").is_none(),
            "{f}: Falcosidekick's openfaas output cannot send the function's token"
        );
    }
    let doc = read("docs/deploy-openfaas.md");
    for want in ["60 day", "OpenFaaS Standard", "exposeServices=false"] {
        assert!(doc.contains(want), "docs/deploy-openfaas.md lacks {want:?}");
    }
}

/// `--from-literal=KEY=VALUE` pairs of a `kubectl create secret generic NAME` in a guide.
fn created_secret(lines: &[String], name: &str, ns: &str) -> Option<BTreeMap<String, String>> {
    lines.iter().find_map(|l| {
        let w = shell_words(l);
        let created = w.windows(4).any(|x| {
            x[0] == "kubectl" && x[1] == "create" && x[2] == "secret" && x[3] == "generic"
        }) && w.iter().any(|x| x == name)
            && flag_values(&w, "--namespace").contains(&ns.to_string());
        created.then(|| {
            flag_values(&w, "--from-literal")
                .into_iter()
                .filter_map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect()
        })
    })
}

/// The value given to a `--set-string ...customHeaders=` in the guide's helm command.
fn helm_custom_headers(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains("helm upgrade --install falco "))
        .flat_map(|l| flag_values(&shell_words(l), "--set-string"))
        .filter_map(|kv| {
            kv.strip_prefix("falcosidekick.config.webhook.customHeaders=")
                .map(String::from)
        })
        .collect()
}

#[test]
fn each_platform_guide_carries_the_token_end_to_end() {
    // OpenFaaS: one token, in Falcosidekick's header and in the function's OpenFaaS secret.
    let lines = doc_shell_lines(&read("docs/deploy-openfaas.md"));
    let headers = helm_custom_headers(&lines);
    assert_eq!(
        headers.len(),
        1,
        "docs/deploy-openfaas.md: helm --set-string ...customHeaders"
    );
    let var = headers[0]
        .strip_prefix("Authorization:Bearer ")
        .expect("customHeaders is `Authorization:Bearer <token>`");
    let (fn_name, _) = openfaas_function();
    let stack = yaml_docs("openfaas/stack.yml").remove(0);
    let path = str_at(
        &stack["functions"][&fn_name],
        "/environment/AUTH_TOKEN_FILE",
    );
    let secret = path.strip_prefix("/var/openfaas/secrets/").unwrap();
    for doc in ["docs/deploy-openfaas.md", "docs/deploy-argo.md"] {
        let lines = doc_shell_lines(&read(doc));
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("faas-cli secret create {secret}"))
                    && l.contains(&format!("\"{var}\""))),
            "{doc}: `faas-cli secret create {secret}` from {var}"
        );
    }

    // Argo: Falcosidekick -> EventSource (authSecret), Sensor -> function (secureHeaders).
    let doc = read("docs/deploy-argo.md");
    let lines = doc_shell_lines(&doc);
    let es = &objs(ARGO, "EventSource")[0];
    let es_ns = es.namespace().unwrap();
    let hook = es.v["spec"]["webhook"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let auth = &hook["authSecret"];
    let (name, key) = (str_at(auth, "/name"), str_at(auth, "/key"));
    let es_secret = created_secret(&lines, name, es_ns)
        .unwrap_or_else(|| panic!("docs/deploy-argo.md creates no Secret {es_ns}/{name}"));
    let es_token = &es_secret[key];
    assert!(
        es_token.starts_with('$'),
        "the EventSource's token comes from a variable"
    );
    assert_eq!(
        helm_custom_headers(&lines),
        [format!("Authorization:Bearer {es_token}")],
        "docs/deploy-argo.md: Falcosidekick sends the EventSource's token"
    );
    let mut function_tokens = BTreeSet::new();
    for s in objs(ARGO, "Sensor") {
        let Some(http) = s.v["spec"]["triggers"][0]["template"].get("http") else {
            continue;
        };
        let sh = &http["secureHeaders"][0];
        assert_eq!(sh["name"], "Authorization", "{}", s.id());
        let r = &sh["valueFrom"]["secretKeyRef"];
        let secret = created_secret(&lines, str_at(r, "/name"), s.namespace().unwrap())
            .unwrap_or_else(|| panic!("{}: its secureHeaders Secret is never created", s.id()));
        let value = &secret[str_at(r, "/key")];
        let token = value
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("{}: the Secret must hold `Bearer <token>`", s.id()));
        assert_ne!(token, es_token.as_str(), "two hops, two tokens");
        function_tokens.insert(token.to_string());
        // The function it calls checks that token.
        let url = str_at(http, "/url");
        if url == openfaas_function_url() {
            assert_eq!(
                var,
                token,
                "{}: the OpenFaaS secret holds the Sensor's token",
                s.id()
            );
        } else {
            let ksvc = the(KSVC, "Service", ARGO_KSVC);
            assert_eq!(
                url,
                format!(
                    "http://{}.{}.svc.cluster.local",
                    ksvc.name(),
                    ksvc.namespace().unwrap()
                )
            );
            let c = &ksvc.v["spec"]["template"]["spec"]["containers"][0];
            assert!(
                env_map(&container_env(c, &ksvc.id())).contains_key("AUTH_TOKEN_FILE"),
                "{}: no AUTH_TOKEN_FILE",
                ksvc.id()
            );
            for v in ksvc.v["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .unwrap()
            {
                let name = str_at(v, "/secret/secretName");
                let created = created_secret(&lines, name, ksvc.namespace().unwrap())
                    .unwrap_or_else(|| panic!("docs/deploy-argo.md never creates Secret {name}"));
                for item in v["secret"]["items"].as_array().unwrap() {
                    assert_eq!(created[str_at(item, "/key")], token, "Secret {name}");
                }
            }
        }
    }
    assert_eq!(
        function_tokens.len(),
        1,
        "both HTTP Sensors use the function's token"
    );

    // Knative: a Broker cannot send a header, so a Trigger's subscriber must not demand one
    // (every event would get 401); the guide says what protects it instead.
    for t in objs(EVENTING, "Trigger") {
        let name = str_at(&t.v, "/spec/subscriber/ref/name");
        let k = the(KSVC, "Service", name);
        for c in k.v["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            let env = env_map(&container_env(c, &k.id()));
            assert!(
                !env.contains_key("AUTH_TOKEN") && !env.contains_key("AUTH_TOKEN_FILE"),
                "{}: behind a Broker nobody could present the token",
                k.id()
            );
        }
    }
    let knative = read("docs/deploy-knative.md");
    for want in [
        "SECURITY.md",
        "knative/networkpolicy.yaml",
        "EventPolicy",
        "deploy-argo.md",
    ] {
        assert!(
            knative.contains(want),
            "docs/deploy-knative.md lacks {want:?}"
        );
    }
}

/// The ingress peers of a NetworkPolicy: (namespace, pod labels) pairs, and problems.
/// (namespace, pod labels) pairs a NetworkPolicy admits.
type Peers = BTreeSet<(String, BTreeMap<String, String>)>;

fn policy_peers(np: &Value) -> (Peers, Vec<String>) {
    let mut peers = BTreeSet::new();
    let mut errors = vec![];
    if !strs(&np["spec"]["policyTypes"]).contains(&"Ingress".to_string()) {
        errors.push("policyTypes lacks Ingress".into());
    }
    if np["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .is_none_or(|m| m.is_empty())
    {
        errors.push("selects every pod of the namespace".into());
    }
    let Some(rules) = np["spec"]["ingress"].as_array() else {
        errors.push("no ingress list (an absent list admits nothing only with policyTypes)".into());
        return (peers, errors);
    };
    for rule in rules {
        if rule["ports"].as_array().is_none_or(|p| p.is_empty()) {
            errors.push("a rule without ports admits every port".into());
        }
        let from = rule["from"].as_array().cloned().unwrap_or_default();
        if from.is_empty() {
            errors.push("a rule without `from` admits everyone".into());
        }
        for peer in from {
            let ns =
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str();
            let pods: BTreeMap<String, String> = peer["podSelector"]["matchLabels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            match ns {
                Some(ns) if !pods.is_empty() && peer.get("ipBlock").is_none() => {
                    peers.insert((ns.to_string(), pods));
                }
                _ => errors.push(format!("peer {peer} is not one namespace's labelled pods")),
            }
        }
    }
    (peers, errors)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selects(np: &Obj, pod_labels: &Value) -> bool {
    np.v["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| &pod_labels[k] == v))
}

#[test]
fn network_policies_admit_only_the_callers_that_must_reach_the_function() {
    let nps = objs(NETWORKING, "NetworkPolicy");
    for np in &nps {
        let (_, errors) = policy_peers(&np.v);
        assert!(errors.is_empty(), "{}:\n{}", np.id(), errors.join("\n"));
    }
    let policy_for = |file: &str, ns: &str, pod_labels: &Value| -> &'static Obj {
        objs(NETWORKING, "NetworkPolicy")
            .into_iter()
            .find(|np| np.file == file && np.namespace() == Some(ns) && selects(np, pod_labels))
            .unwrap_or_else(|| panic!("{file}: no NetworkPolicy selects {pod_labels} in {ns}"))
    };
    // Knative: both Services' pods; only the activator, the Kourier gateway (8012/8013) and the
    // autoscaler (9090), never the container's own port.
    let knative_peers = BTreeSet::from([
        (
            "knative-serving".to_string(),
            labels(&[("app", "activator")]),
        ),
        (
            "kourier-system".to_string(),
            labels(&[("app", "3scale-kourier-gateway")]),
        ),
        (
            "knative-serving".to_string(),
            labels(&[("app", "autoscaler")]),
        ),
    ]);
    for name in ["falco-responder", ARGO_KSVC] {
        let k = the(KSVC, "Service", name);
        let np = policy_for(
            "knative/networkpolicy.yaml",
            k.namespace().unwrap(),
            &k.v["spec"]["template"]["metadata"]["labels"],
        );
        assert_eq!(policy_peers(&np.v).0, knative_peers, "{}", np.id());
        let ports: BTreeSet<u64> = np.v["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["port"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(
            ports,
            BTreeSet::from([8012, 8013, 9090]),
            "{}: queue-proxy's ports only",
            np.id()
        );
    }
    let event_display = the(KSVC, "Service", "falco-responder-event-display");
    assert!(
        !nps.iter().any(|np| selects(
            np,
            &event_display.v["spec"]["template"]["metadata"]["labels"]
        )),
        "the event-display is not the function"
    );
    // OpenFaaS: the function's pods (faas-netes labels them faas_function=<name>); the gateway.
    let (fn_name, fn_ns) = openfaas_function();
    let np = policy_for(
        "openfaas/networkpolicy.yaml",
        &fn_ns,
        &json!({"faas_function": fn_name}),
    );
    assert_eq!(
        policy_peers(&np.v).0,
        BTreeSet::from([("openfaas".to_string(), labels(&[("app", "gateway")]))]),
        "{}",
        np.id()
    );
    // Argo: the EventSource only from Falcosidekick; the workflow pods from nobody.
    let es = &objs(ARGO, "EventSource")[0];
    let np = policy_for(
        "argo/networkpolicy.yaml",
        es.namespace().unwrap(),
        &json!({"eventsource-name": es.name()}),
    );
    assert_eq!(
        policy_peers(&np.v).0,
        BTreeSet::from([(
            "falco".to_string(),
            labels(&[("app.kubernetes.io/name", "falcosidekick")])
        )]),
        "{}",
        np.id()
    );
    let port = es.v["spec"]["service"]["ports"][0]["targetPort"]
        .as_u64()
        .unwrap();
    assert_eq!(
        np.v["spec"]["ingress"][0]["ports"],
        json!([{"protocol": "TCP", "port": port}])
    );
    let wt = the(ARGO, "WorkflowTemplate", "falco-responder");
    let np = policy_for(
        "argo/networkpolicy.yaml",
        wt.namespace().unwrap(),
        &wt.v["spec"]["podMetadata"]["labels"],
    );
    assert_eq!(
        np.v["spec"]["ingress"],
        json!([]),
        "{}: nothing calls a workflow pod",
        np.id()
    );
    // Each guide applies its platform's policies.
    for (doc, file) in [
        ("docs/deploy-knative.md", "knative/networkpolicy.yaml"),
        ("docs/deploy-openfaas.md", "openfaas/networkpolicy.yaml"),
        ("docs/deploy-argo.md", "argo/networkpolicy.yaml"),
        ("docs/deploy-argo.md", "knative/networkpolicy.yaml"),
        ("docs/deploy-argo.md", "openfaas/networkpolicy.yaml"),
    ] {
        assert!(
            doc_commands(&read(doc))
                .iter()
                .any(|c| c.first().map(String::as_str) == Some("kubectl")
                    && c.get(1).map(String::as_str) == Some("apply")
                    && flag_values(c, "-f").contains(&file.to_string())),
            "{doc} never applies {file}"
        );
    }
    // The checks catch an open policy.
    let mut open = the(NETWORKING, "NetworkPolicy", "falco-eventsource")
        .v
        .clone();
    open["spec"]["ingress"][0]["from"] = json!([{"namespaceSelector": {}}]);
    assert!(!policy_peers(&open).1.is_empty());
    open["spec"]["ingress"] = json!([{"ports": [{"port": 12000}]}]);
    assert!(!policy_peers(&open).1.is_empty());
}
