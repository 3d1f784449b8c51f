//! Builds the kube `Client`: in-cluster in a pod, KUBECONFIG or ~/.kube/config outside.

use kube::{
    Client, Config as KubeConfig,
    client::{ConfigExt, retry::RetryPolicy},
};
use tower::{BoxError, ServiceBuilder, retry::RetryLayer};

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

/// `Ok(None)` only under DRY_RUN without any configuration: the function then reports what it
/// would delete without looking anything up.
pub async fn clients(cfg: &Config) -> Result<Option<Clients>, ClientError> {
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
    build(&kc, cfg.guards.use_eviction)
        .map(Some)
        .map_err(|e| ClientError::Build(e.to_string()))
}

fn build(kc: &KubeConfig, evict: bool) -> Result<Clients, kube::Error> {
    if kc.proxy_url.is_some() {
        // kube's own stack knows proxies; ours below does not need to (two pools here).
        let mut no_retry = kc.clone();
        no_retry.default_retry = false;
        return Ok(Clients {
            main: Client::try_from(kc.clone())?,
            evict: evict.then(|| Client::try_from(no_retry)).transpose()?,
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
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut timeouts = hyper_timeout::TimeoutConnector::new(https);
    timeouts.set_connect_timeout(config.connect_timeout);
    timeouts.set_read_timeout(config.read_timeout);
    timeouts.set_write_timeout(config.write_timeout);
    timeouts.set_reset_reader_on_write(config.reset_reader_on_write);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(timeouts),
    )
}

/// kube's layers (base URI, retry when `retry`, auth, extra headers) over `pool`.
fn on_pool<C: Connect>(
    pool: Pool<C>,
    config: &KubeConfig,
    retry: bool,
) -> Result<Client, kube::Error> {
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry.then(|| RetryLayer::new(RetryPolicy::server_retry())))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(pool);
    Ok(Client::new(service, config.default_namespace.clone()))
}
