//! The cheap first look at a plain Falco body (`decode::peek_plain`): one pass over the bytes
//! that checks the whole body is JSON `decode` accepts as a Falco event and keeps only where
//! `rule`, `priority`, `source` and `uuid` are. Nothing is allocated unless one of those four, or
//! a key, is JSON-escaped.
//!
//! Exactness is one-sided by design: `scan` answers `Some` only for bodies that serde_json
//! reads as a `FalcoEvent` with the same four values (tests/it/decode_props.rs compares the two on
//! arbitrary inputs; the fuzz target too). Anything unusual that serde_json may or may not
//! accept (a surrogate `\u` escape, an escaped top-level key, a number near the f64 range,
//! deep nesting, a top-level array) gets `None`, and `decode` decides as before.
//!
//! `output_fields` must be what `domain::falco::Fields` reads: scalars and arrays of scalars,
//! names within its bound (long strings are fine: decode cuts them, it never refuses them).
//!
//! A key given twice in one object (anywhere: top level, `output_fields`, deeper) gets `None`
//! too, and `decode` refuses the body: serde_json alone would keep the last value while other
//! readers of the same body (Argo's filter) take the first. The keys are checked in a small
//! table on the stack (`Keys`); a body with more keys than it holds is left to `decode`.
//!
//! Why not serde_json itself: reading a 1.6 KB event through serde's visitors cost about 24k
//! instructions per request, half of a skipped event's CPU (callgrind); this scanner ~4k.

use crate::domain::falco::{MAX_FIELDS, MAX_KEY_BYTES};

/// Deeper than this is left to serde_json (its own limit is 128).
const MAX_DEPTH: u32 = 64;
/// A number that could reach the f64 range (serde_json refuses infinite numbers in
/// `output_fields`) is left to serde_json: below 10^308 is always finite.
const MAX_EXPONENT: i64 = 308;
/// Keys checked for duplicates per body (every key below the top level, and the top-level keys
/// that are no field of the event): a Falco event has a few dozen. More is left to `decode`.
const MAX_KEYS: usize = 96;
/// Slots of the key table: a power of two, with room to spare so that probing stays short.
const SLOTS: usize = 128;
// A body the scan reads never has more fields than `Fields` takes.
const _: () = assert!(MAX_KEYS <= MAX_FIELDS);
/// The length recorded in `Keys::slots` for a key that was JSON-escaped: its text is in
/// `Keys::unescaped`.
const UNESCAPED: u32 = u32::MAX;

/// Where the four fields are: raw string contents between the quotes, and whether they hold
/// escapes (then serde_json unescapes them).
#[derive(Clone, Copy)]
pub(crate) struct Spans<'a> {
    pub rule: Str<'a>,
    pub priority: Str<'a>,
    pub source: Option<Str<'a>>,
    pub uuid: Option<Str<'a>>,
}

/// A JSON string as the scanner read it, and only the scanner makes one: valid JSON (UTF-8, no
/// control character, every escape known) and no `\u` escape of a surrogate.
#[derive(Clone, Copy)]
pub(crate) struct Str<'a> {
    /// The string with its quotes.
    pub quoted: &'a [u8],
    pub escaped: bool,
}

impl Str<'_> {
    /// The text, unescaped: what serde_json reads, without checking again what the scanner
    /// checked (a JSON string inside a JSON string is the Argo string payload's whole event).
    pub fn unescape(&self) -> Option<String> {
        let mut rest = &self.quoted[1..self.quoted.len() - 1];
        let mut out = Vec::with_capacity(rest.len());
        while let Some(at) = rest.iter().position(|&c| c == b'\\') {
            out.extend_from_slice(&rest[..at]);
            let len = match *rest.get(at + 1)? {
                b'"' => (out.push(b'"'), 2).1,
                b'\\' => (out.push(b'\\'), 2).1,
                b'/' => (out.push(b'/'), 2).1,
                b'b' => (out.push(0x08), 2).1,
                b'f' => (out.push(0x0c), 2).1,
                b'n' => (out.push(b'\n'), 2).1,
                b'r' => (out.push(b'\r'), 2).1,
                b't' => (out.push(b'\t'), 2).1,
                b'u' => {
                    let hex = std::str::from_utf8(rest.get(at + 2..at + 6)?).ok()?;
                    let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    6
                }
                _ => return None,
            };
            rest = &rest[at + len..];
        }
        out.extend_from_slice(rest);
        String::from_utf8(out).ok()
    }
}

/// `Some` only when serde_json reads `body` as a `FalcoEvent`; see the module comment.
pub(crate) fn scan(body: &[u8]) -> Option<Spans<'_>> {
    let mut s = Scanner::new(body);
    s.ws();
    let spans = s.falco()?;
    s.ws();
    (s.i == body.len()).then_some(spans)
}

/// Members a JSON object read by [`members`] may have (an Argo envelope has two or three, a
/// structured CloudEvent with its extensions about ten).
pub(crate) const MAX_MEMBERS: usize = 16;

/// One member of an object read by [`members`].
#[derive(Clone, Copy)]
pub(crate) struct Member<'a> {
    /// The key as written (it has no escapes).
    pub key: &'a [u8],
    /// The value's text, without the whitespace around it (what serde_json's `RawValue` holds).
    pub value: &'a [u8],
    /// The value as a string, when it is one.
    pub string: Option<Str<'a>>,
    /// The value as a Falco event, when `scan` would read it as one.
    pub falco: Option<Spans<'a>>,
}

/// The members of the JSON object `body` (an envelope: CloudEvents structured mode, an Argo
/// event): `Some` only when all of `body` is JSON that serde_json reads, with no key twice in any
/// object, as `scan` checks a plain event. An object value is read as a Falco event first, so
/// that the event inside an envelope is read once. `None` for anything unusual, as `scan`: an
/// escaped key, more than [`MAX_MEMBERS`] members, more keys than the key table holds.
pub(crate) fn members(body: &[u8]) -> Option<Members<'_>> {
    let mut s = Scanner::new(body);
    let mut m = Members {
        list: [None; MAX_MEMBERS],
        len: 0,
    };
    s.ws();
    s.expect(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        s.i += 1;
    } else {
        let obj = s.keys.new_object();
        loop {
            s.ws();
            let key = s.string()?;
            if key.escaped || m.len == MAX_MEMBERS {
                return None;
            }
            s.keys.insert(body, obj, key)?;
            s.colon()?;
            let start = s.i;
            let (mut string, mut falco) = (None, None);
            match s.peek()? {
                b'"' => string = Some(s.string()?),
                b'{' => {
                    // Its keys go to the same table, each object apart: a reading that fails
                    // half-way leaves keys of an object that is never seen again.
                    falco = s.falco();
                    if falco.is_none() {
                        s.i = start;
                        s.value(2)?;
                    }
                }
                _ => s.value(2)?,
            }
            m.list[m.len] = Some(Member {
                key: &key.quoted[1..key.quoted.len() - 1],
                value: &body[start..s.i],
                string,
                falco,
            });
            m.len += 1;
            s.ws();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == body.len()).then_some(m)
}

/// What [`members`] read, in order.
pub(crate) struct Members<'a> {
    list: [Option<Member<'a>>; MAX_MEMBERS],
    len: usize,
}

impl<'a> Members<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &Member<'a>> {
        self.list[..self.len].iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The member named `key`.
    pub fn get(&self, key: &str) -> Option<&Member<'a>> {
        self.iter().find(|m| m.key == key.as_bytes())
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    keys: Keys,
}

/// The keys seen so far, each with the object it is in (0 is the top level): an open-addressing
/// hash table, so that a key costs one probe or two, whatever the number of keys.
struct Keys {
    /// 0 is a free slot; the hash of the object and the key otherwise (never 0).
    hashes: [u64; SLOTS],
    /// The object, and where the key's text is: `(object, start in the body, length)`, or
    /// `(object, index in unescaped, UNESCAPED)`.
    slots: [(u32, u32, u32); SLOTS],
    len: usize,
    /// Objects opened so far.
    objects: u32,
    /// Escaped keys, unescaped as serde_json reads them (`"a\u0062"` is `ab`). Rare: Falco's
    /// keys hold no escapes.
    unescaped: Vec<String>,
}

impl Keys {
    fn new_object(&mut self) -> u32 {
        self.objects += 1;
        self.objects
    }

    /// Records `key` (quoted, as read from `body`) in object `obj`: `None` when the object
    /// already holds it, or when the table is full.
    fn insert(&mut self, body: &[u8], obj: u32, key: Str<'_>) -> Option<()> {
        if self.len == MAX_KEYS {
            return None;
        }
        let unescaped = match key.escaped {
            true => Some(serde_json::from_slice::<String>(key.quoted).ok()?),
            false => None,
        };
        let (text, at, len) = match &unescaped {
            Some(u) => (u.as_bytes(), self.unescaped.len() as u32, UNESCAPED),
            None => {
                let text = &key.quoted[1..key.quoted.len() - 1];
                let start = text.as_ptr() as usize - body.as_ptr() as usize;
                (text, u32::try_from(start).ok()?, text.len() as u32)
            }
        };
        let hash = key_hash(obj, text);
        let mut i = (hash >> (64 - SLOTS.trailing_zeros())) as usize;
        while self.hashes[i] != 0 {
            if self.hashes[i] == hash {
                let (o, a, l) = self.slots[i];
                let seen = if l == UNESCAPED {
                    self.unescaped[a as usize].as_bytes()
                } else {
                    &body[a as usize..(a + l) as usize]
                };
                if o == obj && seen == text {
                    return None;
                }
            }
            i = (i + 1) % SLOTS;
        }
        self.hashes[i] = hash;
        self.slots[i] = (obj, at, len);
        self.len += 1;
        self.unescaped.extend(unescaped);
        Some(())
    }
}

/// A hash of the object and the key's length, first and last eight bytes: enough to tell
/// Falco's field names apart; equal hashes are compared byte for byte, so a collision costs a
/// probe, never a wrong answer.
#[inline(always)]
fn key_hash(obj: u32, k: &[u8]) -> u64 {
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let n = k.len();
    let (a, b) = if n > 8 {
        (word(&k[..8]), word(&k[n - 8..]))
    } else {
        (word(k), 0)
    };
    let mut h = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.rotate_left(29);
    h ^= (u64::from(obj) << 32) | n as u64;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^= h >> 29;
    h | 1
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of the first of the 8 bytes (little-endian) that is `"`, `\`, a control
/// character or not ASCII is the lowest bit set; 0 if none is. (The borrow of these tricks can
/// mark bytes after a real match, never before.)
#[inline(always)]
fn special(w: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let quote = zero(w ^ (ONES * b'"' as u64));
    let backslash = zero(w ^ (ONES * b'\\' as u64));
    // Below 0x20 (the subtraction wraps to 0xE0 and up) or 0x80 and up (its own high bit).
    let control_or_high = w.wrapping_sub(ONES * 0x20) | w;
    (quote | backslash | control_or_high) & HIGH
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8]) -> Self {
        Scanner {
            b,
            i: 0,
            keys: Keys {
                hashes: [0; SLOTS],
                slots: [(0, 0, 0); SLOTS],
                len: 0,
                objects: 0,
                unescaped: Vec::new(),
            },
        }
    }

    /// A Falco event's object (at its `{`), as serde_json reads a `FalcoEvent`: where its four
    /// fields are; the scanner stops after its `}`.
    fn falco(&mut self) -> Option<Spans<'a>> {
        let s = self;
        let obj = s.keys.new_object();
        s.expect(b'{')?;
        let (mut rule, mut priority) = (None, None);
        let (mut source, mut uuid) = (None, None);
        let mut seen = 0u16;
        s.ws();
        if s.peek()? != b'}' {
            loop {
                s.ws();
                let key = s.string()?;
                if key.escaped {
                    return None; // `"rul\u0065"` is `rule` to serde: leave it to serde.
                }
                s.colon()?;
                let k = &key.quoted[1..key.quoted.len() - 1];
                let bit = match k {
                    b"rule" => 1,
                    b"priority" => 2,
                    b"uuid" => 4,
                    b"output" => 8,
                    b"time" => 16,
                    b"source" => 32,
                    b"hostname" => 64,
                    b"tags" => 128,
                    b"output_fields" => 256,
                    _ => 0,
                };
                // serde's derive refuses a known field given twice; other keys go to the table.
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                match bit {
                    0 => {
                        s.keys.insert(s.b, obj, key)?;
                        s.value(1)?
                    }
                    1 => rule = Some(s.string()?),
                    2 => priority = Some(s.string()?),
                    128 => {
                        if !s.null() {
                            s.strings()?
                        }
                    }
                    256 => s.fields()?,
                    _ => {
                        let v = if s.null() { None } else { Some(s.string()?) };
                        match bit {
                            4 => uuid = v,
                            32 => source = v,
                            _ => {}
                        }
                    }
                }
                s.ws();
                match s.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        } else {
            s.i += 1;
        }
        Some(Spans {
            rule: rule?,
            priority: priority?,
            source,
            uuid,
        })
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline(always)]
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// `:` between a key and its value, and the whitespace around it.
    #[inline(always)]
    fn colon(&mut self) -> Option<()> {
        // Compact JSON (what Falco writes): `":` then the value's first byte.
        if let Some(&[b':', next]) = self.b.get(self.i..self.i + 2)
            && next > b' '
        {
            self.i += 1;
            return Some(());
        }
        self.ws();
        self.expect(b':')?;
        self.ws();
        Some(())
    }

    /// serde_json's whitespace.
    #[inline(always)]
    fn ws(&mut self) {
        // Compact JSON (what Falco writes) has none: one comparison then.
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                return;
            }
            self.i += 1;
        }
    }

    fn null(&mut self) -> bool {
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            true
        } else {
            false
        }
    }

    /// A JSON string (at its opening quote): valid escapes, no control characters, UTF-8.
    #[inline(always)]
    fn string(&mut self) -> Option<Str<'a>> {
        let start = self.i;
        self.expect(b'"')?;
        let (mut escaped, mut ascii) = (false, true);
        loop {
            // Sixteen, then eight plain bytes at a time: most of an event is string contents.
            // Either loop stops at the first byte to look at (the match below handles it).
            'plain: {
                while let Some(chunk) = self.b.get(self.i..self.i + 16) {
                    let (lo, hi) = chunk.split_at(8);
                    let lo = special(u64::from_le_bytes(lo.try_into().expect("8 bytes")));
                    let hi = special(u64::from_le_bytes(hi.try_into().expect("8 bytes")));
                    if lo | hi != 0 {
                        let at = if lo != 0 {
                            lo.trailing_zeros()
                        } else {
                            64 + hi.trailing_zeros()
                        };
                        self.i += (at / 8) as usize;
                        break 'plain;
                    }
                    self.i += 16;
                }
                while let Some(chunk) = self.b.get(self.i..self.i + 8) {
                    let at = special(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
                    if at != 0 {
                        self.i += (at.trailing_zeros() / 8) as usize;
                        break 'plain;
                    }
                    self.i += 8;
                }
            }
            match self.next()? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0..=0x1f => return None,
                0x80.. => ascii = false,
                _ => {}
            }
        }
        let quoted = &self.b[start..self.i];
        if !ascii {
            std::str::from_utf8(quoted).ok()?;
        }
        Some(Str { quoted, escaped })
    }

    /// After a backslash.
    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hex = self.b.get(self.i..self.i + 4)?;
                self.i += 4;
                let mut n = 0u32;
                for &h in hex {
                    n = n * 16 + char::from(h).to_digit(16)?;
                }
                // Surrogates (pairs or lone): serde_json's rules, left to it.
                (!(0xD800..=0xDFFF).contains(&n)).then_some(())
            }
            _ => None,
        }
    }

    /// `output_fields`: an object of scalars and arrays of scalars (`domain::falco::Fields`;
    /// the number of fields is bounded by the key table, far below what `Fields` holds).
    fn fields(&mut self) -> Option<()> {
        self.object(MAX_KEY_BYTES, |s| {
            if s.peek()? == b'[' {
                s.array(Self::scalar)
            } else {
                s.scalar()
            }
        })
    }

    /// A string, number, boolean or null.
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    /// `tags`: an array of strings.
    fn strings(&mut self) -> Option<()> {
        self.array(|s| s.string().map(|_| ()))
    }

    /// An object (at its `{`): each key, of at most `max_key` bytes, recorded in the key table
    /// (none twice), each value read by `value`.
    #[inline(always)]
    fn object(
        &mut self,
        max_key: usize,
        mut value: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.expect(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        let obj = self.keys.new_object();
        loop {
            self.ws();
            let key = self.string()?;
            if key.quoted.len() - 2 > max_key {
                return None;
            }
            self.keys.insert(self.b, obj, key)?;
            self.colon()?;
            value(self)?;
            self.ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// An array (at its `[`), each element read by `element`.
    #[inline(always)]
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.expect(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            element(self)?;
            self.ws();
            match self.next()? {
                b',' => continue,
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// Any JSON value at nesting `depth` (the top-level object is 1).
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            // Most values are strings, numbers and nulls: read here, without a recursive call
            // each.
            b'{' => self.object(usize::MAX, |s| match s.peek()? {
                b'"' => s.string().map(|_| ()),
                b'-' | b'0'..=b'9' => s.number(),
                b'n' => s.literal(b"null"),
                _ => s.value(depth + 1),
            }),
            b'[' => self.array(|s| s.value(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        // Eight at a time: the high bit of the first byte that is not a digit is the lowest
        // set (above 0x39 the addition, below 0x30 the subtraction sets it).
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let other = (w.wrapping_add(ONES * 0x46) | w.wrapping_sub(ONES * 0x30)) & HIGH;
            if other != 0 {
                self.i += (other.trailing_zeros() / 8) as usize;
                return self.i - start;
            }
            self.i += 8;
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// JSON's number grammar; what follows it is checked by the caller (`01` fails there).
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int = match self.peek()? {
            b'0' => {
                self.i += 1;
                1
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        };
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        let mut exp: i64 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            let negative = match self.peek() {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let start = self.i;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                exp = (exp * 10 + i64::from(d - b'0')).min(1 << 20);
                self.i += 1;
            }
            if self.i == start {
                return None;
            }
            if negative {
                exp = -exp;
            }
        }
        // Tiny numbers round to 0 in serde_json, huge ones are an error.
        (int as i64 + exp <= MAX_EXPONENT).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn peeked(body: &str) -> bool {
        scan(body.as_bytes()).is_some()
    }

    #[test]
    fn a_key_twice_in_any_object_is_not_peeked() {
        let ok = r#"{"rule":"r","priority":"Notice","output_fields":{"a":1,"b":[2,"a"]},"x":{"a":4,"b":{"a":2,"c":[{"a":3}]}},"y":1}"#;
        assert!(peeked(ok));
        for body in [
            r#"{"rule":"r","priority":"Notice","rule":"s"}"#,
            r#"{"rule":"r","priority":"Notice","x":1,"x":2}"#,
            r#"{"rule":"r","priority":"Notice","output_fields":{"k8s.ns.name":"a","k8s.ns.name":"b"}}"#,
            r#"{"rule":"r","priority":"Notice","x":{"a":{"b":1,"c":2,"b":3}}}"#,
            r#"{"rule":"r","priority":"Notice","output_fields":{"ab":1,"a\u0062":2}}"#,
            r#"{"rule":"r","priority":"Notice","output_fields":{"a\u0062":1,"ab":2}}"#,
        ] {
            assert!(!peeked(body), "{body}");
        }
        // Escaped keys that differ, and long keys that share their first and last eight bytes.
        assert!(peeked(
            r#"{"rule":"r","priority":"Notice","output_fields":{"a\u0062":1,"a\u0063":2,"abcdefgh-1-ijklmnop":1,"abcdefgh-2-ijklmnop":2}}"#
        ));
    }

    #[test]
    fn output_fields_are_peeked_only_as_flat_as_decode_reads_them() {
        let with = |fields: &str| {
            format!(r#"{{"rule":"r","priority":"Notice","output_fields":{fields}}}"#)
        };
        let long = "k".repeat(MAX_KEY_BYTES);
        for ok in [
            r#"{}"#.to_string(),
            r#"{"a":"x","b":-1.5e3,"c":true,"d":false,"e":null,"f":[],"g":["x",1,null,true]}"#
                .into(),
            format!(r#"{{"{long}":1}}"#),
            format!(r#"{{"a":"{}"}}"#, "x".repeat(100_000)),
        ] {
            assert!(peeked(&with(&ok)), "{ok}");
        }
        for refused in [
            r#"{"a":{}}"#.to_string(),
            r#"{"a":[[1]]}"#.into(),
            r#"{"a":[{"b":1}]}"#.into(),
            r#"{"a":[1,]}"#.into(),
            r#"null"#.into(),
            format!(r#"{{"{long}k":1}}"#),
        ] {
            assert!(!peeked(&with(&refused)), "{refused}");
        }
    }

    #[test]
    fn more_keys_than_the_table_holds_are_left_to_decode() {
        let fields = |n: usize| {
            let keys: Vec<String> = (0..n).map(|i| format!(r#""f{i}":{i}"#)).collect();
            format!(
                r#"{{"rule":"r","priority":"Notice","output_fields":{{{}}}}}"#,
                keys.join(",")
            )
        };
        assert!(peeked(&fields(MAX_KEYS)));
        assert!(!peeked(&fields(MAX_KEYS + 1)));
    }

    proptest! {
        /// Any text (the characters JSON escapes often), written by serde_json, with every
        /// character as `\u` where it can be, or with every short escape (`\/` too): the
        /// scanner's string unescaped is what serde_json reads.
        #[test]
        fn a_scanned_string_unescapes_as_serde_json_reads_it(
            chars in prop::collection::vec(
                prop_oneof![any::<char>(), prop::sample::select(&['\n', '\r', '\t', '\u{8}', '\u{c}', '"', '\\', '/', '\0', '\u{1f}', 'a'][..])],
                0..24,
            ),
            how in 0..3,
        ) {
            let text: String = chars.into_iter().collect();
            let short = |c: char| match c {
                '\n' => Some("\\n"), '\r' => Some("\\r"), '\t' => Some("\\t"), '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"), '"' => Some("\\\""), '\\' => Some("\\\\"), '/' => Some("\\/"),
                _ => None,
            };
            let quoted = match how {
                0 => serde_json::to_string(&text).unwrap(),
                _ => {
                    let mut q = String::from("\"");
                    for c in text.chars() {
                        match (how, short(c), u16::try_from(u32::from(c))) {
                            (2, Some(e), _) => q.push_str(e),
                            (1, _, Ok(u)) | (2, None, Ok(u @ 0..0x20)) => q.push_str(&format!("\\u{u:04x}")),
                            _ => q.push(c),
                        }
                    }
                    q + "\""
                }
            };
            let body = format!(r#"{{"priority":"Notice","rule":{quoted}}}"#);
            let serde = serde_json::from_str::<String>(&quoted).ok();
            prop_assert_eq!(serde.as_ref(), Some(&text));
            let spans = scan(body.as_bytes());
            prop_assert!(spans.is_some(), "not scanned: {}", body);
            prop_assert_eq!(spans.unwrap().rule.unescape(), Some(text));
        }

        /// The lowest bit `special` sets is the high bit of the first byte a JSON string
        /// cannot hold as it is, whatever follows it.
        #[test]
        fn special_finds_the_first_byte_to_look_at(
            bytes in proptest::array::uniform8(prop_oneof![
                0x20u8..0x7f, Just(b'"'), Just(b'\\'), 0u8..0x20, 0x80u8..=0xff,
            ])
        ) {
            let first = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b));
            let at = special(u64::from_le_bytes(bytes));
            prop_assert_eq!(
                (at != 0).then(|| (at.trailing_zeros() / 8) as usize),
                first
            );
            if first.is_some() {
                prop_assert_eq!(at.trailing_zeros() % 8, 7);
            }
        }

        #[test]
        fn digits_counts_the_leading_digits(
            bytes in proptest::collection::vec(prop_oneof![b'0'..=b'9', any::<u8>()], 0..24)
        ) {
            let mut s = Scanner::new(&bytes);
            let n = s.digits();
            prop_assert_eq!(n, bytes.iter().take_while(|b| b.is_ascii_digit()).count());
            prop_assert_eq!(s.i, n);
        }
    }
}
