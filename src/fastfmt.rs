//! Writing strings on the per-event path without the `fmt` machinery: a skipped event's reason,
//! reply and log line are a large share of its cost otherwise (callgrind). Integers are itoa's,
//! JSON strings serde_json's; Rust's `{:?}` quoting (the skip reason) has no crate, so it is
//! ours, with a scanner that checks sixteen bytes at a time. Each writer gives exactly what its
//! general counterpart gives (unit tests compare them).

use std::fmt::Write;

/// The first byte of `bytes` that `hit`s, as `position` gives it, sixteen bytes at a time:
/// `hit` must be branch-free (`|`, not `||`) so that a block is checked in a few vector
/// instructions. Most strings we write have no byte to escape.
#[inline(always)]
pub fn find(bytes: &[u8], hit: impl Fn(u8) -> bool + Copy) -> Option<usize> {
    let mut blocks = bytes.chunks_exact(16);
    let mut at = 0;
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | hit(b)) {
            return block.iter().position(|&b| hit(b)).map(|i| at + i);
        }
        at += 16;
    }
    let rest = blocks.remainder();
    if rest.is_empty() || at == 0 {
        return rest.iter().position(|&b| hit(b)).map(|i| at + i);
    }
    // The tail as the last sixteen bytes, some already checked (no hit among them).
    let last = bytes.len() - 16;
    let block = &bytes[last..];
    if block.iter().fold(false, |any, &b| any | hit(b)) {
        block.iter().position(|&b| hit(b)).map(|i| last + i)
    } else {
        None
    }
}

/// Appends `s` as `format!("{s:?}")` does.
pub fn push_debug_str(out: &mut String, s: &str) {
    let mark = out.len();
    out.push('"');
    let mut rest = s;
    // Printable ASCII needs only `"` and `\` escaped; anything else takes the general way.
    while let Some(i) = find(rest.as_bytes(), |b| {
        // Outside 0x20..0x7f, in one comparison.
        (b.wrapping_sub(0x20) >= 0x5f) | (b == b'"') | (b == b'\\')
    }) {
        let b = rest.as_bytes()[i];
        if b != b'"' && b != b'\\' {
            out.truncate(mark);
            let _ = write!(out, "{s:?}");
            return;
        }
        out.push_str(&rest[..i]);
        out.push('\\');
        out.push(char::from(b));
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Appends `s` as a JSON string: serde_json's own escaping. It reads byte by byte, and a
/// skipped request (two strings) costs about 1.3% more instructions than with a scanner of
/// sixteen bytes at a time (callgrind: 26.6k instead of 26.3k), under what is worth our own code.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How much of one string the sender chose (a rule, a priority, a key name, an id) a reply, a
/// log line or a Kubernetes Event echoes, in bytes: Falco's own values are far shorter, and an
/// attacker's megabyte must not come back, or fill the log, at the price of one request.
pub const ECHO_MAX: usize = 256;

/// What ends a string that [`bounded`] cut: the one mark of an echo cut short.
pub const CUT_MARK: &str = "…(cut)";

/// `s` whole when it fits in `max` bytes, else its longest prefix that fits with [`CUT_MARK`]
/// after it (cut on a char boundary): never more than `max` bytes (`max` ≥ the mark's 8).
/// Borrowed when whole: the common case costs no allocation.
pub fn bounded(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(max);
    out.push_str(cut(s, max.saturating_sub(CUT_MARK.len())));
    out.push_str(CUT_MARK);
    std::borrow::Cow::Owned(out)
}

/// [`bounded`] for an owned string, cut in place.
pub fn bounded_string(mut s: String, max: usize) -> String {
    if s.len() > max {
        s.truncate(cut(&s, max.saturating_sub(CUT_MARK.len())).len());
        s.push_str(CUT_MARK);
    }
    s
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends `n` with at least `width` digits (zero-padded).
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    out.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
    out.push_str(digits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn debug_str_is_debug(s in any::<String>(), ascii in "[ -~]{0,40}", mixed in "[ -~\n\t\u{0}\u{7f}é\u{301}]{0,40}") {
            for s in [s, ascii, mixed] {
                let mut out = String::from("x");
                push_debug_str(&mut out, &s);
                prop_assert_eq!(out, format!("x{s:?}"));
            }
        }

        #[test]
        fn json_str_is_serde_json(s in any::<String>(), ascii in "[\u{0}-\u{7f}]{0,40}") {
            for s in [s, ascii] {
                let mut out = Vec::new();
                push_json_str(&mut out, &s);
                prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
            }
        }

        #[test]
        fn find_is_position(s in proptest::collection::vec(any::<u8>(), 0..80), x in any::<u8>()) {
            let hit = |b: u8| (b == x) | (b == b'"');
            prop_assert_eq!(find(&s, hit), s.iter().position(|&b| hit(b)));
        }

        #[test]
        fn bounded_is_whole_or_a_marked_prefix_within_the_bound(s in any::<String>(), wide in "[é😀a]{0,300}", max in 8usize..300) {
            for s in [s, wide] {
                let b = bounded(&s, max);
                prop_assert!(b.len() <= max);
                prop_assert_eq!(&*b, &*bounded_string(s.clone(), max));
                if s.len() <= max {
                    prop_assert_eq!(&*b, s.as_str());
                } else {
                    let kept = b.strip_suffix(CUT_MARK).unwrap();
                    prop_assert!(s.starts_with(kept));
                    // The longest prefix that fits: one more char would not.
                    let next = s[kept.len()..].chars().next().unwrap();
                    prop_assert!(kept.len() + next.len_utf8() + CUT_MARK.len() > max);
                }
            }
        }

        #[test]
        fn numbers(n in any::<u64>(), small in 0u64..1000) {
            let mut out = String::new();
            push_u64(&mut out, n);
            prop_assert_eq!(&out, &n.to_string());
            out.clear();
            push_padded(&mut out, small, 3);
            prop_assert_eq!(out, format!("{small:03}"));
        }
    }
}
