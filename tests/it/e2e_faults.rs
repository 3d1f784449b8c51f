//! Faults of the API server, against the real `falco-responder` binary:
//! a real kube-apiserver stopped in the middle of a storm of events for many pods and started
//! again; an API server that accepts connections and never answers; one that answers 500 or
//! 429. Never a 2xx for a deletion that did not happen; 503 + Retry-After for what may succeed
//! later; no restart of the function needed.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::testkit::binary::{Responder, kubeconfig_for};
use crate::testkit::scene::Scene;
use crate::testkit::sender::{HttpReply, said};

const CID: &str = "6ac7d190134e0123456789abcdef0123456789abcdef0123456789abcdef0123";

fn outcome(r: &HttpReply) -> String {
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["outcome"].as_str().map(String::from))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_stopped_mid_storm_never_gets_a_2xx_without_deletion_and_recovers() {
    // A private API server: this test stops it.
    let scene = Scene::private("faults").await;
    let api = scene.private_server();
    const PODS: usize = 60;
    for i in 0..PODS {
        scene.pod(&format!("web-{i}"), CID).await;
    }
    let responder = std::sync::Arc::new(
        scene
            .responder(&[
                ("API_TIMEOUT_SECONDS", "3"),
                ("DEDUP_SECONDS", "0"),
                // Many deliberate deletions in a minute: the deletion breaker would
                // rightly open; this test is about the API server's faults.
                ("MAX_DELETIONS", "off"),
                ("MAX_DELETIONS_PER_WORKLOAD", "off"),
            ])
            .await,
    );

    // The storm: 6 senders, one event per pod each in turn, while the API server is stopped
    // after the first answers.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::new();
    for w in 0..6 {
        let responder = responder.clone();
        let ns = scene.ns.clone();
        let tx = tx.clone();
        senders.push(tokio::spawn(async move {
            for i in (w..PODS).step_by(6) {
                let pod = format!("web-{i}");
                let r = responder.shell(&ns, &pod, CID).await;
                let _ = tx.send((pod, r.status, outcome(&r)));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }));
    }
    drop(tx);
    let mut answers: BTreeMap<String, (u16, String)> = BTreeMap::new();
    let mut stopped = false;
    while let Some((pod, status, outcome)) = rx.recv().await {
        answers.insert(pod, (status, outcome));
        if !stopped && answers.len() >= 12 {
            stopped = true;
            let api = api.clone();
            tokio::task::spawn_blocking(move || api.stop_apiserver())
                .await
                .unwrap();
        }
    }
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(answers.len(), PODS);
    let failed: Vec<&String> = answers
        .iter()
        .filter(|(_, (status, _))| *status >= 500)
        .map(|(p, _)| p)
        .collect();
    for (pod, (status, outcome)) in &answers {
        assert!(
            (*status == 200 && (outcome == "deleted" || outcome == "gone")) || *status == 503,
            "{pod}: {status} {outcome}\n{}",
            responder.logs()
        );
    }
    assert!(
        failed.len() >= PODS / 3,
        "the API server was stopped early: most events should have failed ({answers:?})"
    );
    assert!(
        answers.values().any(|(s, _)| *s == 200),
        "no event succeeded before the stop"
    );

    tokio::task::spawn_blocking(move || api.restart_apiserver())
        .await
        .unwrap();
    let scene = scene.reconnected().await;
    // Every 2xx was a real deletion.
    for (pod, (status, _)) in &answers {
        if *status == 200 {
            assert!(scene.deleted(pod).await, "{pod}: 200 but not deleted");
        }
    }
    // The same process recovers: the failed events, sent again, succeed.
    let started = Instant::now();
    for pod in failed {
        let mut r = responder.shell(&scene.ns, pod, CID).await;
        // The kube client may hold a connection that died with the old process: one retry,
        // as the sender's own retry would do.
        if r.status == 503 && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            r = responder.shell(&scene.ns, pod, CID).await;
        }
        assert_eq!(
            r.status,
            200,
            "{pod} after the restart: {}\n{}",
            String::from_utf8_lossy(&r.body),
            responder.logs()
        );
        assert_eq!(outcome(&r), "deleted", "{pod}\n{}", responder.logs());
        assert!(scene.deleted(pod).await, "{pod}");
    }
}

#[tokio::test]
async fn an_apiserver_that_never_answers_gives_503_within_api_timeout() {
    // Accepts, reads, never answers.
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = api.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = api.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            held.push(sock);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_for(dir.path(), addr);
    // Never ready (its breaker's records cannot be checked), but alive and answering.
    let responder = Responder::start_live(&[
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("API_TIMEOUT_SECONDS", "2"),
    ])
    .await;
    assert_eq!(responder.readyz().await.status, 503);
    let started = Instant::now();
    let r = responder.shell("prod", "web-1", CID).await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(4500),
        "answered after {took:?}, API_TIMEOUT_SECONDS=2"
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["retry"], true);
    assert!(
        said(&body, "error").contains("API_TIMEOUT_SECONDS"),
        "{body}"
    );
}

/// An API server answering every request with `status` (a Kubernetes Status body).
async fn answering(status: u16, reason: &'static str) -> std::net::SocketAddr {
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = api.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = api.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let body = format!(
                        r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"{reason}","code":{status},"message":"injected"}}"#
                    );
                    let resp = format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_apiserver_answering_500_or_429_gives_503_with_retry_after() {
    for (status, reason) in [(500, "InternalError"), (429, "TooManyRequests")] {
        let addr = answering(status, reason).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = kubeconfig_for(dir.path(), addr);
        // Not ready: the breaker's records cannot be checked. Never restarted for it either.
        let responder = Responder::start_live(&[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("API_TIMEOUT_SECONDS", "5"),
        ])
        .await;
        let ready = responder.readyz().await;
        assert_eq!(ready.status, 503, "API {status}");
        let started = Instant::now();
        let r = responder.shell("prod", "web-1", CID).await;
        assert_eq!(
            r.status,
            503,
            "API {status}: {}\n{}",
            String::from_utf8_lossy(&r.body),
            responder.logs()
        );
        assert_eq!(r.header("retry-after"), Some("1"), "API {status}");
        assert!(started.elapsed() < Duration::from_secs(6), "API {status}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["retry"], true, "API {status}: {body}");
    }
}
