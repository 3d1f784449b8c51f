//! The throughput baseline of `scripts/bench.sh`: the barest hyper 1 HTTP/1 server on tokio that
//! does what falco-responder must do at least for an event it skips — accept, read the whole
//! body, answer 200. Same runtime as the binary (multi-thread, `TOKIO_WORKER_THREADS` honoured),
//! same per-connection setup (`TCP_NODELAY`, one task per connection), nothing else.
//!
//! `PORT=8081 target/release/examples/bench_bare_hyper` listens on 127.0.0.1:$PORT until killed.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body to the end, as the function must before it can decode an event.
    let _ = req.into_body().collect().await;
    Ok(Response::new(Full::new(Bytes::new())))
}

fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8081);
    // Like falco-responder's `serve`: a multi-thread runtime; TOKIO_WORKER_THREADS sets its size.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
}
