//! A Falco event's `output_fields`, bounded as it is read: Falco writes a flat object whose
//! values are strings, numbers, booleans, `null`, or arrays of those for list fields (the
//! k8saudit plugin's `ka.req.pod.containers.*`). Nothing deeper is built: a nested object or
//! array is refused naming its field, and so are more than [`MAX_FIELDS`] fields or a key
//! longer than [`MAX_KEY_BYTES`]. Long text is cut, never refused: a true event with a long
//! command line is still a true event.

use std::{fmt, io::Write};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Number, value::RawValue};

/// Fields of one event. Real rules output 2 to about 30 (the fixtures: at most 21); Falco's
/// own metrics snapshot outputs one per rule counter and two per CPU with per-CPU counters
/// (a few hundred on a large node). Each costs about 80 bytes beyond its text.
pub const MAX_FIELDS: usize = 1024;
/// A field's name: Falco's are short; the longest real ones carry a label key
/// (`k8s.pod.label[<prefix>/<name>]`, at most 253 + 1 + 63 bytes of key).
pub const MAX_KEY_BYTES: usize = 512;
/// A string (a field's value, `output`, `hostname`, a tag) beyond this is cut, marked as cut.
/// Falco's modern eBPF driver captures at most 4096 bytes of a process's arguments, so a real
/// command line fits; the Event note and the log line keep less.
pub const MAX_TEXT_BYTES: usize = 4096;
/// A list field's JSON text: beyond it, the list keeps its first elements and a last element
/// says how many were cut.
pub const MAX_LIST_BYTES: usize = 4096;
/// All list fields of one event together: lists are the one shape whose elements cost more
/// in memory than in the body (a reader that builds a JSON tree of them pays ~32 bytes an
/// element), so their total is bounded too.
pub const MAX_LISTS_BYTES: usize = 16 * 1024;
/// Tags of one event: Falco's rules carry a handful.
pub const MAX_TAGS: usize = 64;

/// How much of a field's name an error shows, in bytes.
const NAMED: usize = 64;

/// One value of `output_fields`.
#[derive(Debug, Clone)]
pub enum FieldValue {
    /// `null`: Falco's `<NA>`.
    Null,
    Bool(bool),
    Number(Number),
    /// At most [`MAX_TEXT_BYTES`] of the sender's text, then `…[cut N bytes]`.
    String(String),
    /// The JSON text of an array of scalars (compact), at most [`MAX_LIST_BYTES`] of elements
    /// and then `"…[cut N elements]"` as the last one.
    List(Box<RawValue>),
}

impl PartialEq for FieldValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (FieldValue::Null, FieldValue::Null) => true,
            (FieldValue::Bool(a), FieldValue::Bool(b)) => a == b,
            (FieldValue::Number(a), FieldValue::Number(b)) => a == b,
            (FieldValue::String(a), FieldValue::String(b)) => a == b,
            (FieldValue::List(a), FieldValue::List(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl FieldValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            FieldValue::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            FieldValue::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, FieldValue::Null)
    }

    fn heap_bytes(&self) -> usize {
        match self {
            FieldValue::String(s) => s.capacity(),
            FieldValue::List(l) => l.get().len(),
            _ => 0,
        }
    }
}

/// JSON text, as Falco wrote it (strings quoted).
impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Null => f.write_str("null"),
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::Number(n) => write!(f, "{n}"),
            FieldValue::String(s) => write!(f, "{}", serde_json::Value::from(s.as_str())),
            FieldValue::List(l) => f.write_str(l.get()),
        }
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::String(s.into())
    }
}

impl From<i64> for FieldValue {
    fn from(n: i64) -> Self {
        FieldValue::Number(n.into())
    }
}

impl Serialize for FieldValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::Null => s.serialize_unit(),
            FieldValue::Bool(b) => s.serialize_bool(*b),
            FieldValue::Number(n) => n.serialize(s),
            FieldValue::String(t) => s.serialize_str(t),
            FieldValue::List(l) => l.serialize(s),
        }
    }
}

/// `output_fields`, sorted by name (as serde_json's map writes them), each name once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Vec<(Box<str>, FieldValue)>);

impl Fields {
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Sets `key` (tests and tools; the decoder reads the sender's fields).
    pub fn insert(&mut self, key: &str, value: FieldValue) {
        match self.0.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key.into(), value)),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(Box<str>, FieldValue)>()
            + self
                .0
                .iter()
                .map(|(k, v)| k.len() + v.heap_bytes())
                .sum::<usize>()
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (&**k, v)))
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

/// A name as shown in an error: quoted, cut (and marked) past [`NAMED`] bytes.
fn named(key: &str) -> String {
    format!("{:?}", crate::fastfmt::bounded(key, NAMED))
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of Falco output fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Vec::new();
        let mut lists_left = MAX_LISTS_BYTES;
        while let Some(key) = map.next_key::<Key>()? {
            let key = key.0;
            if fields.len() == MAX_FIELDS {
                return Err(de::Error::custom(format_args!(
                    "output_fields has more than {MAX_FIELDS} fields (from {} on): a Falco \
                     rule outputs a few dozen",
                    named(&key)
                )));
            }
            let value = map.next_value_seed(ValueSeed {
                key: &key,
                lists_left: &mut lists_left,
            })?;
            fields.push((key, value));
        }
        fields.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = fields.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(de::Error::custom(format_args!(
                "the key {} appears twice in output_fields",
                named(&w[0].0)
            )));
        }
        fields.shrink_to_fit();
        Ok(Fields(fields))
    }
}

/// A field's name, refused past [`MAX_KEY_BYTES`] before it is copied.
struct Key(Box<str>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                if s.len() > MAX_KEY_BYTES {
                    return Err(E::custom(format_args!(
                        "output_fields name {} is {} bytes, over {MAX_KEY_BYTES}: no Falco \
                         field is named so",
                        named(s),
                        s.len()
                    )));
                }
                Ok(Key(s.into()))
            }
        }
        d.deserialize_str(V)
    }
}

/// One value of the field `key`.
struct ValueSeed<'k> {
    key: &'k str,
    lists_left: &'k mut usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = FieldValue;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FieldValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = FieldValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean, null or list of those")
    }

    fn visit_unit<E>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<FieldValue, E> {
        Ok(FieldValue::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<FieldValue, E> {
        Ok(FieldValue::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<FieldValue, E> {
        Ok(FieldValue::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<FieldValue, E> {
        Number::from_f64(n)
            .map(FieldValue::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, s: &str) -> Result<FieldValue, E> {
        Ok(FieldValue::String(cut(s)))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<FieldValue, A::Error> {
        Err(nested(self.key, "an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldValue, A::Error> {
        let mut list = List {
            key: self.key,
            text: vec![b'['],
            room: MAX_LIST_BYTES.min(*self.lists_left),
            kept: 0,
            cut: 0,
        };
        while seq.next_element_seed(&mut list)?.is_some() {}
        let text = list.finish();
        *self.lists_left = self.lists_left.saturating_sub(text.len());
        RawValue::from_string(text)
            .map(FieldValue::List)
            .map_err(de::Error::custom)
    }
}

fn nested<E: de::Error>(key: &str, what: &str) -> E {
    E::custom(format_args!(
        "output_fields {} holds {what}: Falco's fields are strings, numbers, booleans, null or \
         lists of those",
        named(key)
    ))
}

/// At most [`MAX_TEXT_BYTES`] of `s` (on a character boundary), and how much was cut.
fn cut(s: &str) -> String {
    let kept = crate::fastfmt::cut(s, MAX_TEXT_BYTES);
    if kept.len() == s.len() {
        return s.to_owned();
    }
    format!("{kept}…[cut {} bytes]", s.len() - kept.len())
}

/// The elements of a list field, written as compact JSON while they fit.
struct List<'k> {
    key: &'k str,
    text: Vec<u8>,
    /// Bytes the text may hold, brackets included.
    room: usize,
    kept: usize,
    cut: usize,
}

impl List<'_> {
    /// Appends one scalar (as `write` writes it, `len` bytes at the least) if it fits.
    fn push(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        if self.cut == 0 && self.text.len() + len + 2 <= self.room {
            let before = self.text.len();
            if self.kept > 0 {
                self.text.push(b',');
            }
            write(&mut self.text);
            if self.text.len() < self.room {
                self.kept += 1;
                return;
            }
            self.text.truncate(before);
        }
        self.cut += 1;
    }

    fn finish(mut self) -> String {
        if self.cut > 0 {
            if self.kept > 0 {
                self.text.push(b',');
            }
            let _ = write!(self.text, "\"…[cut {} elements]\"", self.cut);
        }
        self.text.push(b']');
        // Only serde_json's own output and ASCII went in.
        String::from_utf8(self.text).unwrap_or_default()
    }
}

impl<'de> DeserializeSeed<'de> for &mut List<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut List<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.push(4, |t| t.extend_from_slice(b"null"));
        Ok(())
    }
    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.push(4, |t| {
            let _ = serde_json::to_writer(t, &b);
        });
        Ok(())
    }
    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.push(1, |t| {
            let _ = serde_json::to_writer(t, &n);
        });
        Ok(())
    }
    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.push(1, |t| {
            let _ = serde_json::to_writer(t, &n);
        });
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(), E> {
        if !n.is_finite() {
            return Err(E::custom("a number that is not finite"));
        }
        self.push(1, |t| {
            let _ = serde_json::to_writer(t, &n);
        });
        Ok(())
    }
    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        // Quoted, at least as long as the text: a long string is counted, never copied.
        self.push(s.len() + 2, |t| {
            let _ = serde_json::to_writer(t, s);
        });
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(nested(self.key, "a list in a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(nested(self.key, "an object in a list"))
    }
}

/// `output` and `hostname`: cut to [`MAX_TEXT_BYTES`]; `null` is `None`.
pub(super) fn cut_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Text>::deserialize(d)?.map(|t| t.0))
}

/// `tags`: strings, each cut to [`MAX_TEXT_BYTES`]; beyond [`MAX_TAGS`] the rest are counted
/// in a last tag `…[cut N tags]`.
pub(super) fn cut_tags<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut tags = Vec::new();
            let mut cut = 0usize;
            while let Some(tag) = seq.next_element::<Text>()? {
                if tags.len() < MAX_TAGS {
                    tags.push(tag.0);
                } else {
                    cut += 1;
                }
            }
            if cut > 0 {
                tags.push(format!("…[cut {cut} tags]"));
            }
            Ok(tags)
        }
    }
    struct Tags(Vec<String>);
    impl<'de> Deserialize<'de> for Tags {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_seq(V).map(Tags)
        }
    }
    Ok(Option::<Tags>::deserialize(d)?.map(|t| t.0))
}

/// A string cut as it is read: the sender's whole text is never copied.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, s: &str) -> Result<Text, E> {
                Ok(Text(cut(s)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fields(json: &str) -> Result<Fields, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn scalars_and_lists_of_scalars_are_kept_as_falco_wrote_them() {
        let f = fields(
            r#"{"k8s.pod.name":"web-1","evt.time":1610667584834631763,"proc.tty":0,
            "fd.num":-1,"falco.evts_rate_sec":5224.84,"container.privileged":true,"proc.pname":null,
            "ka.req.pod.containers.image":["nginx:1.27", "busybox"],"ka.req.pod.containers.privileged":[true,null,1.5,-2]}"#,
        )
        .unwrap();
        assert_eq!(f.len(), 9);
        assert_eq!(
            f.get("k8s.pod.name").and_then(FieldValue::as_str),
            Some("web-1")
        );
        assert_eq!(
            f.get("evt.time").and_then(FieldValue::as_u64),
            Some(1610667584834631763)
        );
        assert_eq!(f.get("fd.num").and_then(FieldValue::as_i64), Some(-1));
        assert!(f.get("proc.pname").unwrap().is_null());
        assert_eq!(
            f.get("ka.req.pod.containers.image").unwrap().to_string(),
            r#"["nginx:1.27","busybox"]"#
        );
        assert_eq!(
            f.get("ka.req.pod.containers.privileged")
                .unwrap()
                .to_string(),
            "[true,null,1.5,-2]"
        );
        // Written back as serde_json writes a map: sorted by name, the same values.
        let again: serde_json::Value = serde_json::to_value(&f).unwrap();
        assert_eq!(again["ka.req.pod.containers.image"][1], "busybox");
        assert_eq!(again["falco.evts_rate_sec"], 5224.84);
    }

    #[test]
    fn nesting_is_refused_naming_the_field() {
        for (json, what) in [
            (r#"{"a":1,"ka.req.pod":{"x":1}}"#, "an object"),
            (
                r#"{"ka.req.pod.containers.image":[["x"]]}"#,
                "a list in a list",
            ),
            (
                r#"{"ka.req.pod.containers.image":["x",{"y":1}]}"#,
                "an object in a list",
            ),
        ] {
            let e = fields(json).unwrap_err();
            assert!(e.contains(what), "{json}: {e}");
            assert!(e.contains("\"ka.req.pod"), "{json}: {e}");
        }
    }

    #[test]
    fn too_many_fields_or_a_key_too_long_are_refused_naming_the_field() {
        let many = |n: usize| {
            let f: Vec<String> = (0..n).map(|i| format!(r#""f{i:04}":{i}"#)).collect();
            format!("{{{}}}", f.join(","))
        };
        assert_eq!(fields(&many(MAX_FIELDS)).unwrap().len(), MAX_FIELDS);
        let e = fields(&many(MAX_FIELDS + 1)).unwrap_err();
        assert!(e.contains(&format!("\"f{MAX_FIELDS:04}\"")), "{e}");
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let e = fields(&format!(r#"{{"{long}":1}}"#)).unwrap_err();
        assert!(e.contains("kkkk") && e.contains("over 512"), "{e}");
        assert!(e.len() < 300, "the name is shown cut: {e}");
        assert!(fields(&format!(r#"{{"{}":1}}"#, &long[1..])).is_ok());
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_marked() {
        let cmdline = format!("a{}", "é".repeat(MAX_TEXT_BYTES));
        let f = fields(&serde_json::json!({ "proc.cmdline": cmdline }).to_string()).unwrap();
        let got = f.get("proc.cmdline").and_then(FieldValue::as_str).unwrap();
        let (kept, mark) = got.split_once('…').unwrap();
        assert!(kept.len() <= MAX_TEXT_BYTES && kept.len() > MAX_TEXT_BYTES - 2);
        assert!(cmdline.starts_with(kept));
        assert_eq!(mark, format!("[cut {} bytes]", cmdline.len() - kept.len()));
        // Short text is untouched.
        let f = fields(r#"{"proc.cmdline":"bash -i"}"#).unwrap();
        assert_eq!(
            f.get("proc.cmdline").and_then(FieldValue::as_str),
            Some("bash -i")
        );
    }

    #[test]
    fn long_lists_keep_their_first_elements_and_say_how_many_were_cut() {
        let n = 100_000;
        let images: Vec<String> = (0..n)
            .map(|i| format!("registry.example/img-{i}"))
            .collect();
        let f = fields(&serde_json::json!({ "ka.req.pod.containers.image": images }).to_string())
            .unwrap();
        let text = f.get("ka.req.pod.containers.image").unwrap().to_string();
        assert!(text.len() <= MAX_LIST_BYTES + 40, "{}", text.len());
        let list: Vec<String> = serde_json::from_str(&text).unwrap();
        let kept = list.len() - 1;
        assert_eq!(list[..kept], images[..kept]);
        assert_eq!(list[kept], format!("…[cut {} elements]", n - kept));
        // A string element longer than the list's room is counted, not copied.
        let f = fields(&format!(r#"{{"l":["a","{}","b"]}}"#, "x".repeat(10_000))).unwrap();
        assert_eq!(
            f.get("l").unwrap().to_string(),
            r#"["a","…[cut 2 elements]"]"#
        );
    }

    #[test]
    fn all_lists_together_are_bounded() {
        let list: Vec<u32> = (0..10_000).collect();
        let mut m = serde_json::Map::new();
        for i in 0..20 {
            m.insert(format!("l{i:02}"), serde_json::json!(list));
        }
        let f = fields(&serde_json::Value::Object(m).to_string()).unwrap();
        let total: usize = f.iter().map(|(_, v)| v.to_string().len()).sum();
        assert!(total <= MAX_LISTS_BYTES + 20 * 40, "{total}");
        // Each still says what it lost.
        assert!(f.iter().all(|(_, v)| v.to_string().contains("cut")));
    }

    #[test]
    fn a_key_twice_is_refused() {
        let e = fields(r#"{"a":1,"b":2,"a":3}"#).unwrap_err();
        assert!(e.contains("\"a\" appears twice"), "{e}");
    }

    #[test]
    fn tags_are_bounded_and_marked() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "cut_tags")]
            tags: Option<Vec<String>>,
        }
        let many: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        let t: T = serde_json::from_value(serde_json::json!({ "tags": many })).unwrap();
        let tags = t.tags.unwrap();
        assert_eq!(tags.len(), MAX_TAGS + 1);
        assert_eq!(tags[MAX_TAGS], format!("…[cut {} tags]", 1000 - MAX_TAGS));
        let t: T = serde_json::from_str(r#"{"tags":null}"#).unwrap();
        assert_eq!(t.tags, None);
        assert!(serde_json::from_str::<T>(r#"{"tags":["a",1]}"#).is_err());
    }

    fn scalar() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
        ]
    }

    proptest! {
        /// Fields within the bounds read back exactly as serde_json's own tree of them.
        #[test]
        fn flat_fields_read_as_serde_json_reads_them(
            m in prop::collection::btree_map(
                "[a-z.\\[\\]0-9]{1,16}",
                prop_oneof![scalar(), prop::collection::vec(scalar(), 0..6).prop_map(serde_json::Value::from)],
                0..24,
            )
        ) {
            let v = serde_json::Value::Object(m.into_iter().collect());
            let f: Fields = serde_json::from_str(&v.to_string()).unwrap();
            prop_assert_eq!(serde_json::to_value(&f).unwrap(), v.clone());
            let f: Fields = serde_json::from_value(v.clone()).unwrap();
            prop_assert_eq!(serde_json::to_value(&f).unwrap(), v);
        }
    }
}
