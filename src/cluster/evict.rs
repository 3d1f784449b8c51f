//! USE_EVICTION: remove the pod through the Eviction API, which honours PodDisruptionBudgets.
//! `policy/v1` (Kubernetes 1.22+), falling back to `policy/v1beta1` on older servers; the same
//! uid precondition and grace period as a DELETE. RBAC: `create` on `pods/eviction`.
//!
//! Built by hand: kube's `Api::evict` sends `delete_options` (snake case), which the server
//! ignores, and that would drop the uid precondition.

use std::sync::atomic::{AtomicBool, Ordering};

use kube::{Client, core::Status};
use serde_json::json;

/// Whether the server is known not to serve `policy/v1` Evictions (learned once per process).
static V1BETA1_ONLY: AtomicBool = AtomicBool::new(false);

/// Why an eviction did not remove the pod.
#[derive(Debug)]
pub enum Refused {
    /// 429: a PodDisruptionBudget forbids it now. The message names the budget.
    Budget(String),
    /// Any other API answer or transport error (404 gone, 409 stale, 403, 5xx ...).
    Other(kube::Error),
}

/// The budget named in a 429's causes ("The disruption budget web-pdb needs 2 healthy pods
/// and has 2 currently"), else the status message.
pub fn budget_message(s: &Status) -> String {
    s.details
        .as_ref()
        .and_then(|d| {
            d.causes
                .iter()
                .find(|c| c.reason == "DisruptionBudget" || c.message.contains("disruption budget"))
        })
        .map(|c| c.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| s.message.clone())
}

fn request(
    ns: &str,
    name: &str,
    uid: &str,
    grace: Option<u32>,
    version: &str,
    dry_run: bool,
) -> http::Request<Vec<u8>> {
    let mut delete_options = json!({ "preconditions": { "uid": uid } });
    if let Some(g) = grace {
        delete_options["gracePeriodSeconds"] = json!(g);
    }
    let body = json!({
        "apiVersion": version,
        "kind": "Eviction",
        "metadata": { "name": name, "namespace": ns },
        "deleteOptions": delete_options,
    });
    let dry = if dry_run { "?dryRun=All" } else { "" };
    http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/eviction{dry}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .expect("a valid request")
}

/// Does this answer mean the server does not know `policy/v1` Evictions? (1.20: 400 "no kind
/// Eviction is registered for version policy/v1"; some servers answer 404.)
fn v1_unknown(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            (s.code == 400 || s.code == 404 || s.code == 415)
                && s.message.contains("policy/v1")
                && !s.message.contains("policy/v1beta1")
        }
        _ => false,
    }
}

/// POSTs the Eviction. `Ok` when the server accepted it (the pod is being deleted, or with
/// `dry_run` would be).
pub async fn evict(
    client: &Client,
    ns: &str,
    name: &str,
    uid: &str,
    grace: Option<u32>,
    dry_run: bool,
) -> Result<(), Refused> {
    let classify = |e: kube::Error| match e {
        kube::Error::Api(s) if s.code == 429 => Refused::Budget(budget_message(&s)),
        other => Refused::Other(other),
    };
    if !V1BETA1_ONLY.load(Ordering::Relaxed) {
        let req = request(ns, name, uid, grace, "policy/v1", dry_run);
        match client.request_text(req).await {
            Ok(_) => return Ok(()),
            Err(e) if v1_unknown(&e) => V1BETA1_ONLY.store(true, Ordering::Relaxed),
            Err(e) => return Err(classify(e)),
        }
    }
    let req = request(ns, name, uid, grace, "policy/v1beta1", dry_run);
    client.request_text(req).await.map(|_| ()).map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_uid_precondition_and_grace_period() {
        let r = request("ns", "p", "u-1", Some(5), "policy/v1", true);
        assert_eq!(r.uri(), "/api/v1/namespaces/ns/pods/p/eviction?dryRun=All");
        let b: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(b["apiVersion"], "policy/v1");
        assert_eq!(b["deleteOptions"]["preconditions"]["uid"], "u-1");
        assert_eq!(b["deleteOptions"]["gracePeriodSeconds"], 5);
        let r = request("ns", "p", "u-1", None, "policy/v1beta1", false);
        let b: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert!(b["deleteOptions"].get("gracePeriodSeconds").is_none());
        assert_eq!(r.uri(), "/api/v1/namespaces/ns/pods/p/eviction");
    }

    #[test]
    fn a_429_names_the_budget() {
        let s: Status = serde_json::from_value(json!({
            "code": 429, "reason": "TooManyRequests",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "details": {"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]}
        }))
        .unwrap();
        assert!(budget_message(&s).contains("web-pdb needs 2"));
    }
}
