//! Every Kubernetes document against the upstream schema of its apiVersion+kind (copies in
//! `tests/schemas/`, provenance in `tests/schemas/SOURCES.md`); a document whose kind has no
//! schema fails. The kinds the API server can check itself are checked there (`apply`), the
//! others against their JSON Schema here. `func.yaml` against knative/func's schema.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::OnceLock,
};

use serde_json::{Value, json};

use crate::files::*;

// ---- schemas ----------------------------------------------------------------------------

pub(crate) struct SchemaSpec {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    /// Relative to tests/schemas/. `None`: the real API server validates this kind
    /// (`apply` applies every document with `kubectl apply --dry-run=server --validate=strict`,
    /// the CRDs made from the upstream schemas), so no JSON Schema here.
    pub(crate) file: Option<&'static str>,
    /// Validate against this entry of the file's `definitions` (argo-events' schema.json).
    pub(crate) definition: Option<&'static str>,
    pub(crate) namespaced: bool,
    /// A custom resource: the datree/argo schemas leave the top level and `metadata` open,
    /// so `generic_errors` checks those.
    pub(crate) custom: bool,
}

pub(crate) const fn spec(
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
pub(crate) const SERVER: Option<&str> = None;

#[rustfmt::skip]
pub(crate) const SCHEMAS: &[SchemaSpec] = &[
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

pub(crate) fn schema_spec(api_version: &str, kind: &str) -> Option<&'static SchemaSpec> {
    SCHEMAS
        .iter()
        .find(|s| s.api_version == api_version && s.kind == kind)
}

pub(crate) fn load_json(rel: &str) -> Value {
    serde_json::from_str(&read(&format!("tests/schemas/{rel}")))
        .unwrap_or_else(|e| panic!("tests/schemas/{rel}: {e}"))
}

/// argo-events' schema.json lists every field but never forbids unknown ones: make each
/// object schema that lists `properties` closed, so a misspelt field fails as it would in
/// the datree schemas.
pub(crate) fn close_objects(schema: &mut Value) {
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
pub(crate) fn add_experimental_delivery_fields(schema: &mut Value) {
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

pub(crate) fn load_schema(spec: &SchemaSpec, file: &str) -> Value {
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

pub(crate) fn validators() -> &'static BTreeMap<(&'static str, &'static str), jsonschema::Validator>
{
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

pub(crate) fn func_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        jsonschema::validator_for(&load_json("func/func_yaml-schema.json"))
            .expect("func schema compiles")
    })
}

pub(crate) fn validation_errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect()
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// What the schemas leave open: top-level keys of custom resources, `metadata`, and the
/// namespace rule (namespaced objects carry an explicit namespace so `kubectl apply -f`
/// lands them where the other manifests expect them; cluster-scoped ones carry none).
pub(crate) fn generic_errors(doc: &Value, spec: &SchemaSpec) -> Vec<String> {
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
pub(crate) fn kube_errors(doc: &Value) -> Result<Vec<String>, String> {
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

/// The ConfigMap schema, for the resources a Sensor's k8s trigger creates (not a manifest of
/// its own, so not in SCHEMAS).
pub(crate) fn configmap_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        jsonschema::validator_for(&load_json(
            "kubernetes/v1.30.0-standalone-strict/configmap-v1.json",
        ))
        .expect("ConfigMap schema compiles")
    })
}

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
