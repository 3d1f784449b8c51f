//! Reading the repository: the manifest files, their YAML documents as Kubernetes objects, and
//! the names every room shares.

use std::{path::Path, sync::OnceLock};

use serde_json::Value;

/// The image placeholder every manifest and doc uses (replaced by a digest when deploying).
pub(crate) const IMAGE: &str = "ghcr.io/falco-responder/falco-responder:0.1.0";
pub(crate) const MANIFEST_DIRS: &[&str] = &["knative", "openfaas", "argo"];
pub(crate) const FALCO_CE_TYPE: &str = "falco.rule.output.v1";
pub(crate) const RESULT_CE_TYPE: &str = "org.falco-responder.result.v1";
pub(crate) const TEST_RULE: &str = "Terminal shell in container";
/// The rule of Falcosidekick's `POST /test` event, which the function skips by design.
pub(crate) const SIDEKICK_TEST_RULE: &str = "Test rule";
/// Namespaces the docs install platforms into (not defined by our manifests).
pub(crate) const PLATFORM_NAMESPACES: &[&str] = &[
    "falco",
    "knative-serving",
    "knative-eventing",
    "openfaas",
    "argo",
];
/// Falco priorities, most severe first (Falcosidekick spells them in lower case).
pub(crate) const PRIORITIES: &[&str] = &[
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

pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub(crate) fn yaml_docs(rel: &str) -> Vec<Value> {
    yaml_docs_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The documents of a YAML text (helm's or kubectl's output, a CRD file); panics with the text.
pub(crate) fn parse_yaml(text: &str) -> Vec<Value> {
    yaml_docs_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

pub(crate) fn yaml_docs_str(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("not valid YAML: {e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Kubernetes,
    HelmValues,
    OpenFaasStack,
    /// `kubectl apply -k` input, written by scripts/render-manifests.sh (checked by `chart`).
    Kustomization,
}

pub(crate) fn classify(rel: &str) -> FileKind {
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
pub(crate) fn manifest_files() -> &'static [String] {
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

pub(crate) fn files_of(kind: FileKind) -> Vec<&'static str> {
    manifest_files()
        .iter()
        .filter(|f| classify(f) == kind)
        .map(String::as_str)
        .collect()
}

// ---- Kubernetes objects ---------------------------------------------------------------

pub(crate) struct Obj {
    pub(crate) file: String,
    pub(crate) index: usize,
    pub(crate) v: Value,
}

impl Obj {
    pub(crate) fn api_version(&self) -> &str {
        self.v["apiVersion"].as_str().unwrap_or("")
    }
    pub(crate) fn kind(&self) -> &str {
        self.v["kind"].as_str().unwrap_or("")
    }
    pub(crate) fn name(&self) -> &str {
        self.v["metadata"]["name"].as_str().unwrap_or("")
    }
    pub(crate) fn namespace(&self) -> Option<&str> {
        self.v["metadata"]["namespace"].as_str()
    }
    pub(crate) fn id(&self) -> String {
        format!(
            "{} (document {}) {}/{}",
            self.file,
            self.index + 1,
            self.kind(),
            self.name()
        )
    }
}

pub(crate) fn objects() -> &'static [Obj] {
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

pub(crate) fn objs(api_version: &str, kind: &str) -> Vec<&'static Obj> {
    objects()
        .iter()
        .filter(|o| o.api_version() == api_version && o.kind() == kind)
        .collect()
}

pub(crate) fn obj(api_version: &str, kind: &str, name: &str) -> Option<&'static Obj> {
    objs(api_version, kind)
        .into_iter()
        .find(|o| o.name() == name)
}

pub(crate) fn the(api_version: &str, kind: &str, name: &str) -> &'static Obj {
    obj(api_version, kind, name)
        .unwrap_or_else(|| panic!("no {kind} {name:?} ({api_version}) in {MANIFEST_DIRS:?}"))
}

pub(crate) fn exists_in(
    api_version: &str,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> bool {
    objs(api_version, kind)
        .iter()
        .any(|o| o.name() == name && o.namespace() == namespace)
}

pub(crate) const KSVC: &str = "serving.knative.dev/v1";
/// The Knative Service an Argo Sensor calls (argo/knative-service.yaml): it checks a token.
pub(crate) const ARGO_KSVC: &str = "falco-responder-argo";
pub(crate) const EVENTING: &str = "eventing.knative.dev/v1";
pub(crate) const ARGO: &str = "argoproj.io/v1alpha1";
pub(crate) const RBAC: &str = "rbac.authorization.k8s.io/v1";
pub(crate) const NETWORKING: &str = "networking.k8s.io/v1";

pub(crate) fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {ptr} in {v}"))
}

pub(crate) fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Sets (`Some`) or removes (`None`) the value at a JSON pointer whose parent exists.
pub(crate) fn edit(v: &mut Value, ptr: &str, value: Option<Value>) {
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
