//! Kubernetes identifiers taken from an event, validated before anything else sees them. Every
//! field of an event is attacker-controlled: a namespace such as `kube%2Dsystem` or `a/../b`
//! would otherwise reach the request path, where the API server decodes what kube-rs does not
//! encode. Only these types cross into `policy`, `verdict` and `action`. Pure.

use std::fmt;

use serde::Serialize;

/// Why an identifier is refused; `field` is the event field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {why}")]
pub struct InvalidIdent {
    pub field: String,
    /// The offending value, shortened and escaped for messages and logs.
    pub value: String,
    pub why: String,
}

/// How much of a refused value its error shows, in bytes (cut and marked as cut).
const SHOWN_MAX: usize = 80;

fn invalid(field: &str, value: &str, why: impl Into<String>) -> InvalidIdent {
    InvalidIdent {
        field: field.to_string(),
        value: crate::fastfmt::bounded(value, SHOWN_MAX).into_owned(),
        why: why.into(),
    }
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("{} characters, at most 63 allowed", s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "character {c:?} is not allowed (only lowercase letters, digits and '-')"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!("{} characters, at most 253 allowed", s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "character {c:?} is not allowed (only lowercase letters, digits, '-' and '.')"
        ));
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err("empty label (leading, trailing or double '.')".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("each '.'-separated part must start and end with a letter or digit".into());
        }
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            /// Validates `value` (read from `field`, named in the error).
            pub fn parse(field: &str, value: &str) -> Result<$ty, InvalidIdent> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(value).map_err(|why| invalid(field, value, why))?;
                Ok($ty(value.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type!(
    /// A namespace name (DNS-1123 label).
    Namespace,
    dns1123_label
);
name_type!(
    /// A pod name (DNS-1123 subdomain).
    PodName,
    dns1123_subdomain
);

name_type!(
    /// The name of a namespaced object other than a pod (an owner: a ReplicaSet, a Job ...):
    /// a DNS-1123 subdomain, the widest rule Kubernetes applies to the kinds we look up.
    ObjectName,
    dns1123_subdomain
);

/// A pod uid: a UUID in its hyphenated form, kept lowercase so comparisons are exact. (Every
/// object's uid has this form: it is also the type of an owner's uid.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PodUid(String);

impl PodUid {
    pub fn parse(field: &str, value: &str) -> Result<PodUid, InvalidIdent> {
        let hyphens_at = [8, 13, 18, 23];
        let ok = value.len() == 36
            && value.char_indices().all(|(i, c)| {
                if hyphens_at.contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        if !ok {
            return Err(invalid(
                field,
                value,
                "not a UUID (8-4-4-4-12 hexadecimal digits)",
            ));
        }
        Ok(PodUid(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PodUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A container id: 12 (Falco's short form) to 64 lowercase hexadecimal characters, stored
/// without the runtime scheme (`containerd://`, `docker://`, `cri-o://`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ContainerId(String);

impl ContainerId {
    /// `Ok(None)` for Falco's "no container" values: empty and `host`.
    pub fn parse(field: &str, value: &str) -> Result<Option<ContainerId>, InvalidIdent> {
        if value.is_empty() || value == "host" {
            return Ok(None);
        }
        let hex = match value.split_once("://") {
            Some((scheme, rest)) => {
                let scheme_ok = !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !scheme_ok {
                    return Err(invalid(field, value, "unknown runtime scheme"));
                }
                rest
            }
            None => value,
        };
        if !(12..=64).contains(&hex.len()) {
            return Err(invalid(
                field,
                value,
                format!("{} hex digits, expected 12 to 64", hex.len()),
            ));
        }
        if !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(invalid(
                field,
                value,
                "only lowercase hexadecimal digits are allowed",
            ));
        }
        Ok(Some(ContainerId(hex.to_string())))
    }

    /// A container id as the kubelet reports it (`containerd://<64 hex>`); `None` when empty
    /// or not hexadecimal (a status written by something other than a kubelet).
    pub fn from_status(value: &str) -> Option<ContainerId> {
        ContainerId::parse("containerID", value).ok().flatten()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Falco reports the 12-character prefix; the kubelet the full id: one is a prefix of the other.
    pub fn matches(&self, other: &ContainerId) -> bool {
        self.0.starts_with(&other.0) || other.0.starts_with(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every hostile class we try: encodings, path characters, whitespace, control characters,
    /// case, length, non-ASCII, look-alikes.
    pub const HOSTILE: &[&str] = &[
        "kube%2Dsystem",
        "kube-system%00",
        "kube-system/",
        "a/../kube-system",
        "..",
        ".",
        "kube-system#x",
        "kube-system?x=1",
        " kube-system",
        "kube-system ",
        "kube\tsystem",
        "kube-system\n",
        "kube\u{0}system",
        "Kube-System",
        "kube-ѕystem", // Cyrillic ѕ
        "kube_system",
        "kube-system\u{200b}",
        "-kube-system",
        "kube-system-",
        "\\kube-system",
    ];

    #[test]
    fn namespaces_are_dns_labels() {
        for ok in ["a", "kube-system", "ns-0", &"a".repeat(63)] {
            assert!(Namespace::parse("k8s.ns.name", ok).is_ok(), "{ok}");
        }
        for bad in HOSTILE
            .iter()
            .copied()
            .chain(["", "a.b", &"a".repeat(64) as &str])
        {
            let e = Namespace::parse("k8s.ns.name", bad).unwrap_err();
            assert_eq!(e.field, "k8s.ns.name");
            assert!(e.to_string().contains("invalid k8s.ns.name"), "{e}");
        }
    }

    #[test]
    fn pod_names_are_dns_subdomains() {
        for ok in ["web-0", "a.b-c.d", &"a".repeat(253) as &str] {
            assert!(PodName::parse("k8s.pod.name", ok).is_ok(), "{ok}");
        }
        for bad in HOSTILE.iter().copied().chain([
            "",
            "a..b",
            ".a",
            "a.",
            "a.-b",
            &"a".repeat(254) as &str,
        ]) {
            assert!(PodName::parse("k8s.pod.name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uids_are_uuids_compared_lowercase() {
        let u = PodUid::parse("k8s.pod.uid", "0F9A4C1E-1111-2222-3333-444455556666").unwrap();
        assert_eq!(u.as_str(), "0f9a4c1e-1111-2222-3333-444455556666");
        for bad in [
            "",
            "u-1",
            "0f9a4c1e111122223333444455556666",
            "{0f9a4c1e-1111-2222-3333-444455556666}",
            "0f9a4c1e-1111-2222-3333-44445555666g",
            "0f9a4c1e-1111-2222-3333-4444555566667",
        ] {
            assert!(PodUid::parse("k8s.pod.uid", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_ids_are_hex_after_an_optional_scheme() {
        let full = "ee97d9c4186f0123456789abcdef0123456789abcdef0123456789abcdef0123";
        let short = ContainerId::parse("container.id", "ee97d9c4186f")
            .unwrap()
            .unwrap();
        for scheme in ["", "containerd://", "docker://", "cri-o://"] {
            let c = ContainerId::parse("container.id", &format!("{scheme}{full}"))
                .unwrap()
                .unwrap();
            assert_eq!(c.as_str(), full);
            assert!(c.matches(&short) && short.matches(&c));
        }
        assert_eq!(ContainerId::parse("container.id", "host"), Ok(None));
        assert_eq!(ContainerId::parse("container.id", ""), Ok(None));
        for bad in [
            "ee97d9c4186",
            "EE97D9C4186F",
            "ee97d9c4186g",
            &"a".repeat(65) as &str,
            "ee97d9c4186f/..",
            "://ee97d9c4186f",
            "Docker://ee97d9c4186f",
        ] {
            assert!(ContainerId::parse("container.id", bad).is_err(), "{bad:?}");
        }
        let other = ContainerId::parse("c", "0123456789ab").unwrap().unwrap();
        assert!(!other.matches(&short));
    }

    #[test]
    fn messages_are_bounded() {
        let e = Namespace::parse("k8s.ns.name", &"x".repeat(10_000)).unwrap_err();
        assert!(e.to_string().len() < 300, "{e}");
    }
}
