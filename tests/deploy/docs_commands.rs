//! The guides (`docs/deploy-*.md`) work as written: their commands name files, namespaces,
//! selectors and resources the manifests define, and each platform's guide carries the token
//! from the caller to the function.

use std::collections::{BTreeMap, BTreeSet};

use base64::{Engine, prelude::BASE64_STANDARD};
use serde_json::Value;

use crate::{
    env_contract::{container_env, env_map},
    files::*,
    shell::{doc_commands, doc_shell_lines, flag_values, kn_create_words, split_commands, words},
    stacks::{openfaas_function, openfaas_function_url, stacks},
    tools::{ok, run},
};

/// Flags in the docs' commands that take no value (so the next word is positional).
pub(crate) const BOOLEAN_FLAGS: &[&str] = &[
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

pub(crate) const REPO_PATH_PREFIXES: &[&str] =
    &["knative/", "openfaas/", "argo/", "scripts/", "docs/"];

/// Problems in the commands of one doc, and the repo files they use.
pub(crate) fn doc_errors(markdown: &str) -> (Vec<String>, BTreeSet<String>) {
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

/// The container a `-l` selector's pods log from: Knative names an unnamed container
/// `user-container` (serving pkg/apis/config/defaults.go); Argo Workflows' step container is
/// `main`.
pub(crate) fn logs_container_errors(markdown: &str) -> Vec<String> {
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

/// The data of Secret `ns/name` as a guide's `kubectl create secret generic` makes it: kubectl
/// itself builds the object (`--dry-run=client -o json`, offline), so its flags and the keys
/// are read as kubectl reads them. Variables stay unexpanded (`$TOKEN`).
pub(crate) fn created_secret(
    lines: &[String],
    name: &str,
    ns: &str,
) -> Option<BTreeMap<String, String>> {
    let commands = lines.iter().flat_map(|l| split_commands(words(l)));
    commands
        .filter(|c| {
            c.starts_with(&["kubectl".into()])
                && c.windows(3).any(|x| x == ["create", "secret", "generic"])
        })
        .find_map(|c| {
            let mut args: Vec<&str> = c[1..].iter().map(String::as_str).collect();
            args.extend(["--dry-run=client", "-o", "json"]);
            let secret: Value = serde_json::from_str(&ok(run("kubectl", None, &args))).unwrap();
            (secret["metadata"]["name"] == name && secret["metadata"]["namespace"] == ns).then(
                || {
                    secret["data"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| {
                            let bytes = BASE64_STANDARD.decode(v.as_str().unwrap()).unwrap();
                            (k.clone(), String::from_utf8(bytes).unwrap())
                        })
                        .collect()
                },
            )
        })
}

/// The value given to a `--set-string ...customHeaders=` in the guide's helm command.
pub(crate) fn helm_custom_headers(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains("helm upgrade --install falco "))
        .flat_map(|l| flag_values(&words(l), "--set-string"))
        .filter_map(|kv| {
            kv.strip_prefix("falcosidekick.config.webhook.customHeaders=")
                .map(String::from)
        })
        .collect()
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
