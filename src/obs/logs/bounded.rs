//! The event in a failure log line (kept there for replay), bounded in size without losing what
//! identifies it.

use serde_json::Value;

use crate::fastfmt::{CUT_MARK, ECHO_MAX, bounded_string};

/// At most this much of an event goes into the failure log line (the event kept for replay):
/// a Falco event is 1-3 KiB; a larger one is cut, largest fields first, never its identifiers.
pub const LOG_EVENT_MAX_BYTES: usize = 8 * 1024;

/// Strings are cut down to this much at the least before whole fields are dropped.
const MIN_KEPT: usize = 64;

/// Top-level keys and `output_fields` key prefixes that identify the event and its pod: never
/// cut, so that a replay or a correlation still works from a bounded line.
const ID_KEYS: &[&str] = &["rule", "priority", "uuid", "time", "source", "hostname"];
const ID_FIELDS: &[&str] = &[
    "k8s.ns.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.pod.id",
    "k8smeta.",
    "ka.target.",
    "container.id",
    "evt.time",
];

/// Identifying keys are short: a long key with an identifying prefix is the sender's.
const ID_KEY_MAX: usize = 64;

fn is_id_field(key: &str) -> bool {
    key.len() <= ID_KEY_MAX && ID_FIELDS.iter().any(|p| key.starts_with(p))
}

/// An identifier is kept, but no longer than any echoed string ([`ECHO_MAX`]): real ones
/// (names ≤ 253, uids, times) are shorter.
fn bound_id(v: &mut Value) {
    if let Value::String(s) = v
        && s.len() > ECHO_MAX
    {
        *s = bounded_string(std::mem::take(s), ECHO_MAX);
    }
}

/// The event as one JSON line of at most `max` bytes (when its identifiers fit): identifiers
/// longer than [`ECHO_MAX`] are cut to it, then the largest string fields (`output`, then
/// `output_fields` values) are cut, marked with [`CUT_MARK`]; if that is not enough, the largest
/// non-identifying `output_fields` entries are dropped, and `"_cut_fields"` says how many.
pub fn bounded_event<T: serde::Serialize>(event: &T, max: usize) -> String {
    let whole = serde_json::to_string(event).unwrap_or_default();
    if whole.len() <= max {
        return whole;
    }
    let Ok(Value::Object(mut top)) = serde_json::to_value(event) else {
        return crate::fastfmt::bounded(&whole, max).into_owned();
    };
    for (k, v) in top.iter_mut() {
        if ID_KEYS.contains(&k.as_str()) {
            bound_id(v);
        } else if let (Value::Object(fields), "output_fields") = (v, k.as_str()) {
            fields
                .iter_mut()
                .filter(|(fk, _)| is_id_field(fk))
                .for_each(|(_, fv)| bound_id(fv));
        }
    }
    let mut size = serde_json::to_string(&top).map_or(0, |t| t.len());
    // Cut strings, largest first, until the line fits or none is worth cutting.
    while size > max {
        let mut largest: Option<(usize, &mut String)> = None;
        for (k, v) in top.iter_mut() {
            match v {
                Value::String(s)
                    if !ID_KEYS.contains(&k.as_str())
                        && largest.as_ref().is_none_or(|(n, _)| s.len() > *n) =>
                {
                    largest = Some((s.len(), s));
                }
                Value::Object(fields) if k == "output_fields" => {
                    for (fk, fv) in fields.iter_mut() {
                        if let Value::String(s) = fv
                            && !is_id_field(fk)
                            && largest.as_ref().is_none_or(|(n, _)| s.len() > *n)
                        {
                            largest = Some((s.len(), s));
                        }
                    }
                }
                _ => {}
            }
        }
        let Some((len, s)) = largest.filter(|(n, _)| *n > MIN_KEPT + 24) else {
            break;
        };
        let keep = len.saturating_sub(size - max + 24).max(MIN_KEPT);
        *s = bounded_string(std::mem::take(s), keep + CUT_MARK.len());
        size = serde_json::to_string(&top).map_or(0, |t| t.len());
    }
    // Still too large (many fields): drop the largest non-identifying output fields, in one
    // pass over their sizes (each entry costs about `"key":value,`).
    let mut dropped = 0;
    if size > max
        && let Some(Value::Object(fields)) = top.get_mut("output_fields")
    {
        let mut sizes: Vec<(usize, String)> = fields
            .iter()
            .filter(|(k, _)| !is_id_field(k))
            .map(|(k, v)| (k.len() + v.to_string().len() + 4, k.clone()))
            .collect();
        sizes.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        for (n, key) in sizes {
            if size + 24 <= max {
                break;
            }
            fields.remove(&key);
            size = size.saturating_sub(n);
            dropped += 1;
        }
    }
    if dropped > 0 {
        top.insert("_cut_fields".into(), dropped.into());
    }
    serde_json::to_string(&top).unwrap_or(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_events_are_logged_whole() {
        let ev = serde_json::json!({"rule": "r", "priority": "Notice", "output": "x"});
        assert_eq!(bounded_event(&ev, 1024), ev.to_string());
    }

    #[test]
    fn large_events_are_cut_largest_fields_first_never_identifiers() {
        let ev = serde_json::json!({
            "rule": "Terminal shell in container",
            "priority": "Critical",
            "uuid": "6d5f2a0c-8b1e-4c3a-9f47-2e8d1b6a0c95",
            "output": "o".repeat(20_000),
            "output_fields": {
                "k8s.ns.name": "prod",
                "k8s.pod.name": "web-1",
                "container.id": "ee97d9c4186f",
                "proc.cmdline": "c".repeat(9_000),
                "proc.name": "bash",
            },
        });
        let line = bounded_event(&ev, LOG_EVENT_MAX_BYTES);
        assert!(line.len() <= LOG_EVENT_MAX_BYTES, "{}", line.len());
        let v: Value = serde_json::from_str(&line).unwrap();
        for key in ["rule", "priority", "uuid"] {
            assert_eq!(v[key], ev[key]);
        }
        for key in ["k8s.ns.name", "k8s.pod.name", "container.id", "proc.name"] {
            assert_eq!(v["output_fields"][key], ev["output_fields"][key], "{key}");
        }
        assert!(v["output"].as_str().unwrap().ends_with(CUT_MARK));
        assert!(
            v["output_fields"]["proc.cmdline"]
                .as_str()
                .unwrap()
                .ends_with(CUT_MARK)
        );
    }

    #[test]
    fn identifiers_are_kept_but_bounded_and_long_keys_are_no_identifiers() {
        let ev = serde_json::json!({
            "rule": "r".repeat(1 << 20),
            "priority": "Critical",
            "output_fields": {
                "k8s.pod.name": "p".repeat(100_000),
                format!("k8smeta.{}", "k".repeat(100_000)): "v",
                "k8s.ns.name": "prod",
            },
        });
        let line = bounded_event(&ev, LOG_EVENT_MAX_BYTES);
        assert!(line.len() <= LOG_EVENT_MAX_BYTES, "{}", line.len());
        let v: Value = serde_json::from_str(&line).unwrap();
        let rule = v["rule"].as_str().unwrap();
        assert!(rule.len() == ECHO_MAX && rule.ends_with(CUT_MARK), "{rule}");
        assert_eq!(v["output_fields"]["k8s.ns.name"], "prod");
        assert!(v["output_fields"]["k8s.pod.name"].as_str().unwrap().len() <= ECHO_MAX);
    }

    #[test]
    fn events_of_many_fields_drop_fields_but_keep_identifiers() {
        let mut fields = serde_json::Map::new();
        for i in 0..2000 {
            fields.insert(format!("custom.field{i}"), Value::from(i));
        }
        fields.insert("k8s.pod.name".into(), "web-1".into());
        fields.insert("k8s.ns.name".into(), "prod".into());
        let ev = serde_json::json!({"rule": "r", "priority": "Notice", "output_fields": fields});
        let line = bounded_event(&ev, LOG_EVENT_MAX_BYTES);
        assert!(line.len() <= LOG_EVENT_MAX_BYTES, "{}", line.len());
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["output_fields"]["k8s.pod.name"], "web-1");
        assert_eq!(v["output_fields"]["k8s.ns.name"], "prod");
        assert!(v["_cut_fields"].as_u64().unwrap() > 0);
    }
}
