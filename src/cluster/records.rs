//! The deletion breaker's shared count (`domain::budget` decides; this module keeps the count).
//!
//! Each deletion writes a record: an Event (`events.k8s.io/v1`, reason `FalcoPodDeleted`, label
//! `falco-responder/breaker=deletion`) in the function's own namespace, beside the audit Event in
//! the pod's namespace. Why not count the audit Events themselves: whoever may create Events in
//! their own namespace (many workloads' ServiceAccounts may) could forge three and hold the
//! breaker open for their own Deployment, or twenty a minute for the whole cluster. Only the
//! function (and the cluster's admins) write in its own namespace. Events expire on their own
//! (`--event-ttl`, one hour by default), so the records need no cleanup.
//!
//! Each serving process keeps a view of the records, fed by one watch (LIST once, then WATCH
//! from its resourceVersion), so a deletion costs no API call for its count. While the view is
//! not in sync (starting, the API unreachable, the one-shot mode), a deletion LISTs instead.
//! The view is not a lock: replicas deleting at the same instant may each see the budget not
//! yet spent (overshoot bounded by what is in flight); within one process the breaker's ledger
//! makes the count exact.
//!
//! A record is named after the pod whose removal it counts (its uid): the removal of one pod is
//! one deletion, however many attempts it took (an answer lost, then the retry) and whichever
//! replica made them; a second create of the same name is a 409, and the count holds it once.
//!
//! Whether the records can be written at all is checked before a serving process says it is
//! ready ([`BreakerRecords::check`]): without them the budget is per process, not shared.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as KubeEvent},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams, WatchEvent, WatchParams},
};

use crate::{
    cluster::{
        error::error_chain,
        events::{self, RECORD_LABEL, RECORD_VALUE, WORKLOAD_ANNOTATION},
    },
    domain::budget::{Deletion, MAX_WINDOW},
};

/// What every record's name starts with.
const RECORD_PREFIX: &str = "falco-responder-deleted.";

/// The longest pause between two attempts to (re)start the watch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The shared count of one process: where the records live and what it has seen of them.
pub struct BreakerRecords {
    client: Client,
    /// The function's own namespace (POD_NAMESPACE or the ServiceAccount's).
    namespace: String,
    /// This process (`reportingInstance`; the pod the records are about, when it is one).
    instance: String,
    view: Mutex<View>,
    watching: AtomicBool,
}

impl std::fmt::Debug for BreakerRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerRecords")
            .field("namespace", &self.namespace)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct View {
    /// The watch has listed and is following: `items` is the count.
    synced: bool,
    items: HashMap<String, Deletion>,
}

impl BreakerRecords {
    pub fn new(client: Client, namespace: String, instance: String) -> BreakerRecords {
        BreakerRecords {
            client,
            namespace,
            instance,
            view: Mutex::new(View::default()),
            watching: AtomicBool::new(false),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self) -> Api<KubeEvent> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The name of the record of the removal of the pod with `uid`; a random one when the pod
    /// has no valid uid (never from the API server).
    pub fn record_name(uid: &str) -> String {
        if crate::domain::ident::PodUid::parse("uid", uid).is_ok() {
            return format!("{RECORD_PREFIX}{uid}");
        }
        format!("{RECORD_PREFIX}{}", uuid::Uuid::new_v4().simple())
    }

    /// Can this process write and list its records? A record created with `dryRun=All` (the API
    /// server authorizes, admits and validates it, and stores nothing), then a one-item LIST.
    /// The answer names what to fix: the namespace, or the RBAC.
    pub async fn check(&self) -> Result<(), String> {
        let probe = self.record(
            format!("{RECORD_PREFIX}readiness-check"),
            (&self.namespace, &self.instance),
            None,
            None,
            Timestamp::now(),
        );
        let pp = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let ns = &self.namespace;
        let failed = |what: &str, e: kube::Error| match e {
            kube::Error::Api(s) if s.is_forbidden() => format!(
                "the deletion breaker cannot {what} its records (Events) in namespace {ns}: \
                 {}; grant create, list and watch on events (events.k8s.io) there",
                s.message
            ),
            kube::Error::Api(s) if s.is_not_found() => format!(
                "the deletion breaker cannot {what} its records (Events) in namespace {ns}: \
                 {} (does the namespace exist? POD_NAMESPACE)",
                s.message
            ),
            other => format!(
                "the deletion breaker cannot {what} its records (Events) in namespace {ns}: {}",
                error_chain(&other)
            ),
        };
        match self.api().create(&pp, &probe).await {
            Ok(_) => {}
            // A leftover of that name would only mean the create itself is allowed.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(failed("write", e)),
        }
        let lp = ListParams::default().labels(&Self::selector()).limit(1);
        match self.api().list_metadata(&lp).await {
            Ok(_) => Ok(()),
            Err(e) => Err(failed("list", e)),
        }
    }

    /// The record of one deletion (see [`events::breaker_record`]).
    pub fn record(
        &self,
        name: String,
        pod: (&str, &str),
        workload: Option<String>,
        related: Option<ObjectReference>,
        now: Timestamp,
    ) -> KubeEvent {
        events::breaker_record(
            &self.namespace,
            &self.instance,
            name,
            pod,
            workload,
            related,
            now,
        )
    }

    /// The recorded deletions of the last hour: from the watched view when it is in sync (no
    /// API call), else one metadata-only LIST. RBAC: `list` (and `watch`) on events in the
    /// function's own namespace.
    pub async fn count(&self) -> Result<Vec<Deletion>, kube::Error> {
        if let Some(seen) = self.snapshot(Timestamp::now()) {
            return Ok(seen);
        }
        Ok(self.list().await?.0)
    }

    fn snapshot(&self, now: Timestamp) -> Option<Vec<Deletion>> {
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        if !view.synced {
            return None;
        }
        view.items
            .retain(|_, s| now.duration_since(s.at).unsigned_abs() <= MAX_WINDOW);
        Some(view.items.values().cloned().collect())
    }

    fn selector() -> String {
        format!("{RECORD_LABEL}={RECORD_VALUE}")
    }

    async fn list(&self) -> Result<(Vec<Deletion>, String), kube::Error> {
        let lp = ListParams::default().labels(&Self::selector());
        let list = self.api().list_metadata(&lp).await?;
        let rv = list.metadata.resource_version.unwrap_or_default();
        let seen = list
            .items
            .into_iter()
            .filter_map(|m| seen_of(m.metadata))
            .collect();
        Ok((seen, rv))
    }

    /// Starts following the records (once per process). `timeout`: API_TIMEOUT_SECONDS, the
    /// client's read timeout, so each WATCH asks the server to end it a second before that.
    pub fn watch(self: &Arc<Self>, timeout: Duration) {
        if self.watching.swap(true, Ordering::Relaxed) {
            return;
        }
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            let mut warned = false;
            loop {
                let Some(me) = this.upgrade() else { return };
                match me.follow(timeout).await {
                    Ok(()) => backoff = Duration::from_secs(1),
                    Err(e) => {
                        me.view.lock().unwrap_or_else(|e| e.into_inner()).synced = false;
                        if !warned {
                            tracing::warn!(
                                namespace = me.namespace.as_str(),
                                error = %e,
                                "the deletion breaker cannot watch its records: each deletion \
                                 lists them instead until it can (RBAC: list and watch on events \
                                 in the function's own namespace)"
                            );
                            warned = true;
                        }
                        drop(me);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        });
    }

    /// One LIST, then WATCHes from its resourceVersion until the server forgets it (410) or a
    /// request fails. `Ok` means: list again at once.
    async fn follow(&self, timeout: Duration) -> Result<(), kube::Error> {
        let (seen, mut rv) = self.list().await?;
        {
            let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
            view.items = seen.into_iter().map(|s| (s.key.clone(), s)).collect();
            view.synced = true;
        }
        let wait = timeout
            .saturating_sub(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        let wp = WatchParams::default()
            .labels(&Self::selector())
            .timeout(wait.as_secs() as u32);
        loop {
            let stream = self.api().watch_metadata(&wp, &rv).await?;
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let event = match item {
                    Ok(e) => e,
                    // A read cut short (timeout, reset): watch again from where we are.
                    Err(kube::Error::Service(_) | kube::Error::HyperError(_)) => break,
                    Err(e) => return Err(e),
                };
                let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    WatchEvent::Added(m) | WatchEvent::Modified(m) => {
                        rv = m.metadata.resource_version.clone().unwrap_or(rv);
                        if let Some(s) = seen_of(m.metadata) {
                            view.items.insert(s.key.clone(), s);
                        }
                    }
                    WatchEvent::Deleted(m) => {
                        rv = m.metadata.resource_version.clone().unwrap_or(rv);
                        if let Some(name) = m.metadata.name {
                            view.items.remove(&name);
                        }
                    }
                    WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                    // 410 Gone: the server no longer has our resourceVersion: list again.
                    WatchEvent::Error(s) if s.code == 410 => return Ok(()),
                    WatchEvent::Error(s) => return Err(kube::Error::Api(s)),
                }
            }
        }
    }
}

/// A record as the breaker counts it; `None` for what is not one (no name or time).
fn seen_of(m: ObjectMeta) -> Option<Deletion> {
    let mut annotations = m.annotations.unwrap_or_default();
    let mut take = |key| annotations.remove(key).filter(|v: &String| !v.is_empty());
    let workload = take(WORKLOAD_ANNOTATION);
    Some(Deletion {
        key: m.name?,
        workload,
        at: m.creation_timestamp?.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_with_their_workload() {
        let m: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "falco-responder-deleted.1", "namespace": "falco-responder",
            "creationTimestamp": "2026-11-30T08:00:00Z",
            "annotations": {WORKLOAD_ANNOTATION: "ns/Deployment/web"}
        }))
        .unwrap();
        let s = seen_of(m).unwrap();
        assert_eq!(s.key, "falco-responder-deleted.1");
        assert_eq!(s.workload.as_deref(), Some("ns/Deployment/web"));
        // No time, no count: nothing to place in a window.
        let m: ObjectMeta = serde_json::from_value(serde_json::json!({"name": "x"})).unwrap();
        assert_eq!(seen_of(m), None);
    }

    #[test]
    fn records_are_named_after_the_pod_removed() {
        let uid = "0f9a4c1e-1111-2222-3333-444455556666";
        let a = BreakerRecords::record_name(uid);
        assert_eq!(a, format!("falco-responder-deleted.{uid}"));
        assert_eq!(BreakerRecords::record_name(uid), a);
        // No uid (never from the API server): a name of its own.
        let (b, c) = (
            BreakerRecords::record_name(""),
            BreakerRecords::record_name(""),
        );
        assert_ne!(b, c);
        for name in [a, b] {
            assert!(
                crate::domain::ident::PodName::parse("name", &name).is_ok(),
                "{name}"
            );
        }
    }
}
