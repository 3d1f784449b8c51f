//! A key given twice in one JSON object makes a body ambiguous: serde_json keeps the last value,
//! other readers of the same body (Argo Events' filters, jq) the first, so what a filter let
//! through and what the function acts on could differ. `decode` refuses such a body; this is
//! its check, one pass over the JSON that builds no tree (only the keys of the object being
//! read are kept, borrowed from the body unless escaped).

use std::{borrow::Cow, cell::RefCell, collections::HashSet, fmt};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Keys of one object compared one by one up to this many; a hash set beyond (bounded work
/// for an object of many keys).
const LINEAR: usize = 16;
/// The duplicated key as named in the error, at most this many bytes (marked when cut).
const MAX_NAMED: usize = 64;

/// The duplicated key (shortened) if `json` holds one. JSON that is not valid is no concern
/// here: `Ok`, and the parse that follows says what is wrong with it.
pub(crate) fn check(json: &[u8]) -> Result<(), String> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(json);
    let seed = Unique { found: &found };
    match seed.deserialize(&mut de) {
        Err(_) => found.into_inner().map_or(Ok(()), Err),
        Ok(()) => Ok(()),
    }
}

#[derive(Clone, Copy)]
struct Unique<'a> {
    found: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: Vec<Key<'de>> = Vec::new();
        let mut many: HashSet<Key<'de>> = HashSet::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let seen = if many.is_empty() {
                keys.contains(&key)
            } else {
                many.contains(&key)
            };
            if seen {
                *self.found.borrow_mut() =
                    Some(crate::fastfmt::bounded(&key.0, MAX_NAMED).into_owned());
                return Err(de::Error::custom("duplicate key"));
            }
            if many.is_empty() && keys.len() < LINEAR {
                keys.push(key);
            } else {
                many.extend(keys.drain(..));
                many.insert(key);
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// A key, borrowed from the body unless it was escaped.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_key_twice_in_one_object_is_named_anywhere() {
        for (json, key) in [
            (r#"{"rule":"a","rule":"b"}"#, "rule"),
            (
                r#"{"x":1,"y":{"k8s.ns.name":"a","k8s.ns.name":"b"}}"#,
                "k8s.ns.name",
            ),
            (r#"[{"a":1},{"b":[{"c":1,"c":2}]}]"#, "c"),
            // The same key once escaped: serde_json reads both as "ab".
            (r#"{"ab":1,"a\u0062":2}"#, "ab"),
        ] {
            assert_eq!(check(json.as_bytes()), Err(key.to_string()), "{json}");
        }
        let long = "k".repeat(500);
        let e = check(format!(r#"{{"{long}":1,"{long}":2}}"#).as_bytes()).unwrap_err();
        assert!(
            e.len() == MAX_NAMED && e.ends_with(crate::fastfmt::CUT_MARK),
            "{e}"
        );
    }

    #[test]
    fn the_same_key_in_different_objects_and_invalid_json_pass() {
        for json in [
            r#"{"a":{"a":1},"b":{"a":2},"c":[{"a":1},{"a":1}]}"#,
            r#"{"a":1,"b""#,
            "not json",
            "",
        ] {
            assert_eq!(check(json.as_bytes()), Ok(()), "{json}");
        }
    }

    proptest! {
        /// The check agrees with counting the keys of every object, past the linear part.
        #[test]
        fn agrees_with_counting(keys in prop::collection::vec("[a-c]{1,2}", 0..40)) {
            let body = format!(
                "{{{}}}",
                keys.iter().map(|k| format!("{k:?}:[{{{k:?}:1}}]")).collect::<Vec<_>>().join(",")
            );
            let unique: HashSet<&String> = keys.iter().collect();
            let first_dup = keys
                .iter()
                .enumerate()
                .find(|(i, k)| keys[..*i].contains(k))
                .map(|(_, k)| k.clone());
            prop_assert_eq!(unique.len() == keys.len(), first_dup.is_none());
            prop_assert_eq!(check(body.as_bytes()), first_dup.map_or(Ok(()), Err));
        }
    }
}
