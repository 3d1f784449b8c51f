//! Logging: one line per event, text or JSON (LOG_FORMAT), always on stderr so that the one-shot
//! mode's stdout carries only its JSON result.
//!
//! The text format is a lean `time LEVEL message key=value ...` writer: tracing-subscriber's
//! default formatter spent about a quarter of a skipped event's CPU on styling and field
//! formatting (callgrind, docs/BENCHMARKS.md), and a log line per event is not optional.

use std::fmt::{self, Write as _};

use serde_json::Value;
use tracing::{Event, Level, Metadata, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    field::Visit,
    fmt::{
        FmtContext, FormatEvent, FormatFields, MakeWriter,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

use crate::{config::LogFormat, fastfmt};

pub fn init(format: &LogFormat) {
    // Without RUST_LOG, EnvFilter would default to ERROR only: default to info.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Stderr);
    match format {
        LogFormat::Json => {
            let _ = builder.json().flatten_event(true).try_init();
        }
        LogFormat::Text => {
            if builder.event_format(Lean).try_init().is_ok() {
                LEAN_GLOBAL.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Set once [`Lean`] is the global formatter: [`info_line`] may then write its line itself.
static LEAN_GLOBAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
    LINE.set(line);
    true
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

/// Lines are batched on the runtime's worker threads: one write(2) per line was about a fifth
/// of a skipped event's cost under load. A worker's lines are written when it is about to park
/// (it has nothing left to run, so a line never waits for more than the work already ready),
/// when they pass [`BATCH_MAX_BYTES`], when the thread stops, and before any WARN or ERROR line,
/// which is always written at once (failure lines carry the event for replay). Other threads
/// (main, blocking pool, one-shot mode) write each line directly.
pub const BATCH_MAX_BYTES: usize = 32 * 1024;

thread_local! {
    /// `None` on a thread that does not batch.
    static BATCH: std::cell::RefCell<Batch> = const { std::cell::RefCell::new(Batch(None)) };
}

struct Batch(Option<Vec<u8>>);

impl Batch {
    /// Adds `line`, or writes it at once (after anything held, to keep the order) when it is
    /// `urgent` or this thread does not batch.
    fn write(&mut self, line: &[u8], urgent: bool, out: &mut impl std::io::Write) {
        match &mut self.0 {
            Some(held) if !urgent => {
                held.extend_from_slice(line);
                if held.len() >= BATCH_MAX_BYTES {
                    self.flush(out);
                }
            }
            _ => {
                self.flush(out);
                // As tracing-subscriber does, a log line that cannot be written is dropped.
                let _ = out.write_all(line);
            }
        }
    }

    fn flush(&mut self, out: &mut impl std::io::Write) {
        if let Some(held) = &mut self.0
            && !held.is_empty()
        {
            let _ = out.write_all(held);
            held.clear();
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush(&mut std::io::stderr());
    }
}

/// For tokio's `on_thread_unpark`: from now on this worker thread batches its lines. (Set on
/// unpark, not on thread start: blocking-pool threads start the same way but never park.)
pub fn batch_this_thread() {
    let _ = BATCH.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut()
            && b.0.is_none()
        {
            b.0 = Some(Vec::with_capacity(BATCH_MAX_BYTES + 4096));
        }
    });
}

/// For tokio's `on_thread_park` and `on_thread_stop`: writes this thread's held lines.
pub fn flush_this_thread() {
    let _ = BATCH.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            b.flush(&mut std::io::stderr());
        }
    });
}

/// stderr through this thread's [`Batch`].
struct Stderr;

struct Line {
    urgent: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            urgent: matches!(*meta.level(), Level::ERROR | Level::WARN),
        }
    }
}

impl std::io::Write for Line {
    /// tracing-subscriber writes each line whole, with one `write_all`.
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut out = std::io::stderr();
        let held = BATCH.try_with(|b| match b.try_borrow_mut() {
            Ok(mut b) => {
                b.write(line, self.urgent, &mut out);
                true
            }
            Err(_) => false,
        });
        if held != Ok(true) {
            out.write_all(line)?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
        LINE.set(v.line);
        written
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's `SystemTime` writes it.
fn push_time(out: &mut String, now: std::time::SystemTime) {
    thread_local! {
        /// `YYYY-MM-DDTHH:MM:SS` of the last second written: the date is computed once a second.
        static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let Ok(since) = now.duration_since(std::time::UNIX_EPOCH) else {
        let _ = SystemTime.format_time(&mut Writer::new(out));
        return;
    };
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(cached, s)| {
        if *cached != secs {
            s.clear();
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let t = secs % 86_400;
            fastfmt::push_padded(s, y.max(0) as u64, 4);
            s.push('-');
            fastfmt::push_padded(s, m.into(), 2);
            s.push('-');
            fastfmt::push_padded(s, d.into(), 2);
            s.push('T');
            fastfmt::push_padded(s, t / 3600, 2);
            s.push(':');
            fastfmt::push_padded(s, t / 60 % 60, 2);
            s.push(':');
            fastfmt::push_padded(s, t % 60, 2);
            *cached = secs;
        }
        out.push_str(s);
    });
    out.push('.');
    fastfmt::push_padded(out, since.subsec_micros().into(), 6);
    out.push('Z');
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

    /// Writes the message with `write`, in front of any field already written.
    fn message(&mut self, write: impl FnOnce(&mut String)) {
        if self.line.len() == self.fields_at {
            write(&mut self.line);
        } else {
            let mut m = String::new();
            write(&mut m);
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

/// Bare words stay bare; anything with spaces or quotes is quoted, as logfmt does.
fn push_value(line: &mut String, value: &str) {
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

fn is_id_field(key: &str) -> bool {
    ID_FIELDS.iter().any(|p| key.starts_with(p))
}

/// The event as one JSON line of at most `max` bytes (when its identifiers fit): the largest
/// string fields (`output`, then `output_fields` values) are cut first, marked
/// `…[cut N bytes]`; if that is not enough, the largest non-identifying `output_fields` entries
/// are dropped, and `"_cut_fields"` says how many.
pub fn bounded_event<T: serde::Serialize>(event: &T, max: usize) -> String {
    let whole = serde_json::to_string(event).unwrap_or_default();
    if whole.len() <= max {
        return whole;
    }
    let Ok(Value::Object(mut top)) = serde_json::to_value(event) else {
        return whole.chars().take(max).collect();
    };
    let mut size = whole.len();
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
        let mut keep = len.saturating_sub(size - max + 24).max(MIN_KEPT);
        while !s.is_char_boundary(keep) {
            keep -= 1;
        }
        let cut = len - keep;
        s.truncate(keep);
        s.push_str(&format!("…[cut {cut} bytes]"));
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
    use std::sync::{Arc, Mutex};

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
        assert!(v["output"].as_str().unwrap().contains("…[cut "));
        assert!(
            v["output_fields"]["proc.cmdline"]
                .as_str()
                .unwrap()
                .contains("…[cut ")
        );
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
    fn batched_lines_keep_their_order_and_failure_lines_are_never_held() {
        let mut out = Vec::new();
        // A thread that does not batch writes each line at once.
        let mut direct = Batch(None);
        direct.write(b"a\n", false, &mut out);
        assert_eq!(out, b"a\n");
        let mut b = Batch(Some(Vec::new()));
        b.write(b"info 1\n", false, &mut out);
        b.write(b"info 2\n", false, &mut out);
        assert_eq!(out, b"a\n", "INFO lines are held");
        // A WARN/ERROR line goes out at once, after what was held.
        b.write(b"error\n", true, &mut out);
        assert_eq!(out, b"a\ninfo 1\ninfo 2\nerror\n");
        b.write(b"info 3\n", false, &mut out);
        b.flush(&mut out);
        assert!(out.ends_with(b"error\ninfo 3\n"));
        b.flush(&mut out);
        assert!(out.ends_with(b"error\ninfo 3\n"), "written once");
        // Never more than BATCH_MAX_BYTES held.
        out.clear();
        let line = [b'x'; 1000];
        for _ in 0..100 {
            b.write(&line, false, &mut out);
            assert!(b.0.as_ref().unwrap().len() < BATCH_MAX_BYTES);
        }
        b.flush(&mut out);
        assert_eq!(out.len(), 100 * 1000);
    }

    #[test]
    fn a_runtime_worker_batches_and_writes_when_it_parks() {
        // Only the runtime's park/unpark hooks switch a thread to batching.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_unpark(batch_this_thread)
            .on_thread_park(flush_this_thread)
            .build()
            .unwrap();
        let batching = || BATCH.with(|b| b.borrow().0.is_some());
        let held = || BATCH.with(|b| b.borrow().0.as_ref().map_or(0, Vec::len));
        // A worker batches once it has parked and woken up: give it the time to park (its
        // first task may run before that, and a loaded machine may be slow to schedule it).
        let mut woke_batching = false;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            woke_batching = rt.block_on(rt.spawn(async move { batching() })).unwrap();
            if woke_batching {
                break;
            }
        }
        assert!(woke_batching);
        assert!(!batching(), "other threads write directly");
        assert!(
            !rt.block_on(rt.spawn_blocking(batching)).unwrap(),
            "blocking-pool threads write directly"
        );
        // An INFO line a worker holds is written when it runs out of work.
        let held_then = rt
            .block_on(rt.spawn(async move {
                let line = b"(telemetry test) an INFO line held, written when the worker parked\n";
                std::io::Write::write_all(&mut Line { urgent: false }, line).unwrap();
                held()
            }))
            .unwrap();
        assert!(held_then > 0);
        let mut held_now = held_then;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            held_now = rt.block_on(rt.spawn(async move { held() })).unwrap();
            if held_now == 0 {
                break;
            }
        }
        assert_eq!(held_now, 0);
    }

    #[test]
    fn lean_time_is_tracing_subscribers_time() {
        for days in [0i64, 59, 60, 365, 10_957, 11_016, 20_787, 20_818, 47_541] {
            let t = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(days as u64 * 86_400 + 86_399)
                + std::time::Duration::from_micros(123_456);
            let mut ours = String::new();
            push_time(&mut ours, t);
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                ours,
                format!("{y:04}-{m:02}-{d:02}T23:59:59.123456Z"),
                "{days}"
            );
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
        assert_eq!(civil_from_days(20_787), (2026, 11, 30));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
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
