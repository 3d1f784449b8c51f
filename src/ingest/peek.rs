//! The cheap first look at a plain Falco body (`decode::peek_plain`): one pass over the bytes
//! that checks the whole body is JSON `decode` accepts as a Falco event and keeps only where
//! `rule`, `priority`, `source` and `uuid` are. Nothing is allocated unless one of those four is
//! JSON-escaped.
//!
//! Exactness is one-sided by design: `scan` answers `Some` only for bodies that serde_json
//! reads as a `FalcoEvent` with the same four values (tests/it/decode_props.rs compares the two on
//! arbitrary inputs; the fuzz target too). Anything unusual that serde_json may or may not
//! accept (a surrogate `\u` escape, an escaped top-level key, a number near the f64 range,
//! deep nesting, a top-level array) gets `None`, and `decode` decides as before.
//!
//! Why not serde_json itself: reading a 1.6 KB event through serde's visitors cost about 24k
//! instructions per request, half of a skipped event's CPU (callgrind); this scanner ~4k.

/// Deeper than this is left to serde_json (its own limit is 128).
const MAX_DEPTH: u32 = 64;
/// A number that could reach the f64 range (serde_json refuses infinite numbers in
/// `output_fields`) is left to serde_json: below 10^308 is always finite.
const MAX_EXPONENT: i64 = 308;

/// Where the four fields are: raw string contents between the quotes, and whether they hold
/// escapes (then serde_json unescapes them).
pub(crate) struct Spans<'a> {
    pub rule: Str<'a>,
    pub priority: Str<'a>,
    pub source: Option<Str<'a>>,
    pub uuid: Option<Str<'a>>,
}

#[derive(Clone, Copy)]
pub(crate) struct Str<'a> {
    /// The string with its quotes.
    pub quoted: &'a [u8],
    pub escaped: bool,
}

/// `Some` only when serde_json reads `body` as a `FalcoEvent`; see the module comment.
pub(crate) fn scan(body: &[u8]) -> Option<Spans<'_>> {
    let mut s = Scanner { b: body, i: 0 };
    s.ws();
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
            // serde's derive refuses a known field given twice.
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match bit {
                0 => s.value(1)?,
                1 => rule = Some(s.string()?),
                2 => priority = Some(s.string()?),
                128 => {
                    if !s.null() {
                        s.strings()?
                    }
                }
                256 => {
                    if s.peek()? != b'{' {
                        return None;
                    }
                    s.value(1)?
                }
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
    s.ws();
    if s.i != body.len() {
        return None;
    }
    Some(Spans {
        rule: rule?,
        priority: priority?,
        source,
        uuid,
    })
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
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

    /// `tags`: an array of strings.
    fn strings(&mut self) -> Option<()> {
        self.expect(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            self.string()?;
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
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.colon()?;
                    // The values of `output_fields` are strings, numbers and nulls: read
                    // here, without a recursive call each (a third of the scan's cost).
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                        }
                        b'-' | b'0'..=b'9' => self.number()?,
                        b'n' => self.literal(b"null")?,
                        _ => self.value(depth + 1)?,
                    }
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
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

    proptest! {
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
            let mut s = Scanner { b: &bytes, i: 0 };
            let n = s.digits();
            prop_assert_eq!(n, bytes.iter().take_while(|b| b.is_ascii_digit()).count());
            prop_assert_eq!(s.i, n);
        }
    }
}
