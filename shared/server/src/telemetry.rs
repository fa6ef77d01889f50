//! Logging set-up. Services call [`init`] once, first thing in `main`.

use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber.
///
/// `RUST_LOG` overrides `default_filter` (e.g. `"info,sled=warn"`). JSON output
/// is one object per line with the span fields flattened in, which is what log
/// pipelines in Kubernetes expect. Returns false if a subscriber was already set
/// (as in tests that install their own).
pub fn init(json: bool, default_filter: &str) -> bool {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
            .is_ok()
    } else {
        builder.try_init().is_ok()
    }
}
