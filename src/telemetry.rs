//! Logging: one line per event, text or JSON (LOG_FORMAT), always on stderr so that the one-shot
//! mode's stdout carries only its JSON result.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

pub fn init(format: &LogFormat) {
    // Without RUST_LOG, EnvFilter would default to ERROR only: default to info for our crate.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: in a pod they are noise, and they cost (docs/BENCHMARKS.md).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
