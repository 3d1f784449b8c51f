//! The Falco event, as every Falco (0.27+) and Falcosidekick version writes it, and the pod it
//! names. Pure: no I/O.

use std::{fmt, str::FromStr};

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::ident::{ContainerId, InvalidIdent, Namespace, PodName, PodUid};

mod fields;

pub use fields::{
    FieldValue, Fields, MAX_FIELDS, MAX_KEY_BYTES, MAX_LIST_BYTES, MAX_LISTS_BYTES, MAX_TAGS,
    MAX_TEXT_BYTES,
};

/// Falco's priorities, least severe first so that `Ord` reads as "at least as severe".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Debug,
    Informational,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl FromStr for Priority {
    type Err = String;

    /// Any case; `Info` is Falco's legacy spelling of Informational.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Compared in place, not lower-cased into a new String: this runs for every event.
        const NAMES: [(&str, Priority); 9] = [
            ("emergency", Priority::Emergency),
            ("alert", Priority::Alert),
            ("critical", Priority::Critical),
            ("error", Priority::Error),
            ("warning", Priority::Warning),
            ("notice", Priority::Notice),
            ("informational", Priority::Informational),
            ("info", Priority::Informational),
            ("debug", Priority::Debug),
        ];
        let t = s.trim();
        match NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)) {
            Some((_, p)) => Ok(*p),
            // The sender's string, cut (ECHO_MAX) before it is quoted: never echoed whole.
            None => Err(format!(
                "unknown Falco priority {:?} (expected Emergency, Alert, Critical, Error, Warning, \
                 Notice, Informational, Info or Debug)",
                crate::fastfmt::bounded(s, crate::fastfmt::ECHO_MAX)
            )),
        }
    }
}

impl Priority {
    /// The canonical spelling Falco writes in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Priority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One Falco event. Only `rule` and `priority` are required: every other key is absent in some
/// Falco version or output (see docs/wire-formats in the README). Key order is irrelevant.
///
/// Bounded by construction (README, "Limits"): `output_fields` is flat ([`Fields`]); `output`,
/// `hostname`, the tags and every field's text are cut to [`MAX_TEXT_BYTES`], marked as cut.
/// What the decision reads whole (`rule`, `source`) or correlates on (`uuid`, `time`) is
/// kept whole: it costs what the body costs, and the body budget holds it. Keys that are no
/// field of the event are skipped without being read into memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FalcoEvent {
    pub rule: String,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(
        default,
        deserialize_with = "fields::cut_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(
        default,
        deserialize_with = "fields::cut_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub hostname: Option<String>,
    #[serde(
        default,
        deserialize_with = "fields::cut_tags",
        skip_serializing_if = "Option::is_none"
    )]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub output_fields: Fields,
}

/// The pod an event names, with what can prove it is still the same pod. Every part is
/// validated (`ident`): only these values ever reach a policy comparison or a request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    pub namespace: Namespace,
    pub name: PodName,
    /// The container the event happened in (short or full id), when the event names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerId>,
    /// The pod uid, when the event carries one (k8smeta plugin, container plugin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<PodUid>,
}

#[cfg(test)]
impl Target {
    /// `prod/web-0` with this container id and pod uid: the unit tests' target.
    pub(crate) fn prod_web_0(cid: Option<&str>, uid: Option<&str>) -> Target {
        Target {
            namespace: Namespace::parse("ns", "prod").unwrap(),
            name: PodName::parse("pod", "web-0").unwrap(),
            container_id: cid.map(|c| ContainerId::parse("c", c).unwrap().unwrap()),
            uid: uid.map(|u| PodUid::parse("u", u).unwrap()),
        }
    }
}

/// Why an event names no pod we could act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoTarget {
    /// A pod name without a namespace: never assume `default`.
    NoNamespace { name: String },
    /// An identifier that cannot be a Kubernetes one: the event is refused (400), never retried.
    Invalid(InvalidIdent),
    /// Something else, with a human reason.
    Other(String),
}

impl fmt::Display for NoTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoTarget::NoNamespace { name } => write!(
                f,
                "the event names pod {name:?} but no namespace; refusing to guess one"
            ),
            NoTarget::Invalid(e) => e.fmt(f),
            NoTarget::Other(why) => f.write_str(why),
        }
    }
}

impl FalcoEvent {
    /// An output field as a non-empty string. Falco writes `null` for fields without a value
    /// (`<NA>` in the text); numbers are never names.
    pub fn field(&self, key: &str) -> Option<&str> {
        match self.output_fields.get(key) {
            Some(FieldValue::String(s)) if !s.trim().is_empty() && s != "<NA>" => Some(s.as_str()),
            _ => None,
        }
    }

    /// Heap bytes the decoded event holds (what the body budget is charged for it).
    pub fn heap_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        let tags = self.tags.as_ref().map_or(0, |t| {
            t.capacity() * std::mem::size_of::<String>()
                + t.iter().map(String::capacity).sum::<usize>()
        });
        self.rule.capacity()
            + text(&self.uuid)
            + text(&self.output)
            + text(&self.time)
            + text(&self.source)
            + text(&self.hostname)
            + tags
            + self.output_fields.heap_bytes()
    }

    /// The first of `keys` with a value, and which key it was (named in validation errors).
    fn first_keyed<'a>(&'a self, keys: &[&'a str]) -> Option<(&'a str, &'a str)> {
        keys.iter().find_map(|k| self.field(k).map(|v| (*k, v)))
    }

    pub fn is_k8s_audit(&self) -> bool {
        self.source.as_deref() == Some("k8s_audit")
    }

    /// The pod this event names.
    pub fn target(&self) -> Result<Target, NoTarget> {
        let (ns_keys, name_keys): (&[&str], &[&str]) = if self.is_k8s_audit() {
            // Audit events name the object of an API call, which is a pod only for pods.
            match self.field("ka.target.resource") {
                Some("pods") => {}
                Some(other) => {
                    return Err(NoTarget::Other(format!(
                        "k8s_audit event targets {other}, not a pod"
                    )));
                }
                None => {
                    return Err(NoTarget::Other(
                        "k8s_audit event without ka.target.resource".into(),
                    ));
                }
            }
            (
                &["ka.target.namespace"],
                &["ka.target.name", "ka.target.pod.name"],
            )
        } else {
            (
                &["k8s.ns.name", "k8smeta.ns.name"],
                &["k8s.pod.name", "k8smeta.pod.name"],
            )
        };
        let namespace = self.first_keyed(ns_keys);
        let name = self.first_keyed(name_keys);
        // Validate whatever is present before deciding anything from it.
        let namespace = namespace
            .map(|(k, v)| Namespace::parse(k, v))
            .transpose()
            .map_err(NoTarget::Invalid)?;
        let name = name
            .map(|(k, v)| PodName::parse(k, v))
            .transpose()
            .map_err(NoTarget::Invalid)?;
        let raw_container = self.field("container.id");
        let container_id = match raw_container.map(|v| ContainerId::parse("container.id", v)) {
            Some(Ok(c)) => c,
            Some(Err(e)) if namespace.is_some() || name.is_some() => {
                return Err(NoTarget::Invalid(e));
            }
            // Without a pod it decides nothing: LXC containers are named, not hex.
            Some(Err(_)) | None => None,
        };
        let uid = self
            .first_keyed(&["k8smeta.pod.uid", "k8s.pod.uid"])
            .map(|(k, v)| PodUid::parse(k, v))
            .transpose()
            .map_err(NoTarget::Invalid)?;
        match (namespace, name) {
            (Some(namespace), Some(name)) => Ok(Target {
                namespace,
                name,
                container_id,
                uid,
            }),
            (None, Some(name)) => Err(NoTarget::NoNamespace {
                name: name.to_string(),
            }),
            _ if raw_container == Some("host") => Err(NoTarget::Other(
                "host event (container.id=host): no pod to act on".into(),
            )),
            _ if raw_container.is_some() => Err(NoTarget::Other(
                "container event without Kubernetes pod fields (not a pod, or Falco lacks k8s metadata)"
                    .into(),
            )),
            _ => Err(NoTarget::Other("the event names no pod".into())),
        }
    }

    /// When the event happened: `time` (RFC 3339, every Falco version), else `evt.time`
    /// (nanoseconds since the epoch, when the rule outputs it). `None` when neither is usable.
    pub fn occurred_at(&self) -> Option<Timestamp> {
        if let Some(t) = self.time.as_deref()
            && let Ok(ts) = t.trim().parse::<Timestamp>()
        {
            return Some(ts);
        }
        let ns = self.output_fields.get("evt.time")?.as_i64()?;
        Timestamp::from_nanosecond(i128::from(ns)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(source: Option<&str>, fields: serde_json::Value) -> FalcoEvent {
        FalcoEvent {
            rule: "r".into(),
            priority: Priority::Notice,
            uuid: None,
            output: None,
            time: None,
            source: source.map(String::from),
            hostname: None,
            tags: None,
            output_fields: serde_json::from_value(fields).unwrap(),
        }
    }

    #[test]
    fn priority_order_and_spellings() {
        assert!(Priority::Emergency > Priority::Alert);
        assert!(Priority::Critical > Priority::Error);
        assert!(Priority::Notice > Priority::Informational);
        assert!(Priority::Informational > Priority::Debug);
        assert_eq!("INFO".parse::<Priority>(), Ok(Priority::Informational));
        assert_eq!("critical".parse::<Priority>(), Ok(Priority::Critical));
        assert!("severe".parse::<Priority>().is_err());
    }

    #[test]
    fn k8s_fields_name_the_pod_with_container_and_uid() {
        let t = ev(
            Some("syscall"),
            serde_json::json!({"k8s.ns.name": "prod", "k8s.pod.name": "web-1",
                "container.id": "ee97d9c4186f", "k8s.pod.uid": "0f9a4c1e-1111-2222-3333-444455556666"}),
        )
        .target()
        .unwrap();
        assert_eq!((t.namespace.as_str(), t.name.as_str()), ("prod", "web-1"));
        assert_eq!(t.container_id.unwrap().as_str(), "ee97d9c4186f");
        assert_eq!(
            t.uid.unwrap().as_str(),
            "0f9a4c1e-1111-2222-3333-444455556666"
        );
    }

    #[test]
    fn k8smeta_fields_are_a_fallback() {
        let t = ev(
            None,
            serde_json::json!({"k8smeta.ns.name": "a", "k8smeta.pod.name": "p",
                "k8smeta.pod.uid": "0f9a4c1e-1111-2222-3333-444455556666", "k8s.pod.name": null, "k8s.ns.name": null}),
        )
        .target()
        .unwrap();
        assert_eq!(
            (
                t.namespace.as_str(),
                t.name.as_str(),
                t.uid.as_ref().map(|u| u.as_str())
            ),
            ("a", "p", Some("0f9a4c1e-1111-2222-3333-444455556666"))
        );
    }

    #[test]
    fn pod_without_namespace_is_never_defaulted() {
        let e = ev(
            None,
            serde_json::json!({"k8s.pod.name": "alpine", "container.id": "ee97d9c4186f"}),
        );
        assert_eq!(
            e.target(),
            Err(NoTarget::NoNamespace {
                name: "alpine".into()
            })
        );
    }

    #[test]
    fn host_and_plain_container_events_have_no_target() {
        let host = ev(
            None,
            serde_json::json!({"container.id": "host", "k8s.pod.name": null}),
        );
        assert!(host.target().unwrap_err().to_string().contains("host"));
        let docker = ev(None, serde_json::json!({"container.id": "bfb9637a47a6"}));
        assert!(
            docker
                .target()
                .unwrap_err()
                .to_string()
                .contains("without Kubernetes pod")
        );
    }

    #[test]
    fn k8s_audit_targets_only_pods() {
        let pod = ev(
            Some("k8s_audit"),
            serde_json::json!({"ka.target.resource": "pods", "ka.target.namespace": "n",
                "ka.target.name": "p", "ka.target.subresource": "exec"}),
        );
        let t = pod.target().unwrap();
        assert_eq!((t.namespace.as_str(), t.name.as_str()), ("n", "p"));
        assert_eq!(t.container_id, None);
        let sa = ev(
            Some("k8s_audit"),
            serde_json::json!({"ka.target.resource": "serviceaccounts",
                "ka.target.namespace": "n", "ka.target.name": "default"}),
        );
        assert!(
            sa.target()
                .unwrap_err()
                .to_string()
                .contains("serviceaccounts")
        );
    }

    #[test]
    fn hostile_identifiers_are_invalid_naming_the_field() {
        for (field, value) in [
            ("k8s.ns.name", "kube%2Dsystem"),
            ("k8s.ns.name", "a/../kube-system"),
            ("k8s.pod.name", "web#0"),
            ("k8s.pod.name", "web?x"),
            ("k8smeta.pod.uid", "not-a-uid"),
            ("container.id", "ZZZ"),
        ] {
            let mut fields = serde_json::json!({"k8s.ns.name": "prod", "k8s.pod.name": "web-0"});
            fields[field] = serde_json::json!(value);
            match ev(None, fields).target() {
                Err(NoTarget::Invalid(e)) => assert_eq!(e.field, field),
                other => panic!("{field}={value}: {other:?}"),
            }
        }
        // k8s_audit names are validated too.
        let audit = ev(
            Some("k8s_audit"),
            serde_json::json!({"ka.target.resource": "pods", "ka.target.namespace": "Kube-System",
                "ka.target.name": "p"}),
        );
        assert!(
            matches!(audit.target(), Err(NoTarget::Invalid(e)) if e.field == "ka.target.namespace")
        );
    }

    #[test]
    fn event_time_from_time_or_evt_time() {
        let mut e = ev(
            None,
            serde_json::json!({"evt.time": 1610667584834631763u64}),
        );
        assert_eq!(
            e.occurred_at().unwrap().to_string(),
            "2021-01-14T23:39:44.834631763Z"
        );
        e.time = Some("2021-01-14T23:39:45.5Z".into());
        assert_eq!(e.occurred_at().unwrap().as_second(), 1610667585);
        e.time = Some("yesterday".into());
        e.output_fields = Fields::default();
        assert_eq!(e.occurred_at(), None);
    }

    #[test]
    fn non_string_and_na_values_are_not_names() {
        let e = ev(
            None,
            serde_json::json!({"k8s.ns.name": 42, "k8s.pod.name": "<NA>"}),
        );
        assert!(e.target().is_err());
    }

    #[test]
    fn a_container_id_of_another_runtime_without_a_pod_is_no_invalid_event() {
        // LXC and libvirt-lxc containers are named, not hex: without pod fields such an event is
        // simply not about a pod (skipped), not a malformed one (400, dead-lettered).
        let e = ev(
            Some("syscall"),
            serde_json::json!({"container.id": "web-lxc", "k8s.pod.name": null}),
        );
        let t = e.target();
        assert!(
            matches!(&t, Err(NoTarget::Other(why)) if why.contains("without Kubernetes pod")),
            "{t:?}"
        );
        // With a pod named, the same container id is refused.
        let e = ev(
            Some("syscall"),
            serde_json::json!({"container.id": "web-lxc", "k8s.ns.name": "prod", "k8s.pod.name": "web-0"}),
        );
        assert!(matches!(e.target(), Err(NoTarget::Invalid(i)) if i.field == "container.id"));
    }
}
