//! Builds the kube `Client`: in-cluster in a pod, KUBECONFIG or ~/.kube/config outside.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::TryFutureExt;
use http::{Request, Response, Uri};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use kube::{
    Client, Config as KubeConfig,
    client::{ConfigExt, retry::RetryPolicy},
};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, retry::RetryLayer};

use crate::config::Config;

/// hyper's client: the connection pool, shared by its clones.
type Pool<C> = hyper_util::client::legacy::Client<C, kube::client::Body>;

/// What a pool's connector must be.
trait Connect: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static {}
impl<T: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static> Connect
    for T
{
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no Kubernetes configuration: not running in a pod (KUBERNETES_SERVICE_HOST unset or no \
         ServiceAccount token) and no usable kubeconfig (KUBECONFIG or ~/.kube/config): {0}. \
         Set DRY_RUN=true to run without a cluster"
    )]
    NoConfig(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Build(String),
}

/// The clients of one process. They share one connection pool: the eviction path reuses the
/// connection (and TLS session) the GET just used instead of opening its own.
#[derive(Clone)]
pub struct Clients {
    /// Every call, with kube's retry layer (server errors, 429 from API priority and fairness).
    pub main: Client,
    /// USE_EVICTION only: the same without the retry layer, which would retry a
    /// PodDisruptionBudget's 429 until the deadline instead of letting us answer `held`.
    pub evict: Option<Client>,
}

/// How the clients reach the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A pool of HTTP/1.1 connections: a server's concurrent events each get their own.
    Pool,
    /// One connection, the calls taking turns on it: for a process that makes a few calls and
    /// exits (the one-shot mode). A pool opens a connection per concurrent call, each paying
    /// its own TLS handshake, which costs more than the wait for the turn.
    Single,
}

/// `Ok(None)` only under DRY_RUN without any configuration: the function then reports what it
/// would delete without looking anything up.
pub async fn clients(cfg: &Config, transport: Transport) -> Result<Option<Clients>, ClientError> {
    let mut kc = match KubeConfig::infer().await {
        Ok(kc) => kc,
        Err(e) if cfg.dry_run => {
            tracing::warn!(error = %e, "DRY_RUN without a Kubernetes cluster: pods will not be looked up");
            return Ok(None);
        }
        Err(e) => return Err(ClientError::NoConfig(e.to_string())),
    };
    if let Some(path) = &cfg.kube_token_file {
        // OpenFaaS CE gives functions no ServiceAccount of their own: a dedicated account's
        // token, mounted as a secret, replaces whatever credentials were inferred. kube re-reads
        // the file, so a rotated token is picked up.
        kc.auth_info.token = None;
        kc.auth_info.token_file = Some(path.display().to_string());
        kc.auth_info.client_certificate = None;
        kc.auth_info.client_certificate_data = None;
        kc.auth_info.client_key = None;
        kc.auth_info.client_key_data = None;
        kc.auth_info.exec = None;
        kc.auth_info.auth_provider = None;
    }
    // Every event's calls are bounded by API_TIMEOUT_SECONDS anyway; this bounds a stuck socket.
    kc.read_timeout = Some(cfg.api_timeout);
    kc.connect_timeout = Some(cfg.api_timeout);
    build(&kc, cfg.guards.use_eviction, transport)
        .map(Some)
        .map_err(|e| ClientError::Build(e.to_string()))
}

fn build(kc: &KubeConfig, evict: bool, transport: Transport) -> Result<Clients, kube::Error> {
    if kc.proxy_url.is_some() {
        // kube's own stack knows proxies; ours below does not need to (two pools here).
        let mut no_retry = kc.clone();
        no_retry.default_retry = false;
        return Ok(Clients {
            main: Client::try_from(kc.clone())?,
            evict: evict.then(|| Client::try_from(no_retry)).transpose()?,
        });
    }
    if transport == Transport::Single {
        let single = single(kc)?;
        return Ok(Clients {
            main: on_pool(single.clone(), kc, kc.default_retry)?,
            evict: evict.then(|| on_pool(single, kc, false)).transpose()?,
        });
    }
    let pool = http_client(kc)?;
    Ok(Clients {
        main: on_pool(pool.clone(), kc, kc.default_retry)?,
        evict: evict.then(|| on_pool(pool, kc, false)).transpose()?,
    })
}

/// The same layers as `Client::try_from(config)` (base URI, retry, auth, extra headers,
/// timeouts), on a TCP connector with TCP_NODELAY, which kube 5's lacks (kube-rs#2056).
/// Without it the first request on a new TLS connection waits for the server's delayed ACK
/// (Nagle): about 40 ms on Linux, measured on the one-shot mode's cold start (docs/BENCHMARKS.md).
pub fn nodelay_client(config: KubeConfig) -> Result<Client, kube::Error> {
    let retry = config.default_retry;
    on_pool(http_client(&config)?, &config, retry)
}

/// The connection pool: a TCP connector with TCP_NODELAY, TLS, timeouts. Cheap to clone (the
/// clones share the pool).
fn http_client(config: &KubeConfig) -> Result<Pool<impl Connect>, kube::Error> {
    let https = config.rustls_https_connector_with_connector(tcp(config))?;
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(timed(config, https)),
    )
}

/// TCP with TCP_NODELAY, any scheme (TLS is the next layer's).
fn tcp(config: &KubeConfig) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    http
}

/// `connector` with the configuration's connect, read and write timeouts.
fn timed<C>(config: &KubeConfig, connector: C) -> hyper_timeout::TimeoutConnector<C>
where
    C: Service<Uri> + Send,
    C::Response: hyper::rt::Read + hyper::rt::Write + Connection + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    let mut timeouts = hyper_timeout::TimeoutConnector::new(connector);
    timeouts.set_connect_timeout(config.connect_timeout);
    timeouts.set_read_timeout(config.read_timeout);
    timeouts.set_write_timeout(config.write_timeout);
    timeouts.set_reset_reader_on_write(config.reset_reader_on_write);
    timeouts
}

/// [`Transport::Single`]: one HTTP/1.1 connection, opened by the first call (a one-shot that
/// skips its event opens none), on which the calls take turns: a call waits until the one
/// before it has read its answer. The connection is opened again if it closes.
#[derive(Clone)]
struct Single<C> {
    /// The connection's sending half; the lock is each call's turn to send.
    conn: Arc<tokio::sync::Mutex<Option<SendRequest<kube::client::Body>>>>,
    /// kube's connector (TLS), with TCP_NODELAY and the timeouts.
    connector: C,
    url: Uri,
}

/// What [`Single`] opens its connection with.
trait Dial:
    Service<
        Uri,
        Response: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + Sync
    + 'static
{
}
impl<T> Dial for T where
    T: Service<
            Uri,
            Response: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

fn single(config: &KubeConfig) -> Result<Single<impl Dial>, kube::Error> {
    let https = config.rustls_https_connector_with_connector(tcp(config))?;
    Ok(Single {
        conn: Arc::new(tokio::sync::Mutex::new(None)),
        connector: timed(config, https),
        url: config.cluster_url.clone(),
    })
}

impl<C: Dial> Single<C> {
    async fn send(
        self,
        mut req: Request<kube::client::Body>,
    ) -> Result<Response<hyper::body::Incoming>, BoxError> {
        // The connection speaks to one server: the request line carries the path only.
        let uri = req.uri().clone();
        if let Some(authority) = uri.authority() {
            let host = http::HeaderValue::from_str(authority.as_str())?;
            req.headers_mut().entry(http::header::HOST).or_insert(host);
        }
        *req.uri_mut() = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()?;
        let mut turn = self.conn.lock().await;
        // Ready once the exchange before has ended; an error: the connection is closed.
        if let Some(open) = turn.as_mut()
            && open.ready().await.is_err()
        {
            *turn = None;
        }
        let sender = match turn.as_mut() {
            Some(open) => open,
            None => {
                let mut connector = self.connector.clone();
                let io = connector
                    .ready()
                    .await
                    .map_err(Into::into)?
                    .call(self.url.clone())
                    .await
                    .map_err(Into::into)?;
                let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "the API server connection ended");
                    }
                });
                turn.insert(sender)
            }
        };
        sender.ready().await?;
        let answer = sender.send_request(req);
        drop(turn);
        Ok(answer.await?)
    }
}

/// A failed call of [`Single`]: connecting, or the exchange on the connection. Reads as the
/// error it wraps (message and sources), as the pool's would.
#[derive(Debug)]
pub struct SingleError(BoxError);

impl std::fmt::Display for SingleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SingleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl<C: Dial> Service<Request<kube::client::Body>> for Single<C> {
    type Response = Response<hyper::body::Incoming>;
    type Error = SingleError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, SingleError>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), SingleError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        Box::pin(self.clone().send(req).map_err(SingleError))
    }
}

/// kube's layers (base URI, retry when `retry`, auth, extra headers) over `pool` (a connection
/// pool, or [`Single`]).
fn on_pool<S>(pool: S, config: &KubeConfig, retry: bool) -> Result<Client, kube::Error>
where
    S: Service<Request<kube::client::Body>, Response = Response<hyper::body::Incoming>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry.then(|| RetryLayer::new(RetryPolicy::server_retry())))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(pool);
    Ok(Client::new(service, config.default_namespace.clone()))
}
