//! Logging: one line per event, text or JSON (LOG_FORMAT), always on stderr so that the one-shot
//! mode's stdout carries only its JSON result.
//!
//! - `lean`: the text format, a lean `time LEVEL message key=value ...` writer:
//!   tracing-subscriber's default formatter spent about a quarter of a skipped event's CPU on
//!   styling and field formatting (callgrind, docs/BENCHMARKS.md), and a log line per event is
//!   not optional;
//! - `batch`: lines batched per runtime worker, one write(2) for many;
//! - `bounded`: the event kept in a failure line for replay, bounded in size.

mod batch;
mod bounded;
mod lean;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub use batch::{BATCH_MAX_BYTES, batch_this_thread, flush_this_thread};
pub use bounded::{LOG_EVENT_MAX_BYTES, bounded_event};
pub use lean::{Lean, info_line};

/// Installs the global subscriber: RUST_LOG's filter, LOG_FORMAT's format, stderr.
pub fn init(format: &LogFormat) {
    // Without RUST_LOG, EnvFilter would default to ERROR only: default to info.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(batch::Stderr);
    match format {
        LogFormat::Json => {
            let _ = builder.json().flatten_event(true).try_init();
        }
        LogFormat::Text => {
            if builder.event_format(Lean).try_init().is_ok() {
                lean::set_global();
            }
        }
    }
}
