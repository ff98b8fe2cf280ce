//! Logging: human-readable lines on stderr, or JSON lines when `BATON_LOG_FORMAT=json`.
//! `RUST_LOG` picks levels (default: Baton and request logs at info, libraries at warn).
//! Text lines are coloured only when stderr is a terminal: redirected to a file, a pipe or a
//! journal, escape codes would be noise in every line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,baton=info,tower_http=info"));
    let json = std::env::var("BATON_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
