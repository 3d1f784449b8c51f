//! Part of the benchmark driver (`examples/bench.rs`): (10) what a containment costs next to a
//! deletion, the same pods (owned by a ReplicaSet, so a containment releases them), the same
//! event, interleaved one by one, the same guards (the breaker off as in the other latency
//! sections), plus a bare kube client's GET + DELETE as the floor. `BENCH_ONLY=contain` runs
//! this alone.
//!
//! A containment does more: the ReplicaSet's selector (GET), the NetworkPolicy (POST), one
//! uid-tested PATCH (label, release, deadline), one `pods/log` GET per container, the evidence
//! ConfigMap (POST) and its retention (LIST), then the Event. There is no kubelet behind this apiserver, so each
//! `pods/log` GET fails at once (no such Node): a real node adds its log read (about 7–10 ms for
//! a 380 KB log, docs/containment measurements) per container.

use std::{fmt::Write as _, net::SocketAddr, time::Instant};

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};

use super::{
    CID, Envelope, KeepAlive, Settings, create_owned_pods, floor_pair, median, ms, outcome, pct,
    responder_cmd, say, spawn_ready, support, terminal_shell, wrap,
};

#[derive(Default)]
pub struct ContainCost {
    pub floor: Vec<f64>,
    pub delete: Vec<f64>,
    pub contain: Vec<f64>,
    /// Evidence ConfigMaps in the function's namespace at the end (one per containment).
    pub evidence: usize,
    /// The steps the last containment reported.
    pub steps: String,
}

pub async fn contain_costs(
    s: &Settings,
    server: &support::ApiServer,
    admin: &Client,
) -> ContainCost {
    let kubeconfig = server.admin_kubeconfig();
    let ns = support::namespace(admin, "bench-contain").await;
    let home = support::namespace(admin, "bench-contain-home").await;
    let n = s.pods.div_ceil(10).clamp(10, 50);
    let start = |env: &[(&str, &str)]| {
        let port = super::free_port();
        let mut cmd = responder_cmd(&s.responder, port, &kubeconfig);
        cmd.env("NAMESPACES", &ns).env("POD_NAMESPACE", &home);
        cmd.envs(env.iter().copied());
        (
            spawn_ready(cmd, port, "/readyz"),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    };
    let (_delete, delete_addr) = start(&[]);
    let max = (2 * n + 10).to_string();
    let (_contain, contain_addr) = start(&[
        ("ACTION", "contain"),
        ("CONTAIN_SECONDS", "600"),
        ("EVIDENCE_MAX_CONFIGMAPS", &max),
    ]);

    // An inert ReplicaSet (no controller manager here): what the release reads.
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web-5d9c7b8f9" },
        "spec": { "replicas": 0, "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "main", "image": "alpine" }] } } }
    }))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &rs)
        .await
        .expect("ReplicaSet");
    let floor = create_owned_pods(admin, &ns, "f", n, &rs, true).await;
    let deleted = create_owned_pods(admin, &ns, "d", n, &rs, true).await;
    let contained = create_owned_pods(admin, &ns, "c", n, &rs, true).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let mut conns = [
        KeepAlive::connect(delete_addr).await,
        KeepAlive::connect(contain_addr).await,
    ];
    let mut c = ContainCost::default();
    // Warm-up, not counted: connections, the owner cache.
    {
        let w = create_owned_pods(admin, &ns, "w", 2, &rs, true).await;
        for (k, want) in [(0, "deleted"), (1, "contained")] {
            let (h, b) = wrap(Envelope::Plain, &terminal_shell(&ns, &w[k], CID));
            assert_eq!(outcome(&conns[k].post(&h, &b).await), want, "warm-up");
        }
    }
    for i in 0..n {
        for k in 0..3 {
            let (conn, name, out, want) = match (i + k) % 3 {
                0 => {
                    c.floor.push(ms(floor_pair(&pods, &floor[i]).await));
                    continue;
                }
                1 => (0, &deleted[i], &mut c.delete, "deleted"),
                _ => (1, &contained[i], &mut c.contain, "contained"),
            };
            let (h, b) = wrap(Envelope::Plain, &terminal_shell(&ns, name, CID));
            let t = Instant::now();
            let reply = conns[conn].post(&h, &b).await;
            let dt = t.elapsed();
            assert_eq!(outcome(&reply), want, "pod {name}");
            if conn == 1 {
                c.steps = reply.json()["steps"].to_string();
            }
            out.push(ms(dt));
        }
    }
    c.evidence = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), &home)
        .list(&ListParams::default().labels("falco-responder/evidence=true"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    say(&format!(
        "contain: floor {:.2} ms, delete {:.2} ms, contain {:.2} ms (steps {}); {} evidence ConfigMaps",
        median(&c.floor),
        median(&c.delete),
        median(&c.contain),
        c.steps,
        c.evidence
    ));
    c
}

pub fn write_contain(w: &mut String, c: &ContainCost) {
    if c.floor.is_empty() {
        return;
    }
    let (fm, dm) = (median(&c.floor), median(&c.delete));
    let _ = writeln!(
        w,
        "\n## Containment\n\nThe same event for pods of a ReplicaSet, {} each, interleaved one by \
         one: `ACTION=delete` → `deleted`, `ACTION=contain` (CONTAIN_SECONDS=600) → `contained` \
         with the steps {}: the ReplicaSet's selector GET, a NetworkPolicy POST, one uid-tested \
         PATCH (label, release, deadline), one `pods/log` GET per container, the evidence \
         ConfigMap POST and its retention LIST, then the Event ({} evidence ConfigMaps at the \
         end). No kubelet runs behind this \
         apiserver: each `pods/log` GET fails at once, where a real node adds its log read \
         (about 7–10 ms for a 380 KB log). The floor is a bare kube client's GET + DELETE.\n",
        c.floor.len(),
        c.steps,
        c.evidence
    );
    let _ = writeln!(
        w,
        "| series | median | p99 | median vs floor | median vs delete |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|");
    for (what, v) in [
        ("bare kube GET + DELETE (floor)", &c.floor),
        ("ACTION=delete", &c.delete),
        ("ACTION=contain", &c.contain),
    ] {
        let m = median(v);
        let _ = writeln!(
            w,
            "| {what} | {m:.2} ms | {:.2} ms | {:.2}× | {:.2}× |",
            pct(v, 99.0),
            m / fm,
            m / dm
        );
    }
}
