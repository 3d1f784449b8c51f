//! Builds the kube `Client`: in-cluster in a pod, KUBECONFIG or ~/.kube/config outside.

use kube::{Client, Config as KubeConfig};

use crate::config::Config;

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

/// `Ok(None)` only under DRY_RUN without any configuration: the function then reports what it
/// would delete without looking anything up.
pub async fn client(cfg: &Config) -> Result<Option<Client>, ClientError> {
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
    Client::try_from(kc)
        .map(Some)
        .map_err(|e| ClientError::Build(e.to_string()))
}
