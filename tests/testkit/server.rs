//! THE in-process starter: an [`App`] served by `web::run` on a loopback listener, with the
//! shutdown signal in the test's hand.

use std::{net::SocketAddr, time::Duration};

use falco_responder::{app::App, config::Config, web};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A `Config` from these variables only.
pub fn config(vars: &[(&str, &str)]) -> Config {
    Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
}

/// The GET paths the binary answers 200 on while healthy: the probes every platform's manifest
/// may name.
pub const HEALTH_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/health/liveness",
    "/health/readiness",
    "/_/health",
    "/_/ready",
];

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `app` on `listener`.
    pub fn serve(listener: TcpListener, app: App) -> Server {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(web::run(listener, app, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Serves `app` on a free port of 127.0.0.1.
    pub async fn start(app: App) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::serve(listener, app)
    }

    /// DRY_RUN without a cluster, then `vars`: the whole HTTP path, no Kubernetes.
    pub async fn dry(vars: &[(&str, &str)]) -> Server {
        let mut all = vec![("DRY_RUN", "true")];
        all.extend_from_slice(vars);
        Server::start(App::new(config(&all), None)).await
    }

    /// The closing signal (SIGTERM in the binary).
    pub fn shutdown(&mut self) {
        self.stop.take().expect("shut down once").send(()).unwrap();
    }

    /// Waits until `web::run` returned, at most `within`; panics on a timeout or an error.
    pub async fn stopped(&mut self, within: Duration) {
        tokio::time::timeout(within, &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("the server still runs after {within:?}"))
            .unwrap()
            .unwrap();
    }
}
