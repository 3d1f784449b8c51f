//! Workload-aware guards, pure: what the workload and its replica counts say about deleting one
//! of its pods. The API calls that feed them live in `cluster::workloads` and `cluster::records`.

use std::str::FromStr;

use k8s_openapi::api::core::v1::Pod;

use crate::domain::workload::{Kind, Replicas, Workload};

/// A Namespace labelled `falco-responder/protect=true`: its pods are never removed. Namespace
/// labels are set by whoever may update namespaces (cluster admins), never by a pod's author.
pub const NAMESPACE_PROTECT_LABEL: &str = "falco-responder/protect";

/// SKIP_OWNER_KINDS: pods of these workload kinds are skipped. Built-in kinds by name (any
/// case), others qualified by their API group (`Rollout.argoproj.io`): an owner matches by
/// kind and group, so an ownerReference with a made-up apiVersion earns no skip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipOwnerKinds(pub Vec<Kind>);

impl FromStr for SkipOwnerKinds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .map(|k| match k {
                "" => Err("an empty element in the comma list (a stray comma?)".into()),
                k => Kind::parse_listed(k),
            })
            .collect::<Result<_, _>>()
            .map(SkipOwnerKinds)
    }
}

impl SkipOwnerKinds {
    pub fn contains(&self, kind: &Kind) -> bool {
        self.0.iter().any(|k| match (k, kind) {
            // Kinds are case-sensitive in the API, but a deployer may write `rollout.argoproj.io`.
            (Kind::Other(a), Kind::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        })
    }
}

/// MIN_AVAILABLE: `N` ready replicas, or `N%` of the desired replicas (rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinAvailable {
    Count(u32),
    Percent(u32),
}

impl FromStr for MinAvailable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if p <= 100 => Ok(MinAvailable::Percent(p)),
                _ => Err("expected N or N% with N a whole number from 0 to 100".into()),
            },
            None => s
                .parse::<u32>()
                .map(MinAvailable::Count)
                .map_err(|_| "expected a whole number of replicas (N) or a percentage (N%)".into()),
        }
    }
}

impl MinAvailable {
    /// The floor in replicas for a workload that wants `desired`. Percentages round up, as
    /// PodDisruptionBudgets do: 50% of 3 is 2.
    pub fn floor(self, desired: u32) -> u32 {
        match self {
            MinAvailable::Count(n) => n,
            MinAvailable::Percent(p) => (u64::from(p) * u64::from(desired)).div_ceil(100) as u32,
        }
    }
}

impl std::fmt::Display for MinAvailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MinAvailable::Count(n) => write!(f, "{n}"),
            MinAvailable::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Whether the pod counts as ready (condition Ready=True), as the workload controllers count it.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// What a guard rules for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ruling {
    /// Go on (breaker next, then delete).
    Pass,
    /// Never act on this pod: deleting cannot help or was ruled out.
    Skip(String),
    /// Not now: deleting would break availability; retrying later may succeed.
    Hold(String),
    /// Not by retrying: the workload at its full size would still fall below the floor, so a
    /// retry loop would hold it for ever; a person must look (lower the floor or scale up).
    Refuse(String),
}

/// The guards that need no more than the workload: mirror pods and SKIP_OWNER_KINDS.
pub fn by_kind(w: &Workload, skip: &SkipOwnerKinds, node: Option<&str>) -> Ruling {
    if w.kind == Kind::Mirror {
        return Ruling::Skip(format!(
            "mirror pod of a static pod on node {}: deleting it has no effect (the kubelet \
             recreates it at once); act on the node (its manifest directory)",
            node.unwrap_or("?")
        ));
    }
    if skip.contains(&w.kind) {
        return Ruling::Skip(format!(
            "workload {w}: {} is listed in SKIP_OWNER_KINDS",
            w.kind.as_str()
        ));
    }
    Ruling::Pass
}

/// The availability floor: after deleting this pod, `ready` (minus this pod when it is ready)
/// must stay at or above the floor. `None` replicas (a kind without a replica count, or the
/// workload is gone) never hold.
pub fn floor(
    w: &Workload,
    min: MinAvailable,
    replicas: Option<Replicas>,
    pod_ready: bool,
) -> Ruling {
    let Some(r) = replicas else {
        return Ruling::Pass;
    };
    let floor = min.floor(r.desired);
    let after = r.ready.saturating_sub(u32::from(pod_ready));
    if after >= floor {
        return Ruling::Pass;
    }
    // With every desired replica ready, deleting one leaves desired - 1: below the floor, no
    // amount of waiting lets this deletion through (a rollout's surge aside).
    let at_best = r.desired.saturating_sub(1);
    if at_best < floor {
        return Ruling::Refuse(format!(
            "workload {w}: MIN_AVAILABLE={min} ({floor} replicas) can never be met while \
             deleting one of its {} desired replicas (at best {at_best} would stay ready); not \
             deleting, a person must look: lower MIN_AVAILABLE or scale the workload up",
            r.desired
        ));
    }
    Ruling::Hold(format!(
        "workload {w}: deleting would leave {after} ready of {} desired replicas, below \
         MIN_AVAILABLE={min} ({floor} replicas); retry once replicas recover",
        r.desired
    ))
}

/// How many deletions of its ready pods the floor lets be in flight at once: `ready - floor`.
/// Each in-flight (or recent, not yet reflected in `ready`) deletion holds one of these slots
/// (`cluster::reservations`), so N concurrent events never take the workload below its floor:
/// with `ready` counted before any of them, the `ready - floor` slots let exactly that many go.
/// Zero when none may go.
pub fn slots(min: MinAvailable, r: Replicas) -> u32 {
    r.ready.saturating_sub(min.floor(r.desired))
}

/// MAX_DELETIONS_PER_WORKLOAD default: three pods of one workload in ten minutes. A real
/// intrusion touches one or two replicas; a delete loop (start-up trips the rule, every
/// replacement fires again) reaches three within minutes, and is then stopped.
pub const DEFAULT_MAX_PER_WORKLOAD: &str = "3/10m";
/// MAX_DELETIONS default: twenty pods a minute overall. Far above a real incident, far below
/// what a broken rule (or RULES=* on a noisy one) deletes across a cluster in a minute.
pub const DEFAULT_MAX_OVERALL: &str = "20/1m";

/// The guards' configuration, read with the rest in `config.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    pub skip_owner_kinds: SkipOwnerKinds,
    pub min_available: Option<MinAvailable>,
    pub use_eviction: bool,
    pub max_deletions_per_workload: Option<crate::domain::budget::Budget>,
    pub max_deletions: Option<crate::domain::budget::Budget>,
}

impl GuardConfig {
    /// From the raw variables (unset: `None`); `Err((variable, value, why))`.
    pub fn parse(
        skip_owner_kinds: Option<&str>,
        min_available: Option<&str>,
        use_eviction: Option<bool>,
        per_workload: Option<&str>,
        overall: Option<&str>,
    ) -> Result<GuardConfig, (&'static str, String, String)> {
        let err = |var, v: &str, why| (var, v.to_string(), why);
        let budget =
            |var, v: &str| crate::domain::budget::parse_budget(v).map_err(|why| err(var, v, why));
        Ok(GuardConfig {
            skip_owner_kinds: skip_owner_kinds
                .map(|s| s.parse().map_err(|why| err("SKIP_OWNER_KINDS", s, why)))
                .transpose()?
                .unwrap_or_default(),
            min_available: min_available
                .map(|v| v.parse().map_err(|why| err("MIN_AVAILABLE", v, why)))
                .transpose()?,
            use_eviction: use_eviction.unwrap_or(false),
            max_deletions_per_workload: budget(
                "MAX_DELETIONS_PER_WORKLOAD",
                per_workload.unwrap_or(DEFAULT_MAX_PER_WORKLOAD),
            )?,
            max_deletions: budget("MAX_DELETIONS", overall.unwrap_or(DEFAULT_MAX_OVERALL))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(kind: Kind) -> Workload {
        Workload {
            kind,
            name: "web".into(),
            api_version: "apps/v1".into(),
        }
    }

    #[test]
    fn min_available_parses_counts_and_percentages() {
        assert_eq!("2".parse(), Ok(MinAvailable::Count(2)));
        assert_eq!(" 50% ".parse(), Ok(MinAvailable::Percent(50)));
        assert_eq!("0%".parse(), Ok(MinAvailable::Percent(0)));
        for bad in ["", "-1", "101%", "1.5", "x%", "%"] {
            assert!(bad.parse::<MinAvailable>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn percentages_are_of_desired_replicas_rounded_up() {
        assert_eq!(MinAvailable::Percent(50).floor(3), 2);
        assert_eq!(MinAvailable::Percent(33).floor(3), 1);
        assert_eq!(MinAvailable::Percent(34).floor(3), 2);
        assert_eq!(MinAvailable::Percent(100).floor(5), 5);
        assert_eq!(MinAvailable::Percent(1).floor(1), 1);
        assert_eq!(MinAvailable::Percent(0).floor(10), 0);
        // Talon's bug read "33%" as 33 pods: a percentage is never the bare number.
        assert_eq!(MinAvailable::Percent(33).floor(4), 2);
        assert_eq!(MinAvailable::Count(33).floor(4), 33);
    }

    #[test]
    fn the_floor_counts_ready_replicas_minus_this_pod_when_ready() {
        let r = |desired, ready| Some(Replicas { desired, ready });
        let min = MinAvailable::Count(2);
        // 3 ready, this one ready: 2 left, at the floor: fine.
        assert_eq!(
            floor(&w(Kind::Deployment), min, r(3, 3), true),
            Ruling::Pass
        );
        // 2 ready, this one ready: 1 left: held.
        let v = floor(&w(Kind::Deployment), min, r(3, 2), true);
        assert!(
            matches!(&v, Ruling::Hold(m) if m.contains("leave 1 ready of 3") && m.contains("MIN_AVAILABLE=2")),
            "{v:?}"
        );
        // 2 ready and this one is not among them: deleting it leaves 2.
        assert_eq!(
            floor(&w(Kind::Deployment), min, r(3, 2), false),
            Ruling::Pass
        );
        // 50% of 3 = 2: 2 ready, one of them this pod: held.
        let half = MinAvailable::Percent(50);
        assert!(matches!(
            floor(&w(Kind::StatefulSet), half, r(3, 2), true),
            Ruling::Hold(_)
        ));
        assert_eq!(
            floor(&w(Kind::StatefulSet), half, r(3, 3), true),
            Ruling::Pass
        );
        // No replica count (Job, standalone, gone): the floor does not apply.
        assert_eq!(floor(&w(Kind::Job), min, None, true), Ruling::Pass);
    }

    #[test]
    fn a_floor_no_recovery_can_meet_is_refused_not_held() {
        let r = |desired, ready| Some(Replicas { desired, ready });
        // 2 desired, floor 2: deleting any pod leaves at most 1. Holding would make the
        // sender retry for ever.
        let v = floor(&w(Kind::Deployment), MinAvailable::Count(2), r(2, 2), true);
        assert!(
            matches!(&v, Ruling::Refuse(m) if m.contains("can never be met") && m.contains("at best 1")),
            "{v:?}"
        );
        // 100% of anything is never met by a deletion.
        assert!(matches!(
            floor(
                &w(Kind::StatefulSet),
                MinAvailable::Percent(100),
                r(5, 5),
                true
            ),
            Ruling::Refuse(_)
        ));
        // Scaled to zero with a count floor: refused, not held.
        assert!(matches!(
            floor(&w(Kind::Deployment), MinAvailable::Count(1), r(0, 0), false),
            Ruling::Refuse(_)
        ));
        // A rollout's surge (3 ready of 2 desired) lets it through even so.
        assert_eq!(
            floor(&w(Kind::Deployment), MinAvailable::Count(2), r(2, 3), true),
            Ruling::Pass
        );
        // Reachable once replicas recover (3 desired, 2 ready, floor 2): held, retry.
        assert!(matches!(
            floor(&w(Kind::Deployment), MinAvailable::Count(2), r(3, 2), true),
            Ruling::Hold(_)
        ));
    }

    #[test]
    fn slots_are_the_ready_replicas_above_the_floor() {
        let r = |desired, ready| Replicas { desired, ready };
        assert_eq!(slots(MinAvailable::Count(2), r(3, 3)), 1);
        assert_eq!(slots(MinAvailable::Count(2), r(3, 2)), 0);
        assert_eq!(slots(MinAvailable::Count(1), r(5, 5)), 4);
        assert_eq!(slots(MinAvailable::Percent(50), r(4, 4)), 2);
        // A surge (more ready than desired) gives its extra replicas.
        assert_eq!(slots(MinAvailable::Count(2), r(2, 3)), 1);
        assert_eq!(slots(MinAvailable::Count(5), r(3, 3)), 0);
    }

    proptest::proptest! {
        /// The slots are exactly the deletions of ready pods, one after another with the count
        /// taken down each time, that the floor lets through: N concurrent events each holding
        /// a distinct slot leave at least the floor ready.
        #[test]
        fn slots_match_the_floor_applied_one_deletion_at_a_time(
            desired in 0u32..20, ready in 0u32..25, count in 0u32..25, pct in 0u32..=100,
            percent in proptest::bool::ANY,
        ) {
            let min = if percent { MinAvailable::Percent(pct) } else { MinAvailable::Count(count) };
            let w = w(Kind::Deployment);
            let mut passed = 0;
            let mut left = ready;
            while left > 0
                && floor(&w, min, Some(Replicas { desired, ready: left }), true) == Ruling::Pass
            {
                passed += 1;
                left -= 1;
            }
            proptest::prop_assert_eq!(slots(min, Replicas { desired, ready }), passed);
            proptest::prop_assert!(ready - passed >= min.floor(desired).min(ready));
        }
    }

    #[test]
    fn guard_configuration_has_safe_defaults_and_names_bad_variables() {
        let d = GuardConfig::parse(None, None, None, None, None).unwrap();
        assert_eq!(d.skip_owner_kinds, SkipOwnerKinds::default());
        assert_eq!((d.min_available, d.use_eviction), (None, false));
        assert_eq!(d.max_deletions_per_workload.unwrap().to_string(), "3/10m");
        assert_eq!(d.max_deletions.unwrap().to_string(), "20/1m");
        let off = GuardConfig::parse(
            Some("Job"),
            Some("50%"),
            Some(true),
            Some("off"),
            Some("off"),
        )
        .unwrap();
        assert_eq!(
            (off.max_deletions_per_workload, off.max_deletions),
            (None, None)
        );
        assert!(off.skip_owner_kinds.contains(&Kind::Job));
        for bad in ["Deployments", "Job,,StatefulSet", ",", "Rollout"] {
            let e = GuardConfig::parse(Some(bad), None, None, None, None).unwrap_err();
            assert_eq!((e.0, e.1.as_str()), ("SKIP_OWNER_KINDS", bad));
        }
        let e = GuardConfig::parse(None, Some("lots"), None, None, None).unwrap_err();
        assert_eq!(e.0, "MIN_AVAILABLE");
        let e = GuardConfig::parse(None, None, None, None, Some("20/1d")).unwrap_err();
        assert_eq!((e.0, e.1.as_str()), ("MAX_DELETIONS", "20/1d"));
    }

    #[test]
    fn mirror_pods_are_skipped_and_skip_owner_kinds_match_by_kind() {
        let skip: SkipOwnerKinds = "statefulset, Standalone,Rollout.argoproj.io"
            .parse()
            .unwrap();
        assert!(
            matches!(by_kind(&w(Kind::Mirror), &SkipOwnerKinds::default(), Some("n1")),
            Ruling::Skip(m) if m.contains("no effect") && m.contains("n1"))
        );
        assert!(
            matches!(by_kind(&w(Kind::StatefulSet), &skip, None), Ruling::Skip(m) if m.contains("StatefulSet/web"))
        );
        assert!(matches!(
            by_kind(&w(Kind::Standalone), &skip, None),
            Ruling::Skip(_)
        ));
        assert!(matches!(
            by_kind(
                &w(Kind::of_owner("Rollout", "argoproj.io/v1alpha1")),
                &skip,
                None
            ),
            Ruling::Skip(_)
        ));
        // Same kind, another group: not the listed kind.
        assert_eq!(
            by_kind(&w(Kind::of_owner("Rollout", "fake.io/v1")), &skip, None),
            Ruling::Pass
        );
        assert_eq!(
            by_kind(&w(Kind::of_owner("StatefulSet", "fake/v1")), &skip, None),
            Ruling::Pass
        );
        assert_eq!(by_kind(&w(Kind::Deployment), &skip, None), Ruling::Pass);
        assert_eq!(
            by_kind(&w(Kind::Standalone), &SkipOwnerKinds::default(), None),
            Ruling::Pass
        );
    }
}
