//! The environment contract: every env var a manifest sets (Knative Service, WorkflowTemplate,
//! func.yaml, the kn script, the OpenFaaS stacks) is one the binary reads (`ENV_VARS`), and each
//! manifest's whole set is accepted by `Config::from_vars`, exactly as at start-up. Knative's
//! manifest, func.yaml and the kn script describe the same Service.

use std::collections::{BTreeMap, BTreeSet};

use falco_responder::config::{Config, ENV_VARS};
use serde_json::{Value, json};

use crate::{
    files::*,
    shell::{flag_value, flag_values, kn_create_words},
    stacks::stacks,
    testkit::server::HEALTH_PATHS,
};

// ---- env vars ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum EnvValue {
    Literal(String),
    FieldRef(String),
}

pub(crate) struct EnvSource {
    pub(crate) origin: String,
    pub(crate) vars: Vec<(String, EnvValue)>,
}

pub(crate) fn container_env(c: &Value, origin: &str) -> Vec<(String, EnvValue)> {
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

pub(crate) fn is_our_image(image: &str) -> bool {
    image == IMAGE || image.starts_with("ghcr.io/falco-responder/falco-responder@")
}

/// The containers that run our image, wherever a manifest defines one.
pub(crate) fn function_containers() -> Vec<(String, &'static Value)> {
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

/// Every place that sets env vars for the binary.
pub(crate) fn env_sources() -> Vec<EnvSource> {
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

pub(crate) fn resolve(vars: &[(String, EnvValue)]) -> Vec<(String, String)> {
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

pub(crate) fn env_map(vars: &[(String, EnvValue)]) -> BTreeMap<String, EnvValue> {
    vars.iter().cloned().collect()
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
    // Readiness without a period on both: Knative's aggressive probing (safe_defaults.rs).
    assert!(flag_values(&kn, "--probe-readiness-opts").is_empty());
    assert!(c["readinessProbe"]["periodSeconds"].is_null());
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
