//! The text format: `time LEVEL message key=value ...`, written with `fastfmt`'s helpers, and
//! the skipped event's line written directly when this is the global formatter.

use std::fmt::{self, Write as _};

use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{
    field::Visit,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

use super::batch::Line;
use crate::fastfmt;
use k8s_openapi::jiff;

/// Set once [`Lean`] is the global formatter: [`info_line`] may then write its line itself.
static LEAN_GLOBAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called once [`Lean`] was installed as the global formatter.
pub(super) fn set_global() {
    LEAN_GLOBAL.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The INFO line `Lean` writes for `message` and `fields` then `ms` (the skipped event's
/// line), written here without going through tracing's dispatch and field visitor, which cost
/// more than the line itself. `false` (nothing written) unless `Lean` is the global
/// formatter: the caller then logs with `tracing::info!`. The caller checks the level with
/// `tracing::enabled!`, so RUST_LOG still rules.
pub fn info_line(message: &str, fields: &[(&str, &str)], ms: f64) -> bool {
    if !LEAN_GLOBAL.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    let mut line = LINE.take();
    lean_line(&mut line, message, fields, ms);
    let _ = std::io::Write::write(&mut Line { urgent: false }, line.as_bytes());
    LINE.set(kept(line));
    true
}

/// A field's value is cut to this many bytes before it is escaped (the largest value logged
/// on purpose is the event kept for replay, itself bounded to this), ...
pub(super) const VALUE_MAX: usize = super::bounded::LOG_EVENT_MAX_BYTES;
/// ... and its escaped form to this many: quoting multiplies a string up to six times (a
/// control character is `\u{1b}`), JSON's quotes twice, so the replay copy is never cut here.
pub(super) const ESCAPED_MAX: usize = 2 * VALUE_MAX;
/// The line buffer is given back down to this after a larger line: one large line must not
/// keep its size for the life of the thread.
pub(super) const LINE_KEEP: usize = 2 * ESCAPED_MAX;

/// The line buffer emptied, and shrunk back to [`LINE_KEEP`] if one line made it larger.
fn kept(mut line: String) -> String {
    line.clear();
    line.shrink_to(LINE_KEEP);
    line
}

fn lean_line(line: &mut String, message: &str, fields: &[(&str, &str)], ms: f64) {
    line.clear();
    push_time(line, std::time::SystemTime::now());
    line.push_str("  INFO ");
    line.push_str(message);
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        push_value(line, value);
    }
    line.push_str(" ms=");
    push_f64(line, ms);
    line.push('\n');
}

thread_local! {
    /// The line is built here: no allocation per event.
    static LINE: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
}

/// `2026-11-30T01:23:49.123456Z  INFO event handled outcome=skipped rule="Test rule" ...`
///
/// Written with `text`'s helpers, not `write!`: the `fmt` machinery (timestamp, padding,
/// `{:?}` quoting, `{:.3}`) was most of the log line's cost, which every event pays.
pub struct Lean;

impl<S, N> FormatEvent<S, N> for Lean
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = LINE.take();
        line.clear();
        push_time(&mut line, std::time::SystemTime::now());
        line.push_str(match *event.metadata().level() {
            Level::ERROR => " ERROR ",
            Level::WARN => "  WARN ",
            Level::INFO => "  INFO ",
            Level::DEBUG => " DEBUG ",
            Level::TRACE => " TRACE ",
        });
        // The message first, then the fields in the order they were written. tracing's macros
        // record the message first; a message recorded later is moved in front.
        let mut v = Fields {
            fields_at: line.len(),
            line,
        };
        event.record(&mut v);
        v.line.push('\n');
        let written = w.write_str(&v.line);
        LINE.set(kept(v.line));
        written
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's `SystemTime` writes it.
fn push_time(out: &mut String, now: std::time::SystemTime) {
    thread_local! {
        /// `YYYY-MM-DDTHH:MM:SS` of the last second written: the date is computed once a second.
        static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(std::time::UNIX_EPOCH).ok();
    let written = since.is_some_and(|since| {
        let secs = since.as_secs();
        SECOND.with_borrow_mut(|(cached, s)| {
            if *cached != secs {
                // jiff's calendar ends with the year 9999.
                let Ok(at) = jiff::Timestamp::from_second(secs as i64) else {
                    return false;
                };
                s.clear();
                let civil = jiff::tz::Offset::UTC.to_datetime(at);
                let _ = write!(s, "{}", civil.strftime("%Y-%m-%dT%H:%M:%S"));
                *cached = secs;
            }
            out.push_str(s);
            out.push('.');
            fastfmt::push_padded(out, since.subsec_micros().into(), 6);
            out.push('Z');
            true
        })
    });
    if !written {
        // Before 1970 or after 9999: a clock that is wrong; tracing-subscriber's own reading.
        let _ = SystemTime.format_time(&mut Writer::new(out));
    }
}

struct Fields {
    line: String,
    /// Where the message goes: right after the level.
    fields_at: usize,
}

impl Fields {
    fn is_message(field: &Field) -> bool {
        field.name() == "message"
    }

    fn key(&mut self, field: &Field) {
        self.line.push(' ');
        self.line.push_str(field.name());
        self.line.push('=');
    }

    /// Writes the message with `write`, in front of any field already written; cut to
    /// [`ESCAPED_MAX`] like a value (a message formatted with the sender's strings).
    fn message(&mut self, write: impl FnOnce(&mut String)) {
        if self.line.len() == self.fields_at {
            write(&mut self.line);
            cut_from(&mut self.line, self.fields_at, "");
        } else {
            let mut m = String::new();
            write(&mut m);
            cut_from(&mut m, 0, "");
            self.line.insert_str(self.fields_at, &m);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if Self::is_message(field) {
            // A message given as a field (`message = "..."`) is written like one.
            return self.message(|line| {
                line.push_str(" message=");
                push_value(line, value);
            });
        }
        self.key(field);
        push_value(&mut self.line, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if Self::is_message(field) {
            return self.message(|line| {
                let _ = write!(line, " message={value:.3}");
            });
        }
        self.key(field);
        push_f64(&mut self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if Self::is_message(field) {
            self.record_debug(field, &value);
        } else {
            self.key(field);
            fastfmt::push_u64(&mut self.line, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if Self::is_message(field) {
            self.record_debug(field, &value);
        } else {
            self.key(field);
            if value < 0 {
                self.line.push('-');
            }
            fastfmt::push_u64(&mut self.line, value.unsigned_abs());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if Self::is_message(field) {
            self.record_debug(field, &value);
        } else {
            self.key(field);
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if Self::is_message(field) {
            return self.message(|line| {
                let _ = write!(line, "{value:?}");
            });
        }
        // Display values (`%x`) arrive here too; quote them as record_str does.
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
}

/// `{:.3}`; the usual values (milliseconds) without float formatting.
fn push_f64(line: &mut String, value: f64) {
    if value.is_finite() && (0.0..1e12).contains(&value) {
        let thousandths = (value * 1000.0).round() as u64;
        fastfmt::push_u64(line, thousandths / 1000);
        line.push('.');
        fastfmt::push_padded(line, thousandths % 1000, 3);
    } else {
        let _ = write!(line, "{value:.3}");
    }
}

/// Bare words stay bare; anything with spaces or quotes is quoted, as logfmt does. Bounded:
/// the value is cut to [`VALUE_MAX`] before it is escaped, and its escaped form to
/// [`ESCAPED_MAX`].
fn push_value(line: &mut String, value: &str) {
    let value = fastfmt::bounded(value, VALUE_MAX);
    let start = line.len();
    push_escaped(line, &value);
    if line.len() - start > ESCAPED_MAX {
        // Only a quoted value grows by escaping: close the quote after the mark.
        cut_from(line, start, "\"");
    }
}

/// Cuts what `line` holds after `start` to [`ESCAPED_MAX`] bytes, marked as cut, then `close`.
fn cut_from(line: &mut String, start: usize, close: &str) {
    if line.len() - start <= ESCAPED_MAX {
        return;
    }
    let room = ESCAPED_MAX - fastfmt::CUT_MARK.len() - close.len();
    let keep = fastfmt::cut(&line[start..], room).len();
    line.truncate(start + keep);
    line.push_str(fastfmt::CUT_MARK);
    line.push_str(close);
}

fn push_escaped(line: &mut String, value: &str) {
    if !value.is_empty()
        && fastfmt::find(value.as_bytes(), |b| {
            !b.is_ascii_graphic() | (b == b'"') | (b == b'=')
        })
        .is_none()
    {
        line.push_str(value)
    } else {
        fastfmt::push_debug_str(line, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lean_time_is_tracing_subscribers_time() {
        for (days, date) in [
            (0, "1970-01-01"),
            (59, "1970-03-01"),
            (60, "1970-03-02"),
            (365, "1971-01-01"),
            (10_957, "2000-01-01"),
            (11_016, "2000-02-29"),
            (20_787, "2026-11-30"),
            (20_818, "2026-12-31"),
            (47_541, "2100-03-01"),
        ] {
            let t = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(days * 86_400 + 86_399)
                + std::time::Duration::from_micros(123_456);
            let mut ours = String::new();
            push_time(&mut ours, t);
            assert_eq!(ours, format!("{date}T23:59:59.123456Z"), "{days}");
        }
        // The same clock reading as tracing-subscriber's formatter, to the second.
        let mut theirs = String::new();
        SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .unwrap();
        let mut ours = String::new();
        push_time(&mut ours, std::time::SystemTime::now());
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours[..16], theirs[..16]);
    }

    /// What `Lean` writes for the events `f` emits.
    fn lean_lines(f: impl FnOnce()) -> String {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .event_format(Lean)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lean_messages_come_first_whatever_their_place() {
        let text = lean_lines(|| {
            tracing::warn!(a = 1, message = "as a field", b = "x y");
            tracing::warn!(a = 1, "plain {}", 2);
            tracing::warn!(a = 1);
        });
        let rests: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(
            rests,
            [
                " WARN  message=\"as a field\" a=1 b=\"x y\"",
                " WARN plain 2 a=1",
                " WARN  a=1",
            ]
        );
    }

    #[test]
    fn the_direct_info_line_is_what_lean_writes() {
        let fields = [
            ("outcome", "skipped"),
            ("pod", "-"),
            ("rule", "Terminal shell in container"),
            ("reason", "rule \"x\" is not in RULES"),
            ("empty", ""),
            ("uuid", "6d5f2a0c-8b1e-4c3a-9f47-2e8d1b6a0c95"),
        ];
        let traced = lean_lines(|| {
            tracing::info!(
                outcome = fields[0].1,
                pod = fields[1].1,
                rule = fields[2].1,
                reason = fields[3].1,
                empty = fields[4].1,
                uuid = fields[5].1,
                ms = 0.0126,
                "event handled"
            );
        });
        let mut direct = String::new();
        lean_line(&mut direct, "event handled", &fields, 0.0126);
        // Both start with the time; the rest is identical.
        let rest = |l: &str| l.split_once(' ').unwrap().1.to_string();
        assert_eq!(rest(&direct), rest(&traced));
        assert!(direct.ends_with(" ms=0.013\n"), "{direct}");
        // Not the global formatter in unit tests: the caller must log through tracing.
        assert!(!info_line("event handled", &fields, 0.0));
    }

    #[test]
    fn values_and_messages_are_bounded_and_the_buffer_shrinks_back() {
        // Quoting multiplies: a control character becomes six bytes.
        let huge = "\u{1}".repeat(1 << 20);
        let text = lean_lines(|| {
            tracing::info!(rule = huge.as_str(), reason = %huge, "event handled");
            tracing::warn!("formatted {huge}");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        // Two values, the time, the level and the message.
        assert!(
            lines[0].len() <= 2 * ESCAPED_MAX + 100,
            "{}",
            lines[0].len()
        );
        assert!(lines[1].len() <= ESCAPED_MAX + 100, "{}", lines[1].len());
        for line in &lines {
            assert!(line.contains(fastfmt::CUT_MARK), "{}", &line[..200]);
        }
        assert!(lines[0].contains(&format!("{}\" reason=", fastfmt::CUT_MARK)));
        let capacity = LINE.with(|l| {
            let line = l.take();
            let c = line.capacity();
            l.set(line);
            c
        });
        assert!(capacity <= LINE_KEEP, "{capacity}");
        // What fits is written whole.
        let small = lean_lines(|| tracing::info!(rule = "a b", "m"));
        assert!(small.ends_with(" INFO m rule=\"a b\"\n"), "{small}");
    }

    #[test]
    fn lean_lines_are_message_first_then_logfmt_fields() {
        let line = lean_lines(|| {
            let reason = "rule \"x\" is not in RULES";
            tracing::info!(outcome = "skipped", pod = "ns/p", rule = %"Terminal shell in container",
                reason = %reason, ms = 0.0123, count = 3, neg = -4, ok = true,
                empty = "", big = 1e13, "event handled");
        });
        let (_, rest) = line.split_once(' ').unwrap();
        assert_eq!(
            rest,
            " INFO event handled outcome=skipped pod=ns/p rule=\"Terminal shell in container\" \
             reason=\"rule \\\"x\\\" is not in RULES\" ms=0.012 count=3 neg=-4 ok=true \
             empty=\"\" big=10000000000000.000\n"
        );
    }
}
