//! Logging: one line per event, text or JSON (LOG_FORMAT), always on stderr so that the one-shot
//! mode's stdout carries only its JSON result.
//!
//! The text format is a lean `time LEVEL message key=value ...` writer: tracing-subscriber's
//! default formatter spent about a quarter of a skipped event's CPU on styling and field
//! formatting (callgrind, docs/BENCHMARKS.md), and a log line per event is not optional.

use std::fmt;

use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    field::Visit,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

use crate::config::LogFormat;

pub fn init(format: &LogFormat) {
    // Without RUST_LOG, EnvFilter would default to ERROR only: default to info.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.event_format(Lean).try_init(),
    };
}

/// `2026-11-30T01:23:49.123456Z  INFO event handled outcome=skipped rule="Test rule" ...`
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
        SystemTime.format_time(&mut w)?;
        let level = *event.metadata().level();
        write!(w, " {level:>5} ")?;
        // Two passes: the message first, then the fields in the order they were written.
        let mut v = Fields {
            w,
            message: true,
            result: Ok(()),
        };
        event.record(&mut v);
        v.message = false;
        event.record(&mut v);
        v.result?;
        v.w.write_char('\n')
    }
}

struct Fields<'a> {
    w: Writer<'a>,
    /// First pass: write only the message; second pass: everything else.
    message: bool,
    result: fmt::Result,
}

impl Fields<'_> {
    /// Whether this pass writes `field`.
    fn wants(&self, field: &Field) -> bool {
        self.result.is_ok() && (field.name() == "message") == self.message
    }

    fn key(&mut self, field: &Field) -> fmt::Result {
        self.w.write_char(' ')?;
        self.w.write_str(field.name())?;
        self.w.write_char('=')
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.wants(field) {
            return;
        }
        self.result = self.key(field).and_then(|_| {
            // Bare words stay bare; anything with spaces or quotes is quoted, as logfmt does.
            if !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=')
            {
                self.w.write_str(value)
            } else {
                write!(self.w, "{value:?}")
            }
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if !self.wants(field) {
            return;
        }
        self.result = self.key(field).and_then(|_| write!(self.w, "{value:.3}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.wants(field) {
            return;
        }
        if self.message {
            self.result = write!(self.w, "{value:?}");
            return;
        }
        // Display values (`%x`) arrive here too; quote them as record_str does.
        let text = format!("{value:?}");
        self.record_str(field, &text);
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
    fn lean_lines_are_message_first_then_logfmt_fields() {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .event_format(Lean)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let reason = "rule \"x\" is not in RULES";
            tracing::info!(outcome = "skipped", pod = "ns/p", rule = %"Terminal shell in container",
                reason = %reason, ms = 0.0123, count = 3, "event handled");
        });
        let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let (_, rest) = line.split_once(' ').unwrap();
        assert_eq!(
            rest,
            " INFO event handled outcome=skipped pod=ns/p rule=\"Terminal shell in container\" \
             reason=\"rule \\\"x\\\" is not in RULES\" ms=0.012 count=3\n"
        );
    }
}
