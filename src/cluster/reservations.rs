//! MIN_AVAILABLE's reservations: each deletion of a ready pod holds one of the `ready - floor`
//! slots of its workload (`domain::guards::slots`) until the controllers' `readyReplicas` can
//! show it, so concurrent events, here or in other replicas of the function, never take the
//! workload below its floor on the same count.
//!
//! In one process a table of the slots held (bounded) answers first, without an API call. Across
//! processes a slot is a record with a deterministic name, `falco-responder-reserve-<hash of the
//! workload key>-<slot>`: an Event in the function's own namespace, beside the breaker's
//! records. Its create is the lock: a second create of the same name is a 409 whoever tries.
//! Nothing that changes how others may disrupt the workload (no PodDisruptionBudget).
//!
//! Without listing pods the function cannot see when the controller has caught up, so a slot is
//! held for [`HOLD`]: the controllers count a deleted pod out of `readyReplicas` within a second
//! or two (a terminating pod is no longer active), and 30 s is the `Retry-After` of a `held`
//! answer, so the retry finds the slot free. The holder deletes its record once the hold is
//! over (uid precondition: never someone else's). A record older than the hold that is still
//! there (its holder died) is deleted by the next deletion that needs its slot, with uid and
//! resourceVersion preconditions, then created anew: of two processes doing that at once, one
//! DELETE succeeds and the other's precondition fails (or 404), and of their two creates one
//! wins and the other gets the 409, so one slot never has two holders. A hold is measured
//! against the record's `creationTimestamp` (the API server's clock): a skew between this
//! process's clock and the server's shortens or lengthens it by that skew.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use k8s_openapi::{api::events::v1::Event as KubeEvent, jiff::Timestamp};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams, Preconditions},
};
use tokio::time::Instant;

use crate::{
    cluster::{
        error::{ApiError, Call, Deadline},
        events::{self, RESERVATION_LABEL},
        facts::HELD_RETRY_AFTER_SECONDS,
    },
    domain::step::{MayHaveHappened, Reserve, Reserved},
};

/// How long a slot is held after its deletion: a `held` answer's `Retry-After`, so the
/// sender's retry finds it free (see the module's doc).
pub const HOLD: Duration = Duration::from_secs(HELD_RETRY_AFTER_SECONDS);

/// Slots held by this process, at most (each is a deletion within the last [`HOLD`], which the
/// breaker bounds far below this); when full, a deletion is held rather than unguarded.
const LOCAL_MAX: usize = 4096;

/// Creates tried after the LIST that follows a taken slot: a bound on the calls of one event
/// when other replicas race for the same slots.
const MAX_TRIES: usize = 4;

/// RBAC the reservations need, named in errors.
const GRANT: &str =
    "create, list and delete on events (events.k8s.io) in the function's own namespace";

/// A slot this process holds: until when, and its record's uid once created.
#[derive(Debug, Clone)]
struct Held {
    until: Instant,
    uid: Option<String>,
}

/// The reservations of one process.
pub struct Reservations {
    client: Client,
    namespace: String,
    instance: String,
    local: Mutex<HashMap<(String, u32), Held>>,
}

impl std::fmt::Debug for Reservations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservations")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// A record as listed: what the replacement of an expired one needs.
#[derive(Debug)]
struct Listed {
    uid: String,
    resource_version: Option<String>,
    created: Timestamp,
}

/// The name-safe hash of a workload key: FNV-1a, 64 bits, stable across versions and replicas
/// (std's hasher promises neither).
pub fn workload_hash(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The record's name for slot `slot` of the workload whose hash is `hash`.
pub fn record_name(hash: &str, slot: u32) -> String {
    format!("falco-responder-reserve-{hash}-{slot}")
}

impl Reservations {
    pub fn new(client: Client, namespace: String, instance: String) -> Reservations {
        Reservations {
            client,
            namespace,
            instance,
            local: Mutex::new(HashMap::new()),
        }
    }

    fn api(&self) -> Api<KubeEvent> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn call(&self, what: &str) -> Call {
        Call::guard(
            format!("{what} a MIN_AVAILABLE reservation in {}", self.namespace),
            GRANT,
        )
    }

    /// Holds `slot` here unless it is held already (or the table is full): `true` when taken.
    fn take_local(&self, key: &str, slot: u32, now: Instant) -> bool {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if local.len() >= LOCAL_MAX {
            local.retain(|_, h| h.until > now);
        }
        let k = (key.to_string(), slot);
        let free = local.get(&k).is_none_or(|h| h.until <= now);
        if !free || local.len() >= LOCAL_MAX {
            return false;
        }
        local.insert(
            k,
            Held {
                until: now + HOLD,
                uid: None,
            },
        );
        true
    }

    /// How many slots of `key` this process holds.
    fn held_here(&self, key: &str, now: Instant) -> usize {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local
            .iter()
            .filter(|((k, _), h)| k == key && h.until > now)
            .count()
    }

    /// The local hold of `slot` is over (its create failed, or it is given back).
    fn drop_local(&self, key: &str, slot: u32) -> Option<Held> {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local.remove(&(key.to_string(), slot))
    }

    fn confirm_local(&self, key: &str, slot: u32, uid: &str) {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = local.get_mut(&(key.to_string(), slot)) {
            h.uid = Some(uid.to_string());
            h.until = Instant::now() + HOLD;
        }
    }

    /// One of `r.slots` slots for the deletion of `pod`, or `None` when every one is held.
    /// The common case is one POST; a slot held elsewhere costs a LIST of the workload's
    /// records and at most four more creates (and DELETEs of expired records).
    pub async fn reserve(
        &self,
        r: &Reserve,
        pod: (&str, &str),
        deadline: Deadline,
    ) -> Result<Option<Reserved>, ApiError> {
        let hash = workload_hash(&r.workload);
        let key = r.workload.as_str();
        // This process's own holds count whatever their slot: one taken while more replicas
        // were ready may lie beyond today's `slots`.
        if self.held_here(key, Instant::now()) >= r.slots as usize {
            return Ok(None);
        }
        // The first slot nobody here holds: free everywhere unless another replica holds it.
        let Some(first) = (0..r.slots).find(|&s| self.take_local(key, s, Instant::now())) else {
            return Ok(None);
        };
        if self.create(&hash, key, first, pod, deadline).await? {
            return Ok(Some(self.reserved(key, first)));
        }
        let listed = deadline
            .within("list the MIN_AVAILABLE reservations", self.list(&hash))
            .await?
            .map_err(|e| self.call("list").failed(e))?;
        let now = Timestamp::now();
        let mut tries = 0;
        for slot in 0..r.slots {
            if tries == MAX_TRIES {
                break;
            }
            let expired = match listed.get(&slot) {
                Some(l) if now.duration_since(l.created).unsigned_abs() <= HOLD => continue,
                Some(l) => Some(l),
                None => None,
            };
            if !self.take_local(key, slot, Instant::now()) {
                continue;
            }
            tries += 1;
            if let Some(l) = expired
                && !self.delete_expired(&hash, slot, l, deadline).await?
            {
                self.drop_local(key, slot);
                continue;
            }
            if self.create(&hash, key, slot, pod, deadline).await? {
                return Ok(Some(self.reserved(key, slot)));
            }
        }
        Ok(None)
    }

    fn reserved(&self, key: &str, slot: u32) -> Reserved {
        Reserved {
            workload: key.to_string(),
            slot,
        }
    }

    /// Creates the slot's record: `true` when it is ours, `false` on a 409 (held elsewhere).
    /// The local hold is dropped unless it is ours; once ours, it is removed after [`HOLD`].
    async fn create(
        &self,
        hash: &str,
        key: &str,
        slot: u32,
        pod: (&str, &str),
        deadline: Deadline,
    ) -> Result<bool, ApiError> {
        let name = record_name(hash, slot);
        let record = events::reservation_record(
            &self.namespace,
            &self.instance,
            name.clone(),
            hash,
            key,
            pod,
            Timestamp::now(),
        );
        let api = self.api();
        let created = deadline
            .within(
                "create a MIN_AVAILABLE reservation",
                api.create(&PostParams::default(), &record),
            )
            .await;
        let created = match created {
            Ok(Ok(c)) => Ok(c),
            // AlreadyExists: the slot is held.
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => {
                self.drop_local(key, slot);
                return Ok(false);
            }
            Ok(Err(e)) => Err(self.call("create").failed(e)),
            Err(timeout) => Err(timeout),
        };
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                // A lost create may have made the record: the local hold stays until it
                // expires, so this process does not take the slot twice. A refusal made nothing.
                if !e.may_have_happened() {
                    self.drop_local(key, slot);
                }
                return Err(e);
            }
        };
        let uid = created.metadata.uid.unwrap_or_default();
        self.confirm_local(key, slot, &uid);
        // The hold is over after HOLD: remove the record, so the next deletion's create
        // succeeds at once. Not tracked for shutdown: a record left behind is replaced once
        // expired.
        tokio::spawn(async move {
            tokio::time::sleep(HOLD).await;
            let _ = remove(&api, &name, &uid, None).await;
        });
        Ok(true)
    }

    /// Deletes an expired record with preconditions: `true` when the slot may be created now
    /// (deleted, or already gone), `false` when someone else replaced it first.
    async fn delete_expired(
        &self,
        hash: &str,
        slot: u32,
        l: &Listed,
        deadline: Deadline,
    ) -> Result<bool, ApiError> {
        let name = record_name(hash, slot);
        let api = self.api();
        let deleted = remove(&api, &name, &l.uid, l.resource_version.clone());
        match deadline
            .within("delete an expired MIN_AVAILABLE reservation", deleted)
            .await?
        {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(true),
            // The precondition failed: replaced by someone else first.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.call("delete").failed(e)),
        }
    }

    /// This workload's records by slot (metadata only).
    async fn list(&self, hash: &str) -> Result<HashMap<u32, Listed>, kube::Error> {
        let lp = ListParams::default().labels(&format!("{RESERVATION_LABEL}={hash}"));
        let list = self.api().list_metadata(&lp).await?;
        let prefix = format!("{}-", record_name(hash, 0).trim_end_matches("-0"));
        Ok(list
            .items
            .into_iter()
            .filter_map(|m| {
                let m = m.metadata;
                let slot = m.name.as_deref()?.strip_prefix(&prefix)?.parse().ok()?;
                let listed = Listed {
                    uid: m.uid?,
                    resource_version: m.resource_version,
                    created: m.creation_timestamp?.0,
                };
                Some((slot, listed))
            })
            .collect())
    }

    /// Gives `r` back (its removal did not happen): the local hold at once, and the record's
    /// DELETE (uid precondition) for the caller to run after the answer.
    pub fn release(&self, r: &Reserved) -> Option<impl Future<Output = ()> + use<>> {
        let uid = self.drop_local(&r.workload, r.slot)?.uid?;
        let api = self.api();
        let name = record_name(&workload_hash(&r.workload), r.slot);
        Some(async move {
            if let Err(e) = remove(&api, &name, &uid, None).await {
                tracing::warn!(record = name.as_str(), error = %e,
                    "a MIN_AVAILABLE reservation could not be given back: its slot stays held \
                     until it expires");
            }
        })
    }
}

/// DELETE of a record with its uid (and resourceVersion) as preconditions.
async fn remove(
    api: &Api<KubeEvent>,
    name: &str,
    uid: &str,
    resource_version: Option<String>,
) -> Result<(), kube::Error> {
    let dp = DeleteParams::default().preconditions(Preconditions {
        uid: Some(uid.to_string()),
        resource_version,
    });
    api.delete(name, &dp).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_valid_stable_and_per_workload() {
        let a = record_name(&workload_hash("prod/Deployment/web"), 0);
        assert_eq!(a, record_name(&workload_hash("prod/Deployment/web"), 0));
        assert_ne!(a, record_name(&workload_hash("prod/Deployment/api"), 0));
        assert_ne!(a, record_name(&workload_hash("prod/Deployment/web"), 1));
        // Pinned: replicas of two versions must agree on a slot's name.
        assert_eq!(workload_hash(""), "cbf29ce484222325");
        assert_eq!(workload_hash("a"), "af63dc4c8601ec8c");
        let long = record_name(&workload_hash(&"x".repeat(400)), u32::MAX);
        assert!(
            crate::domain::ident::PodName::parse("name", &long).is_ok(),
            "{long}"
        );
    }
}
