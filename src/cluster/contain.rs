//! The containment's API calls, as `domain::plan` asks for them: the isolating NetworkPolicy
//! (created; on 409 read back for the plan to judge), the ReplicaSet's selector, the pod's JSON
//! patch (its first op tests the uid), the tails of the containers' logs (`pods/log` with
//! `tailLines`, cut on our side: `limitBytes` would cut the newest lines), the evidence
//! ConfigMap in the function's own namespace and its retention. What they mean is
//! `domain::contain`. RBAC: `patch` on pods, `create` and `get` on networkpolicies, `get` on
//! pods/log and replicasets; `create`, `list`, `delete` on configmaps in the own namespace.

use std::{collections::BTreeMap, time::Duration};

use futures_util::{AsyncReadExt, future::join_all};
use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        core::v1::{ConfigMap, Pod},
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, LogParams, PostParams},
};

use crate::{
    cluster::error::{ApiError, Call, Deadline, error_chain},
    domain::{
        contain::{
            CONTAINED_AT_ANNOTATION, EVIDENCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
            POD_NAME_ANNOTATION, POD_NAMESPACE_ANNOTATION, POD_UID_ANNOTATION, RULE_ANNOTATION,
            UNREAD_KEY, evidence_name, tail,
        },
        falco::{FalcoEvent, Target},
        step::{Evidence, Isolated, Kept, Patched, PodPatch},
    },
};

/// How much of the API's message about a log that could not be read the ConfigMap keeps.
const UNREAD_MESSAGE_MAX: usize = 256;

/// The containment's calls, on behalf of one process; cheap to clone.
#[derive(Clone)]
pub struct Containment {
    client: Client,
    /// The function's own namespace: the evidence goes there.
    own: String,
    max_configmaps: usize,
    /// How long one container's log may take (the event's deadline bounds them all).
    log_timeout: Duration,
}

impl Containment {
    pub fn new(
        client: Client,
        own: String,
        max_configmaps: usize,
        api_timeout: Duration,
    ) -> Containment {
        Containment {
            client,
            own,
            max_configmaps,
            log_timeout: api_timeout / 3,
        }
    }

    /// The NetworkPolicy `name` in the pod's namespace, `None` when it does not exist.
    pub async fn policy(
        &self,
        t: &Target,
        name: &str,
        deadline: Deadline,
    ) -> Result<Option<NetworkPolicy>, ApiError> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), t.namespace.as_str());
        let call = || {
            Call::contain(
                format!("get networkpolicy {}/{name}", t.namespace),
                "get on networkpolicies (networking.k8s.io)",
            )
        };
        deadline
            .within("get the networkpolicy", api.get_opt(name))
            .await?
            .map_err(|e| call().failed(e))
    }

    /// Whether the evidence ConfigMap `name` exists in the function's namespace (a LIST by
    /// name: the same grant as the retention's).
    pub async fn evidence_exists(&self, name: &str, deadline: Deadline) -> Result<bool, ApiError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.own);
        let lp = ListParams::default()
            .labels(&format!("{EVIDENCE_LABEL}=true"))
            .fields(&format!("metadata.name={name}"));
        let listed = deadline
            .within("list the evidence", api.list_metadata(&lp))
            .await?
            .map_err(|e| {
                Call::contain(
                    format!("list configmaps in {}", self.own),
                    "list on configmaps in the function's own namespace",
                )
                .failed(e)
            })?;
        Ok(!listed.items.is_empty())
    }

    /// The ReplicaSet `name` in the pod's namespace, `None` when it does not exist.
    pub async fn replicaset(
        &self,
        t: &Target,
        name: &str,
        deadline: Deadline,
    ) -> Result<Option<ReplicaSet>, ApiError> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), t.namespace.as_str());
        deadline
            .within("get the replicaset", api.get_opt(name))
            .await?
            .map_err(|e| {
                Call::contain(
                    format!("get replicaset {}/{name}", t.namespace),
                    "get on replicasets (apps)",
                )
                .failed(e)
            })
    }

    /// Creates the NetworkPolicy; one of its name already there (409) is read back whole for
    /// the plan to judge.
    pub async fn isolate(
        &self,
        t: &Target,
        np: &NetworkPolicy,
        deadline: Deadline,
    ) -> Result<Isolated, ApiError> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), t.namespace.as_str());
        let name = np.metadata.name.clone().unwrap_or_default();
        let created = deadline
            .within(
                "create the networkpolicy",
                api.create(&PostParams::default(), np),
            )
            .await?;
        match created {
            Ok(_) => Ok(Isolated::Created),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let found = self.policy(t, &name, deadline).await?;
                // Deleted in between: our create is due again; the sender's retry makes it.
                let found = found.ok_or_else(|| ApiError::Api {
                    what: format!("create networkpolicy {}/{name}", t.namespace),
                    code: 409,
                    message: "it existed, then was gone when read back".into(),
                })?;
                Ok(Isolated::Exists(Box::new(found)))
            }
            Err(e) => Err(Call::contain(
                format!("create networkpolicy {}/{name}", t.namespace),
                "create on networkpolicies (networking.k8s.io)",
            )
            .failed(e)),
        }
    }

    /// Applies the containment's JSON patch to the pod. 422 is a failed `test` (or a deadline
    /// lowered since the GET): nothing was changed, and the pod is read again to tell a
    /// replaced pod (`Stale`) from one that only changed (`Changed`: a retry contains it).
    pub async fn patch(
        &self,
        t: &Target,
        p: &PodPatch,
        deadline: Deadline,
    ) -> Result<Patched, ApiError> {
        let (ns, name) = (t.namespace.as_str(), t.name.as_str());
        // Only validated names reach the path (`ident`).
        let request = http::Request::patch(format!("/api/v1/namespaces/{ns}/pods/{name}"))
            .header(http::header::CONTENT_TYPE, "application/json-patch+json")
            .header(http::header::ACCEPT, "application/json")
            .body(serde_json::to_vec(&p.patch).unwrap_or_default())
            .map_err(|e| ApiError::Api {
                what: format!("patch pod {ns}/{name}"),
                code: 0,
                message: e.to_string(),
            })?;
        let patched = deadline
            .within("patch", self.client.request::<Pod>(request))
            .await?;
        match patched {
            Ok(_) => Ok(Patched::Done),
            Err(kube::Error::Api(s)) if s.code == 422 => self.refused(t, &p.uid, deadline).await,
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Patched::Gone),
            Err(e) => Err(Call::pod("patch", t).failed(e)),
        }
    }

    /// After a refused patch: whether the pod under the name is still the one tested.
    async fn refused(
        &self,
        t: &Target,
        uid: &str,
        deadline: Deadline,
    ) -> Result<Patched, ApiError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), t.namespace.as_str());
        let live = deadline
            .within("get the pod", pods.get_opt(t.name.as_str()))
            .await?
            .map_err(|e| Call::pod("get", t).failed(e))?;
        Ok(match live {
            None => Patched::Gone,
            Some(p) if p.metadata.uid.as_deref() == Some(uid) => Patched::Changed,
            Some(_) => Patched::Stale,
        })
    }

    /// Reads the tails of the containers' logs (each within its share of the time; a log that
    /// cannot be read is said in the ConfigMap and does not stop the containment), writes the
    /// evidence ConfigMap (409: kept already), then applies the retention.
    pub async fn keep(
        &self,
        t: &Target,
        event: &FalcoEvent,
        e: &Evidence,
        deadline: Deadline,
    ) -> Result<Kept, ApiError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), t.namespace.as_str());
        let reads = e.containers.iter().map(|c| {
            let pods = pods.clone();
            async move {
                let read = self.log_tail(&pods, t.name.as_str(), c, e);
                let read = tokio::time::timeout(self.log_timeout, read).await;
                let read = read.unwrap_or_else(|_| {
                    Err(format!(
                        "no answer within {}ms",
                        self.log_timeout.as_millis()
                    ))
                });
                (c.clone(), read)
            }
        });
        let logs = deadline.within("read the logs", join_all(reads)).await?;
        let mut data = BTreeMap::new();
        let mut unread = Vec::new();
        let mut unread_text = String::new();
        for (c, read) in logs {
            match read {
                Ok(text) => {
                    data.insert(format!("{c}.log"), text);
                }
                Err(why) => {
                    unread_text.push_str(&format!(
                        "{c}: {}\n",
                        crate::fastfmt::bounded(&why, UNREAD_MESSAGE_MAX)
                    ));
                    unread.push(c);
                }
            }
        }
        if !unread_text.is_empty() {
            data.insert(UNREAD_KEY.into(), unread_text);
        }
        let cm = self.configmap(t, event, e, data);
        let name = evidence_name(&e.uid);
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.own);
        let created = deadline
            .within(
                "create the evidence",
                api.create(&PostParams::default(), &cm),
            )
            .await?;
        match created {
            Ok(_) => self.retain(deadline).await,
            // Kept by an earlier attempt.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(err) => {
                return Err(Call::contain(
                    format!("create configmap {}/{name}", self.own),
                    "create on configmaps in the function's own namespace",
                )
                .failed(err));
            }
        }
        Ok(Kept {
            configmap: format!("{}/{name}", self.own),
            unread,
        })
    }

    /// The last `e.tail_bytes` of container `c`'s log: `tailLines` bounds what the API sends,
    /// and only the last bytes are held while it streams.
    async fn log_tail(
        &self,
        pods: &Api<Pod>,
        pod: &str,
        c: &str,
        e: &Evidence,
    ) -> Result<String, String> {
        let lp = LogParams {
            container: Some(c.to_string()),
            tail_lines: Some(e.tail_lines),
            ..Default::default()
        };
        let stream = pods.log_stream(pod, &lp).await.map_err(|e| match e {
            kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
            other => error_chain(&other),
        })?;
        let mut stream = Box::pin(stream);
        let mut held: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            held.extend_from_slice(&buf[..n]);
            if held.len() > 2 * e.tail_bytes {
                held.drain(..held.len() - e.tail_bytes);
            }
        }
        Ok(tail(&held, e.tail_bytes))
    }

    fn configmap(
        &self,
        t: &Target,
        event: &FalcoEvent,
        e: &Evidence,
        data: BTreeMap<String, String>,
    ) -> ConfigMap {
        let rule = crate::fastfmt::bounded(&event.rule, crate::fastfmt::ECHO_MAX);
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(evidence_name(&e.uid)),
                namespace: Some(self.own.clone()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY_LABEL.into(), MANAGED_BY.into()),
                    (EVIDENCE_LABEL.into(), "true".into()),
                ])),
                annotations: Some(BTreeMap::from([
                    (POD_NAMESPACE_ANNOTATION.into(), t.namespace.to_string()),
                    (POD_NAME_ANNOTATION.into(), t.name.to_string()),
                    (POD_UID_ANNOTATION.into(), e.uid.clone()),
                    (RULE_ANNOTATION.into(), rule.into_owned()),
                    (CONTAINED_AT_ANNOTATION.into(), Timestamp::now().to_string()),
                ])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }
    }

    /// Deletes the oldest evidence ConfigMaps beyond EVIDENCE_MAX_CONFIGMAPS. A failure is
    /// said loud and does not undo the containment: the next one tries again.
    async fn retain(&self, deadline: Deadline) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.own);
        let lp = ListParams::default().labels(&format!("{EVIDENCE_LABEL}=true"));
        let listed = match deadline
            .within("list the evidence", api.list_metadata(&lp))
            .await
        {
            Ok(Ok(l)) => l.items,
            Ok(Err(e)) => return retention_failed(&self.own, &error_chain(&e)),
            Err(e) => return retention_failed(&self.own, &e.to_string()),
        };
        if listed.len() <= self.max_configmaps {
            return;
        }
        let mut kept: Vec<(Option<Timestamp>, String)> = listed
            .into_iter()
            .filter_map(|m| {
                let at = m.metadata.creation_timestamp.map(|t| t.0);
                m.metadata.name.map(|n| (at, n))
            })
            .collect();
        kept.sort();
        let extra = kept.len().saturating_sub(self.max_configmaps);
        for (_, name) in kept.into_iter().take(extra) {
            let deleted = deadline
                .within(
                    "delete old evidence",
                    api.delete(&name, &DeleteParams::default()),
                )
                .await;
            match deleted {
                Ok(Ok(_)) => {}
                Ok(Err(kube::Error::Api(s))) if s.is_not_found() => {}
                Ok(Err(e)) => return retention_failed(&self.own, &error_chain(&e)),
                Err(e) => return retention_failed(&self.own, &e.to_string()),
            }
        }
    }
}

fn retention_failed(own: &str, error: &str) {
    tracing::error!(
        namespace = own,
        error,
        "old evidence ConfigMaps could not be deleted (EVIDENCE_MAX_CONFIGMAPS): RBAC list and \
         delete on configmaps in the function's own namespace"
    );
}
