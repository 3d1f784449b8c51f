//! Containment ("contain before destroy"): which action the deployer chose for a rule, and what
//! containing one live pod takes, decided from the pod's own facts: the deny-all NetworkPolicy
//! that isolates it (and whether one found under its name is ours), the labels that release it
//! from its ReplicaSet, the bounded evidence, the deadline after which the kubelet kills it, and
//! the one JSON patch (uid `test` first) that labels, releases and sets that deadline. Pure:
//! `cluster::contain` makes the calls.
//!
//! The order (`domain::plan`): the NetworkPolicy first (it selects nothing until the label is
//! on the pod), then the one patch (label, release, deadline: the pod is never released without
//! the label its isolation selects, and the deadline, lowered only, rides in the same atomic
//! write), then the evidence (the kubelet keeps a killed pod's logs readable). So a pod that
//! carries the label has been isolated, released and given its deadline; only its evidence
//! can be missing, and a retry that finds the label and our policy keeps just that.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        core::v1::Pod,
        networking::v1::{NetworkPolicy, NetworkPolicySpec},
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
    jiff::Timestamp,
};
use serde_json::{Value, json};

use crate::domain::workload::{Kind, group_of};

/// The label that marks a contained pod, its value the pod's uid: what our NetworkPolicy selects.
pub const CONTAINED_LABEL: &str = "falco-responder/contained";
/// The annotation that records the labels removed to release the pod (JSON object).
pub const RELEASED_ANNOTATION: &str = "falco-responder/released-labels";
/// The label every object the function creates carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "falco-responder";
/// The label of an evidence ConfigMap (value `"true"`): what retention lists.
pub const EVIDENCE_LABEL: &str = "falco-responder/evidence";
/// The evidence ConfigMap's annotations.
pub const POD_NAMESPACE_ANNOTATION: &str = "falco-responder/pod-namespace";
pub const POD_NAME_ANNOTATION: &str = "falco-responder/pod-name";
pub const POD_UID_ANNOTATION: &str = "falco-responder/pod-uid";
pub const RULE_ANNOTATION: &str = "falco-responder/rule";
pub const CONTAINED_AT_ANNOTATION: &str = "falco-responder/contained-at";
/// The data key listing the containers whose log could not be read, and why.
pub const UNREAD_KEY: &str = "unread.txt";

/// CONTAIN_SECONDS: at most 30 days.
pub const CONTAIN_SECONDS_MAX: u32 = 2_592_000;
/// EVIDENCE_LOG_BYTES: default and largest value.
pub const LOG_BYTES_DEFAULT: usize = 65_536;
pub const LOG_BYTES_MAX: usize = 262_144;
/// EVIDENCE_MAX_CONFIGMAPS: default and largest value.
pub const MAX_CONFIGMAPS_DEFAULT: usize = 100;
pub const MAX_CONFIGMAPS_MAX: usize = 1000;
/// The containers whose logs one ConfigMap keeps, at most.
pub const MAX_CONTAINERS: usize = 16;
/// What one ConfigMap holds of logs, at most (the API refuses objects above 1 MiB).
pub const CONFIGMAP_LOG_BYTES: usize = 900 * 1024;
/// The shortest average line the log tail's `tailLines` assumes: with longer lines more than
/// the bound arrives and is cut on our side; with shorter ones the tail is shorter than it could be.
pub const SHORTEST_LINE: usize = 8;

/// What the function does to a pod the policy acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Delete,
    Contain,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Contain => "contain",
        }
    }
}

/// ACTION, with CONTAIN_RULES and DELETE_RULES overriding it per rule (validated disjoint).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actions {
    pub default: Action,
    pub contain_rules: Vec<String>,
    pub delete_rules: Vec<String>,
}

impl Actions {
    /// The action for an event of `rule`.
    pub fn for_rule(&self, rule: &str) -> Action {
        if self.contain_rules.iter().any(|r| r == rule) {
            Action::Contain
        } else if self.delete_rules.iter().any(|r| r == rule) {
            Action::Delete
        } else {
            self.default
        }
    }

    /// Whether any event can be contained (the containment's settings and RBAC then matter).
    pub fn can_contain(&self) -> bool {
        self.default == Action::Contain || !self.contain_rules.is_empty()
    }
}

/// The containment's part of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainConfig {
    pub actions: Actions,
    /// CONTAIN_SECONDS: the kubelet kills the contained pod this long after containment
    /// (`None`: never, it stays isolated until a person deletes it).
    pub seconds: Option<u32>,
    /// EVIDENCE_LOG_BYTES: the tail kept per container.
    pub log_bytes: usize,
    /// EVIDENCE_MAX_CONFIGMAPS: evidence ConfigMaps kept in the function's namespace.
    pub max_configmaps: usize,
}

impl Default for ContainConfig {
    fn default() -> Self {
        ContainConfig {
            actions: Actions::default(),
            seconds: None,
            log_bytes: LOG_BYTES_DEFAULT,
            max_configmaps: MAX_CONFIGMAPS_DEFAULT,
        }
    }
}

/// The steps a containment took (or, under DRY_RUN, would take), as the reply names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Steps(u8);

impl Steps {
    pub const NONE: Steps = Steps(0);
    /// The NetworkPolicy denies the pod all traffic.
    pub const ISOLATED: Steps = Steps(1);
    /// Its ReplicaSet's selector labels were removed: a replacement is made.
    pub const RELEASED: Steps = Steps(2);
    /// Its logs' tails are kept in a ConfigMap.
    pub const EVIDENCE: Steps = Steps(4);
    /// `activeDeadlineSeconds`: the kubelet kills it later.
    pub const DEADLINE: Steps = Steps(8);
    /// A deadline already passed: the kubelet kills it now (a hostNetwork pod).
    pub const KILLED: Steps = Steps(16);
    const NAMES: [(Steps, &'static str); 5] = [
        (Steps::ISOLATED, "isolated"),
        (Steps::RELEASED, "released"),
        (Steps::EVIDENCE, "evidence"),
        (Steps::DEADLINE, "deadline"),
        (Steps::KILLED, "killed"),
    ];

    pub fn with(self, s: Steps) -> Steps {
        Steps(self.0 | s.0)
    }

    pub fn has(self, s: Steps) -> bool {
        self.0 & s.0 == s.0 && s.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the steps, in the order they are taken.
    pub fn names(self) -> Vec<&'static str> {
        Steps::NAMES
            .iter()
            .filter(|(s, _)| self.has(*s))
            .map(|(_, n)| *n)
            .collect()
    }
}

/// The NetworkPolicy that isolates the pod of `uid`.
pub fn policy_name(uid: &str) -> String {
    format!("falco-responder-contain-{uid}")
}

/// The ConfigMap that keeps the evidence of the pod of `uid`.
pub fn evidence_name(uid: &str) -> String {
    format!("falco-responder-evidence-{uid}")
}

/// The deny-all NetworkPolicy for pod `name` of `uid` in `namespace`: it selects only pods
/// labelled with this uid, allows no traffic either way, and is owned by the pod (the garbage
/// collector deletes it with the pod; no `blockOwnerDeletion`: that would need `update` on
/// pods' finalizers and would hold the pod's deletion).
pub fn network_policy(namespace: &str, name: &str, uid: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(policy_name(uid)),
            namespace: Some(namespace.to_string()),
            labels: Some([(MANAGED_BY_LABEL.into(), MANAGED_BY.into())].into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: name.to_string(),
                uid: uid.to_string(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some([(CONTAINED_LABEL.into(), uid.to_string())].into()),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: None,
            egress: None,
        }),
    }
}

/// Whether `np` is exactly the isolation of the pod of `uid`: denies all ingress and egress,
/// selects by this uid only, owned by this pod only. Anyone who may create NetworkPolicies in
/// the namespace could have written one under our name; a pod is never labelled under a policy
/// we did not write (it could allow everything).
pub fn is_ours(np: &NetworkPolicy, uid: &str) -> bool {
    let Some(spec) = &np.spec else { return false };
    let selector_ok = spec.pod_selector.as_ref().is_some_and(|s| {
        s.match_expressions.as_ref().is_none_or(Vec::is_empty)
            && s.match_labels.as_ref().is_some_and(|l| {
                l.len() == 1 && l.get(CONTAINED_LABEL).map(String::as_str) == Some(uid)
            })
    });
    let types = spec.policy_types.as_deref().unwrap_or_default();
    let types_ok = types.len() == 2
        && types.iter().any(|t| t == "Ingress")
        && types.iter().any(|t| t == "Egress");
    let no_rules = spec.ingress.as_ref().is_none_or(Vec::is_empty)
        && spec.egress.as_ref().is_none_or(Vec::is_empty);
    let owners = np.metadata.owner_references.as_deref().unwrap_or_default();
    let owner_ok = owners.len() == 1
        && owners[0].uid == uid
        && owners[0].kind == "Pod"
        && owners[0].api_version == "v1";
    np.metadata.name.as_deref() == Some(policy_name(uid).as_str())
        && selector_ok
        && types_ok
        && no_rules
        && owner_ok
}

/// What containment reads of the live pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodFacts {
    pub uid: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub has_annotations: bool,
    pub host_network: bool,
    /// Its containers, then its init containers, at most [`MAX_CONTAINERS`].
    pub containers: Vec<String>,
    pub deadline: Option<i64>,
    pub started: Option<Timestamp>,
    /// The ReplicaSet (`apps`) its controller reference names: name and uid.
    pub replicaset: Option<(String, String)>,
}

impl PodFacts {
    pub fn of(pod: &Pod) -> PodFacts {
        let spec = pod.spec.as_ref();
        let containers = spec
            .map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .map(|c| c.name.clone())
                    .take(MAX_CONTAINERS)
                    .collect()
            })
            .unwrap_or_default();
        let replicaset = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .filter(|o| o.kind == "ReplicaSet" && group_of(&o.api_version) == "apps")
            .map(|o| (o.name.clone(), o.uid.clone()));
        PodFacts {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone(),
            has_annotations: pod.metadata.annotations.is_some(),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            containers,
            deadline: spec.and_then(|s| s.active_deadline_seconds),
            started: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0),
            replicaset,
        }
    }

    /// The pod carries our label with its own uid: contained, if our NetworkPolicy exists too
    /// (the label alone proves nothing: whoever may patch the pod can set it).
    pub fn labelled_contained(&self) -> bool {
        self.labels
            .as_ref()
            .and_then(|l| l.get(CONTAINED_LABEL))
            .is_some_and(|v| *v == self.uid)
    }

    /// Seconds since the kubelet started the pod (0 before it did), as the kubelet counts.
    fn elapsed(&self, now: Timestamp) -> i64 {
        self.started
            .map_or(0, |s| now.as_second().saturating_sub(s.as_second()))
            .max(0)
    }

    /// The pod's deadline has passed: the kubelet kills it (or did).
    pub fn deadline_passed(&self, now: Timestamp) -> bool {
        self.deadline.is_some_and(|d| d <= self.elapsed(now))
    }

    /// Whether the pod may be released from its controller: a verified ReplicaSet owns it.
    pub fn releasable(&self, workload: &Kind) -> bool {
        self.replicaset.is_some()
            && !self.host_network
            && matches!(workload, Kind::Deployment | Kind::ReplicaSet)
    }
}

/// When the kubelet is to kill the contained pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// `seconds` from now.
    In(u32),
    /// Now: the smallest deadline that has already passed.
    Now,
}

/// The `activeDeadlineSeconds` to set (counted by the kubelet from `status.startTime`), or
/// `None` when the pod's own deadline is already as low: the API only lets it be lowered.
pub fn deadline(facts: &PodFacts, kill: Kill, now: Timestamp) -> Option<i64> {
    let elapsed = facts.elapsed(now);
    let target = match kill {
        Kill::In(s) => elapsed.saturating_add(i64::from(s)),
        Kill::Now => elapsed,
    }
    .clamp(1, i64::from(i32::MAX));
    match facts.deadline {
        Some(existing) if existing <= target => None,
        _ => Some(target),
    }
}

/// What releasing the pod from its ReplicaSet takes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Release {
    /// Not released (not owned by a ReplicaSet, or a StatefulSet, DaemonSet, bare pod ...).
    #[default]
    No,
    /// The ReplicaSet selects by `matchExpressions` only: no label to remove that surely
    /// releases it.
    ExpressionsOnly(String),
    /// Remove these labels (the selector's `matchLabels` the pod carries): ReplicaSet `name`.
    Labels {
        replicaset: String,
        labels: BTreeMap<String, String>,
    },
}

/// The release of a pod with `facts` from `rs`, the ReplicaSet its controller reference names
/// (`None`: gone, or another uid under its name).
pub fn release(facts: &PodFacts, rs: Option<&ReplicaSet>) -> Release {
    let Some((name, uid)) = &facts.replicaset else {
        return Release::No;
    };
    let Some(rs) = rs.filter(|rs| rs.metadata.uid.as_deref() == Some(uid.as_str())) else {
        return Release::No;
    };
    let selector = rs.spec.as_ref().map(|s| &s.selector);
    let wanted = selector
        .and_then(|s| s.match_labels.as_ref())
        .filter(|l| !l.is_empty());
    let Some(wanted) = wanted else {
        return if selector
            .is_some_and(|s| s.match_expressions.as_ref().is_some_and(|e| !e.is_empty()))
        {
            Release::ExpressionsOnly(name.clone())
        } else {
            Release::No
        };
    };
    let own = facts.labels.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = wanted
        .iter()
        .filter(|(k, v)| own.get(*k) == Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if labels.is_empty() {
        return Release::No;
    }
    Release::Labels {
        replicaset: name.clone(),
        labels,
    }
}

/// A JSON pointer token (`/` and `~` escaped).
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The one JSON patch that contains the pod: the uid `test` first (another pod under the name
/// is a 422 and nothing changes), our label, the release's labels removed (each `test`ed to the
/// value recorded), the record of them, the deadline. One patch: the pod is never released
/// without the label its isolation selects, and a pod carrying the label has been contained
/// whole.
pub fn patch(
    facts: &PodFacts,
    released: &BTreeMap<String, String>,
    deadline: Option<i64>,
) -> Value {
    let uid = &facts.uid;
    let mut ops = vec![json!({"op": "test", "path": "/metadata/uid", "value": uid})];
    if facts.labels.is_some() {
        let path = format!("/metadata/labels/{}", token(CONTAINED_LABEL));
        ops.push(json!({"op": "add", "path": path, "value": uid}));
    } else {
        ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {CONTAINED_LABEL: uid}}));
    }
    for (k, v) in released {
        let path = format!("/metadata/labels/{}", token(k));
        ops.push(json!({"op": "test", "path": path, "value": v}));
        ops.push(json!({"op": "remove", "path": path}));
    }
    if !released.is_empty() {
        let record = serde_json::to_string(released).unwrap_or_default();
        // An annotations map created between our GET and this patch would be replaced here:
        // the window is one round trip, and only a pod that had no annotations is exposed.
        if facts.has_annotations {
            let path = format!("/metadata/annotations/{}", token(RELEASED_ANNOTATION));
            ops.push(json!({"op": "add", "path": path, "value": record}));
        } else {
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {RELEASED_ANNOTATION: record}}));
        }
    }
    if let Some(d) = deadline {
        ops.push(json!({"op": "add", "path": "/spec/activeDeadlineSeconds", "value": d}));
    }
    Value::Array(ops)
}

/// The tail one container's log gets, in bytes, for a pod of `containers` containers.
pub fn tail_bytes(log_bytes: usize, containers: usize) -> usize {
    log_bytes.min(CONFIGMAP_LOG_BYTES / containers.max(1))
}

/// The `tailLines` asked for a tail of `bytes` (see [`SHORTEST_LINE`]).
pub fn tail_lines(bytes: usize) -> i64 {
    (bytes / SHORTEST_LINE).max(1) as i64
}

/// The last `max` bytes of `log` as text, at most `max` bytes long, starting on a char
/// boundary. Bytes that are not UTF-8 become U+FFFD (three bytes each): the text is cut again,
/// so a binary log cannot grow the ConfigMap past its bound.
pub fn tail(log: &[u8], max: usize) -> String {
    let start = log.len().saturating_sub(max);
    let mut cut = &log[start..];
    // Skip continuation bytes of a char cut in half.
    while let Some(&b) = cut.first() {
        if start > 0 && (b & 0xC0) == 0x80 {
            cut = &cut[1..];
        } else {
            break;
        }
    }
    let text = String::from_utf8_lossy(cut);
    if text.len() <= max {
        return text.into_owned();
    }
    let mut from = text.len() - max;
    while !text.is_char_boundary(from) {
        from += 1;
    }
    text[from..].to_string()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::{apps::v1::ReplicaSetSpec, core::v1::PodSpec},
        apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement,
    };
    use proptest::prelude::*;

    use super::*;

    const UID: &str = "0f9a4c1e-1111-2222-3333-444455556666";
    const RS_UID: &str = "aaaa4c1e-1111-2222-3333-444455556666";

    fn facts() -> PodFacts {
        PodFacts {
            uid: UID.into(),
            labels: Some(
                [
                    ("app".into(), "web".into()),
                    ("pod-template-hash".into(), "7d9f".into()),
                ]
                .into(),
            ),
            replicaset: Some(("web-7d9f".into(), RS_UID.into())),
            containers: vec!["c".into()],
            ..Default::default()
        }
    }

    fn rs(uid: &str, labels: &[(&str, &str)], exprs: bool) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                selector: LabelSelector {
                    match_labels: Some(
                        labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    ),
                    match_expressions: exprs.then(|| {
                        vec![LabelSelectorRequirement {
                            key: "app".into(),
                            operator: "Exists".into(),
                            values: None,
                        }]
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn the_rule_lists_override_the_default_action() {
        let a = Actions {
            default: Action::Delete,
            contain_rules: vec!["Drop and execute".into()],
            delete_rules: vec![],
        };
        assert_eq!(a.for_rule("Drop and execute"), Action::Contain);
        assert_eq!(a.for_rule("Terminal shell in container"), Action::Delete);
        assert!(a.can_contain());
        let a = Actions {
            default: Action::Contain,
            contain_rules: vec![],
            delete_rules: vec!["Crypto miner".into()],
        };
        assert_eq!(a.for_rule("Crypto miner"), Action::Delete);
        assert_eq!(a.for_rule("x"), Action::Contain);
        assert!(!Actions::default().can_contain());
    }

    #[test]
    fn our_policy_is_ours_and_every_change_an_attacker_could_make_is_not() {
        let np = network_policy("prod", "web-0", UID);
        assert!(is_ours(&np, UID));
        assert!(!is_ours(&np, RS_UID), "another pod's");
        let mut allow = np.clone();
        allow.spec.as_mut().unwrap().ingress = Some(vec![Default::default()]);
        assert!(!is_ours(&allow, UID), "allows ingress");
        let mut egress = np.clone();
        egress.spec.as_mut().unwrap().egress = Some(vec![Default::default()]);
        assert!(!is_ours(&egress, UID), "allows egress");
        let mut only_ingress = np.clone();
        only_ingress.spec.as_mut().unwrap().policy_types = Some(vec!["Ingress".into()]);
        assert!(!is_ours(&only_ingress, UID), "egress not denied");
        let mut selector = np.clone();
        selector.spec.as_mut().unwrap().pod_selector = Some(LabelSelector {
            match_labels: Some([("app".into(), "nothing".into())].into()),
            match_expressions: None,
        });
        assert!(!is_ours(&selector, UID), "selects other pods");
        let mut owner = np.clone();
        owner.metadata.owner_references.as_mut().unwrap()[0].uid = RS_UID.into();
        assert!(!is_ours(&owner, UID), "owned by another");
        let mut unowned = np.clone();
        unowned.metadata.owner_references = None;
        assert!(!is_ours(&unowned, UID), "never collected");
        let mut no_spec = np;
        no_spec.spec = None;
        assert!(!is_ours(&no_spec, UID));
    }

    #[test]
    fn release_removes_the_selectors_labels_only_from_a_verified_replicaset() {
        let f = facts();
        let both = [("app", "web"), ("pod-template-hash", "7d9f")];
        match release(&f, Some(&rs(RS_UID, &both, false))) {
            Release::Labels { replicaset, labels } => {
                assert_eq!(replicaset, "web-7d9f");
                assert_eq!(labels.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        // Another ReplicaSet under the name, or none: nothing to release.
        assert_eq!(release(&f, Some(&rs(UID, &both, false))), Release::No);
        assert_eq!(release(&f, None), Release::No);
        // Selected by expressions only: said, not released.
        assert!(matches!(
            release(&f, Some(&rs(RS_UID, &[], true))),
            Release::ExpressionsOnly(_)
        ));
        // No ReplicaSet controller (StatefulSet, DaemonSet, bare): never released.
        let bare = PodFacts {
            replicaset: None,
            ..facts()
        };
        assert_eq!(release(&bare, Some(&rs(RS_UID, &both, false))), Release::No);
    }

    #[test]
    fn the_patch_tests_the_uid_first_and_records_what_it_removes() {
        let f = facts();
        let released: BTreeMap<String, String> = [("app".into(), "web".into())].into();
        let p = patch(&f, &released, Some(60));
        let ops = p.as_array().unwrap();
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/metadata/uid", "value": UID})
        );
        assert_eq!(
            ops[1],
            json!({"op": "add", "path": "/metadata/labels/falco-responder~1contained", "value": UID})
        );
        assert_eq!(
            ops[2],
            json!({"op": "test", "path": "/metadata/labels/app", "value": "web"})
        );
        assert_eq!(
            ops[3],
            json!({"op": "remove", "path": "/metadata/labels/app"})
        );
        assert_eq!(ops[4]["path"], "/metadata/annotations");
        assert_eq!(ops[4]["value"][RELEASED_ANNOTATION], r#"{"app":"web"}"#);
        assert_eq!(
            ops[5],
            json!({"op": "add", "path": "/spec/activeDeadlineSeconds", "value": 60})
        );
        // No labels map yet: the map is added whole.
        let bare = PodFacts {
            labels: None,
            ..facts()
        };
        let p = patch(&bare, &BTreeMap::new(), None);
        assert_eq!(p[1]["path"], "/metadata/labels");
        assert_eq!(p.as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_tail_is_cut_on_our_side_on_a_char_boundary() {
        assert_eq!(tail(b"abcdef", 3), "def");
        assert_eq!(tail(b"ab", 3), "ab");
        let s = "aé".repeat(10);
        let t = tail(s.as_bytes(), 4);
        assert!(t.len() <= 4 && s.ends_with(&t), "{t}");
        // Not UTF-8: replaced, and still within the bound.
        let binary = vec![0xFFu8; 1000];
        let t = tail(&binary, 100);
        assert!(
            t.len() <= 100 && t.chars().all(|c| c == '\u{FFFD}'),
            "{}",
            t.len()
        );
        assert_eq!(tail_bytes(65_536, 16), CONFIGMAP_LOG_BYTES / 16);
        assert_eq!(tail_bytes(65_536, 1), 65_536);
        assert_eq!(tail_lines(65_536), 8192);
    }

    #[test]
    fn steps_are_named_in_order() {
        let s = Steps::NONE.with(Steps::DEADLINE).with(Steps::ISOLATED);
        assert_eq!(s.names(), ["isolated", "deadline"]);
        assert!(s.has(Steps::ISOLATED) && !s.has(Steps::RELEASED));
        assert!(!Steps::NONE.has(Steps::NONE));
    }

    #[test]
    fn facts_come_from_the_live_pod() {
        let pod = Pod {
            metadata: ObjectMeta {
                uid: Some(UID.into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "web-7d9f".into(),
                    uid: RS_UID.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: (0..20)
                    .map(|i| k8s_openapi::api::core::v1::Container {
                        name: format!("c{i}"),
                        ..Default::default()
                    })
                    .collect(),
                host_network: Some(true),
                ..Default::default()
            }),
            status: None,
        };
        let f = PodFacts::of(&pod);
        assert_eq!(f.containers.len(), MAX_CONTAINERS);
        assert_eq!(f.replicaset, Some(("web-7d9f".into(), RS_UID.into())));
        assert!(f.host_network);
        // A hostNetwork pod is never released: killing it brings its replacement.
        assert!(!f.releasable(&Kind::Deployment));
        let f = PodFacts {
            host_network: false,
            ..f
        };
        assert!(f.releasable(&Kind::Deployment));
        assert!(!f.releasable(&Kind::Standalone));
        assert!(!f.releasable(&Kind::StatefulSet));
    }

    proptest! {
        #[test]
        fn a_tail_never_exceeds_its_bound_and_ends_the_log(
            log in prop::collection::vec(any::<u8>(), 0..2000),
            text in ".{0,300}",
            max in 1usize..500,
        ) {
            let t = tail(&log, max);
            prop_assert!(t.len() <= max, "{} > {max}", t.len());
            let t = tail(text.as_bytes(), max);
            prop_assert!(t.len() <= max && text.ends_with(&t));
            // Only a char that does not fit is left out.
            prop_assert!(t.len() == text.len() || t.len() + 4 > max);
        }

        #[test]
        fn a_deadline_is_only_ever_lowered_and_never_below_one(
            existing in prop::option::of(1i64..5_000_000),
            started in prop::option::of(0i64..4_000_000),
            secs in 1u32..=CONTAIN_SECONDS_MAX,
            now_kill in any::<bool>(),
        ) {
            let now = ts(4_000_000);
            let f = PodFacts {
                deadline: existing,
                started: started.map(|s| ts(4_000_000 - s)),
                ..facts()
            };
            let kill = if now_kill { Kill::Now } else { Kill::In(secs) };
            let elapsed = started.unwrap_or(0);
            match deadline(&f, kill, now) {
                Some(d) => {
                    prop_assert!(d >= 1);
                    prop_assert!(existing.is_none_or(|e| d < e), "raised {existing:?} to {d}");
                    match kill {
                        Kill::Now => prop_assert!(d <= elapsed.max(1)),
                        Kill::In(s) => prop_assert_eq!(d, elapsed + i64::from(s)),
                    }
                }
                None => prop_assert!(existing.is_some()),
            }
        }

        #[test]
        fn the_patch_always_tests_the_uid_first_and_labels_whenever_it_releases(
            keys in prop::collection::btree_map("[a-z/~.]{1,8}", "[a-z]{0,4}", 0..4),
            has_labels in any::<bool>(),
            has_annotations in any::<bool>(),
            d in prop::option::of(1i64..100),
        ) {
            let f = PodFacts { labels: has_labels.then(BTreeMap::new), has_annotations, ..facts() };
            let p = patch(&f, &keys, d);
            let ops = p.as_array().unwrap();
            prop_assert_eq!(&ops[0], &json!({"op": "test", "path": "/metadata/uid", "value": UID}));
            let labels_at = ops.iter().position(|o| o["op"] == "add" && o["path"].as_str().unwrap().starts_with("/metadata/labels"));
            prop_assert_eq!(labels_at, Some(1));
            let removes = ops.iter().filter(|o| o["op"] == "remove").count();
            prop_assert_eq!(removes, keys.len());
        }
    }
}
