//! Black-box HTTP tests through a real socket: routes, status codes, bodies, CloudEvent replies,
//! auth, limits and graceful shutdown.

use std::time::Duration;

use falco_responder::{app::App, web};
use http::{HeaderMap, HeaderValue, header};
use kube::Client;
use tokio::net::TcpListener;

use crate::testkit::sender::{
    ENVELOPES, Envelope, fixture, http, parse_response, said, terminal_shell, wrap,
};
use crate::testkit::server::{HEALTH_PATHS, Server, config};

fn shell() -> String {
    terminal_shell("prod", "web-1", "ee97d9c4186f")
}

#[tokio::test]
async fn every_envelope_gets_the_result_in_the_right_form() {
    let s = Server::dry(&[]).await;
    for &env in ENVELOPES {
        let (headers, body) = wrap(env, &shell());
        let r = http(s.addr, "POST", "/", &headers, &body).await;
        assert_eq!(
            r.status,
            200,
            "{env:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let result = if env.is_cloudevent() {
            // A Knative broker turns a 2xx with a non-CloudEvent body into a 502: reply with one.
            let ce = cloudevents::binding::http::to_event(&r.headers, r.body.clone())
                .unwrap_or_else(|e| panic!("{env:?}: reply is not a CloudEvent: {e}"));
            use cloudevents::AttributesReader;
            assert_eq!(ce.ty(), web::RESULT_CE_TYPE);
            assert_ne!(ce.ty(), "falco.rule.output.v1");
            assert_eq!(ce.subject(), Some("prod/web-1"));
            serde_json::Value::try_from(ce.data().unwrap().clone()).unwrap()
        } else {
            assert!(r.header("ce-specversion").is_none());
            assert_eq!(r.header("content-type"), Some("application/json"));
            r.json()
        };
        assert_eq!(result["outcome"], "dry-run", "{env:?}");
        assert_eq!(result["pod"]["namespace"], "prod");
        assert_eq!(result["pod"]["name"], "web-1");
        assert_eq!(result["rule"], "Terminal shell in container");
        assert_eq!(result["priority"], "Critical");
        assert_eq!(result["input"], env.input_kind());
    }
}

#[tokio::test]
async fn skipped_events_say_why() {
    let s = Server::dry(&[]).await;
    let r = http(
        s.addr,
        "POST",
        "/",
        &HeaderMap::new(),
        fixture("falcosidekick-test-rule-debug-input.json").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["outcome"], "skipped");
    assert!(said(&r.json(), "reason").contains("test event"));
}

#[tokio::test]
async fn bad_input_gets_400_with_what_was_wrong() {
    let s = Server::dry(&[]).await;
    for (body, expect) in [
        ("", "empty body"),
        ("{not json", "not JSON"),
        (r#"{"hello":"world","x":1}"#, "not a Falco event"),
        (
            r#"{"rule":"r","priority":"Loud","output_fields":{}}"#,
            "unknown Falco priority",
        ),
    ] {
        let r = http(s.addr, "POST", "/", &HeaderMap::new(), body.as_bytes()).await;
        assert_eq!(r.status, 400, "{body}");
        let err = said(&r.json(), "error").to_string();
        assert!(err.contains(expect), "{body}: {err}");
    }
    let mut ce = HeaderMap::new();
    ce.insert("ce-specversion", HeaderValue::from_static("1.0"));
    let r = http(s.addr, "POST", "/", &ce, shell().as_bytes()).await;
    assert_eq!(r.status, 400);
    assert!(said(&r.json(), "error").contains("invalid CloudEvent"));
    let mut batch = HeaderMap::new();
    batch.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/cloudevents-batch+json"),
    );
    assert_eq!(http(s.addr, "POST", "/", &batch, b"[]").await.status, 415);
}

#[tokio::test]
async fn methods_paths_and_probes() {
    let s = Server::dry(&[]).await;
    let none = HeaderMap::new();
    let r = http(s.addr, "GET", "/", &none, b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(
        http(s.addr, "PUT", "/", &none, shell().as_bytes())
            .await
            .status,
        405
    );
    let r = http(s.addr, "POST", "/delete", &none, shell().as_bytes()).await;
    assert_eq!(r.status, 404);
    assert!(said(&r.json(), "error").contains("/delete"));
    for path in HEALTH_PATHS {
        assert_eq!(
            http(s.addr, "GET", path, &none, b"").await.status,
            200,
            "{path}"
        );
    }
    assert_eq!(
        http(s.addr, "POST", "/healthz", &none, b"").await.status,
        405
    );
}

/// A server answers its probes while its kube client is still being built (`main`); an event
/// that comes first waits for the client instead of failing or skipping the lookup. Readiness
/// waits for the deletion breaker's records to be checked: here, DRY_RUN without a cluster has
/// none, so it is ready once connected.
#[tokio::test]
async fn probes_answer_while_the_client_is_built_and_an_event_waits_for_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::connecting(config(&[("DRY_RUN", "true")]));
    let s = Server::serve(listener, app.clone());
    let addr = s.addr;
    let none = HeaderMap::new();
    assert_eq!(http(addr, "GET", "/healthz", &none, b"").await.status, 200);
    let r = http(addr, "GET", "/readyz", &none, b"").await;
    assert_eq!(r.status, 503);
    assert!(
        String::from_utf8_lossy(&r.body).contains("deletion breaker's records"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let (headers, body) = wrap(Envelope::Plain, &shell());
    let event = tokio::spawn(async move { http(addr, "POST", "/", &headers, &body).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!event.is_finished(), "answered before the client existed");
    app.connect(None);
    let r = tokio::time::timeout(Duration::from_secs(10), event)
        .await
        .expect("answered once connected")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["outcome"], "dry-run");
    assert_eq!(http(addr, "GET", "/readyz", &none, b"").await.status, 200);
}

#[tokio::test]
async fn metrics_count_events_by_input_and_outcome() {
    let s = Server::dry(&[]).await;
    let (h, b) = wrap(Envelope::CloudEventBinary, &shell());
    http(s.addr, "POST", "/", &h, &b).await;
    http(s.addr, "POST", "/", &HeaderMap::new(), b"nope").await;
    let r = http(s.addr, "GET", "/metrics", &HeaderMap::new(), b"").await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains(
            r#"falco_responder_events_total{input="cloudevent-binary",outcome="dry-run"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"falco_responder_events_total{input="unknown",outcome="invalid"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("falco_responder_handle_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("falco_responder_deletions_total 0"), "{text}");
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let s = Server::dry(&[("AUTH_TOKEN", "s3cret")]).await;
    let body = shell();
    let r = http(s.addr, "POST", "/", &HeaderMap::new(), body.as_bytes()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let mut wrong = HeaderMap::new();
    wrong.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer guess"),
    );
    assert_eq!(
        http(s.addr, "POST", "/", &wrong, body.as_bytes())
            .await
            .status,
        401
    );
    let mut right = HeaderMap::new();
    right.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer s3cret"),
    );
    assert_eq!(
        http(s.addr, "POST", "/", &right, body.as_bytes())
            .await
            .status,
        200
    );
    // Probes stay open for the kubelet.
    assert_eq!(
        http(s.addr, "GET", "/readyz", &HeaderMap::new(), b"")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let s = Server::dry(&[("MAX_BODY_BYTES", "1024")]).await;
    let mut big: serde_json::Value = serde_json::from_str(&shell()).unwrap();
    big["output"] = serde_json::json!("x".repeat(2000));
    let big = big.to_string();
    let r = http(s.addr, "POST", "/", &HeaderMap::new(), big.as_bytes()).await;
    assert_eq!(r.status, 413);
    assert!(said(&r.json(), "error").contains("MAX_BODY_BYTES"));

    // Chunked, so no Content-Length announces it: the streaming limit must catch it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head =
        "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = "x".repeat(400);
    for _ in 0..3 {
        let _ = stream
            .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    assert_eq!(parse_response(&raw).status, 413);
}

#[tokio::test]
async fn unreachable_api_is_503_with_retry_after() {
    // A closed port: connection refused, as when the API server is down.
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = probe.local_addr().unwrap();
    drop(probe);
    let mut kc = kube::Config::new(format!("http://{dead}").parse().unwrap());
    kc.default_retry = false;
    let app = App::new(
        config(&[("API_TIMEOUT_SECONDS", "3")]),
        Some(Client::try_from(kc).unwrap()),
    );
    let s = Server::start(app).await;
    let (h, b) = wrap(Envelope::CloudEventBinary, &shell());
    let r = http(s.addr, "POST", "/", &h, &b).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    // An error, not a reply event: Knative retries it and keeps it for the dead-letter sink.
    assert!(r.header("ce-type").is_none());
    let body = r.json();
    assert_eq!(body["retry"], true);
    assert!(said(&body, "error").contains("unreachable"), "{body}");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_events_and_stops_accepting() {
    // An API server that answers slowly, so that an event is in flight when shutdown starts.
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = api.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                tokio::time::sleep(Duration::from_millis(700)).await;
                let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"}"#;
                let resp = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    let client = Client::try_from(kube::Config::new(
        format!("http://{api_addr}").parse().unwrap(),
    ))
    .unwrap();
    // No endpoint-propagation delay here: the limits suite covers it.
    let mut s = Server::start(App::new(
        config(&[("SHUTDOWN_DELAY_SECONDS", "0")]),
        Some(client),
    ))
    .await;
    let addr = s.addr;
    let in_flight = tokio::spawn(async move {
        http(addr, "POST", "/", &HeaderMap::new(), shell().as_bytes()).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.shutdown();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["outcome"], "gone");
    // The server stops once in-flight events are done.
    s.stopped(Duration::from_secs(5)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// A sender (or an attacker, without AUTH_TOKEN) that announces a body and never sends it must
/// not hold its connection forever: MAX_CONNECTIONS of them would stop the server accepting
/// events. Paused clock: the server's timeouts pass instantly while both sides wait.
#[tokio::test(start_paused = true)]
async fn a_body_that_never_arrives_does_not_hold_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::dry(&[]).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"rule\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(600), stream.read_to_end(&mut raw)).await;
    assert!(
        read.is_ok(),
        "the connection is still open after 10 minutes without the rest of the body"
    );
    assert_eq!(
        parse_response(&raw).status,
        408,
        "{}",
        String::from_utf8_lossy(&raw)
    );
}
